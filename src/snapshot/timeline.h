/* SPDX-License-Identifier: MIT */
/*
 * The timeline of one snapshot command: each phase (sample, state, reserve, register, rounds,
 * freeze, copy, resume, unregister, write-out, commit) with its start and duration, on
 * CLOCK_MONOTONIC, relative to the command's start; the pause (first thread stopped to last
 * resumed); and osmosis's peak memory. It goes into the manifest, so that a stall a target saw
 * (a heartbeat on the same clock, bench/stall.c) can be laid beside what osmosis was doing.
 *
 * A phase that happens once per target (register, rounds) is recorded once per target, with
 * the pid. Recording is a fixed array: a command with more phases than it holds keeps the first
 * ones and counts the rest (dropped).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define OSM_MAX_PHASES	   64
#define OSM_PHASE_NAME_LEN 16

struct osm_phase {
	char name[OSM_PHASE_NAME_LEN];
	pid_t pid;	   /* the target it was for, or 0 (none, or several merged) */
	uint64_t start_ns; /* from the command's start */
	uint64_t dur_ns;   /* OSM_PHASE_OPEN: still running when the manifest was written */
};

#define OSM_PHASE_OPEN UINT64_MAX

/* The pause broken down: where the time between the first thread stopped and the last resumed
 * went, summed over the targets. OTHER is what the named parts leave (bookkeeping between
 * them), so that the parts always sum to the pause. */
enum osm_pause_part {
	PAUSE_STOP,	 /* interrupting every thread and collecting each stop */
	PAUSE_REGISTERS, /* registers and thread state of every thread */
	PAUSE_LAYOUT,	 /* maps read again, the copy planned */
	PAUSE_CLONE,	 /* clone: the injected fork and its reap */
	PAUSE_WRITTEN,	 /* pre-copy: the pages written since the last round found */
	PAUSE_COPY,	 /* the copy threads' run */
	PAUSE_RESUME,	 /* detaching every thread */
	PAUSE_OTHER,
	PAUSE_N_PARTS,
};

extern const char *const osm_pause_part_names[PAUSE_N_PARTS];

struct osm_timeline {
	uint64_t t0_ns;			 /* CLOCK_MONOTONIC at the command's start (0: none) */
	uint64_t pause_ns, pause_end_ns; /* first thread stopped, last resumed (from t0) */
	uint64_t part_ns[PAUSE_N_PARTS]; /* the pause broken down (all 0: not recorded) */
	struct osm_phase phases[OSM_MAX_PHASES];
	size_t n;
	size_t dropped;
	uint64_t peak_rss;     /* VmHWM of osmosis at the end, bytes */
	uint64_t peak_buffers; /* the largest osmosis's own buffers were at once, bytes */
	uint64_t max_memory;   /* the budget it worked in, bytes (0: none) */
	/* allocations made during the pause (base/util.h, freeze_allocs): 0 keeps the promise;
	 * UINT64_MAX: not recorded (a manifest of an older version) */
	uint64_t allocations_in_freeze;
};

/* Start the clock (t0 = now). */
void timeline_init(struct osm_timeline *tl);
/* Open a phase now; returns its index (or SIZE_MAX when full: timeline_end ignores it). tl may be
 * NULL. */
size_t timeline_begin(struct osm_timeline *tl, const char *name, pid_t pid);
void timeline_end(struct osm_timeline *tl, size_t i);
/* A phase known by its CLOCK_MONOTONIC bounds. */
void timeline_add(struct osm_timeline *tl, const char *name, pid_t pid, uint64_t start_mono,
		  uint64_t end_mono);
/* The pause, by its CLOCK_MONOTONIC bounds. */
void timeline_set_pause(struct osm_timeline *tl, uint64_t first_stop, uint64_t thawed);
/* Add ns to a part of the pause. tl may be NULL. */
void timeline_pause_part(struct osm_timeline *tl, enum osm_pause_part part, uint64_t ns);
/* After timeline_set_pause: OTHER set to what the named parts leave of the pause. */
void timeline_close_pause(struct osm_timeline *tl);
/* "stop 180, registers 3, ..." (ms, parts that took time), into buf; false if none recorded. */
bool timeline_format_pause(const struct osm_timeline *tl, char *buf, size_t len);
/* Add ns to a part of the pause. tl may be NULL. */
void timeline_pause_part(struct osm_timeline *tl, enum osm_pause_part part, uint64_t ns);
/* After timeline_set_pause: OTHER set to what the named parts leave of the pause. */
void timeline_close_pause(struct osm_timeline *tl);
/* "stop 180, registers 3, ..." (ms, parts that took time), into buf; false if none recorded. */
bool timeline_format_pause(const struct osm_timeline *tl, char *buf, size_t len);
/* VmHWM of the calling process, bytes (0 if unknown). */
uint64_t timeline_self_peak_rss(void);
