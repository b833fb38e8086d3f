/* SPDX-License-Identifier: MIT */
/* zombie-processes: many zombies of one parent, and what the parent does instead of reaping. */
#include <stdlib.h>
#include <string.h>

#include "patterns/pattern.h"

static const char *const recs[] = {
    "The parent does not call wait(): reap children (waitpid in a SIGCHLD handler or loop), "
    "or set SIGCHLD to SIG_IGN if it never needs their status.",
    "Each zombie holds a pid: enough of them exhaust pid_max or the user's process limit.",
    NULL,
};

static const struct threshold thresholds[] = {
    {"zombie-processes.count", 5, "zombies", "zombies of one parent"},
};

static bool is_zombie(const struct osm_process *p)
{
	return p->state == 'Z'; /* recorded for skipped zombies too (snap_state.c) */
}

static bool both_zombies(const struct osm_process *p, const struct osm_process *q)
{
	return is_zombie(p) && is_zombie(q);
}

static void match(const struct analysis *a, const struct pattern *self, struct findings *out)
{
	double min = pattern_threshold(a, self, "zombie-processes.count");
	bool *done = calloc(a->n_procs + 1, sizeof(bool));

	if (!done)
		return;
	for (size_t i = 0; i < a->n_procs; i++) {
		const struct osm_process *p = a->procs[i].p;
		size_t n;
		if (done[i] || !is_zombie(p))
			continue;
		n = process_siblings(a, i, both_zombies, done, NULL);
		if ((double)n < min)
			continue;
		const struct aprocess *parent = analysis_find_process(a, p->ppid);
		struct finding *f =
		    finding_new(out, self, SEV_WARNING,
				"%zu zombies wait for their parent %d%s%s%s to reap "
				"them.",
				n, p->ppid, parent ? " (" : "", parent ? parent->p->comm : "",
				parent ? ")" : "");
		if (!f)
			break;
		finding_pid(f, p->ppid);
		process_siblings(a, i, both_zombies, done, f);
		json_object_object_add(finding_ev(f), "parent", json_object_new_int(p->ppid));
		json_object_object_add(finding_ev(f), "zombies", json_object_new_int((int)n));
		if (parent)
			finding_process_activity(f, parent, "the parent's");
		else
			finding_line(f, "the parent %d is not in the snapshot", p->ppid);
	}
	free(done);
}

const struct pattern pattern_zombie_processes = {
    .id = "zombie-processes",
    .title = "Zombie processes",
    .severity = SEV_WARNING,
    .description = "Children have exited and their parent has not reaped them.",
    .needs = "the manifest (process table; --tree or --all to see the zombies)",
    .thresholds = thresholds,
    .n_thresholds = 1,
    .recommendations = recs,
    .match = match,
};
