/* SPDX-License-Identifier: MIT */
/*
 * CPU demand, not CPU got: /proc/PID/task/TID/schedstat holds, per thread, the time it ran on a
 * CPU, the time it waited runnable in a run queue (nanoseconds) and how many times it was put on
 * a CPU. Over the sampling interval, run + wait is what the thread asked for: a spinner on a
 * saturated machine runs 60% and waits 40%, and is named by its demand. And the machine's top
 * consumers, every process of it (in the snapshot or not), from /proc/PID/stat over the same
 * interval, so that busy-system can say who uses the CPU.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "snapshot/model.h"

/* Parse a schedstat text ("run_ns wait_ns slices"). Returns 0 or -EINVAL. */
int schedstat_parse(const char *text, uint64_t *run_ns, uint64_t *wait_ns, uint64_t *slices);
/* A thread's run and run-queue wait totals (ns); run UINT64_MAX: unreadable. */
struct sched_sample {
	uint64_t run, wait;
	uint64_t voluntary; /* voluntary context switches; UINT64_MAX: unreadable */
};
/* The totals of each of n threads of the process at procfd, malloc'ed in *ret. Returns 0 or
 * -ENOMEM. */
int proc_thread_demand(int procfd, const pid_t *tids, size_t n, struct sched_sample **ret);
/* Read each thread's schedstat now into the model, and with a first sample (tids/first from
 * proc_thread_demand, interval_ns before), its run and run-queue wait over the interval. */
void proc_apply_demand_sample(int procfd, struct osm_process *p, const pid_t *tids,
			      const struct sched_sample *first, size_t n, uint64_t interval_ns);

/* CPU time of every process of the machine (pid, utime+stime ticks), for a first sample. */
struct proc_cpu_sample {
	pid_t *pids;
	uint64_t *ticks;
	uint64_t *at_ns; /* CLOCK_MONOTONIC when each was read: a scan of /proc takes a while */
	size_t n;
};
int proc_sample_all_cpu(struct proc_cpu_sample *ret);
void proc_cpu_sample_done(struct proc_cpu_sample *s);
/* The up to max processes that used the most CPU since before, into sys (interval_ns 0: no
 * sample). Each share is over the time between its two reads, not the nominal interval: with
 * many targets the reads come seconds after it ends; a share is at most the CPUs x 100%. */
int proc_top_consumers(const struct proc_cpu_sample *before, uint64_t interval_ns, size_t max,
		       struct osm_system *sys);
