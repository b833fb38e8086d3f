/* SPDX-License-Identifier: MIT */
/*
 * Fault points, for tests that must reach every moment of a snapshot: the environment variable
 * OSMOSIS_FAULT="POINT:ACTION" makes fault_point(POINT) act when reached; several entries
 * separated by ';' act each at its point ("vetted:write=F;prepared:write=F"). Actions:
 *   sigkill        osmosis kills itself with SIGKILL (the kernel must resume the targets)
 *   sigkill-after=SECONDS  a helper kills osmosis that long after the point (inside the step
 *                  that follows it, such as the injected clone)
 *   sleep=SECONDS  sleep, waking early on a signal (to let a test signal osmosis mid-freeze)
 *   hang=SECONDS   sleep ignoring signals (to make the watchdog's last resort act)
 *   kill=PID       send SIGKILL to PID and wait until it has exited (a target exiting
 *                  mid-snapshot)
 *   write=PATH     write a byte to PATH (a FIFO) and wait 0.2 s (a target changing its memory)
 *   fail           return -EIO from the point (an error path)
 * Without the variable a fault point costs one branch.
 *
 * FAULT_POINTS is the one list of every point: fault_point() refuses a name not in it (a test
 * sweeping the list reaches every point there is), and the safety tests read it from this file.
 * Each entry: name, the method that reaches it ("any", "clone", "precopy"), and when.
 */
#pragma once

#define FAULT_POINTS(X)                                                                            \
	X("vetted", "any", "every target chosen and vetted, nothing created yet")                  \
	X("held", "precopy",                                                                       \
	  "a target's thread held outside the freeze, about to be injected into")                  \
	X("uffd-taken", "precopy", "the userfaultfd created in the target and taken")              \
	X("tracking", "precopy", "write tracking registered, before the first round")              \
	X("precopied", "precopy", "pre-copy's rounds done, before the freeze")                     \
	X("shared-round", "shared", "a round over a tracked shared object done, before the next")  \
	X("child-watch", "shared",                                                                 \
	  "the children of members that fork about to be watched to their exits (fail: not "       \
	  "watched)")                                                                              \
	X("prepared", "any", "methods chosen, buffers reserved, before the freeze")                \
	X("settled", "any", "the shared objects' last check done, nothing left before the freeze") \
	X("frozen", "any", "every thread stopped")                                                 \
	X("shared-scan", "shared", "in the freeze, a shared mapping about to be scanned")          \
	X("gap-scan", "precopy",                                                                   \
	  "in the freeze, a target's written pages about to be found (fail: as if the walks "      \
	  "across untracked mappings were refused)")                                               \
	X("injecting", "clone", "in the freeze, a thread chosen for the clone")                    \
	X("trampoline", "clone", "the trampoline page mapped in the target")                       \
	X("intermediate", "clone", "the intermediate made and held, before it makes the clone")    \
	X("cloned", "clone", "the clone made and held")                                            \
	X("captured", "any", "registers and memory kept, before the thaw")                         \
	X("thawed", "any", "the targets resumed")                                                  \
	X("core-written", "any", "a core written under its temporary name")                        \
	X("manifest-written", "any", "the manifest written, before the directory is renamed")      \
	X("committed", "any", "the snapshot directory in place (only sleep= and sigkill matter)")

/* Returns 0, or -EIO for the "fail" action. name must be in FAULT_POINTS. */
int fault_point(const char *name);
