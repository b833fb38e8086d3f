/* SPDX-License-Identifier: MIT */
/*
 * What may end a freeze early: a signal to osmosis (SIGINT, SIGTERM, SIGHUP, SIGQUIT) or the
 * --max-pause watchdog. Handlers only record the event; the freezing thread polls guard_check()
 * between steps, and blocking calls return EINTR because the handlers are installed without
 * SA_RESTART. If the freezing thread cannot thaw within a grace period after the deadline (stuck in
 * the kernel), the watchdog kills osmosis with SIGKILL: the kernel then detaches every tracee, so
 * the targets resume whatever osmosis was doing.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

/* Install the signal handlers; remembers the calling thread as the one to interrupt. */
int guard_install(void);
/* 0 when nothing happened, -EINTR after a signal, -ETIMEDOUT after the watchdog fired. */
int guard_check(void);
/* The signal that was received (0 if none). */
int guard_signal(void);
/* Arm the watchdog: fire max_pause_ns from now. Returns 0 or a negative errno. */
int guard_watchdog_arm(uint64_t max_pause_ns);
/* Disarm (idempotent). After this the watchdog never fires nor kills. */
void guard_watchdog_disarm(void);

/*
 * Holding a thread outside the freeze (an injection before it, such as pre-copy's userfaultfd,
 * or after it, such as the clone's reaping) is under the same limit as the freeze: the snapshot
 * command sets the limit once, and each such hold arms the watchdog unless it is armed already
 * (inside the freeze it is). guard_hold_begin returns 0 or a negative errno and sets *ret_armed
 * when it armed the watchdog; guard_hold_end(armed) disarms only then. Neither logs.
 */
void guard_set_max_pause(uint64_t max_pause_ns);
int guard_hold_begin(bool *ret_armed);
void guard_hold_end(bool armed);
