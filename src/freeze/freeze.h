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

#include "proc/pidref.h"
#include "snapshot/model.h"

struct freeze_target {
	struct pidref *ref;	  /* borrowed */
	struct osm_process *proc; /* borrowed; its threads list is filled and updated */
	bool exited;		  /* the whole process went away during the freeze */
};

struct freeze_session {
	struct freeze_target *targets;
	size_t n_targets;
	bool frozen;
	uint64_t t_first_stop, t_thawed; /* CLOCK_MONOTONIC ns */
	size_t n_stopped;
};

/* Stop every thread of every target, repeating until a pass finds no new thread. Logs its errors.
 * On failure the session is thawed before returning. Returns 0, -ESRCH when a target exited,
 * -EPERM, -EINTR (signal to osmosis), -ETIMEDOUT (watchdog) or another negative errno. */
int freeze_session_freeze(struct freeze_session *s);

/* Resume everything we hold. Idempotent; never fails (threads that vanished are skipped). */
void freeze_session_thaw(struct freeze_session *s);

/* After the thaw: fail (and log) if a target died while it was held, since what was taken of it
 * may be incomplete. Returns 0 or -ESRCH. */
int freeze_session_check_survivors(const struct freeze_session *s);

/* Microseconds from the first stop to the last resume (valid after a thaw). */
uint64_t freeze_session_pause_us(const struct freeze_session *s);
