/* SPDX-License-Identifier: MIT */
/*
 * JVMs through the JDK's own reader: `jhsdb jstack --exe JAVA --core CORE` (the HotSpot
 * Serviceability Agent) reads the JVM's structures from osmosis's core, and osmosis parses what
 * it prints (docs/java.md). The output is untrusted text (the core, and so the thread names, come
 * from the target): the parser bounds every line, count and string, keeps only printable UTF-8,
 * and ignores lines it does not know.
 *
 * java_jstack.c is the pure parser (fuzzed), java_run.c runs a program bounded in time and
 * output, java.c is the runtime's descriptor and merges what jhsdb said into the analysis.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define JSTACK_MAX_OUTPUT	(16u << 20) /* bytes of jhsdb's output read */
#define JSTACK_MAX_LINE		4096	    /* longer lines are ignored */
#define JSTACK_MAX_THREADS	8192
#define JSTACK_MAX_FRAMES	1024 /* per thread */
#define JSTACK_MAX_LOCKED	64   /* monitors listed as locked, per thread */
#define JSTACK_MAX_DEADLOCKS	64
#define JSTACK_MAX_DEADLOCK_LEN 64 /* threads in one deadlock */
#define JSTACK_MAX_NAME		256

struct jframe {
	char *method;  /* "Deadlock.hold(java.lang.Object, java.lang.Object)" */
	int line;      /* 0 when not printed */
	int bci;       /* -1 when not printed */
	char type[24]; /* "Interpreted", "Compiled", "Native", "" */
};

struct jthread {
	char *name;
	pid_t nid; /* the native thread's id (Linux tid), 0 when not printed */
	bool daemon;
	char state[48]; /* java.lang.Thread.State: "BLOCKED (on object monitor)" */
	struct jframe *frames;
	size_t n_frames;
	uint64_t locked[JSTACK_MAX_LOCKED]; /* objects its frames list as locked */
	size_t n_locked;
};

/* One step of a Java-level deadlock: waiter waits for what, held by holder. */
struct jstep {
	char *waiter, *holder;
	uint64_t monitor; /* Monitor@..., 0 if not printed */
	uint64_t object;  /* Object@..., 0 if not printed */
	char cls[128];	  /* the object's class, dotted ("java.lang.Object"), "" if unknown */
	char what[200];	  /* the wait as printed, when it is not a monitor ("waiting for ...") */
};

struct jdeadlock {
	struct jstep *steps;
	size_t n;
};

struct jstack {
	char vm_version[96];	 /* "17.0.21.1+2-1-deb12u1-Debian", "" if not printed */
	bool attached;		 /* "Debugger attached successfully." was seen */
	bool deadlock_section;	 /* "Deadlock Detection:" was seen */
	bool no_deadlocks;	 /* "No deadlocks found." */
	int announced_deadlocks; /* "Found a total of N deadlock(s).", -1 if not printed */
	struct jthread *threads;
	size_t n_threads;
	struct jdeadlock *deadlocks;
	size_t n_deadlocks;
	size_t ignored_lines; /* unknown, too long, or past a limit */
	bool truncated;	      /* a limit cut something off */
};

/* Parse len bytes of `jhsdb jstack` output into st (zeroed by the caller). Pure. Returns 0, or
 * -ENOMEM. Unknown lines are counted in st->ignored_lines. Free with jstack_done. */
int jstack_parse(const char *buf, size_t len, struct jstack *st);
void jstack_done(struct jstack *st);

/* The threads of st named name (exact), up to max into out; returns how many there are. */
size_t jstack_find_named(const struct jstack *st, const char *name, const struct jthread **out,
			 size_t max);
/* Whether t's frames list object as locked. */
bool jthread_locked(const struct jthread *t, uint64_t object);

/* Run path with argv and envp (no shell, no PATH search), stdin from /dev/null, fd keep[i]
 * given to it as descriptor 3 + i, every other descriptor closed, in its own process group, and
 * killed (SIGKILL) if osmosis dies. Its stdout (up to max_out bytes, the rest read and dropped)
 * goes to *ret_out and the last 1 KiB of its stderr to ret_err. After timeout_ms the whole
 * group is killed. The child is always reaped before return. Returns 0 with *ret_status (a wait
 * status), -ETIME when it was killed for time, or a negative errno when it could not be run;
 * *ret_out (malloc'ed, NUL-terminated) is set in the first two cases. Does not log. */
int run_bounded(const char *path, char *const argv[], char *const envp[], const int *keep,
		size_t n_keep, int timeout_ms, size_t max_out, char **ret_out, size_t *ret_len,
		bool *ret_truncated, char *ret_err, size_t err_len, int *ret_status);
