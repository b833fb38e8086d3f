/* SPDX-License-Identifier: MIT */
/* libFuzzer harness for the parser of jhsdb jstack's output: the text describes a core from
 * anywhere (thread names are the target's), so any bytes must parse without crashing, and every
 * string kept must be bounded and NUL-free. */
#include <stdlib.h>
#include <string.h>

#include "analyze/runtime/java.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct jstack st = {0};

	if (jstack_parse((const char *)data, size, &st) == 0) {
		for (size_t i = 0; i < st.n_threads; i++) {
			if (st.threads[i].name && strlen(st.threads[i].name) > JSTACK_MAX_NAME)
				abort();
			if (st.threads[i].n_frames > JSTACK_MAX_FRAMES)
				abort();
		}
		for (size_t i = 0; i < st.n_deadlocks; i++) {
			const struct jthread *c[4];
			for (size_t j = 0; j < st.deadlocks[i].n; j++)
				jstack_find_named(&st, st.deadlocks[i].steps[j].waiter, c, 4);
		}
	}
	jstack_done(&st);
	return 0;
}
