/* SPDX-License-Identifier: MIT */
/*
 * When a thread last ran, from the scheduler's own per-thread clock: /proc/PID/task/TID/sched's
 * se.exec_start (milliseconds with six decimals, on the run queue's task clock of the CPU the
 * thread last ran on). That clock is not CLOCK_MONOTONIC: each CPU's task clock leaves out the
 * time stolen by the hypervisor (and, with IRQ time accounting, interrupt time), so it drifts
 * from CLOCK_MONOTONIC by a different amount on each CPU. A calibration measures, per CPU, the
 * offset between the two: osmosis pins itself to the CPU, sleeps a microsecond (waking up sets
 * its own exec_start to the CPU's task clock "now"), and reads its exec_start next to
 * clock_gettime(CLOCK_MONOTONIC). A thread's last run in CLOCK_MONOTONIC is then its exec_start
 * plus the offset of its last CPU (stat field 39). docs/manifest.md gives the precision.
 * Reading these files never stops or slows the thread read.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define SCHEDCLOCK_MAX_CPUS 1024

struct schedclock {
	int64_t *offset_ns; /* per CPU: CLOCK_MONOTONIC minus that CPU's task clock */
	bool *known;
	int n_cpus;
	uint64_t calibrated_ns; /* CLOCK_MONOTONIC of the calibration */
	int64_t spread_ns;	/* largest difference between two CPUs' offsets */
};

/* Measure every online CPU's offset (a few microseconds per CPU; osmosis's affinity is restored).
 * Returns 0 or a negative errno (no sched file: CONFIG_SCHED_DEBUG off). Does not log. */
int schedclock_calibrate(struct schedclock *c);
void schedclock_done(struct schedclock *c);
/* The process-wide calibration, made on first use (for osmosis snap). NULL if unavailable. */
const struct schedclock *schedclock_default(void);

/* Parse "se.exec_start : 410681.526385" out of a sched file's text into nanoseconds. */
int schedclock_parse_exec_start(const char *text, uint64_t *ret_ns);
/* Read a thread's se.exec_start relative to a /proc/PID directory descriptor (tid <= 0: the
 * calling thread's own, /proc/thread-self/sched). */
int schedclock_read_exec_start(int procfd, pid_t tid, uint64_t *ret_ns);
/* How long before now_ns (CLOCK_MONOTONIC) a thread last ran, in nanoseconds (0 if it seems to
 * have run after now_ns), given its exec_start and the CPU it last ran on. -1 when that CPU was
 * not calibrated, or exec_start is 0 (unknown: the scheduler resets it, on a migration for one). */
int64_t schedclock_ago_ns(const struct schedclock *c, uint64_t exec_start_ns, int cpu,
			  uint64_t now_ns);
