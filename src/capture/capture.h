/* SPDX-License-Identifier: MIT */
/*
 * Capture keeps the targets' memory as it was at the freeze instant. The snapshot (snapshot_take)
 * calls:
 *
 *   capture_prepare  before the freeze: read maps, choose each target's method, reserve and
 *                    touch buffers, start helpers; pre-copy runs its rounds here
 *   capture_frozen   inside the freeze: take registers and keep memory; nothing else
 *   capture_finish   after the thaw: complete the model (anything that can wait until the
 *                    targets run); pre-copy's write tracking is removed here
 *   capture_release  always, last (after the cores are written): end clones, free buffers
 *
 * Each target gets one method (the manifest records it and why), behind one interface
 * (method.h: a const struct capture_ops per method, listed in registry.c):
 *   copy     (copy.c)    every dumped byte is copied into a reserved buffer during the freeze
 *   clone    (clone.c)   a fork is injected into the target during the freeze; the kernel's
 *                        copy-on-write keeps the instant, the core is read from the clone
 *   precopy  (precopy.c) memory is copied while the target runs, its writes tracked with
 *                        userfaultfd (async write-protect) and PAGEMAP_SCAN; the freeze copies
 *                        only what was written since
 * --method auto (auto.c) chooses per target from the kernel's features, the memory available
 * and the write rate pre-copy sees. The planning every method shares is plan.c.
 */
#pragma once

#include <stdint.h>

#include "capture/arena.h"
#include "capture/copier.h"
#include "capture/method.h"
#include "proc/targets.h"
#include "snapshot/model.h"
#include "snapshot/timeline.h"

struct capture {
	enum capture_method requested;
	struct target_set *set; /* borrowed; targets skipped or exited are left alone */
	bool state_only;	/* registers and maps only: no memory (osmosis snap --state-only) */
	bool tree; /* the set grows in the freeze by its members' descendants (--tree) */
	size_t page_size;
	unsigned n_workers;

	struct arena arena;
	struct copier *copier;
	struct copy_job *jobs;
	size_t n_jobs, cap_jobs; /* cap_jobs reserved before the freeze: it does not grow in it */
	bool jobs_exhausted;	 /* a target needed more jobs than were reserved */

	uint64_t planned_bytes;
	uint64_t copied_bytes;
	uint64_t copy_ns; /* time spent copying inside the freeze */

	struct shared_set *shared; /* shared objects, each kept once (shared.c) */
	struct osm_snapshot *snap; /* borrowed: capture_finish describes the shared objects */
	struct osm_timeline *tl;   /* borrowed, may be NULL: phases are recorded there */
	uint64_t peak_buffers;	   /* the most osmosis held in its buffers at once, bytes */
	uint64_t layout_bytes;	   /* the targets' layouts read before the freeze (plan.c) */

	/* The memory budget (--max-memory): everything osmosis allocates for the snapshot stays
	 * within it. 0: only what is available. */
	uint64_t max_memory;
	bool max_memory_default; /* not given: the shared objects' buffers come besides it */
	/* Pre-copy's rounds write pages into files in this directory (the cores' own temporary
	 * files; staging files when stage_separate, for compressed cores), not into memory.
	 * -1: into memory (the arena), as large as what is tracked. */
	int stage_dirfd;
	bool stage_separate;
	uint8_t *bounce; /* where staged rounds copy through, bounce_len bytes */
	size_t bounce_len;
};

int capture_prepare(struct capture *c);
/* Last before the freeze: shared objects whose tracked mapping went away since their last round
 * get one more round, and one whose last round is old gets one (shared_settle). Returns 0 or a
 * negative errno. */
int capture_settle(struct capture *c);
/* The memory osmosis may use for buffers now: --max-memory, and never more than 90% of what
 * the machine and osmosis's cgroup have available. */
uint64_t capture_budget(const struct capture *c);
/* The budget in all: --max-memory (or the default) and, by default, the shared objects held
 * besides (method.c). */
uint64_t capture_budget_limit(const struct capture *c);
/* Record the buffers osmosis holds now in c->peak_buffers if more than before. */
void capture_note_buffers(struct capture *c);
int capture_frozen(struct capture *c);
int capture_finish(struct capture *c);
void capture_release(struct capture *c);

/* Registers, signal state and the stop siginfo of every held thread of p (inside the freeze).
 * Threads that died meanwhile are marked gone. Returns 0 or a negative errno; logs. */
int capture_thread_state(struct osm_process *p);

