/* SPDX-License-Identifier: MIT */
/*
 * osmosis watch: the processes watched, what is read of them at each tick, and the conditions
 * that decide when a snapshot is taken.
 *
 * A condition is a const descriptor in its own file (cond_*.c), listed once in registry.c; the
 * command's --help and docs/osmosis-watch.1's condition list are generated from the descriptors
 * (osmosis watch --list-conditions prints them). Three kinds:
 *   process  a level read per process at each tick (CPU, memory, threads, descriptors): the
 *            condition holds while the level is at or above its threshold, and fires once it
 *            has held for the condition's time (0: at once);
 *   thread   the same, per thread (thread CPU);
 *   global   its own poll() at each tick (hang, health check, period, signal).
 * The sampler (sample.c) reads, at each tick, only what the conditions in use need (the union
 * of their `needs`), and only from /proc: nothing here stops, traces or slows a target.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "proc/pidref.h"
#include "proc/schedclock.h"

#define WATCH_MAX_CONDS	    16
#define WATCH_MAX_PROCS	    65536
#define WATCH_MAX_THREADS   100000 /* per process */
#define WATCH_DETAIL_LEN    512
#define WATCH_THREAD_HIST   10
#define WATCH_CPU_HIST	    16
#define WATCH_CPU_WINDOW_NS 1000000000ull

/* What a condition needs read at each tick. */
enum {
	NEED_STAT = 1 << 0,	  /* /proc/PID/stat: CPU time, threads, RSS */
	NEED_THREADS = 1 << 1,	  /* task/TID/schedstat of every thread: run time, timeslices */
	NEED_FDS = 1 << 2,	  /* the number of open descriptors */
	NEED_NOFILE = 1 << 3,	  /* RLIMIT_NOFILE */
	NEED_CGROUP_MEM = 1 << 4, /* the process's memory cgroup: use and limit */
};

struct wthread {
	pid_t tid;
	bool seen;		      /* listed at this tick */
	uint64_t run_ns, prev_run_ns; /* schedstat: time on a CPU */
	uint64_t slices;	      /* schedstat: times it was put on a CPU */
	double cpu_pct;		      /* over the last second or so, % of one CPU (-1 unknown) */
	uint64_t hist_t[WATCH_THREAD_HIST], hist_run[WATCH_THREAD_HIST]; /* for cpu_pct's window */
	unsigned n_hist;
	/* --hang: since when it has not run (CLOCK_MONOTONIC, 0 unknown), from sched's
	 * exec_start when first seen still */
	uint64_t still_since;
	bool ran; /* it ran since the previous tick (or is new) */
	/* --hang: what it waits on, read once per stillness (a thread that has not run cannot
	 * have changed its syscall, and what it waits on cannot have let it go) */
	uint8_t hkind;	 /* enum hang_kind; 0: not read yet */
	bool hto_thread; /* hto[0] is a thread (mutex owner, joined thread), else processes */
	uint8_t n_hto;
	pid_t hto[8];			 /* what it waits for */
	uint64_t haddr;			 /* the futex word, or the pipe's inode */
	uint64_t since[WATCH_MAX_CONDS]; /* thread conditions: held since (0: not holding) */
};

struct wproc {
	pid_t pid;
	uint64_t starttime; /* stat field 22: with pid, the process's identity */
	char comm[17];
	struct pidref ref;
	int memfd; /* /proc/PID/mem for --hang's lock words, opened on first need; -1 */
	bool seen, gone;
	unsigned warned; /* NEED_* bits already reported unreadable */
	pid_t ppid;
	char state;
	uint64_t cpu_ticks; /* utime+stime, clock ticks (USER_HZ: 10 ms) */
	/* the last readings, for CPU over a window of at least WATCH_CPU_WINDOW_NS: a tick of
	 * 0.25 s holds a 10 ms clock tick's worth of noise in 4% */
	uint64_t hist_t[WATCH_CPU_HIST], hist_ticks[WATCH_CPU_HIST];
	unsigned n_hist;
	double cpu_pct; /* over the last second or so, -1 unknown */
	uint64_t rss, threads, fds, nofile;
	uint64_t cg_current, cg_max; /* cg_max UINT64_MAX: no limit */
	struct wthread *thr;
	size_t n_thr, cap_thr;
	uint64_t since[WATCH_MAX_CONDS]; /* process conditions: held since (0: not holding) */
};

struct watch_fire {
	const struct watch_cond *cond;
	double value, threshold;
	double held_for_s;
	pid_t pid, tid;		       /* 0 when the condition is not about one process or thread */
	char detail[WATCH_DETAIL_LEN]; /* the value in words: "pid 12 (x) at 97% of one CPU" */
};

