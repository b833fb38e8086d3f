/* SPDX-License-Identifier: MIT */
/*
 * Language runtimes in the analysis: an extension point shaped like the patterns. Each runtime
 * is a const descriptor in its own file (python.c for CPython), listed once in registry.c;
 * `osmosis patterns` and docs/patterns.md list them from the descriptors. A runtime reads only
 * the snapshot model (the core's memory, the modules libdwfl found for it, the manifest),
 * never /proc or ptrace.
 *
 * Two steps, called by analysis_load:
 *   detect(): while a process's modules are loaded (ap->dwfl is valid, right after unwinding),
 *             say whether the runtime runs in it and keep what read() needs (symbol addresses,
 *             the version), so libdwfl can be let go process by process;
 *   read():   after every process's native waits and wait graph are built, add the runtime's
 *             frames (merged with the native ones), thread names, and its own wait-graph
 *             nodes and edges (analysis_add_edge).
 * A runtime that cannot read a process says so in one line (analysis_problem) and leaves
 * the native analysis as it was.
 *
 * One runtime runs a program: java.c has the JDK's own reader (jhsdb) read the JVM's core, as
 * decoding HotSpot's structures for every JDK release is the JDK's business. It runs it bounded
 * in time and output, never through a shell, and parses what it prints as untrusted text.
 */
#pragma once

#include <stddef.h>

#include "analyze/analysis.h"

struct runtime {
	const char *id;	   /* "cpython" */
	const char *title; /* "CPython" */
	const char *description;
	const char *needs;    /* what it needs from the snapshot */
	const char *versions; /* the versions it reads */
	/* Returns 1 and sets *ret_state (freed with free_state) when the runtime is in ap, 0 when
	 * not, or a negative errno with a one-line reason in why (the process is then analyzed
	 * natively). No I/O beyond the modules' files libdwfl opened. */
	int (*detect)(struct aprocess *ap, void **ret_state, char *why, size_t len);
	/* Adds frames, names, edges to ap's threads; problems go to a->problems. */
	void (*read)(struct analysis *a, struct aprocess *ap, void *state);
	void (*free_state)(void *state);
};

extern const struct runtime *const runtime_registry[];
extern const size_t runtime_count;

/* Turn the runtime named id off for this run of osmosis (analyze --no-runtime=ID): its
 * processes are analyzed natively. Returns 0, or -ENOENT when no runtime has that id. */
int runtime_disable(const char *id);
/* Run every runtime's detect() on ap (ap->dwfl must be valid); the first that claims ap wins. */
void runtimes_detect(struct analysis *a, struct aprocess *ap);
/* Run read() for every process a runtime claimed. */
void runtimes_read(struct analysis *a);
/* Free ap's runtime state. */
void runtimes_free(struct aprocess *ap);
