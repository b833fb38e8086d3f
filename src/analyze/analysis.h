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
enum frame_kind { FRAME_NATIVE, FRAME_PYTHON, FRAME_JAVA };

struct frame {
	enum frame_kind kind;
	uint64_t pc;	 /* native: the pc; python: the interpreter frame's address; java: 0 */
	char *function;	 /* NULL when no symbol covers pc; java: the method with its signature */
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
	WAIT_FILE_LOCK, /* flock, or fcntl F_SETLKW / F_OFD_SETLKW: /proc/locks names the holder */
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
	EDGE_FILE_LOCK, /* flock, POSIX (fcntl) or OFD lock, from /proc/locks */
	EDGE_RUNTIME,	/* a lock of a language runtime (an interpreter's lock, a monitor) */
	EDGE_GIL,	/* waits for a runtime's global lock (CPython's GIL) held by its waker */
	EDGE_PYLOCK,	/* waits for a threading.Lock or RLock held by its waker */
	EDGE_MONITOR,	/* waits to enter a Java monitor (synchronized) held by its waker */
};

/* Who can end a wait. A mutex, a join, a child, a file lock: only the thread or process named
 * ("this one"). A pipe read: any process holding a write end; a socket read: the peer, or any
 * process sharing the peer's descriptor ("any of"). A read-held rwlock: every reader ("all of"). */
enum wait_mode { WAIT_THIS_ONE, WAIT_ANY_OF, WAIT_ALL_OF };

/* One possible waker of a wait: a thread, or a whole process (any of its threads may act). */
struct waker {
	struct athread *thread; /* NULL: any thread of proc */
	struct aprocess *proc;	/* never NULL */
	int fd;			/* its descriptor on the object (a pipe end, a socket), or -1 */
	char role[48];		/* "owner", "holds a write end", "the peer", "holds the lock" */
};

/* A wait of one thread and everything that can end it (graph_add_wait, edge_add_waker). */
struct edge {
	enum edge_kind kind;
	enum wait_mode mode;
	struct athread *from;
	struct waker *wakers;
	size_t n_wakers, cap_wakers;
	char text[320]; /* the wait in words, its wakers named ("reads fd 3 (pipe:[7]): ...") */
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
	struct edge *edges; /* what it waits on: it can go on only when every edge is ended */
	size_t n_edges;
	int scc;	/* cycle id (>0) when part of a cycle */
	bool stuck;	/* no possible waker of its wait can go on (find_cycles_and_chains) */
	bool waited_on; /* some other thread waits on it, or on its process */
	bool needed;	/* ... for something it holds: not only a parent waiting for its exit */
	/* Filled by a runtime (src/analyze/runtime/): */
	char *runtime_name;	 /* its name in the runtime (threading.Thread.name), or NULL */
	bool runtime_thread;	 /* the runtime knows this thread (a Python thread state) */
	bool holds_gil;		 /* holds the runtime's global lock at the instant */
	bool waits_gil;		 /* waits for it */
	char runtime_where[160]; /* where its innermost runtime frame stands, "" if none */
	/* A wait on a runtime's lock whose holder is not known (a threading.Lock taken with
	 * acquire()): the lock, and a thread whose code, by its bytecode, took it and has not
	 * released it (a suspect, not a known holder: no edge of the wait graph), or NULL. */
	uint64_t runtime_lock;
	struct athread *runtime_lock_suspect;
	char runtime_lock_suspect_at[160]; /* "explicit_lock_transfer (app.py:12)" */
};

/* A task of a language runtime that is on no thread's stack: an asyncio Task suspended in an
 * await (src/analyze/runtime/python_asyncio.c). Filled by a runtime, freed by runtimes_free. */
struct atask {
	char *name;	      /* Task.get_name() */
	uint64_t addr, loop;  /* the Task object, its event loop */
	struct frame *frames; /* its coroutine chain, innermost first (FRAME_PYTHON) */
	size_t n_frames;
	char awaits[320]; /* what it awaits, in words */
	uint64_t lock;	  /* the asyncio.Lock it waits to acquire, 0 if none */
	int waits_for;	  /* index of the task that ends its wait (the lock's holder, the task it
			   * awaits), -1 when none or not known */
	int suspect;	  /* the lock's holder not known (taken with await lock.acquire()): the
			   * index of the one task whose code took it and has not released it, by
			   * its code, or -1 */
	char suspect_at[160];
	bool done;	   /* finished (or cancelled): waits on nothing */
	int cycle;	   /* >0: in a cycle of tasks waiting on each other (a deadlock) */
	int suspect_cycle; /* >0: in a cycle through suspects (most likely a deadlock) */
};

