/* SPDX-License-Identifier: MIT */
/* truncated-dump: what the analysis could not see: cores missing or cut short, threads absent,
 * memory the kernel refused, processes skipped or exited, a state-only snapshot. */
#include <string.h>

#include "patterns/pattern.h"

static const char *const recs[] = {
    "Findings about the processes and threads named here may be incomplete. A short-lived "
    "process that ended during the snapshot (a worker done with its task) is normal.",
    "Where what is missing matters, take the snapshot again (as root for other users' "
    "processes, on a disk with room, without --state-only when stacks and locks matter).",
    NULL,
};

static void match(const struct analysis *a, const struct pattern *self, struct findings *out)
{
	struct finding *f = NULL;
	size_t skipped = 0, exited = 0;

	for (size_t i = 0; i < a->n_problems; i++) {
		if (!f && !(f = finding_new(out, self, SEV_WARNING,
					    "Parts of the snapshot could not be read; the analysis "
					    "saw the rest.")))
			return;
		finding_line(f, "%s", a->problems[i]);
	}
	for (size_t i = 0; i < a->n_procs; i++) {
		const struct osm_process *p = a->procs[i].p;
		skipped += p->capture == CAPTURE_SKIPPED;
		exited += p->capture == CAPTURE_EXITED;
		if (f && !a->procs[i].has_core && p->capture == CAPTURE_MEMORY)
			finding_pid(f, p->pid);
		if (p->unreadable_bytes) {
			if (!f &&
			    !(f = finding_new(out, self, SEV_INFO,
					      "Some memory could not be read at the freeze.")))
				return;
			finding_pid(f, p->pid);
			finding_line(f,
				     "pid %d: %llu bytes the kernel refused (zeroes in the core)",
				     p->pid, (unsigned long long)p->unreadable_bytes);
		}
	}
	if (skipped || exited) {
		struct finding *g =
		    finding_new(out, self, SEV_INFO,
				"%zu process%s not frozen and %zu exited before osmosis could "
				"capture them (each line says when): the analysis cannot see into "
				"them.",
				skipped, skipped == 1 ? " was" : "es were", exited);
		for (size_t i = 0; g && i < a->n_procs; i++) {
			const struct osm_process *p = a->procs[i].p;
			if (p->capture != CAPTURE_SKIPPED && p->capture != CAPTURE_EXITED)
				continue;
			const char *state = capture_state_name(p->capture), *note = p->capture_note;
			/* "exited: exited before the freeze" says it twice */
			bool said = note && !strncmp(note, state, strlen(state));
			if (g->n_lines < 20)
				finding_line(g, "pid %d (%s): %s%s%s", p->pid,
					     p->comm[0] ? p->comm : "name unknown",
					     said ? "" : state, note && !said ? ": " : "",
					     note ? note : "");
		}
	}
	if (a->n_notes) {
		struct finding *n = finding_new(
		    out, self, SEV_INFO, "This machine lacks what part of the analysis needs.");
		for (size_t i = 0; n && i < a->n_notes; i++)
			finding_line(n, "%s", a->notes[i]);
	}
	if (a->snap->state_only)
		finding_new(out, self, SEV_INFO,
			    "A state-only snapshot: no memory, so no stacks beyond the first frame "
			    "and no lock owners.");
}

const struct pattern pattern_truncated_dump = {
    .id = "truncated-dump",
    .title = "Truncated dump",
    .severity = SEV_WARNING,
    .description = "What the analysis could not see, and why.",
    .needs = "the manifest and the cores",
    .thresholds = NULL,
    .n_thresholds = 0,
    .recommendations = recs,
    .match = match,
};
