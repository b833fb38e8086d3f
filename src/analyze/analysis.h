/* SPDX-License-Identifier: MIT */
/*
 * The analysis model: a snapshot (manifest and cores) read back, every thread unwound, every
 * blocked thread's wait decoded into the object it waits on, and the wait graph between threads
 * and processes. Built only from the snapshot directory, never from the live system, so a
 * snapshot from another machine analyzes the same. Patterns (src/patterns/) read this model and
 * nothing else.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "snapshot/model.h"

#define ANALYSIS_MAX_FRAMES 256

/* Native frames come from unwinding; a runtime (src/analyze/runtime/) adds its own, merged. */
enum frame_kind { FRAME_NATIVE, FRAME_PYTHON };

struct frame {
	enum frame_kind kind;
	uint64_t pc;	 /* native: the pc; python: the interpreter frame's address */
	char *function;	 /* NULL when no symbol covers pc */
	char *module;	 /* basename of the module, NULL if none */
	uint64_t offset; /* pc - function start, or pc - module start without a symbol */
	char *file;	 /* source file, with debug info only (python: always when known) */
	int line;
};

/* What a blocked thread waits on, decoded from its syscall, arguments and the memory around. */
enum wait_kind {
	WAIT_NONE,	/* not blocked in a syscall (running user code, or unknown) */
	WAIT_MUTEX,	/* pthread mutex */
	WAIT_JOIN,	/* pthread_join */
	WAIT_RWLOCK,	/* pthread rwlock */
	WAIT_CONDVAR,	/* condition variable: no owner by design */
	WAIT_SEMAPHORE, /* sem_t: no owner by design */
	WAIT_FUTEX,	/* a futex we could not put a name to */
	WAIT_CHILD,	/* wait4/waitid */
	WAIT_READ,	/* read/recv on a descriptor (pipe, socket, file, tty) */
	WAIT_WRITE,	/* write/send on a descriptor */
	WAIT_ACCEPT,	/* accept on a listening socket */
	WAIT_POLL,	/* poll/select/epoll: waiting for any of several events */
	WAIT_SLEEP,	/* nanosleep, pause, sigsuspend... */
	WAIT_OTHER,	/* some other syscall */
};

enum mutex_verdict {
	MUTEX_UNKNOWN,
	MUTEX_FREE,
	MUTEX_LOCKED,
	MUTEX_LOCKED_WAITERS,
	MUTEX_ABANDONED, /* owner TID is not a live thread */
	MUTEX_CORRUPT,
};

struct lock_info {
	enum wait_kind kind;
	uint64_t addr; /* the futex word or the object's address */
	int fd;	       /* descriptor waited on, or -1 */
	pid_t child;   /* wait4 target (>0), -1 any child */
	/* mutexes (and rwlock writers) */
	bool have_words;    /* the object's memory was in the core */
	uint32_t words[10]; /* the object's first 40 bytes */
	pid_t owner;	    /* owner TID, 0 if none or unknown */
	int kind_bits;	    /* mutex __kind */
	enum mutex_verdict verdict;
	char why[160];	/* corruption or abandonment, in words */
	char text[200]; /* the wait in words */
};

struct athread;
struct aprocess;
struct runtime;
struct module_source;

enum edge_kind {
	EDGE_MUTEX,
	EDGE_JOIN,
	EDGE_RWLOCK,
	EDGE_CHILD,
	EDGE_PIPE,
	EDGE_UNIX,
	EDGE_TCP,
	EDGE_GIL,    /* waits for a runtime's global lock (CPython's GIL) held by to_thread */
	EDGE_PYLOCK, /* waits for a lock of the runtime's (threading.Lock, RLock) held by to_thread
		      */
};

/* thread -> thread, or thread -> process (IPC, children) */
struct edge {
	enum edge_kind kind;
	struct athread *from;
	struct athread *to_thread;
	struct aprocess *to_proc;
	char text[200]; /* "waits on mutex 0x... held by" ... */
};

