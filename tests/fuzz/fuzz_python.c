/* SPDX-License-Identifier: MIT */
/* libFuzzer harness for CPython's structure reader: any memory (cycles in frame and thread
 * chains, huge counts, bad pointers, damaged strings, dicts and line tables) must be read without
 * crashing, in bounded time; so must the asyncio task walk (sets of weak references, coroutine
 * chains that await each other in a loop). The input's first byte picks the layout (3.11, 3.12, or
 * the 3.13 debug offsets read from the input itself); the rest is the memory at BASE, where
 * _PyRuntime is. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "analyze/runtime/python.h"

#define BASE 0x10000ull

struct img {
	const uint8_t *p;
	size_t n;
};

static size_t img_read(void *ctx, uint64_t addr, void *buf, size_t len)
{
	const struct img *m = ctx;
	if (addr < BASE || addr - BASE >= m->n)
		return 0;
	size_t off = (size_t)(addr - BASE), n = m->n - off < len ? m->n - off : len;
	memcpy(buf, m->p + off, n);
	return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const unsigned versions[] = {0x030b02f0, 0x030c01f0, 0x030d00f0, 0x030a0000,
					    0x030e0000};
	struct img im;
	struct rmem m = {.read = img_read, .ctx = &im};
	struct py_state st = {0};
	char why[200];

	if (size < 2)
		return 0;
	im.p = data + 1;
	im.n = size - 1;
	unsigned v = versions[data[0] % 5];
	st.runtime = BASE + (data[0] >> 4) * 8;
	int r = py_layout_from_debug_offsets(&m, st.runtime, v, &st.L, why, sizeof(why));
	if (r == -ENOENT)
		r = py_layout_for_version(v, &st.L, why, sizeof(why));
	if (r < 0)
		return 0;
	py_read_state(&m, &st);
	py_read_thread_names(&m, &st);
	py_read_tasks(&m, &st);
	/* a task anywhere in the input: its coroutine chain over whatever memory follows */
	if (size > 16)
		py_read_task(&m, &st, BASE + ((size_t)data[1] * 8) % (size - 1));
	for (size_t i = 0; i < st.n_tasks; i++)
		for (size_t j = 0; j < st.tasks[i].n_frames && j < 4; j++) {
			char *qn = NULL, num[32];
			bool b;
			py_frame_with_text(&m, &st, &st.tasks[i].frames[j]);
			(void)py_frame_awaits(&m, &st, &st.tasks[i].frames[j]);
			(void)py_method_self(&m, &st.L, st.tasks[i].frames[j].localsplus, &qn);
			free(qn);
			(void)py_number_text(&m, &st.L, st.tasks[i].awaited, num, sizeof(num));
			(void)py_read_bool(&m, &st.L, st.tasks[i].fut_waiter, &b);
		}
	for (size_t i = 0; i < st.n_threads; i++)
		for (size_t j = 0; j < st.threads[i].n_frames && j < 8; j++)
			py_frame_with_text(&m, &st, &st.threads[i].frames[j]);
	py_line_for(data, size, 1, (int)(size / 3));
	py_state_done(&st);
	return 0;
}