struct module_info {
	char *path;
	uint64_t start;
	char build_id[80]; /* hex, "" if unknown */
};

struct file_range {
	uint64_t start, end;
	char *path;
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
	size_t n_free;			/* threads that can go on (find_cycles_and_chains) */
	struct file_range *file_ranges; /* NT_FILE mappings (for pcs outside every module) */
	size_t n_file_ranges;
	/* The language runtime found in it (src/analyze/runtime/), or NULL. */
	const struct runtime *runtime;
	void *runtime_state;
	char *runtime_version; /* "CPython 3.11.2" */
	struct atask *tasks;   /* the runtime's suspended tasks (asyncio), or NULL */
	size_t n_tasks;
	struct athread *loop_thread;	/* the thread running the tasks' event loop, or NULL */
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
	bool deadlock;	  /* no possible waker of any step can go on */
	/* the other threads of the same component: on other loops through the same waits (a pipe
	 * read whose every writer is stuck in the cycle too) */
	struct wait_step *others;
	size_t n_others;
	bool all_blocked; /* = deadlock (older name) */
};

struct chain {
	struct wait_step *steps; /* the waits, head first */
	size_t n;
	struct athread *end_thread; /* where it ends, or NULL when it ends at a process */
	struct aprocess *end_proc;
	int ends_in_cycle; /* index+1 of the cycle it runs into, or 0 */
	bool stuck;	   /* its head can never go on (it runs into a deadlock or a dead owner) */
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
	pid_t *focus; /* threads the user named (--thread): always reported when blocked */
	size_t n_focus;
	char **problems; /* what could not be read, for the report and truncated-dump */
	size_t n_problems;
	char **notes; /* what the analysis could not do on this machine (a tool missing) */
	size_t n_notes;
	struct cycle *cycles;
	size_t n_cycles;
	struct chain *chains;
	size_t n_chains;
	struct symcache
	    *symcache; /* symbols shared by the processes while they load (symcache.c) */
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

/* A symbol as people write it: C++ and Rust names demangled (malloc'ed; the name itself when it
 * is not mangled or no demangler was built in). NULL for NULL. */
char *demangle(const char *name);
bool demangler_available(void);

/* Steps, exposed for tests. */
void unwind_process(struct aprocess *ap);
void decode_waits(struct analysis *a);
void build_wait_graph(struct analysis *a);
/* Which threads can go on (athread.stuck, aprocess.n_free), the cycles (deadlocks: every
 * possible waker stuck; others: some waker can still end them) and the chains. Run after every
 * edge is added, by the loader and again by a runtime that adds edges of its own. */
void find_cycles_and_chains(struct analysis *a);

/* The graph's API, for the loader and for language runtimes that add waits of their own.
 * graph_add_wait appends a wait to from (the pointer returned is valid until the next
 * graph_add_wait on the same thread); edge_add_waker names one possible waker (thread may be
 * NULL: any thread of proc). Both return NULL / -ENOMEM when out of memory. */
struct edge *graph_add_wait(struct athread *from, enum edge_kind kind, enum wait_mode mode,
			    const char *text);
int edge_add_waker(struct edge *e, struct athread *thread, struct aprocess *proc, int fd,
		   const char *role);
/* Free t's edges and their wakers. */
void graph_free_edges(struct athread *t);
/* The threads a wait through e continues to: each waker thread, and the waiting threads of
 * each waker process. Returns how many were put in out. */
size_t edge_targets(const struct edge *e, struct athread **out, size_t max);
/* Can the waker go on: its thread is not stuck, or (a process) one of its threads is not. */
bool waker_can_go_on(const struct waker *w);
const char *wait_mode_name(enum wait_mode m); /* "this-one", "any-of", "all-of" */
/* A "this one" wait on one thread (or, to_thread NULL, one process), for runtimes: the short
 * form of graph_add_wait + edge_add_waker. */
void analysis_add_edge(struct athread *from, enum edge_kind kind, struct athread *to_thread,
		       struct aprocess *to_proc, const char *text);
/* Record a problem of the snapshot (what could not be read): a one-line reason, shown by
 * truncated-dump. */
void analysis_problem(struct analysis *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Record a note: something this machine lacks to analyze further (a JDK's jhsdb), not a fault
 * of the snapshot. truncated-dump shows notes as a note, not a warning. */
void analysis_note(struct analysis *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
