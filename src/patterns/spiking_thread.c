/* SPDX-License-Identifier: MIT */
/* spiking-thread: a thread near 100% of a CPU over the sampling interval, with its stack. */
#include "patterns/pattern.h"

static const char *const recs[] = {
    "Its stack shows where it spins: look for a loop whose exit condition never comes (a "
    "retry without backoff, a busy-wait, a spin lock held elsewhere).",
    "If the work is legitimate, it competes with every other thread for the CPU: move it to "
    "a bounded pool or lower its priority.",
    NULL,
};

static const struct threshold thresholds[] = {
    {"spiking-thread.cpu", 90, "% of a CPU", "CPU use over the sampling interval"},
};

static void match(const struct analysis *a, const struct pattern *self, struct findings *out)
{
	double min = pattern_threshold(a, self, "spiking-thread.cpu");

	for (size_t i = 0; i < a->n_procs; i++) {
		const struct aprocess *ap = &a->procs[i];
		for (size_t j = 0; j < ap->n_threads; j++) {
			const struct athread *t = &ap->threads[j];
			char label[160];
			if (!t->t->has_cpu_pct || t->t->cpu_pct < min)
				continue;
			thread_label(t, label, sizeof(label));
			struct finding *f = finding_new(
			    out, self, SEV_WARNING,
			    "%s used %.0f%% of a CPU during the %llu ms "
			    "before the freeze.",
			    label, t->t->cpu_pct, (unsigned long long)a->snap->sample_ms);
			if (!f)
				return;
			finding_pid(f, ap->p->pid);
			finding_tid(f, t->t->tid);
			finding_line(f, "%s, %s", label,
				     t->wait.kind == WAIT_NONE ? "running user code at the freeze"
							       : t->wait.text);
			finding_frames(f, t, 10);
			json_object_object_add(finding_ev(f), "cpu_pct",
					       json_object_new_double(t->t->cpu_pct));
		}
	}
}

const struct pattern pattern_spiking_thread = {
    .id = "spiking-thread",
    .title = "Spiking thread",
    .severity = SEV_WARNING,
    .description = "A thread uses (nearly) a whole CPU.",
    .needs = "the manifest (CPU sampling) and cores (its stack; for a CPython thread its "
	     "Python frames too, so the spinning Python function and line are shown)",
    .thresholds = thresholds,
    .n_thresholds = 1,
    .recommendations = recs,
    .match = match,
};
