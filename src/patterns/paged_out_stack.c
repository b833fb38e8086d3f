/* SPDX-License-Identifier: MIT */
/* paged-out-stack: blocked threads whose stack pages were swapped out at the freeze (osmosis read
 * them anyway: it reads virtual memory). Long-idle threads or a system short of memory. */
#include "patterns/pattern.h"

static const char *const recs[] = {
    "These threads had not run for a long time, or the system reclaimed memory hard: when they "
    "wake they will fault their stacks back in first.",
    "If they serve requests, their first response will be slow: consider mlock for "
    "latency-critical threads, or find the memory pressure (insufficient-memory).",
    NULL,
};

static void match(const struct analysis *a, const struct pattern *self, struct findings *out)
{
	for (size_t i = 0; i < a->n_procs; i++) {
		const struct aprocess *ap = &a->procs[i];
		for (size_t j = 0; j < ap->n_threads; j++) {
			const struct athread *t = &ap->threads[j];
			char label[160];
			if (!t->t->stack_swapped_pages)
				continue;
			thread_label(t, label, sizeof(label));
			struct finding *f =
			    finding_new(out, self, SEV_INFO,
					"%s had %llu stack page%s swapped out at the "
					"freeze.",
					label, (unsigned long long)t->t->stack_swapped_pages,
					t->t->stack_swapped_pages == 1 ? "" : "s");
			if (!f)
				return;
			finding_pid(f, ap->p->pid);
			finding_tid(f, t->t->tid);
			finding_line(f, "%s: %s", label,
				     t->wait.text[0] ? t->wait.text : wait_end_class(t));
			finding_frames(f, t, 6);
			json_object_object_add(
			    finding_ev(f), "swapped_pages",
			    json_object_new_int64((int64_t)t->t->stack_swapped_pages));
		}
	}
}

const struct pattern pattern_paged_out_stack = {
    .id = "paged-out-stack",
    .title = "Paged-out stack",
    .severity = SEV_INFO,
    .description = "Stack pages of threads were in swap at the instant of the snapshot.",
    .needs = "the manifest (per-thread swapped stack pages, from pagemap at capture)",
    .thresholds = NULL,
    .n_thresholds = 0,
    .recommendations = recs,
    .match = match,
};
