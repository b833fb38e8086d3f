/* SPDX-License-Identifier: MIT */
/*
 * Loading what /proc says about a process into the model before the freeze: identity (ids,
 * names, exe, cmdline, auxv, coredump_filter, dumpable) and its threads (names, states, CPU times).
 */
#pragma once

#include "proc/pidref.h"
#include "snapshot/model.h"

/* Returns 0, -ESRCH when the process is gone, or another negative errno. Does not log. */
int proc_load_identity(const struct pidref *ref, struct osm_process *p);
/* Add (or refresh) every thread listed in task/, with name, state, CPU times, last CPU, wchan,
 * context switches and (as root) the kernel stack. */
int proc_load_threads(const struct pidref *ref, struct osm_process *p);
/* t->last_ran_ago_ms from its sched file (0 when its state is R), read now; unchanged when it
 * cannot be read. Needs t->state and t->last_cpu. */
void proc_thread_last_ran(int procfd, struct osm_thread *t);
/* Memory figures, RLIMIT_NOFILE, cgroup, oom_score_adj, CPU times, start time. Best effort: what
 * cannot be read stays zero. */
void proc_load_details(const struct pidref *ref, struct osm_process *p);
/* Per-thread CPU time (utime+stime, clock ticks) and context switches (voluntary plus
 * involuntary) of every thread of pid, for the sampling interval: fills tids/ticks/switches
 * (malloc'ed). Returns 0 or a negative errno. */
int proc_thread_ticks(int procfd, pid_t **ret_tids, uint64_t **ret_ticks, uint64_t **ret_switches,
		      size_t *ret_n);
/* Set cpu_pct of p's threads from a first sample (tids/ticks, from proc_thread_ticks) taken
 * interval_ns before the threads were loaded. */
void proc_apply_cpu_sample(struct osm_process *p, const pid_t *tids, const uint64_t *ticks,
			   const uint64_t *switches, size_t n, uint64_t interval_ns);
/* Memory and limit of a cgroup, from a /proc/PID/cgroup text (v2, else v1's memory controller);
 * max is UINT64_MAX when unlimited or unknown. */
void proc_cgroup_memory(const char *cgroups, uint64_t *ret_current, uint64_t *ret_max);
/* What osmosis may still take: MemAvailable, bounded by its own cgroup's limit. */
uint64_t proc_memory_available_to_self(void);
/* Parsers exposed for tests and fuzzing. */
uint64_t proc_status_kb(const char *status, const char *key);
int proc_parse_limits_nofile(const char *limits, uint64_t *soft, uint64_t *hard);
