/* SPDX-License-Identifier: MIT */
/*
 * A pattern, in the seed's words, is a common recurrent identifiable problem together with a set
 * of recommendations and possible solutions to apply in a specific context. Each is a const
 * descriptor in its own file, listed once in registry.c; `osmosis patterns` and the docs are
 * generated from the descriptors. match() is pure: it reads the analysis model and appends
 * findings, never doing I/O.
 */
#pragma once

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "analyze/analysis.h"

enum severity { SEV_INFO, SEV_WARNING, SEV_ERROR };

struct threshold {
	const char *name; /* e.g. "high-contention.waiters" */
	double def;
	const char *unit;
	const char *description;
};

struct finding {
	const struct pattern *pattern;
	enum severity severity;
	char *id;      /* "deadlock#1" */
	char *summary; /* one sentence */
	pid_t *pids;
	size_t n_pids, cap_pids;
	pid_t *tids;
	size_t n_tids, cap_tids;
	char **lines; /* evidence for people */
	size_t n_lines, cap_lines;
	json_object *evidence; /* evidence for programs */
	char **recs;	       /* recommendations specific to this finding, before the pattern's */
	size_t n_recs, cap_recs;
	char **related; /* "wait-chain#2: ends in this deadlock" */
	size_t n_related, cap_related;
	uint64_t key; /* for linking: the lock address, the cycle's first tid... */
};

struct findings {
	struct finding *v;
	size_t n, cap;
};

struct pattern;
typedef void (*pattern_match_fn)(const struct analysis *a, const struct pattern *self,
				 struct findings *out);

struct pattern {
	const char *id;
	const char *title;
	enum severity severity; /* the usual severity; a finding may say otherwise */
	const char *description;
	const char *needs; /* what it needs from the snapshot */
	const struct threshold *thresholds;
	size_t n_thresholds;
	const char *const *recommendations; /* NULL-terminated */
	pattern_match_fn match;
};

extern const struct pattern *const pattern_registry[];
extern const size_t pattern_count;
const struct pattern *pattern_find(const char *id);
const char *severity_name(enum severity s);

/* Building findings (findings.c). */
struct finding *finding_new(struct findings *out, const struct pattern *p, enum severity sev,
			    const char *fmt, ...) __attribute__((format(printf, 4, 5)));
void finding_pid(struct finding *f, pid_t pid);
void finding_tid(struct finding *f, pid_t tid);
void finding_line(struct finding *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void finding_rec(struct finding *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void finding_relate(struct finding *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
json_object *finding_ev(struct finding *f); /* the evidence object, created on first use */
void findings_done(struct findings *fs);
/* Sort most severe first (stable), then number the ids ("pattern#n"). */
void findings_finish(struct findings *fs);

/* Helpers shared by patterns (common.c). */
double pattern_threshold(const struct analysis *a, const struct pattern *p, const char *name);
/* "thread 1234 "name" of pid 1200 (comm)" */
void thread_label(const struct athread *t, char *buf, size_t len);
/* "Java" when the thread has Java frames, else "Python": the runtime its runtime_where is in. */
const char *runtime_language(const struct athread *t);
/* Add the thread's top frames as evidence lines, indented. */
void finding_frames(struct finding *f, const struct athread *t, size_t max);
/* Each step of a cycle or chain as evidence (label, "waits on" line, frames) and as a JSON array
 * of {tid, pid, waits_on, address}; names the threads and processes in f. */
json_object *finding_wait_steps(struct finding *f, const struct wait_step *steps, size_t n,
				size_t frames);
/* A waker in words ("pid 12 (c) fd 6, holds a write end: sleeping (thread 12 sleeps ...)"),
 * classified ("running", "sleeping", "in I/O", "stuck", "in a deadlock", ...), as JSON, and
 * every waker of e as evidence lines (and objects appended to arr, when not NULL). */
const struct athread *waker_thread(const struct waker *w);
const char *waker_class(const struct waker *w);
void describe_waker(const struct waker *w, char *buf, size_t len);
json_object *waker_json(const struct waker *w);
void finding_wakers(struct finding *f, const struct edge *e, json_object *arr);
/* "the oldest wait: THREAD, which last ran 2 h 01 min before the freeze" as evidence, and
 * oldest_wait_ms / oldest_wait_tid in the evidence JSON (last_ran_ago_ms of the manifest);
 * nothing when no thread's figure is known. */
void finding_oldest_wait(struct finding *f, const struct athread *const *threads, size_t n);
/* What every thread of ap does, as evidence lines ("WHAT thread N: waits ..."). */
void finding_process_activity(struct finding *f, const struct aprocess *ap, const char *what);
/* Processes from index i on with p's parent for which same(p, q) holds: counted, and with f
 * also marked in done[] and named in f. */
typedef bool (*process_same_fn)(const struct osm_process *p, const struct osm_process *q);
size_t process_siblings(const struct analysis *a, size_t i, process_same_fn same, bool *done,
			struct finding *f);
/* Where a chain of waits ends, in words ("running", "in I/O", ...). */
const char *wait_end_class(const struct athread *t);
/* Threads of ap that wait on something with an edge (for following a wait into a process). */
size_t process_waiting_threads(const struct aprocess *ap, struct athread **out, size_t max);
