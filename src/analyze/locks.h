/* SPDX-License-Identifier: MIT */
/*
 * Lock decoding without debug info. A blocked thread's syscall and arguments say what it waits
 * on; the function names on its stack (when symbols exist) or the futex's expected value say what
 * kind of object; the object's words, read from the core, say who holds it and whether it is
 * sound. The decoder is a pure function of its input so it can be tested and fuzzed alone.
 * glibc x86_64 layouts: see docs/design/analysis-notes.md.
 */
#pragma once

#include "analyze/analysis.h"

struct lock_input {
	const char *syscall; /* its name, or NULL */
	uint64_t args[6];
	const char *const
	    *functions; /* function names on the stack, innermost first (may be NULL) */
	size_t n_functions;
	/* the memory at args[0] (futex word) and around it */
	bool have_words;
	uint32_t words[10]; /* 40 bytes at the futex address */
	bool have_before;
	uint32_t before[4]; /* 16 bytes before it (rwlock fields) */
	const pid_t *tids;  /* the process's threads */
	size_t n_tids;
};

/* The call a thread waits in. A timed futex wait, poll or nanosleep met by a stop (a freeze, an
 * injection, SIGSTOP, a debugger) resumes as restart_syscall, its arguments still in the
 * registers; which call it was, the frames say. Returns in->syscall when it is not that, or the
 * frames do not say. Pure. */
const char *lock_resolve_syscall(const struct lock_input *in);
/* Fill out (kind, owner, verdict, why, text). Pure: no I/O. */
void lock_decode(const struct lock_input *in, struct lock_info *out);
