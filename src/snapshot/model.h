/* SPDX-License-Identifier: MIT */
/*
 * The in-memory model of a snapshot: processes, their threads (with registers) and their mappings
 * (with the captured bytes). Capture fills it; the core writer and the manifest writer read it.
 * Strings and arrays are owned by the model and freed by snapshot_free().
 */
#pragma once

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "arch.h"
#include "snapshot/timeline.h"

#define OSM_COMM_LEN 16

/* A key and a number, for /proc files that are lists of counters (meminfo, vmstat). */
struct osm_kv {
	char *key;
	int64_t value;
};

struct osm_thread {
	pid_t tid;
	char wchan[64];	 /* kernel function it sleeps in, before the freeze ("" if running) */
	char *kstack;	 /* /proc/PID/task/TID/stack before the freeze (root only), or NULL */
	long syscall_nr; /* the syscall it is in at the freeze, or -1 (from registers) */
	uint64_t syscall_args[6];
	uint64_t vctx, nvctx; /* voluntary and involuntary context switches */
	int last_cpu;
	double cpu_pct; /* CPU use over the sampling interval before the freeze, % of a CPU */
	bool has_cpu_pct;
	int64_t switches_in_sample;   /* context switches over the sampling interval, -1 unknown */
	int64_t last_ran_ago_ms;      /* how long before its state was read it last ran (sched's
					 se.exec_start, proc/schedclock.h); -1 unknown */
	int64_t switches_after_thaw;  /* context switches (voluntary + involuntary) read once the
					 snapshot had resumed it: what the freeze itself caused is
					 counted before the next snapshot's figure; -1 unknown */
	uint64_t stack_swapped_pages; /* stack pages in swap at the freeze (pagemap) */
	/* An injection before the freeze interrupted it in this syscall, which the kernel resumes
	 * as restart_syscall at resumed_pc: that is the call it is in when the freeze finds it
	 * there (capture/threads.c); -1 none */
	long resumed_nr;
	uint64_t resumed_pc;
	/* schedstat (proc/schedstat.h): totals when its state was read, and over the sampling
	 * interval the share of a CPU it ran and waited runnable for one (its demand) */
	uint64_t sched_run_ns, sched_wait_ns, sched_slices;
	bool has_schedstat;
	double run_pct, runq_wait_pct; /* over the interval, % of a CPU */
	bool has_demand;
	int64_t voluntary_in_sample; /* voluntary context switches over the interval; -1 unknown */
	char name[OSM_COMM_LEN + 1];
	char state;	    /* /proc state letter sampled just before the freeze */
	bool seized;	    /* we are its tracer (PTRACE_SEIZE or auto-attached at clone) */
	bool stopped;	    /* we hold it in a ptrace stop */
	bool captured;	    /* its registers were taken inside the freeze: it goes in the core */
	bool gone;	    /* exited before or during the freeze */
	int inject_sig;	    /* signal met in a signal-delivery-stop, re-delivered at thaw */
	int group_stop_sig; /* non-zero when the thread was in a group stop (SIGSTOP'd) */
	siginfo_t siginfo;  /* the stop's siginfo (PTRACE_GETSIGINFO) */
	uint64_t sigpend;   /* pending signals (thread and shared), bit n-1 for signal n */
	uint64_t sighold;   /* blocked signals */
	uint64_t utime_us, stime_us;
	struct arch_regs regs;
	uint8_t xstate_buf[ARCH_XSTATE_MAX];
};

/* One captured run of bytes inside a mapping; anything not covered by an extent reads as zeroes. */
struct osm_extent {
	uint64_t off; /* from the mapping's start */
	uint64_t len;
	uint8_t *data; /* the bytes, or NULL: read them from fd at src (a clone's /proc/PID/mem) */
	int fd;
	uint64_t src;
};

