/* SPDX-License-Identifier: MIT */
/*
 * The targets of a snapshot, and how they are chosen: given PIDs, process trees (a PID and all its
 * descendants), the members of a cgroup, or every process the caller may trace. A target is one
 * process: its pidfd reference, its model, and the per-target state the freeze and the capture
 * methods keep. Targets may join while the freeze is under way (a tree's new children), so the set
 * holds pointers that stay valid as it grows.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "base/fs.h"
#include "proc/pidref.h"
#include "snapshot/model.h"

struct capture_ops;

struct target {
	struct pidref ref;
	struct osm_process *proc; /* owned by the snapshot model */
	bool optional;		  /* its exit during the snapshot is recorded, never fatal */
	bool exited;		  /* it went away during the snapshot */
	bool skipped; /* not frozen (state recorded only); proc->capture_note says why */
	bool joined;  /* joined during the freeze (a tree's new child): state read after the thaw */

	/* capture (src/capture): the method chosen for this target, and the state the method
	 * keeps for it (its own struct, capture/method.h); set before the freeze */
	const struct capture_ops *method; /* NULL until chosen */
	void *method_priv;
	/* capture state every method shares (src/capture) */
	bool no_inject; /* no thread can run an injected syscall (the reason is the method's) */
	int pagemap_fd;
	struct osm_mapping *pre_maps; /* from smaps, before the freeze */
	size_t n_pre_maps;
	uint64_t planned_bytes;
	uint64_t freeze_need; /* what the freeze will copy for it, found just before (capture.c) */
	/* the layout read last before the freeze, planned and with room for its extents
	 * (plan.c): the freeze uses it when it reads the same maps text, so that reading the
	 * layout in the pause allocates nothing; ready_text is that text, freeze_text the buffer
	 * the freeze reads into (text_cap bytes each) */
	struct osm_mapping *ready_maps;
	size_t n_ready_maps;
	char *ready_text, *freeze_text;
	size_t ready_len, text_cap;
	/* the maps text read at the freeze's start beside the other targets' (plan.c,
	 * capture_prefetch_layouts): what read_into returned, and the length */
	bool prefetched;
	int prefetch_rc;
	size_t prefetch_len;
	size_t jobs_bound; /* copy jobs its capture in the freeze may need (plan.c) */
	/* the write tracker taken from the target (userfaultfd), used by pre-copy and by the
	 * tracking of shared objects; -1 when none */
	int uffd;
	/* the core's own temporary file when pre-copy's rounds write pages into it (or a staging
	 * file when cores are compressed); fd -1 when none */
	struct outfile stage;
};

/* Still to be captured: neither skipped (recorded as not captured) nor gone. */
static inline bool target_live(const struct target *t)
{
	return !t->skipped && !t->exited;
}

struct target_set {
	struct target **v;
	size_t n, cap;
};

/* Append a target for pid with a fresh process model added to snap. Returns it, or NULL on
 * out of memory. The reference is not opened yet. */
struct target *target_set_add(struct target_set *set, struct osm_snapshot *snap, pid_t pid);
struct target *target_set_find(const struct target_set *set, pid_t pid);
void target_set_done(struct target_set *set);

/* Selection. Each fills *ret (malloc'ed, sorted, unique) and returns 0 or a negative errno;
 * they log their errors. */
int targets_descendants(const pid_t *roots, size_t n_roots, pid_t **ret, size_t *ret_n);
int targets_cgroup(const char *path, pid_t **ret, size_t *ret_n);
/* Room for targets_descendants_in to work without allocating: the tree's growth runs inside
 * the freeze, which allocates nothing beyond what was reserved before it. */
struct proc_entry {
	pid_t pid, ppid;
	bool kthread;
};
struct targets_scratch {
	struct proc_entry *all;
	size_t cap_all;
	pid_t *out;
	size_t cap_out;
};
/* Room for n_procs processes. Returns 0 or -ENOMEM. */
int targets_scratch_reserve(struct targets_scratch *s, size_t n_procs);
void targets_scratch_done(struct targets_scratch *s);
/* targets_descendants in s: *ret points into s, valid until its next use. Grows s only when
 * the machine has more processes than it holds. Logs. */
int targets_descendants_in(struct targets_scratch *s, const pid_t *roots, size_t n_roots,
			   const pid_t **ret, size_t *ret_n);
/* Every process except kernel threads and osmosis itself. */
int targets_all(pid_t **ret, size_t *ret_n);
