/* SPDX-License-Identifier: MIT */
/*
 * Fault points, for tests that must reach every moment of a snapshot: the environment variable
 * OSMOSIS_FAULT="POINT:ACTION" makes fault_point(POINT) act when reached. Actions:
 *   sigkill        osmosis kills itself with SIGKILL (the kernel must resume the targets)
 *   sigkill-after=SECONDS  a helper kills osmosis that long after the point (inside the step
 *                  that follows it, such as the injected clone)
 *   sleep=SECONDS  sleep, waking early on a signal (to let a test signal osmosis mid-freeze)
 *   hang=SECONDS   sleep ignoring signals (to make the watchdog's last resort act)
 *   kill=PID       send SIGKILL to PID (a target exiting mid-snapshot)
 *   write=PATH     write a byte to PATH (a FIFO) and wait 0.2 s (a target changing its memory)
 *   fail           return -EIO from the point (an error path)
 * Points: vetted, prepared, frozen, captured, thawed, core-written, manifest-written; clone:
 * injecting, trampoline, cloned; pre-copy: uffd-taken, tracking, precopied.
 * Without the variable a fault point costs one branch.
 */
#pragma once

/* Returns 0, or -EIO for the "fail" action. */
int fault_point(const char *name);