struct osm_mapping {
	uint64_t start, end;
	uint64_t pgoff; /* file offset in bytes */
	uint32_t prot;	/* PROT_READ|PROT_WRITE|PROT_EXEC */
	bool shared;
	uint32_t dev_major, dev_minor;
	uint64_t inode;
	char *path;	  /* NULL for anonymous; "[heap]" etc. as the kernel names them */
	uint64_t vmflags; /* VMF_* from smaps */
	uint64_t anon_bytes, rss_bytes, swap_bytes; /* from smaps, before the freeze */
	uint64_t present_bytes; /* the ready layout's: what a copy of it would copy (plan.c) */
	uint64_t dump_len;	/* bytes from start that the core holds (PT_LOAD p_filesz) */
	bool elf_header_only;	/* dump_len is one page, kept only if it starts with ELF magic */
	bool trim_absent; /* private anonymous: absent pages are zero, read only present ones */
	struct osm_extent *ext;
	size_t n_ext, cap_ext;
	uint64_t unreadable; /* bytes the kernel refused to give us (left as zeroes) */
	/* Placed in the core file before the write (pre-copy's rounds wrote its bytes there): its
	 * segment starts at core_off, already holds the bytes, and ext holds only what changed
	 * since (written over it in place). 0: not placed. */
	uint64_t core_off;
	unsigned shared_object; /* id of the shared object it maps (osm_shared_object), 0: none */
};

/* One mapping of a shared object by a process of the snapshot. */
struct osm_shared_mapper {
	pid_t pid;
	uint64_t start, end, offset; /* its addresses, and the object offset at start */
	bool dumped;		     /* its core holds the bytes (its coredump_filter says so) */
};

/* Memory shared between processes (SysV shm, MAP_SHARED|MAP_ANONYMOUS, memfd, /dev/shm), kept
 * once for every process that maps it. */
struct osm_shared_object {
	unsigned id;
	const char *kind; /* "sysv", "anonymous", "memfd", "posix", "file" */
	char *path;	  /* as /proc/PID/maps names it */
	uint32_t dev_major, dev_minor;
	uint64_t inode;
	uint64_t offset, size; /* the part of the object the snapshot's mappings cover */
	struct osm_shared_mapper *mappers;
	size_t n_mappers;
	const char *kept; /* "tracked" (writes tracked, only those copied in the pause) or "copied"
			   * (copied whole in the pause) */
	char *kept_reason;
	uint64_t copied_before, copied_in_pause; /* bytes copied before the freeze, and inside */
	pid_t *writers_outside;			 /* processes outside the snapshot that map it */
	size_t n_writers_outside;
};

struct osm_file_lock;

/* One open descriptor, read just before the freeze. */
struct osm_fd {
	int fd;
	char type[12]; /* file dir char block pipe socket eventfd epoll timerfd signalfd inotify
			  memfd pidfd anon other */
	char *target;  /* what /proc/PID/fd/N links to */
	uint64_t inode;
	uint32_t flags; /* open flags from fdinfo (O_ACCMODE says which end of a pipe) */
	uint64_t pos;
	/* sockets */
	char proto[8]; /* unix tcp tcp6 udp udp6 netlink raw other */
	char sock_state[16];
	char *local, *remote;
	uint64_t peer_inode; /* unix: the peer socket's inode (sock_diag UNIX_DIAG_PEER) */
	uint32_t rqueue, wqueue;
	/* epoll: the descriptors it watches */
	int *epoll_tfds;
	size_t n_epoll_tfds;
	/* eventfd count, timerfd clock... */
	int64_t eventfd_count;
	/* The file locks held through this descriptor's open file description (the "lock:" lines
	 * of fdinfo; not in the manifest: they become the holders of s->file_locks) */
	struct osm_file_lock *locks;
	size_t n_locks;
};

/* What a snapshot holds of a process. The manifest names each state (capture_state_name);
 * strings exist only at that boundary. */
