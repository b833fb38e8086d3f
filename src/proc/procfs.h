/* SPDX-License-Identifier: MIT */
/*
 * Readers of /proc/PID files, all relative to a /proc/PID directory descriptor (see pidref.h).
 * Parsers are split from readers so they can be unit-tested and fuzzed on plain strings.
 * Return 0 or a negative errno; none of these log.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define PF_KTHREAD_FLAG 0x00200000u /* task flag of kernel threads (linux/sched.h PF_KTHREAD) */

struct proc_stat {
	char comm[17];
	char state;
	pid_t ppid, pgrp, session;
	unsigned flags;
	uint64_t utime, stime; /* clock ticks */
	uint64_t starttime;    /* clock ticks since boot */
	uint64_t faults;  /* minflt + majflt: its own (the whole process's in /proc/PID/stat) */
	uint64_t cfaults; /* cminflt + cmajflt: the faults of its reaped children (it grows
			     each time it reaps one: every process faults at least once) */
	int processor;
	int exit_signal; /* sent to the parent at exit (0 for a clone made without one) */
};

int proc_parse_stat(const char *buf, struct proc_stat *ret);
int proc_read_stat(int dirfd, const char *path, struct proc_stat *ret);

struct proc_ids {
	uid_t ruid, euid;
	gid_t rgid, egid;
};
int proc_parse_status_ids(const char *buf, struct proc_ids *ret);
int proc_read_status_ids(int procfd, struct proc_ids *ret);

/* Thread ids from task/, sorted ascending. *ret is malloc'ed. */
int proc_list_tasks(int procfd, pid_t **ret, size_t *ret_n);
/* The same into buf (cap entries), allocating nothing (getdents64 into the stack): for the
 * freeze. -ENOBUFS when there are more than cap threads. */
int proc_list_tasks_into(int procfd, pid_t *buf, size_t cap, size_t *ret_n);
/* NUL-separated arguments joined with spaces; an empty string for kernel threads and zombies. */
int proc_read_cmdline(int procfd, char **ret);
int proc_read_exe(int procfd, char **ret);
int proc_read_coredump_filter(int procfd, unsigned *ret);
/* Whether the process is dumpable in the kernel's sense (its /proc files are owned by its euid
 * rather than root). Only meaningful for a process whose euid is not root. */
bool proc_is_dumpable(int procfd, uid_t euid);
