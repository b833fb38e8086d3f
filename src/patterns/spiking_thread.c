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

/* Preemptions over the sample that make a never-sleeping thread one that wanted the CPU. */
#define PREEMPTED_MIN 3

/* Its demand: the CPU it got, or what it wanted when it never gave the CPU up by itself (a
 * sleeper that wakes every millisecond also waits in the run queue on a busy machine, but is no
 * spinner). -1 when it has no figures. */
static double demand_of(const struct analysis *a, const struct athread *t)
{
	double demand = t->t->has_cpu_pct ? t->t->cpu_pct : 0;
	if (t->t->has_demand && t->t->voluntary_in_sample >= 0 &&
	    (double)t->t->voluntary_in_sample <= MAX(3.0, (double)a->snap->sample_ms / 50))
		demand = MAX(demand, MIN(100.0, t->t->run_pct + t->t->runq_wait_pct));
	/* Runnable at the freeze, never slept in the sample, and queued or running for most of
	 * it: it wanted the CPU all along. The kernel adds a run-queue wait to schedstat only when
	 * the wait ends, so the one in progress at the second read (hundreds of milliseconds on a
	 * saturated machine) is missing from the figure. */
	if (t->t->has_demand && t->t->voluntary_in_sample == 0 && t->t->state == 'R' &&
	    t->t->run_pct + t->t->runq_wait_pct >= 50)
		demand = 100.0;
	/* The same when the scheduler took the CPU from it again and again (preempted, never
	 * sleeping): on a machine loaded by others its waits are long, and the figure misses the
	 * last. A thread woken just before the freeze after sleeping all along is preempted once
	 * at most. */
	if (t->t->has_demand && t->t->voluntary_in_sample == 0 && t->t->state == 'R' &&
	    t->t->switches_in_sample >= PREEMPTED_MIN && t->t->run_pct > 0)
		demand = 100.0;
	return !t->t->has_cpu_pct && !t->t->has_demand ? -1 : demand;
}

/* Wanted a CPU but mostly waited for one: it never slept, which a spinner does, but so does
 * any CPU-bound thread on a saturated machine. */
static bool starved(const struct athread *t)
{
	return t->t->has_demand && t->t->runq_wait_pct >= 10 && t->t->run_pct < 90;
}

static void add_figures(struct finding *f, const struct athread *t, double demand)
{
	json_object *ev = finding_ev(f);
	json_object_object_add(ev, "cpu_pct", json_object_new_double(t->t->cpu_pct));
	json_object_object_add(ev, "demand_pct", json_object_new_double(demand));
	if (t->t->has_demand) {
		json_object_object_add(ev, "run_pct", json_object_new_double(t->t->run_pct));
		json_object_object_add(ev, "runq_wait_pct",
				       json_object_new_double(t->t->runq_wait_pct));
	}
}

static void match(const struct analysis *a, const struct pattern *self, struct findings *out)
{
	double min = pattern_threshold(a, self, "spiking-thread.cpu");
	size_t n_starved = 0, starved_procs = 0;
	struct finding *group = NULL;

	/* Many threads of several processes that never slept while waiting for a CPU: the machine
	 * is saturated; one finding lists them rather than one warning each about a spin loop. */
	for (size_t i = 0; i < a->n_procs; i++) {
		size_t here = 0;
		for (size_t j = 0; j < a->procs[i].n_threads; j++) {
			const struct athread *t = &a->procs[i].threads[j];
			here += demand_of(a, t) >= min && starved(t);
		}
		n_starved += here;
		starved_procs += here > 0;
	}
	bool grouped = n_starved >= 4 && starved_procs >= 3;

	for (size_t i = 0; i < a->n_procs; i++) {
		const struct aprocess *ap = &a->procs[i];
		for (size_t j = 0; j < ap->n_threads; j++) {
			const struct athread *t = &ap->threads[j];
			char label[160], how[160] = "";
			double demand = demand_of(a, t);
			if (demand < min)
				continue;
			thread_label(t, label, sizeof(label));
			if (grouped && starved(t)) {
				if (!group)
					group = finding_new(out, self, SEV_WARNING,
							    "%zu threads of %zu processes never "
							    "slept during the %llu ms "
							    "before the freeze and mostly waited "
							    "for a CPU: the machine "
							    "is saturated (CPU-bound or spinning; "
							    "their stacks say which).",
							    n_starved, starved_procs,
							    (unsigned long long)a->snap->sample_ms);
				if (!group)
					return;
				finding_pid(group, ap->p->pid);
				finding_tid(group, t->t->tid);
				if (group->n_lines < 40) {
					finding_line(group,
						     "%s: ran %.0f%%, waited for a CPU %.0f%%",
						     label, MIN(100.0, t->t->run_pct),
						     MIN(100.0, t->t->runq_wait_pct));
					finding_frames(group, t, 3);
				}
				continue;
			}
			if (starved(t))
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
			add_figures(f, t, demand);
		}
	}
}

const struct pattern pattern_spiking_thread = {
    .id = "spiking-thread",
    .title = "Spiking thread",
    .severity = SEV_WARNING,
    .description = "A thread wants (nearly) a whole CPU: it runs, or waits runnable for a "
		   "CPU, the whole interval. On a saturated machine, threads of several "
		   "processes that never slept and mostly waited for a CPU are one finding.",
    .needs = "the manifest (CPU sampling, schedstat) and cores (its stack; for a CPython thread "
	     "its Python frames too, so the spinning Python function and line are shown)",
    .thresholds = thresholds,
    .n_thresholds = 1,
    .recommendations = recs,
    .match = match,
};