enum osm_capture {
	CAPTURE_MEMORY,	 /* registers and memory: it has a core */
	CAPTURE_STATE,	 /* registers and maps only (--state-only) */
	CAPTURE_SKIPPED, /* not frozen, or frozen but not captured: capture_note says why */
	CAPTURE_EXITED,	 /* went away before or during the snapshot */
	CAPTURE_UNKNOWN, /* a manifest's value this version does not know */
};
/* "memory", "state", "skipped", "exited", "unknown". */
const char *capture_state_name(enum osm_capture c);
/* The state a manifest names; CAPTURE_UNKNOWN for NULL or a name not in the table. */
enum osm_capture capture_state_parse(const char *name);
/* Whether the process was frozen and its state taken (memory or state). */
bool capture_state_frozen(enum osm_capture c);

/* How a process's memory was kept (src/capture: one method per process, chosen by auto or
 * requested). The manifest names each (capture_method_name); strings exist only at that boundary
 * and in the capture registry's lookup by name. */
enum capture_method {
	METHOD_AUTO, /* not a method of a process: the choice among the others (--method auto) */
	METHOD_COPY,
	METHOD_CLONE,
	METHOD_PRECOPY,
	METHOD_UNKNOWN, /* a manifest's value this version does not know */
};
/* "auto", "copy", "clone", "precopy", "unknown": static strings. */
const char *capture_method_name(enum capture_method m);
/* The method a name gives; METHOD_UNKNOWN for NULL or a name not in the table. */
enum capture_method capture_method_parse(const char *name);

struct osm_process {
	pid_t pid, ppid, pgid, sid;
	uid_t uid, euid;
	gid_t gid, egid;
	char comm[OSM_COMM_LEN + 1];
	char state;
	char *exe;
	char *cmdline; /* arguments joined with spaces */
	uint8_t *auxv;
	size_t auxv_len;
	unsigned coredump_filter;
	uint64_t starttime; /* clock ticks since boot (stat field 22) */
	bool dumpable;
	uint64_t start_time_s; /* seconds since boot */
	uint64_t utime_us, stime_us;
	uint64_t vm_size, vm_rss, vm_swap, rss_anon, rss_file, rss_shmem; /* bytes */
	uint64_t nofile_soft, nofile_hard; /* RLIMIT_NOFILE; UINT64_MAX for unlimited */
	char *cgroup;
	int oom_score_adj;
	uint64_t cg_mem_current,
	    cg_mem_max; /* its cgroup v2 memory use and limit (max: UINT64_MAX) */
	struct osm_fd *fds;
	size_t n_fds;
	int fd_error;		  /* errno when the descriptor table could not be read, else 0 */
	enum osm_capture capture; /* what the snapshot holds of it (capture_state_name) */
	char *capture_note;	  /* why it was skipped */
	const char *method;  /* capture method used: "copy", "clone", "precopy"; NULL if none */
	char *method_reason; /* why that method */

	struct osm_thread **threads;
	size_t n_threads, cap_threads;
	struct osm_mapping *maps;
	size_t n_maps;

	uint64_t captured_bytes;   /* bytes copied from the target */
	uint64_t mappings_count;   /* mappings at the freeze (= PT_LOADs in its core) */
	uint64_t unreadable_bytes; /* bytes the kernel refused (zeroes in the core) */
	char core_name[64];	   /* file name of its core inside the snapshot directory */
};

struct osm_cpu {
	int cpu;	   /* -1 for the total line */
	uint64_t ticks[8]; /* user nice system idle iowait irq softirq steal */
	double busy_pct;   /* over the sampling interval; -1 when not sampled */
};

struct osm_psi {
	char resource[8];	 /* cpu memory io */
	double some[3], full[3]; /* avg10 avg60 avg300, percent */
	uint64_t some_total_us, full_total_us;
	bool has_full;
};

struct osm_swap {
	char *name, *type;
	uint64_t size, used; /* bytes */
	int priority;
};

/* A process of the machine (in the snapshot or not) among the top CPU consumers of the interval. */
struct osm_top {
	pid_t pid;
	char comm[OSM_COMM_LEN + 1];
	double cpu_pct; /* % of one CPU over the sampling interval */
};