struct athread {
	struct osm_thread *t; /* from the manifest */
	struct aprocess *proc;
	bool in_core;	   /* its registers were found in the core */
	uint64_t regs[32]; /* elf_gregset_t from NT_PRSTATUS (arch.h says which is which) */
	uint64_t fs_base;
	struct frame *frames;
	size_t n_frames;
	char *unwind_error; /* why the stack stops early (NULL: it reached the end) */
	struct lock_info wait;
	struct edge *edges; /* what it waits on */
	size_t n_edges;
	int scc; /* cycle id (>0) when part of a cycle */
	/* Filled by a runtime (src/analyze/runtime/): */
	char *runtime_name;	 /* its name in the runtime (threading.Thread.name), or NULL */
	bool runtime_thread;	 /* the runtime knows this thread (a Python thread state) */
	bool holds_gil;		 /* holds the runtime's global lock at the instant */
	bool waits_gil;		 /* waits for it */
	char runtime_where[160]; /* where its innermost runtime frame stands, "" if none */
};

struct module_info {
	char *path;
	uint64_t start;
	char build_id[80]; /* hex, "" if unknown */
};

struct aprocess {
	struct osm_process *p; /* from the manifest */
	struct athread *threads;
	size_t n_threads;
	bool has_core;
	char *core_error; /* why the core could not be read (fully) */
	int core_fd;
	void *zcore; /* struct zcore * when the core is compressed (core.PID.zst), else NULL */
	void *elf;   /* Elf *, for memory reads */
	void *dwfl;  /* Dwfl * */
	struct {
		uint64_t vaddr, memsz, offset, filesz;
		uint32_t flags;
	} * loads;
	size_t n_loads;
	uint64_t core_size;
	struct module_info *modules;
	size_t n_modules;
	char **files; /* NT_FILE paths, deduplicated */
	size_t n_files;
	/* The language runtime found in it (src/analyze/runtime/), or NULL. */
	const struct runtime *runtime;
	void *runtime_state;
	char *runtime_version;		/* "CPython 3.11.2" */
	struct module_source **sources; /* what stands for each module in libdwfl (modules.c) */
	size_t n_sources;
};

/* A step of a cycle or chain: the waiting thread and the edge it waits through. */
struct wait_step {
	struct athread *t;
	struct edge *e;
};

struct cycle {
	struct wait_step *steps;
	size_t n;
	bool via_process; /* some step goes through a process (IPC, children) */
	bool all_blocked; /* every thread of the processes passed through is blocked */
};

struct chain {
	struct wait_step *steps; /* the waits, head first */
	size_t n;
	struct athread *end_thread; /* where it ends, or NULL when it ends at a process */
	struct aprocess *end_proc;
	int ends_in_cycle; /* index+1 of the cycle it runs into, or 0 */
};

struct threshold_value {
	const char *name;
	double value;
};

struct analysis {
	struct osm_snapshot *snap;
	char *dir;
	struct aprocess *procs;
	size_t n_procs;
	struct threshold_value *thresholds; /* overrides from --threshold */
	size_t n_thresholds;
	char **problems; /* what could not be read, for the report and truncated-dump */
	size_t n_problems;
	struct cycle *cycles;
	size_t n_cycles;
	struct chain *chains;
	size_t n_chains;
};

/* Load DIR: manifest, cores, unwinding, waits, the graph. Returns 0 or a negative errno with a
 * one-line reason in err (the manifest could not be read at all). Problems with single cores are
 * not errors: they are recorded in a->problems and the rest is analyzed. */
int analysis_load(const char *dir, struct analysis *a, char *err, size_t errlen);
void analysis_done(struct analysis *a);

/* Memory of a process at addr from its core, bounded by the core's size. Returns the number of
 * bytes read (short or 0 where the core holds nothing). */
size_t aprocess_read(const struct aprocess *ap, uint64_t addr, void *buf, size_t len);
struct athread *analysis_find_thread(const struct analysis *a, pid_t tid);
struct aprocess *analysis_find_process(const struct analysis *a, pid_t pid);
double analysis_threshold(const struct analysis *a, const char *name, double def);

/* Steps, exposed for tests. */
void unwind_process(struct aprocess *ap);
void decode_waits(struct analysis *a);
void build_wait_graph(struct analysis *a);
void find_cycles_and_chains(struct analysis *a);
/* The threads a wait through e continues to: e's thread, or the waiting threads of e's
 * process. Returns how many were put in out. */
size_t edge_targets(const struct edge *e, struct athread **out, size_t max);
/* Add an edge from a waiting thread (for runtimes, which add their waits to the graph after
 * the native ones). to_proc may be NULL for a thread edge. */
void analysis_add_edge(struct athread *from, enum edge_kind kind, struct athread *to_thread,
		       struct aprocess *to_proc, const char *text);
/* Record a problem of the snapshot (what could not be read): a one-line reason, shown by
 * truncated-dump. */
void analysis_problem(struct analysis *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
