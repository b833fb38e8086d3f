/* SPDX-License-Identifier: MIT */
/* insufficient-memory: little memory available, commit near its limit, memory pressure, or a
 * process's cgroup near memory.max. */
#include <string.h>

#include "patterns/pattern.h"

static const char *const recs[] = {
    "Find what holds the memory: the processes with the largest RSS (osmosis show), and any "
    "process-factory or handle-leak finding, which often explain it.",
    "A cgroup near memory.max reclaims and then OOM-kills inside it: raise the limit or find "
    "the growth (compare two snapshots).",
    NULL,
};

static const struct threshold thresholds[] = {
    {"insufficient-memory.available", 5, "% of MemTotal", "MemAvailable below this"},
    {"insufficient-memory.commit", 95, "% of CommitLimit", "Committed_AS above this"},
    {"insufficient-memory.pressure", 10, "%", "memory pressure (some, avg10) above this"},
    {"insufficient-memory.cgroup", 90, "% of memory.max", "a cgroup's use above this"},
};

static int64_t kv(const struct osm_kv *v, size_t n, const char *key)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(v[i].key, key))
			return v[i].value;
	return -1;
}

static void match(const struct analysis *a, const struct pattern *self, struct findings *out)
{
	const struct osm_system *s = &a->snap->sys;
	int64_t total = kv(s->meminfo, s->n_meminfo, "MemTotal");
	int64_t avail = kv(s->meminfo, s->n_meminfo, "MemAvailable");
	int64_t commit = kv(s->meminfo, s->n_meminfo, "Committed_AS");
	int64_t limit = kv(s->meminfo, s->n_meminfo, "CommitLimit");
	double psi = -1;

	for (size_t i = 0; i < s->n_psi; i++)
		if (!strcmp(s->psi[i].resource, "memory"))
			psi = s->psi[i].some[0];
	double avail_pct = total > 0 && avail >= 0 ? 100.0 * (double)avail / (double)total : 100;
	double commit_pct = limit > 0 && commit >= 0 ? 100.0 * (double)commit / (double)limit : 0;
	bool low = avail_pct < pattern_threshold(a, self, "insufficient-memory.available");
	bool committed = commit_pct > pattern_threshold(a, self, "insufficient-memory.commit");
	bool pressure = psi > pattern_threshold(a, self, "insufficient-memory.pressure");

	if (low || pressure || committed) {
		struct finding *f = finding_new(out, self, low ? SEV_ERROR : SEV_WARNING,
						"The system is short of memory: %.1f%% available, "
						"commit at %.0f%% of its limit.",
						avail_pct, commit_pct);
		if (f) {
			finding_line(f, "MemAvailable %lld of MemTotal %lld bytes",
				     (long long)avail, (long long)total);
			finding_line(f, "Committed_AS %lld of CommitLimit %lld bytes",
				     (long long)commit, (long long)limit);
			if (psi >= 0)
				finding_line(f,
					     "memory pressure: some task stalled %.1f%% of the "
					     "last 10 s",
					     psi);
			json_object_object_add(finding_ev(f), "available_pct",
					       json_object_new_double(avail_pct));
			json_object_object_add(finding_ev(f), "commit_pct",
					       json_object_new_double(commit_pct));
			/* The largest processes. */
			for (int k = 0; k < 3; k++) {
				const struct osm_process *best = NULL;
				for (size_t i = 0; i < a->n_procs; i++) {
					const struct osm_process *p = a->procs[i].p;
					bool taken = false;
					for (size_t j = 0; j < f->n_pids; j++)
						taken |= f->pids[j] == p->pid;
					if (!taken && (!best || p->vm_rss > best->vm_rss))
						best = p;
				}
				if (!best)
					break;
				finding_pid(f, best->pid);
				finding_line(f, "large: pid %d (%s) RSS %llu bytes", best->pid,
					     best->comm, (unsigned long long)best->vm_rss);
			}
		}
	}
	double cg = pattern_threshold(a, self, "insufficient-memory.cgroup");
	for (size_t i = 0; i < a->n_procs; i++) {
		const struct osm_process *p = a->procs[i].p;
		if (!p->cg_mem_max || p->cg_mem_max == UINT64_MAX)
			continue;
		double pct = 100.0 * (double)p->cg_mem_current / (double)p->cg_mem_max;
		if (pct < cg)
			continue;
		struct finding *f = finding_new(out, self, SEV_WARNING,
						"Pid %d (%s) runs in a cgroup at %.0f%% of its "
						"memory.max.",
						p->pid, p->comm, pct);
		if (!f)
			return;
		finding_pid(f, p->pid);
		finding_line(f, "cgroup %s: memory.current %llu of memory.max %llu bytes",
			     p->cgroup ? p->cgroup : "?", (unsigned long long)p->cg_mem_current,
			     (unsigned long long)p->cg_mem_max);
		json_object_object_add(finding_ev(f), "cgroup_pct", json_object_new_double(pct));
	}
}

const struct pattern pattern_insufficient_memory = {
    .id = "insufficient-memory",
    .title = "Insufficient memory",
    .severity = SEV_WARNING,
    .description = "The system, or a process's cgroup, is running out of memory.",
    .needs = "the manifest (meminfo, pressure, cgroup memory)",
    .thresholds = thresholds,
    .n_thresholds = 4,
    .recommendations = recs,
    .match = match,
};
