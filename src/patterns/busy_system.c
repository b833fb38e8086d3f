/* SPDX-License-Identifier: MIT */
/* busy-system: every CPU busy, runnable threads well above the CPU count, or CPU pressure. */
#include <string.h>

#include "base/util.h"
#include "patterns/pattern.h"

static const char *const recs[] = {
    "The machine is short of CPU: everything on it runs slower, timeouts fire. Find the "
    "consumers (named in the evidence; a spiking-thread finding, where there is one, names the "
    "thread) and limit them.",
    "If this is normal load, the machine needs more CPUs or the service more instances.",
    NULL,
};

static const struct threshold thresholds[] = {
    {"busy-system.cpu", 90, "%", "average CPU use over the sampling interval"},
    {"busy-system.runnable", 2, "x CPUs", "runnable threads per CPU"},
    {"busy-system.pressure", 20, "%", "CPU pressure (some, avg10)"},
};

static void match(const struct analysis *a, const struct pattern *self, struct findings *out)
{
	const struct osm_system *s = &a->snap->sys;
	double cpu = -1, psi = -1;
	double runnable_per_cpu = s->ncpu > 0 ? (double)s->procs_running / (double)s->ncpu : 0;
	struct finding *f;

	for (size_t i = 0; i < s->n_cpus; i++)
		if (s->cpus[i].cpu < 0)
			cpu = s->cpus[i].busy_pct;
	for (size_t i = 0; i < s->n_psi; i++)
		if (!strcmp(s->psi[i].resource, "cpu"))
			psi = s->psi[i].some[0];
	bool busy = cpu >= pattern_threshold(a, self, "busy-system.cpu");
	bool queue = runnable_per_cpu >= pattern_threshold(a, self, "busy-system.runnable");
	bool pressure = psi >= pattern_threshold(a, self, "busy-system.pressure");
	if (!(busy && (queue || pressure)) && !(pressure && queue))
		return;
	f = finding_new(out, self, SEV_WARNING,
			"The system is CPU-bound: %.0f%% busy, %llu threads runnable on %ld CPUs.",
			cpu, (unsigned long long)s->procs_running, s->ncpu);
	if (!f)
		return;
	finding_line(f, "CPU use over the sampling interval: %.1f%%", cpu);
	for (size_t i = 0; i < s->n_cpus; i++)
		if (s->cpus[i].cpu >= 0)
			finding_line(f, "  cpu%d %.1f%%", s->cpus[i].cpu, s->cpus[i].busy_pct);
	finding_line(f, "load average %.2f %.2f %.2f, run queue %llu, blocked %llu", s->load[0],
		     s->load[1], s->load[2], (unsigned long long)s->procs_running,
		     (unsigned long long)s->procs_blocked);
	if (psi >= 0)
		finding_line(f, "CPU pressure: some task stalled %.1f%% of the last 10 s", psi);
	json_object_object_add(finding_ev(f), "cpu_busy_pct", json_object_new_double(cpu));
	json_object_object_add(finding_ev(f), "procs_running",
			       json_object_new_int64((int64_t)s->procs_running));
	/* The consumers: the machine's top processes over the interval (in the snapshot or not),
	 * then the snapshot's processes that want half a CPU or more, with their threads. */
	json_object *top = json_object_new_array();
	if (s->n_top)
		finding_line(f, "top CPU consumers over the interval (the whole machine):");
	for (size_t i = 0; i < s->n_top; i++) {
		const struct aprocess *ap = analysis_find_process(a, s->top[i].pid);
		json_object *c = json_object_new_object();
		finding_line(f, "  pid %d (%s) %.0f%% of a CPU%s", s->top[i].pid, s->top[i].comm,
			     s->top[i].cpu_pct, ap ? ", in the snapshot" : "");
		json_object_object_add(c, "pid", json_object_new_int(s->top[i].pid));
		json_object_object_add(c, "comm", json_object_new_string(s->top[i].comm));
		json_object_object_add(c, "cpu_pct", json_object_new_double(s->top[i].cpu_pct));
		json_object_object_add(c, "in_snapshot", json_object_new_boolean(ap != NULL));
		json_object_array_add(top, c);
		if (ap && i < 5)
			finding_pid(f, ap->p->pid);
	}
	json_object_object_add(finding_ev(f), "top_consumers", top);
	for (size_t i = 0; i < a->n_procs; i++) {
		double sum = 0, got = 0;
		for (size_t j = 0; j < a->procs[i].n_threads; j++) {
			const struct osm_thread *t = a->procs[i].threads[j].t;
			if (t->has_demand)
				sum += MIN(100.0, t->run_pct + t->runq_wait_pct);
			else if (t->has_cpu_pct)
				sum += t->cpu_pct;
			if (t->has_cpu_pct)
				got += t->cpu_pct;
		}
		if (sum < 50)
			continue;
		finding_pid(f, a->procs[i].p->pid);
		finding_line(f, "pid %d (%s) wants %.0f%% of a CPU and got %.0f%%",
			     a->procs[i].p->pid, a->procs[i].p->comm, sum, got);
		for (size_t j = 0; j < a->procs[i].n_threads; j++) {
			const struct osm_thread *t = a->procs[i].threads[j].t;
			double d = t->has_demand ? t->run_pct + t->runq_wait_pct : t->cpu_pct;
			if ((t->has_demand || t->has_cpu_pct) && d >= 20)
				finding_tid(f, t->tid);
		}
	}
}

const struct pattern pattern_busy_system = {
    .id = "busy-system",
    .title = "Busy system",
    .severity = SEV_WARNING,
    .description = "All CPUs are busy and threads queue for them.",
    .needs = "the manifest (CPU sampling, run queue, pressure)",
    .thresholds = thresholds,
    .n_thresholds = 3,
    .recommendations = recs,
    .match = match,
};
