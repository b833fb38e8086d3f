/* SPDX-License-Identifier: MIT */
/*
 * The capture methods behind one interface: each method is a const struct capture_ops in a file
 * of its own (copy.c, clone.c, precopy.c; auto.c chooses among them), listed once in registry.c.
 * The engine (capture.c) runs the stages and calls each target's method at each of them:
 *
 *   tidy         before anything, every method for every target: what a killed osmosis left
 *   choose       before the freeze, for the method the user requested (--method NAME): give t
 *                its method (this one, or another when this one cannot be used, always with the
 *                reason: capture_set_method) and start what the method needs while t runs
 *   arena_bytes  before the freeze: the reserved buffer t needs under this method
 *   rounds       before the freeze, after the reservation, while t runs (pre-copy's rounds)
 *   review       of the requested method, after the rounds: judge them (auto: keep pre-copy or
 *                hand the target to a clone)
 *   freeze_jobs  before the freeze: copy jobs the method may queue in it beyond one per run
 *                of t's layout (the job array does not grow inside the freeze)
 *   freeze_room  before the freeze, t's layout read: take the room the freeze will need beyond
 *                the layout's (pre-copy: extents for runs of written pages); only ever adds
 *   last_round   after every target's layout for the freeze is read: make what the freeze copies
 *                smaller (pre-copy: one more round when the last is old, the set's others having
 *                run theirs since); returns 1 when it did, and freeze_room is called again
 *   frozen_scan  inside the freeze, before any target's frozen, on the copy threads for every
 *                target at once: work of one target alone that frozen then uses (pre-copy:
 *                the written pages' scans); may fill only what freeze_room reserved
 *   frozen       inside the freeze, after t's registers and layout: keep t's memory as it is
 *                now (queue copy jobs, make a clone); may hand t to the copy method
 *   thawed       right after the thaw: undo what slows t down (pre-copy's write tracking)
 *   finish       after the thaw: complete the model (the clone's extents)
 *   abandon      t goes another way (another method, or it is lost): undo what choose and
 *                rounds started; idempotent, never fails
 *   release      always, last (after the cores are written): end and free everything the
 *                method holds for t; idempotent, never fails
 * Hooks may be NULL where a method has nothing to do.
 *
 * Per-target private state: a method that keeps state for a target declares its struct and
 * priv_size; the engine gives every target, before the freeze, room for the largest (zeroed,
 * then priv_init), at t->method_priv. Nothing a method keeps is a field of struct target.
 *
 * Rules every method keeps (docs/design/capture-methods.md):
 *   - inside the freeze nothing is allocated beyond the reservation: memory comes from the
 *     arena, jobs from the job array reserved before the freeze (capture_add_job);
 *   - every injection goes through inject_in_safe_thread (src/inject/safe.c);
 *   - a target is never left changed: what a method did to it is undone by abandon or release,
 *     whatever the exit.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "snapshot/model.h"

struct capture;
struct target;

struct capture_ops {
	enum capture_method id;
	const char *help; /* one line for osmosis snap --help and the manual */
	size_t priv_size; /* bytes of per-target state (t->method_priv); 0: none */
	void (*priv_init)(void *priv);
	/* before anything, for every target whatever its method: remove what a killed osmosis
	 * left in it (the clone's zombie and trampoline page) */
	void (*tidy)(struct capture *c, struct target *t);

	int (*choose)(struct capture *c, struct target *t);
	uint64_t (*arena_bytes)(const struct capture *c, const struct target *t);
	int (*rounds)(struct capture *c, struct target *t);
	/* 1 when it made a round (freeze_room is called again), 0, or a negative errno (-ESRCH:
	 * t ended) */
	int (*last_round)(struct capture *c, struct target *t);
	/* of the requested method (auto), after another's rounds: judge what they found */
	void (*review)(struct capture *c, struct target *t);
	/* copy jobs the method may queue in the freeze beyond one per run of t's layout */
	size_t (*freeze_jobs)(const struct capture *c, const struct target *t);
	/* 0 or -ENOMEM */
	int (*freeze_room)(struct capture *c, struct target *t);
	/* bytes the freeze will copy into the arena for t, from its ready layout (plan.c): what
	 * the method copies whole there, and what it adds (pre-copy: the pages written since).
	 * *ret_bounded: the part of it that cannot outgrow what is known now (pre-copy: written
	 * pages, never more than it tracks), which the arena may grow to hold before the freeze */
	uint64_t (*freeze_bytes)(const struct capture *c, const struct target *t,
				 uint64_t *ret_bounded);
	void (*frozen_scan)(struct capture *c, struct target *t);
	int (*frozen)(struct capture *c, struct target *t);
	void (*thawed)(struct capture *c, struct target *t);
	int (*finish)(struct capture *c, struct target *t);
	void (*abandon)(struct target *t);
	void (*release)(struct target *t);
};

extern const struct capture_ops capture_auto, capture_copy, capture_clone, capture_precopy;

/* registry.c: every method --method accepts, in the order --help lists them. */
extern const struct capture_ops *const capture_methods[];
extern const size_t capture_method_count;
/* The method named name ("auto", "copy", ...), or NULL. */
const struct capture_ops *capture_method_find(const char *name);
/* The method of an id (never NULL for a known id; NULL for METHOD_UNKNOWN). */
const struct capture_ops *capture_method_get(enum capture_method id);
/* "auto, copy, clone or precopy": the names, for messages. */
const char *capture_method_list(void);

/* capture.c, for the methods. */
/* Give t the method m with the reason (printf-style); what t's former method started is
 * abandoned and its private state reset for m. Before the freeze any method; inside it only
 * methods without private state (copy). */
__attribute__((format(printf, 3, 4))) void
capture_set_method(struct target *t, const struct capture_ops *m, const char *fmt, ...);
/* Exited, or a zombie (whose pidfd still answers). */
bool capture_target_ended(const struct target *t);
/* Whether some thread of t can run an injected syscall (before the freeze); otherwise t gets
 * the copy method, with the reason. Returns 0 (*ret_ok says which), or -EINTR/-ETIMEDOUT. */
int capture_injectable(struct capture *c, struct target *t, bool *ret_ok);
/* Whether every live thread of t runs under a seccomp filter (from /proc: no stop needed). */
bool capture_every_thread_filtered(const struct target *t);
/* Copy t's mappings in the freeze (all, or only those a clone does not carry). */
int capture_copy_all(struct capture *c, struct target *t, bool only_clone_misses);
/* Bytes copying the whole of t in the freeze needs (its layout as read in the freeze). */
uint64_t capture_copy_need(const struct target *t);
/* Bytes of t the copy method would copy (its shared objects aside). */
uint64_t capture_own_bytes(const struct target *t);
/* What the budget leaves now, beside what osmosis holds. */
uint64_t capture_budget_left(const struct capture *c);
