/* SPDX-License-Identifier: MIT */
/*
 * Stepping aside. Work osmosis does beside running targets that holds nothing of theirs
 * (writing cores) runs at SCHED_IDLE, so that a target thread woken on a
 * CPU where osmosis works gets that CPU at once. On a kernel without preemption (this machine:
 * Dynamic Preempt none, HZ 250) a busy target otherwise sees gaps of a tick or more all along.
 *
 * Never while osmosis holds a target's lock or one of its threads: injections, changes to write
 * tracking and copies out of a running target take its mmap lock, and osmosis preempted there at
 * SCHED_IDLE would hold the target up for as long as the machine stays busy.
 *
 * Taking the policy back needs CAP_SYS_NICE or an RLIMIT_NICE that allows osmosis's nice value
 * (sched(7)). Without it osmosis steps aside only where it may stay aside, and then by nice 10,
 * which it keeps.
 *
 * SCHED_IDLE runs only on CPUs nothing else wants: on a machine whose CPUs the targets keep
 * busy (a spinning service, the very case being diagnosed) it would hardly run at all, and a
 * core of gigabytes would take hours while a clone holds its pages. So a watcher thread, asleep
 * at the normal policy, looks every 100 ms at how long the thread aside waited for a CPU
 * (/proc/self/task/TID/schedstat): more than half of the window, and it brings that thread back
 * to its policy at nice 10, where it stays until it steps back. The thread aside cannot see it
 * itself: at SCHED_IDLE it may not run for seconds. A kernel that does not say how long a thread
 * waited gets nice 10 from the start.
 */
#pragma once

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct sched_aside {
	bool idle;	      /* at SCHED_IDLE now, policy and sp to take back */
	_Atomic bool starved; /* came back for want of a CPU: stays at nice 10 */
	int policy, nice;
	struct sched_param sp;
	pid_t tid;		    /* the thread aside */
	uint64_t ran_ns, waited_ns; /* its time on a CPU and on a run queue when it stepped aside */
	pthread_t watcher;
	int stop_fd; /* eventfd: the watcher ends */
};

/* Step aside (the calling thread), watched. may_stay: if the policy cannot be taken back, take
 * nice 10 for good rather than nothing. */
void sched_step_aside(struct sched_aside *a, bool may_stay);
/* Take back what sched_step_aside took, its policy or its nice value (no-op if nothing); the
 * watcher is ended. */
void sched_step_back(struct sched_aside *a);

/*
 * The freeze runs at real-time priority. While the targets are stopped, every millisecond osmosis
 * waits for a CPU is a millisecond of their pause: on a machine whose CPUs are shared by CPU hogs
 * (the case being diagnosed, often) an ordinary thread gets a fraction of one, and the pause
 * stretched to several times its work (measured: a PostgreSQL of 26 processes paused 230-300 ms
 * at load 10 on 2 CPUs, copy and scans taking 5-10x their time on a quiet machine).
 * sched_freeze_raise makes the calling thread (the freezing one) SCHED_FIFO at the lowest
 * real-time priority (sched_hold_begin, below) until sched_freeze_lower, and the copy workers
 * take the same for the first 50 ms of the copy inside the freeze (copier_run_frozen: a copy of
 * gigabytes must not hold every CPU from the machine's other services for seconds; the freezing
 * thread holds one CPU at most, for at most --max-pause); the watchdog sits one priority above
 * them, so that --max-pause holds even on one CPU. The freeze only waits
 * (sleeps) for the targets' threads to stop, never spins, so those threads get the CPU they
 * need to stop; and the kernel's real-time throttling (sched_rt_runtime_us) bounds it in any
 * case. Without CAP_SYS_NICE or an RLIMIT_RTPRIO, the freeze runs at no less than normal
 * priority: every thread of osmosis with a positive nice value (a unit's Nice=, a user's
 * nice(1)) is taken to nice 0 when it may (RLIMIT_NICE), and given its value back after the
 * thaw. Threads beyond SCHED_FREEZE_MAX are left as they are.
 */
#define SCHED_FREEZE_MAX 64

struct sched_hold {
	bool held; /* at SCHED_FIFO now: policy and sp to take back */
	int policy;
	struct sched_param sp;
};

struct sched_freeze {
	size_t n;
	struct {
		pid_t tid;
		int nice;
	} v[SCHED_FREEZE_MAX];
	struct sched_hold rt; /* the freezing thread's real-time hold */
};

void sched_freeze_raise(struct sched_freeze *f);
void sched_freeze_lower(struct sched_freeze *f);

/*
 * A real-time hold for the freeze's threads. sched_hold_begin makes the calling thread
 * SCHED_FIFO (lowest real-time priority) until sched_hold_end gives back the policy it had
 * (SCHED_IDLE, nice values and all): the freezing thread's (sched_freeze_raise) and the copy
 * workers' for the first 50 ms of a copy in the freeze. Without CAP_SYS_NICE or an RLIMIT_RTPRIO
 * osmosis runs as it is; a thread already real-time is left alone.
 *
 * Holds in a row, never while the targets run. Earlier, every call that walked a running
 * target's page tables under its mmap lock (registering, write-protecting, PAGEMAP_SCAN,
 * unregistering) and every copy of pre-copy's rounds took a hold of its own, so that osmosis
 * would not be rescheduled while it held the lock. But time at SCHED_FIFO is not charged to a
 * thread's fair-class runtime: a thread taking a hold for each of many calls in a row came
 * back to the fair class after each with the lag it had left with, was picked again at once,
 * and took the next hold. It kept its CPU for the whole loop as if it were real-time, and the
 * target's threads woken on that CPU waited for the loop to end. A scheduler trace of one
 * snapshot of a PostgreSQL of 26 processes under pgbench (2 CPUs, both busy): osmosis's two
 * copy threads kept one CPU for 196 ms while three backends woken there waited 204 ms on its
 * run queue; with the holds allowed 2 ms in each 10 ms of a CPU, still 107-209 ms; with no
 * holds before the freeze, the longest wait of a backend before the pause was 3-23 ms, and the
 * longest transaction begun there 64 ms against 142-306 ms (docs/performance.md). The calls are
 * bounded instead (slices of a few MiB, ~0.3 ms of work: capture/precopy.c), and made at
 * osmosis's own policy, where the fair class charges them. That includes unregistering, after
 * the thaw, though it holds the lock for writing (a target thread that faults meanwhile waits
 * for it): held slice by slice, the unregisters of 26 backends in a row kept backends 45-76 ms
 * on osmosis's run queue, longer than any wait before the pause.
 */
void sched_hold_begin(struct sched_hold *h);
void sched_hold_end(struct sched_hold *h);
