/* SPDX-License-Identifier: MIT */
/* Internal to osmosis snap: choosing and vetting targets, and the state read around the freeze. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "freeze/freeze.h"
#include "proc/schedstat.h"
#include "proc/sockets.h"
#include "proc/system.h"
#include "proc/targets.h"
#include "snapshot/model.h"

struct snap_state {
	struct osm_snapshot *snap;
	struct target_set set;
	bool tree; /* grow the set with new children during the freeze */
	/* where the tree's growth works inside the freeze, reserved before it (snap_load_state) */
	struct targets_scratch tree_scratch;
	pid_t *tree_roots;
	size_t cap_tree_roots;
	const pid_t *skip; /* never added (--skip) */
	size_t n_skip;
	/* socket tables, one per network namespace met */
	struct sock_table *socks;
	size_t n_socks, cap_socks;
	uint64_t own_netns;
	/* the first CPU sample of the interval */
	struct cpu_sample cpus_before;
	struct {
		pid_t *tids;
		uint64_t *ticks, *switches;
		struct sched_sample *sched; /* schedstat run and wait (proc/schedstat.h) */
		uint64_t t0;		    /* when this target's first sample was read */
		size_t n;
	} * thread_ticks;		/* one per target, by index */
	struct proc_cpu_sample all_cpu; /* every process of the machine, for the top consumers */
	size_t n_thread_ticks;
	uint64_t sample_t0;
};

/* Open and vet pid as a target. A required target that cannot be snapshotted fails (logged);
 * an optional one is kept as skipped with the reason. Returns 0 or a negative errno. */
int snap_add_target(struct snap_state *st, pid_t pid, bool optional);
/* The first CPU sample (threads of every target, and /proc/stat). */
void snap_sample_begin(struct snap_state *st);
/* Everything read just before the freeze: threads, details, descriptors, system state. */
int snap_load_state(struct snap_state *st, bool progress);
/* freeze_grow_fn for trees: adds children of frozen targets that are not in the set yet (opened
 * and vetted only). */
int snap_grow_tree(struct freeze_session *s, bool *ret_added);
/* After the thaw: every thread's context switches again (switches_after_thaw), so that a later
 * snapshot can tell the freeze's own switches from the thread's. Best effort. */
void snap_read_after_thaw(struct snap_state *st);
/* After the thaw: threads, details and descriptors of the targets that joined during the freeze. */
int snap_load_joined(struct snap_state *st);
void snap_state_done(struct snap_state *st);

/* Progress on a terminal: "osmosis: WHAT N/TOTAL" rewritten in place; nothing elsewhere. */
void progress(bool enabled, const char *what, size_t n, size_t total);
void progress_end(bool enabled);
