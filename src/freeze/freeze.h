/* SPDX-License-Identifier: MIT */
/*
 * The freeze session: every thread of every target stopped at one instant with PTRACE_SEIZE and
 * PTRACE_INTERRUPT (never PTRACE_ATTACH, so no signal is invented or eaten), held, then resumed by
 * one idempotent thaw used by every exit path.
 *
 * Invariants:
 *  - A thread is in `threads` with stopped=true exactly when we hold it in a ptrace stop.
 *  - Signals that arrive during the freeze are either still queued (delivered after the thaw by
 *    the kernel) or were met in a signal-delivery-stop and are re-delivered by PTRACE_DETACH.
 *  - A target in a group stop (SIGSTOP) before the freeze is still stopped after the thaw.
 *  - If osmosis dies at any moment, the kernel detaches every tracee (no PTRACE_O_EXITKILL).
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "proc/targets.h"
#include "snapshot/model.h"

struct freeze_session;

/* Called after each pass while targets are being frozen; may add targets to the set (a tree's
 * children born before their parent stopped). Sets *ret_added when it did. Logs its errors. */
typedef int (*freeze_grow_fn)(struct freeze_session *s, bool *ret_added);

struct freeze_session {
	struct target_set *set; /* borrowed; each target's threads list is filled and updated */
	freeze_grow_fn grow;	/* optional */
	void *userdata;
	bool frozen;
	uint64_t t_first_stop, t_thawed; /* CLOCK_MONOTONIC ns */
};

/* Stop every thread of every target (skipped ones aside), repeating until a pass finds no new
 * thread and grow() no new target. A target that exits meanwhile is marked exited: that fails the
 * freeze unless the target is optional. Logs its errors. On failure the session is thawed before
 * returning. Returns 0, -ESRCH when a required target exited, -EPERM, -EINTR (signal to osmosis),
 * -ETIMEDOUT (watchdog) or another negative errno. */
int freeze_session_freeze(struct freeze_session *s);

/* Resume everything we hold. Idempotent; never fails (threads that vanished are skipped). */
void freeze_session_thaw(struct freeze_session *s);

/* After the thaw: a target that died while it was held may be incompletely captured. Required
 * targets fail the snapshot (logged, -ESRCH); optional ones are marked exited. */
int freeze_session_check_survivors(const struct freeze_session *s);

/* Microseconds from the first stop to the last resume (valid after a thaw). */
uint64_t freeze_session_pause_us(const struct freeze_session *s);
