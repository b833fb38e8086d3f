/* SPDX-License-Identifier: MIT */
/* spiking-thread: a thread that wants a whole CPU over the sampling interval, with its stack.
 * Its demand is the time it ran plus the time it waited runnable in a run queue (schedstat): on
 * a saturated machine a spinner gets a share of a CPU, but asks for all of it. Demand counts
 * for threads that (nearly) never gave the CPU up by themselves; without schedstat (older
 * snapshots), the CPU it got. */
#include <stdio.h>

#include "base/util.h"
#include "patterns/pattern.h"

static const char *const recs[] = {
    "Its stack shows where it spins: look for a loop whose exit condition never comes (a "
    "retry without backoff, a busy-wait, a spin lock held elsewhere).",
    "If the work is legitimate, it competes with every other thread for the CPU: move it to "
    "a bounded pool or lower its priority.",
    NULL,
};

static const struct threshold thresholds[] = {
    {"spiking-thread.cpu", 90, "% of a CPU",
     "CPU demand (run time plus run-queue wait) over the sampling interval"},
};

static void match(const struct analysis *a, const struct pattern *self, struct findings *out)
{
	double min = pattern_threshold(a, self, "spiking-thread.cpu");

	for (size_t i = 0; i < a->n_procs; i++) {
		const struct aprocess *ap = &a->procs[i];
		for (size_t j = 0; j < ap->n_threads; j++) {
			const struct athread *t = &ap->threads[j];
			char label[160], how[160] = "";
			double demand = t->t->has_cpu_pct ? t->t->cpu_pct : 0;
			/* What it wanted counts for a thread that never gave the CPU up by
			 * itself (a sleeper that wakes every millisecond also waits in the run
			 * queue on a busy machine, but is no spinner). */
			if (t->t->has_demand && t->t->voluntary_in_sample >= 0 &&
			    (double)t->t->voluntary_in_sample <=
				MAX(3.0, (double)a->snap->sample_ms / 50))
				demand =
				    MAX(demand, MIN(100.0, t->t->run_pct + t->t->runq_wait_pct));
			if ((!t->t->has_cpu_pct && !t->t->has_demand) || demand < min)
				continue;
			thread_label(t, label, sizeof(label));
			if (t->t->has_demand && t->t->runq_wait_pct >= 10)
				snprintf(
				    how, sizeof(how),
				    " (it ran %.0f%% and waited for a CPU %.0f%% of the time: the "
				    "machine is short of CPU)",
				    MIN(100.0, t->t->run_pct), MIN(100.0, t->t->runq_wait_pct));
			struct finding *f = finding_new(
			    out, self, SEV_WARNING,
			    "%s wanted %.0f%% of a CPU during the %llu ms before the freeze%s.",
			    label, demand, (unsigned long long)a->snap->sample_ms, how);
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
			json_object_object_add(finding_ev(f), "demand_pct",
					       json_object_new_double(demand));
			if (t->t->has_demand) {
				json_object_object_add(finding_ev(f), "run_pct",
						       json_object_new_double(t->t->run_pct));
				json_object_object_add(finding_ev(f), "runq_wait_pct",
						       json_object_new_double(t->t->runq_wait_pct));
			}
		}
	}
}

const struct pattern pattern_spiking_thread = {
    .id = "spiking-thread",
    .title = "Spiking thread",
    .severity = SEV_WARNING,
    .description = "A thread wants (nearly) a whole CPU: it runs, or waits runnable for a "
		   "CPU, the whole interval.",
    .needs = "the manifest (CPU sampling, schedstat) and cores (its stack; for a CPython thread "
	     "its Python frames too, so the spinning Python function and line are shown)",
    .thresholds = thresholds,
    .n_thresholds = 1,
    .recommendations = recs,
    .match = match,
};
