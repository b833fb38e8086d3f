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

#define OSM_COMM_LEN 16

struct osm_thread {
	pid_t tid;
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
	uint8_t *data;
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
	uint64_t dump_len;    /* bytes from start that the core holds (PT_LOAD p_filesz) */
	bool elf_header_only; /* dump_len is one page, kept only if it starts with ELF magic */
	bool trim_absent;     /* private anonymous: absent pages are zero, read only present ones */
	struct osm_extent *ext;
	size_t n_ext, cap_ext;
	uint64_t unreadable; /* bytes the kernel refused to give us (left as zeroes) */
};

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

	struct osm_thread **threads;
	size_t n_threads, cap_threads;
	struct osm_mapping *maps;
	size_t n_maps;

	uint64_t captured_bytes; /* bytes copied from the target */
	char core_name[64];	 /* file name of its core inside the snapshot directory */
};

struct osm_snapshot {
	char *host;
	char *kernel;
	char created[32]; /* UTC, ISO 8601 */
	const char *method;
	const char *method_reason;
	uint64_t pause_us;
	struct osm_process **procs;
	size_t n_procs;
};

void mapping_done(struct osm_mapping *m);
void process_free(struct osm_process *p);
void snapshot_free(struct osm_snapshot *s);
struct osm_thread *process_add_thread(struct osm_process *p, pid_t tid);
struct osm_thread *process_find_thread(const struct osm_process *p, pid_t tid);
size_t process_live_threads(const struct osm_process *p);
size_t process_captured_threads(const struct osm_process *p);
int mapping_add_extent(struct osm_mapping *m, uint64_t off, uint64_t len, uint8_t *data);