struct osm_system {
	long ncpu;
	double uptime_s, idle_s;
	double load[3];
	int runnable, threads_total;
	uint64_t procs_running, procs_blocked, ctxt, processes_forked;
	struct osm_cpu *cpus;
	size_t n_cpus;
	struct osm_kv *meminfo; /* bytes for kB lines, counts otherwise */
	size_t n_meminfo;
	struct osm_kv *vmstat;
	size_t n_vmstat;
	struct osm_psi psi[3];
	size_t n_psi;
	struct osm_swap *swaps;
	size_t n_swaps;
	struct osm_top *top; /* the top CPU consumers over the sampling interval, most first */
	size_t n_top;
};

struct osm_lock_holder {
	pid_t pid;
	int fd;
};

/* A file lock from /proc/locks, taken with the state: a held lock, or a waiter blocked on one
 * (the waiter shares the id of the lock it waits for). */
struct osm_file_lock {
	int64_t id;	/* the number /proc/locks gives the lock; its waiters have the same */
	bool waiting;	/* a "->" line: blocked, waiting for the lock with this id */
	char type[8];	/* FLOCK POSIX OFDLCK LEASE DELEG */
	char mode[12];	/* ADVISORY MANDATORY ACTIVE BREAKING ... */
	char access[8]; /* READ WRITE NONE */
	pid_t pid;	/* who took it (the waiter, on a "->" line); -1 for OFD locks */
	uint32_t dev_major, dev_minor;
	uint64_t inode;
	uint64_t start;
	int64_t end; /* last byte, -1: to the end of the file (EOF) */
	char *path;  /* from a descriptor on the same inode in the snapshot, or NULL */
	/* A held lock: the processes of the snapshot whose descriptor has it (fdinfo's "lock:"
	 * lines). A flock belongs to an open file description: every process with a descriptor
	 * on it holds it, and pid may be a process that took it and exited since. */
	struct osm_lock_holder *holders;
	size_t n_holders;
};

struct osm_snapshot {
	char *host;
	char *kernel;
	char *boot_id;	    /* /proc/sys/kernel/random/boot_id: tells boots of one host apart */
	char *trigger_json; /* what made osmosis watch take it (a JSON object's text), or NULL */
	char created[32];   /* UTC, ISO 8601 */
	const char *method;
	const char *method_reason;
	uint64_t pause_us;
	const char *scope; /* pids, tree, cgroup, all */
	char *scope_arg;   /* the cgroup path, or the root pids */
	bool state_only;
	uint64_t sample_ms;	      /* the CPU sampling interval before the freeze (0: none) */
	uint64_t total_ms;	      /* the whole command, start to files renamed into place */
	struct osm_timeline timeline; /* phases of the command and osmosis's peak memory */
	struct osm_system sys;
	struct osm_process **procs;
	size_t n_procs, cap_procs;
	struct osm_file_lock *file_locks; /* those touching the snapshot's processes or files */
	size_t n_file_locks;
	bool has_file_locks;		  /* /proc/locks was read (the list may still be empty) */
	struct osm_shared_object *shared; /* each shared object once */
	size_t n_shared;
	/* Entries of a read manifest that repeated a process listed before (same pid and start
	 * time): left out, so each process is analyzed once. */
	size_t n_duplicates;
	pid_t duplicate_pid; /* the first one repeated */
};

void mapping_done(struct osm_mapping *m);
void fd_done(struct osm_fd *f);
void system_done(struct osm_system *sys);
void kv_free(struct osm_kv *kv, size_t n);
void process_free(struct osm_process *p);
void snapshot_free(struct osm_snapshot *s);
void file_locks_free(struct osm_file_lock *v, size_t n);
struct osm_thread *process_add_thread(struct osm_process *p, pid_t tid);
struct osm_thread *process_find_thread(const struct osm_process *p, pid_t tid);
size_t process_live_threads(const struct osm_process *p);
size_t process_captured_threads(const struct osm_process *p);
int mapping_add_extent(struct osm_mapping *m, uint64_t off, uint64_t len, uint8_t *data);
/* An extent whose bytes are read at write time from fd at offset src. */
int mapping_add_fd_extent(struct osm_mapping *m, uint64_t off, uint64_t len, int fd, uint64_t src);
