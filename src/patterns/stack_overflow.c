/* SPDX-License-Identifier: MIT */
/* stack-overflow: a thread's stack pointer at or near the bottom of its stack (its guard page). */
#include "patterns/pattern.h"
#include "arch.h"

static const char *const recs[] = {
    "The thread has (nearly) used up its stack: look for deep or unbounded recursion in its "
    "frames, or large arrays on the stack.",
    "Give the thread a larger stack (pthread_attr_setstacksize) only once the depth is "
    "understood to be bounded.",
    NULL,
};

static const struct threshold thresholds[] = {
    {"stack-overflow.margin", 8192, "bytes", "stack left above the guard page"},
};

static void match(const struct analysis *a, const struct pattern *self, struct findings *out)
{
	double margin = pattern_threshold(a, self, "stack-overflow.margin");

	for (size_t i = 0; i < a->n_procs; i++) {
		const struct aprocess *ap = &a->procs[i];
		for (size_t j = 0; j < ap->n_threads; j++) {
			const struct athread *t = &ap->threads[j];
			uint64_t sp = t->regs[ARCH_GREGS_SP];
			char label[160];
			if (!t->in_core)
				continue;
			for (size_t k = 1; k < ap->n_loads; k++) {
				const __typeof__(ap->loads[0]) *seg = &ap->loads[k],
							       *below = &ap->loads[k - 1];
				if (sp < seg->vaddr || sp - seg->vaddr >= seg->memsz)
					continue;
				/* A guard: the mapping just below, inaccessible. */
				if (below->vaddr + below->memsz != seg->vaddr || below->flags != 0)
					break;
				if ((double)(sp - seg->vaddr) >= margin)
					break;
				thread_label(t, label, sizeof(label));
				struct finding *f = finding_new(
				    out, self, SEV_ERROR,
				    "%s has %llu bytes of stack left above its guard page.", label,
				    (unsigned long long)(sp - seg->vaddr));
				if (!f)
					return;
				finding_pid(f, ap->p->pid);
				finding_tid(f, t->t->tid);
				finding_line(
				    f, "stack 0x%llx-0x%llx, sp 0x%llx, guard below at 0x%llx",
				    (unsigned long long)seg->vaddr,
				    (unsigned long long)(seg->vaddr + seg->memsz),
				    (unsigned long long)sp, (unsigned long long)below->vaddr);
				finding_frames(f, t, 12);
				json_object_object_add(
				    finding_ev(f), "bytes_left",
				    json_object_new_int64((int64_t)(sp - seg->vaddr)));
				break;
			}
		}
	}
}

const struct pattern pattern_stack_overflow = {
    .id = "stack-overflow",
    .title = "Stack overflow",
    .severity = SEV_ERROR,
    .description = "A thread's stack pointer is at or next to its guard page.",
    .needs = "cores (registers, memory map)",
    .thresholds = thresholds,
    .n_thresholds = 1,
    .recommendations = recs,
    .match = match,
};
