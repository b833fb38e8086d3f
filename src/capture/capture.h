/* SPDX-License-Identifier: MIT */
/*
 * Capture methods keep the targets' memory as it was at the freeze instant. Each is a
 * `struct capture_ops`, called in this order by the snapshot command:
 *
 *   prepare   before the freeze: read maps, plan, reserve and touch buffers, start helpers
 *   frozen    inside the freeze: take registers and keep memory; nothing else
 *   finish    after the thaw: complete the model (anything that can wait until the targets run)
 *   release   always, last: free buffers, stop helpers
 *
 * The copy method (copy.c) copies every dumped byte during the freeze. Later methods (a
 * copy-on-write clone, write-tracking pre-copy) slot in beside it.
 */
#pragma once

#include <stdint.h>

#include "capture/arena.h"
#include "capture/copier.h"
#include "proc/targets.h"
#include "snapshot/model.h"

struct capture {
	const struct capture_ops *ops;
	struct target_set *set; /* borrowed; targets skipped or exited are left alone */
	bool state_only;	/* registers and maps only: no memory (osmosis snap --state-only) */
	size_t page_size;
	unsigned n_workers;

	struct arena arena;
	struct copier *copier;
	struct copy_job *jobs;
	size_t n_jobs, cap_jobs;

	uint64_t planned_bytes;
	uint64_t copied_bytes;
	uint64_t copy_ns; /* time spent copying inside the freeze */
};

struct capture_ops {
	const char *name;
	int (*prepare)(struct capture *c);
	int (*frozen)(struct capture *c);
	int (*finish)(struct capture *c);
	void (*release)(struct capture *c);
};

extern const struct capture_ops capture_copy_ops;

/* Look a method up by name; NULL if unknown. */
const struct capture_ops *capture_method(const char *name);

/* Registers, signal state and the stop siginfo of every held thread of p (inside the freeze).
 * Threads that died meanwhile are marked gone. Returns 0 or a negative errno; logs. */
int capture_thread_state(struct osm_process *p);
