/* SPDX-License-Identifier: MIT */
/* Between python.c (the runtime's descriptor) and python_locks.c (its wait-graph nodes). */
#pragma once

#include "analyze/analysis.h"
#include "analyze/runtime/python.h"

/* The GIL and threading's locks of one process as wait-graph edges and Python-level wait texts.
 * Called before the Python frames are merged into the native ones. */
void python_locks(struct analysis *a, struct aprocess *ap, const struct rmem *m,
		  struct py_state *st);
/* The process's asyncio Tasks into ap->tasks: their coroutine chains, what each awaits, the
 * task that can end each wait, cycles of tasks waiting on each other (python_tasks.c). */
void python_tasks(struct analysis *a, struct aprocess *ap, const struct rmem *m,
		  struct py_state *st);
