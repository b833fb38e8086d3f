/* SPDX-License-Identifier: MIT */
/* process-factory: many processes with one parent and one executable. */
#include <stdlib.h>
#include <string.h>

#include "patterns/pattern.h"

static const char *const recs[] = {
    "Find why the parent keeps starting them (its stack below): a loop that retries a "
    "failing start, a script without a limit, a pool without a bound.",
    "Bound it: a maximum number of children, a queue, or a rate limit.",
    NULL,
};

static const struct threshold thresholds[] = {
    {"process-factory.children", 50, "processes", "children of one parent with one executable"},
};

static bool same_program(const struct osm_process *p, const struct osm_process *q)
{
	return !strcmp(q->exe ? q->exe : "", p->exe ? p->exe : "") && !strcmp(q->comm, p->comm);
}

static void match(const struct analysis *a, const struct pattern *self, struct findings *out)
{
	double min = pattern_threshold(a, self, "process-factory.children");
	bool *done = calloc(a->n_procs + 1, sizeof(bool));

	if (!done)
		return;
	for (size_t i = 0; i < a->n_procs; i++) {
		const struct osm_process *p = a->procs[i].p;
		size_t n;
		if (done[i])
			continue;
		n = process_siblings(a, i, same_program, done, NULL);
		if ((double)n < min || p->ppid <= 0)
			continue;
		const struct aprocess *parent = analysis_find_process(a, p->ppid);
		struct finding *f = finding_new(
		    out, self, SEV_WARNING, "Process %d%s%s%s started %zu processes of %s.",
		    p->ppid, parent ? " (" : "", parent ? parent->p->comm : "", parent ? ")" : "",
		    n, p->comm);
		if (!f)
			break;
		finding_pid(f, p->ppid);
		process_siblings(a, i, same_program, done, f);
		finding_line(f, "%zu children of pid %d, executable %s", n, p->ppid,
			     p->exe && *p->exe ? p->exe : p->comm);
		json_object_object_add(finding_ev(f), "parent", json_object_new_int(p->ppid));
		json_object_object_add(finding_ev(f), "count", json_object_new_int((int)n));
		if (parent)
			finding_process_activity(f, parent, "parent");
	}
	free(done);
}

const struct pattern pattern_process_factory = {
    .id = "process-factory",
    .title = "Process factory",
    .severity = SEV_WARNING,
    .description = "One process has started many copies of one program.",
    .needs = "the manifest (process table)",
    .thresholds = thresholds,
    .n_thresholds = 1,
    .recommendations = recs,
    .match = match,
};