/* Shared by the methods (plan.c). */
int capture_read_maps(struct target *t, const char *file, struct osm_mapping **ret, size_t *ret_n);
/* smaps read and the dump planned, before the freeze; t->planned_bytes set. Logs. */
int capture_plan_target(struct capture *c, struct target *t);
/* Before the freeze: smaps read again if the layout changed since capture_plan_target. */
void capture_refresh_layout(struct capture *c, struct target *t);
/* At the freeze's start: every target's maps text read at once, on the copier's workers and the
 * freezing thread (the per-target steps after it take the text read here). */
void capture_prefetch_layouts(struct capture *c);
/* Inside the freeze: registers, then the layout re-read and the dump planned again. Logs. */
int capture_layout_frozen(struct capture *c, struct target *t);
/* Queue a staged copy: len bytes at remote, to go into t's stage file at file_off. */
int capture_add_staged_job(struct capture *c, struct target *t, uint64_t remote, uint64_t len,
			   uint64_t file_off);
/* Queue the copy of mapping m's dumped bytes (absent anonymous pages skipped) into the arena. */
int capture_copy_mapping(struct capture *c, struct target *t, struct osm_mapping *m);
int capture_add_job(struct capture *c, struct target *t, uint64_t remote, uint64_t len,
		    uint8_t *dest);
/* A free slot at c->jobs[c->n_jobs]: grown before the freeze; inside it -ENOBUFS when the
 * reservation (capture_reserve_frozen) is used up (c->jobs_exhausted set). */
int capture_job_slot(struct capture *c);
/* Before the freeze, last: t's layout read, planned and given room for its extents
 * (t->ready_maps), its copy jobs bounded (t->jobs_bound). Returns 0 or a negative errno; does
 * not log. A layout that changed since smaps was read gets none (the freeze reads it). */
int capture_ready_layout(struct capture *c, struct target *t);
void capture_ready_free(struct target *t);
/* Bytes the ready layout holds; what it will hold, estimated from the layout smaps gave. */
uint64_t capture_ready_bytes(const struct target *t);
uint64_t capture_ready_estimate(const struct target *t);
/* Bytes of data in t's ready layout, in the private mappings for which whole() says the freeze
 * copies them whole (whole NULL: all of them); 0 without a ready layout. */
uint64_t capture_ready_whole_bytes(const struct target *t,
				   bool (*whole)(const struct target *t,
						 const struct osm_mapping *m));
/* Bytes the arena needs for m. */
uint64_t capture_planned_size(const struct osm_mapping *m);
/* Calls emit(off, len) for each run of m's dumped bytes worth reading: with pagemap_fd >= 0 and
 * a private anonymous mapping, only pages present, swapped, and not the shared zero page. */
typedef int (*capture_emit_fn)(struct capture *c, struct target *t, struct osm_mapping *m,
			       uint64_t off, uint64_t len, void *ctx);
int capture_runs(struct capture *c, struct target *t, struct osm_mapping *m, int pagemap_fd,
		 capture_emit_fn emit, void *ctx);
void capture_count_swapped_stacks(struct capture *c, struct target *t);

/* clone.c */
/* Whether m is copied in the freeze rather than read from a clone: what a fork does not carry
 * (MADV_DONTFORK, MADV_WIPEONFORK) and shared mappings (plan.c). */
bool clone_copies_in_freeze(const struct osm_mapping *m);
/* Whether t's pre-copy rounds write into its stage file (capture.stage_dirfd) (plan.c). */
bool capture_staged(const struct target *t);

/* shared.c: memory shared by processes of the set, kept once (see shared.c). */
/* Before the freeze, after planning: group the set's shared mappings into objects (every
 * pre_maps mapping of one gets its shared_object id), find mappers outside the set, map each
 * object's buffer. Returns 0 or a negative errno; logs. */
int shared_collect(struct capture *c);
/* Whether t maps a shared object whose writes are tracked (t gets a userfaultfd for it). */
bool shared_tracks(const struct capture *c, const struct target *t);
/* Copy jobs the shared objects may need in the freeze. */
size_t shared_jobs_bound(const struct capture *c);
/* The private memory of the tree's children met as the rounds ran that still run (joiners: each
 * joins in the freeze and is copied there), from their statm: room for them in the freeze. */