struct watch;
struct watch_cond;

enum cond_scope { COND_PROCESS, COND_THREAD, COND_GLOBAL };

struct watch_condition {
	const char *name;    /* the option is --NAME; also the snapshot directory's suffix */
	const char *arg;     /* its argument's syntax, NULL for a flag */
	const char *help;    /* what it watches, for --help and the man page */
	const char *records; /* what trigger.value holds */
	enum cond_scope scope;
	unsigned needs;
	/* Parse the argument into c (threshold, hold_ns, ...). Returns 0 or -EINVAL with a
	 * one-line reason in err. */
	int (*parse)(struct watch_cond *c, const char *arg, char *err, size_t errlen);
	/* process and thread scope: the level now, or a negative number when unknown */
	double (*process_level)(const struct watch_cond *c, const struct wproc *p);
	double (*thread_level)(const struct watch_cond *c, const struct wproc *p,
			       const struct wthread *t);
	/* global scope: look at the watch now; true (and *ret filled) to fire */
	bool (*poll)(struct watch_cond *c, struct watch *w, uint64_t now, struct watch_fire *ret);
	/* after a snapshot, or when the watch ends (may be NULL) */
	void (*reset)(struct watch_cond *c, struct watch *w);
	void (*done)(struct watch_cond *c);
};

/* One condition given on the command line. */
struct watch_cond {
	const struct watch_condition *d;
	int index;	  /* into wproc/wthread since[] */
	double threshold; /* in the descriptor's unit */
	bool pct;	  /* a share (of memory.max, of RLIMIT_NOFILE) rather than a size */
	unsigned needs;	  /* what this one needs read (parse may narrow the descriptor's) */
	uint64_t hold_ns; /* how long it must hold before it fires */
	const char *unit; /* of threshold and value: "%", "bytes", "s", "" */
	char text[96];	  /* "cpu >= 50% for 2 s", for the start line */
	/* global conditions' state */
	char *command;	     /* --check */
	uint64_t timeout_ns; /* --check-timeout */
	uint64_t every_ns;   /* --check-interval, --every */
	uint64_t next_ns;    /* when it next runs or fires */
	pid_t child;	     /* the running check, or 0 */
	uint64_t child_started;
	volatile int *flag; /* --on-signal: set by the signal handler */
};

struct watch {
	struct wproc **procs;
	size_t n_procs, cap_procs;
	struct watch_cond conds[WATCH_MAX_CONDS];
	size_t n_conds;
	unsigned needs;
	struct schedclock clock;
	uint64_t tick_ns, last_tick, started;
	long page_size, hz;
	pid_t self;
};

extern const struct watch_condition *const watch_condition_registry[];
extern const size_t watch_condition_count;
const struct watch_condition *watch_condition_find(const char *name);

/* Parsing helpers shared by conditions (registry.c). */
/* "PCT[:SECONDS]" with the default time def_ns */
int watch_parse_level_time(const char *arg, double max, uint64_t def_ns, double *ret_level,
			   uint64_t *ret_ns, char *err, size_t errlen);
/* "SIZE" (1G, 512M, 4096K, bytes) or "PCT%" */
int watch_parse_size_or_pct(const char *arg, double *ret, bool *ret_pct, char *err, size_t errlen);
void watch_format_seconds(uint64_t ns, char *buf, size_t len);

/* Evaluation (evaluate.c): the first condition, in command-line order, that fires now. */
bool watch_evaluate(struct watch *w, uint64_t now, struct watch_fire *ret);
/* After a snapshot: every condition must hold anew for its time. */
void watch_reset_conditions(struct watch *w);

/* The sampler (sample.c). */
/* Re-read the target list: pids fixed (add once), or found anew (a cgroup, trees). Processes
 * no longer alive are marked gone and dropped. Returns how many are alive. */
struct watch_targets {
	const pid_t *pids;
	size_t n_pids;
	bool tree;
	const char *cgroup;
};
int watch_refresh_targets(struct watch *w, const struct watch_targets *t);
/* The members of a cgroup and of every cgroup below it (PATH absolute, or relative to
 * /sys/fs/cgroup; "/" is the whole machine). Logs its errors. */
int watch_cgroup_members(const char *path, pid_t **ret, size_t *ret_n);
/* Read what the conditions need of every live target. Logs once per process and kind what
 * cannot be read. */
void watch_sample(struct watch *w, uint64_t now);
void watch_done(struct watch *w);
struct wproc *watch_find_proc(const struct watch *w, pid_t pid);
struct wthread *wproc_find_thread(const struct wproc *p, pid_t tid);
