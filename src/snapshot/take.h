/* SPDX-License-Identifier: MIT */
/*
 * Taking a snapshot: the whole stage sequence, in one function that osmosis snap calls (and
 * osmosis watch, through the osmosis snap it runs for each snapshot). The command line fills a
 * struct snapshot_options (cli/snap_opts.c) and prints what struct snapshot_result holds.
 *
 * Stages, in order, chosen so the freeze holds nothing that could be done outside it:
 *   targets    choose and vet (pids, trees, a cgroup, all)                  targets running
 *   sample     first CPU sample, the sampling interval
 *   state      threads, descriptors, sockets, memory figures, file locks
 *   prepare    the snapshot directory created; capture_prepare: each target's method chosen,
 *              memory reserved and touched, pre-copy's rounds
 *   freeze     every thread stopped (a tree grows with children born meanwhile)   the pause
 *   copy       capture_frozen: registers; copies queued and run, clones made
 *   resume     every thread let go
 *   write-out  capture_finish; one core per process                          targets running
 *   release    clones ended, buffers given back
 *   commit     manifest.json written, the directory renamed into place
 * Every exit (an error, a signal to osmosis, the watchdog) resumes the targets and removes what
 * was written; the timeline in the manifest records each stage.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "snapshot/model.h"

struct snapshot_options {
	/* Targets: pids (each must be captured unless optional), a tree of them, a cgroup, or all.
	 */
	const pid_t *pids;
	size_t n_pids;
	bool tree, all;
	const char *cgroup;
	bool optional;	   /* pids that cannot be snapshotted are recorded and passed over */
	const pid_t *skip; /* never frozen (--skip) */
	size_t n_skip;

	const char *output; /* the directory to create; NULL: ./osmosis-HOST-UTCDATE-TIME */
	enum capture_method method;
	bool state_only;
	bool compress;
	int level;	       /* zstd's, with compress */
	uint64_t max_memory;   /* bytes; 0: the default (snapshot_default_max_memory) */
	uint64_t max_pause_ns; /* the watchdog's limit on every hold of a thread */
	uint64_t sample_ns;    /* the CPU sampling interval before the freeze; 0: none */
	const char *trigger;   /* a JSON object's text, recorded as the manifest's trigger */
	bool progress;	       /* progress lines on stderr (a terminal only) */
};

struct snapshot_result {
	struct osm_snapshot *snap; /* the model written (owned) */
	char *dir;		   /* the directory written (owned) */
	uint64_t copied_bytes;	   /* copied in the pause */
	uint64_t copy_ns;	   /* time spent copying in the pause */
	/* Interrupted by a signal to osmosis or the watchdog: the message is the caller's (the
	 * targets were resumed and nothing was left behind either way). */
	bool interrupted;
};

/* Take one snapshot. Returns 0 with *ret filled, or a negative errno (logged, except an
 * interruption: ret->interrupted) with nothing written and *ret holding nothing to free. The
 * targets are resumed on every path. */
int snapshot_take(const struct snapshot_options *o, struct snapshot_result *ret);
void snapshot_result_done(struct snapshot_result *r);

/* The default --max-memory: the smaller of 1 GiB and a tenth of MemAvailable, within osmosis's
 * cgroup, at least 64 MiB. */
uint64_t snapshot_default_max_memory(void);
