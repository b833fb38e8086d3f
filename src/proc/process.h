/* SPDX-License-Identifier: MIT */
/*
 * Loading what /proc says about a process into the model before the freeze: identity (ids,
 * names, exe, cmdline, auxv, coredump_filter, dumpable) and its threads (names, states, CPU times).
 */
#pragma once

#include "proc/pidref.h"
#include "snapshot/model.h"

/* Returns 0, -ESRCH when the process is gone, or another negative errno. Does not log. */
int proc_load_identity(const struct pidref *ref, struct osm_process *p);
/* Add (or refresh) every thread listed in task/, with name, state and CPU times. */
int proc_load_threads(const struct pidref *ref, struct osm_process *p);
