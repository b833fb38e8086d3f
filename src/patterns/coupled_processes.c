/* SPDX-License-Identifier: MIT */
/* coupled-processes: processes waiting on each other through IPC in a cycle (pipes, sockets,
 * children) that one of the possible wakers can still end: a thread of one of them that still
 * runs, another holder of a pipe's write end. The ways out are named. */
#include "patterns/pattern.h"

static const char *const recs[] = {
    "Processes that wait on each other synchronously stall together: give the requests "
    "timeouts, or make one side asynchronous.",
    "If one side is restarted the other will block or fail: check its error handling.",
    NULL,
};

static bool in_cycle(const struct cycle *c, const struct athread *t)
{
	for (size_t i = 0; i < c->n; i++)
		if (c->steps[i].t == t)
			return true;
	return false;
}

/* A waker that can go on from outside the cycle: a way out of it. */
static bool way_out(const struct cycle *c, const struct waker *w)
{
	const struct athread *t = waker_thread(w);
	return waker_can_go_on(w) && t && !in_cycle(c, t);
}

static void match(const struct analysis *a, const struct pattern *self, struct findings *out)
{
	for (size_t i = 0; i < a->n_cycles; i++) {
		const struct cycle *c = &a->cycles[i];
		json_object *ways = json_object_new_array();
		struct finding *f;
		char buf[512];
		size_t n_ways = 0;

		if (c->deadlock) {
			json_object_put(ways);
			continue;
		}
		/* The ways out: wakers of a step that can go on. */
		for (size_t j = 0; j < c->n; j++)
			for (size_t k = 0; k < c->steps[j].e->n_wakers; k++) {
				n_ways += way_out(c, &c->steps[j].e->wakers[k]);
			}
		f = finding_new(
		    out, self, SEV_WARNING,
		    "Processes wait on each other through IPC in a cycle of %zu waits; "
		    "it is not a deadlock: %zu of the possible wakers can still end it.",
		    c->n, n_ways);
		if (!f) {
			json_object_put(ways);
			return;
		}
		json_object_object_add(finding_ev(f), "cycle",
				       finding_wait_steps(f, c->steps, c->n, 4));
		finding_line(f, "the ways out of the cycle:");
		for (size_t j = 0; j < c->n; j++)
			for (size_t k = 0; k < c->steps[j].e->n_wakers; k++) {
				const struct waker *w = &c->steps[j].e->wakers[k];
				if (!way_out(c, w))
					continue;
				describe_waker(w, buf, sizeof(buf));
				finding_line(f, "  %s", buf);
				finding_pid(f, w->proc->p->pid);
				json_object_array_add(ways, waker_json(w));
			}
		json_object_object_add(finding_ev(f), "ways_out", ways);
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
