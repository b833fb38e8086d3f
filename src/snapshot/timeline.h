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
	pid_t pid;	   /* the target it was for, or 0 */
	uint64_t start_ns; /* from the command's start */
	uint64_t dur_ns;   /* OSM_PHASE_OPEN: still running when the manifest was written */
};

#define OSM_PHASE_OPEN UINT64_MAX

struct osm_timeline {
	uint64_t t0_ns;			 /* CLOCK_MONOTONIC at the command's start (0: none) */
	uint64_t pause_ns, pause_end_ns; /* first thread stopped, last resumed (from t0) */
	struct osm_phase phases[OSM_MAX_PHASES];
	size_t n;
	size_t dropped;
	uint64_t peak_rss;     /* VmHWM of osmosis at the end, bytes */
	uint64_t peak_buffers; /* the largest osmosis's own buffers were at once, bytes */
	uint64_t max_memory;   /* the budget it worked in, bytes (0: none) */
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
/* VmHWM of the calling process, bytes (0 if unknown). */
uint64_t timeline_self_peak_rss(void);
