/* SPDX-License-Identifier: MIT */
/* coupled-processes: processes waiting on each other through IPC (a cycle through pipes, sockets
 * or children where some thread of the processes could still run). */
#include "patterns/pattern.h"

static const char *const recs[] = {
    "Processes that wait on each other synchronously stall together: give the requests "
    "timeouts, or make one side asynchronous.",
    "If one side is restarted the other will block or fail: check its error handling.",
    NULL,
};

static void match(const struct analysis *a, const struct pattern *self, struct findings *out)
{
	for (size_t i = 0; i < a->n_cycles; i++) {
		const struct cycle *c = &a->cycles[i];
		struct finding *f;

		if (!c->via_process || c->all_blocked)
			continue;
		f = finding_new(out, self, SEV_WARNING,
				"Processes wait on each other through IPC in a cycle of %zu waits; "
				"some of their threads still run, so it may yet unwind.",
				c->n);
		if (!f)
			return;
		json_object_object_add(finding_ev(f), "cycle",
				       finding_wait_steps(f, c->steps, c->n, 4));
	}
}

const struct pattern pattern_coupled_processes = {
    .id = "coupled-processes",
    .title = "Coupled processes",
    .severity = SEV_WARNING,
    .description = "Two or more processes wait on each other through pipes, sockets or "
		   "child relations.",
    .needs = "the manifest (syscalls, descriptors, unix peers, TCP endpoints)",
    .thresholds = NULL,
    .n_thresholds = 0,
    .recommendations = recs,
    .match = match,
};