uint64_t shared_joiners_bytes(const struct capture *c);
/* Bytes the shared objects' buffers may hold (each object once). */
uint64_t shared_buffer_bytes(const struct capture *c);
/* Bytes of t's planned dump that its shared objects hold (not in the arena). */
uint64_t shared_planned_bytes(const struct target *t);
/* Register and write-protect every mapping of each tracked object; an object whose mapper
 * cannot be tracked is copied whole in the freeze instead. Never fails. */
int shared_track(struct capture *c);
/* Round 0 and the rounds of the tracked objects; touch the buffers of the others. A tracked
 * mapping found gone makes its round a whole read. Returns 0 or a negative errno. */
int shared_rounds(struct capture *c);
/* Just before the freeze: each tracked mapping checked again; one lost since the last round
 * costs one more round (a whole read, then rounds), a few times at most, rather than a copy in
 * the pause. Returns 0 or a negative errno. */
int shared_settle(struct capture *c);
/* Inside the freeze, after t's layout was read: its mappings of objects get their id. */
int shared_frozen_assign(struct capture *c, struct target *t);
/* First in the freeze, before any method acts in a target (the clone method's intermediate is
 * reaped by its parent): whether a member reaped a child since the rounds' last look. */
void shared_frozen_reaped(struct capture *c);
/* Inside the freeze, after every target: queue what was written since the last round (or the
 * whole object), and point each mapping's extent into its object's image. */
int shared_frozen(struct capture *c);
uint64_t shared_frozen_bytes(const struct capture *c);
/* After the thaw: tracking of shared mappings removed (slices); the objects described in s. */
void shared_untrack(struct capture *c);
int shared_describe(struct capture *c, struct osm_snapshot *s);
void shared_release(struct capture *c);

/* tracker.c: the target's write tracker (userfaultfd, async write-protect), shared by pre-copy
 * and the tracking of shared objects. */
/* Before the freeze: the tracker, created inside the target once (t->uffd). Returns 0 or a
 * negative errno; does not log. */
int tracker_open(struct target *t);
/* Whether the kernel supports async write-protect and PAGEMAP_SCAN (probed once); *why says
 * what is missing. */
bool tracker_supported(const char **why);
/* Close the tracker: every registration and protection goes with it. Idempotent. */
void tracker_close(struct target *t);

/* precopy.c */
/* Bytes of arena pre-copy needs for t (tracked mappings whole, the rest as planned). */
uint64_t precopy_arena_bytes(const struct target *t);
/* Before the freeze: create the tracker in the target (injected userfaultfd, taken with
 * pidfd_getfd, the target's copy closed), register and write-protect the tracked mappings.
 * Returns 0 or a negative errno; does not log (the caller chooses another method). */
int precopy_track(struct capture *c, struct target *t);
uint64_t precopy_tracked_bytes(const struct target *t);
/* Bytes of t's mappings not tracked (copied whole in the freeze, into the arena). */
uint64_t precopy_untracked_bytes(const struct target *t);
/* Round 0 copies what is present; then rounds copy what was written, while that shrinks.
 * *ret_freeze_bytes: what the last round found written (about what the freeze will copy);
 * *ret_copy_bps: round 0's copy speed. */
int precopy_rounds(struct capture *c, struct target *t, uint64_t *ret_freeze_bytes,
		   uint64_t *ret_copy_bps);
/* Inside the freeze: queue the pages written since the last round; extents where pages exist;
 * mappings new or changed since tracking began (and those not tracked) copied whole. */
int precopy_frozen(struct capture *c, struct target *t);
/* Before the freeze, t's method set to pre-copy: the tracker started and the tracked mappings
 * registered (precopy_track, timed as "register"); on failure the tracking is stopped. Returns 0
 * or a negative errno; does not log. */
int precopy_begin(struct capture *c, struct target *t);
/* Pre-copy's rounds write into a file of the snapshot directory, at the pages' place in the
 * core, when the caller gave the directory (capture.stage_dirfd). Returns 0 or a negative
 * errno; logs. */
int precopy_open_stage(struct capture *c, struct target *t);
/* Remove write tracking: closing the userfaultfd unregisters everything and clears every
 * protection. Idempotent; never fails. precopy_abandon also gives the arena pages back. */
void precopy_stop(struct target *t);
void precopy_abandon(struct target *t);
/* After the thaw: regions whose mapping changed before the freeze are not in the core: their
 * pages in the stage file are dropped (holes). Never fails. */
void precopy_finish(struct target *t);
/* After its rounds: what the last found written, and round 0's copy speed; false when t's
 * method is not pre-copy. */
bool precopy_last_round(const struct target *t, uint64_t *ret_written, uint64_t *ret_copy_bps);
