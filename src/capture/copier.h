/* SPDX-License-Identifier: MIT */
/*
 * Parallel memory copy out of frozen targets. Worker threads are started before the freeze and
 * wait; during the freeze the freezing thread hands them a job list and copies alongside them,
 * since the targets' own CPUs are idle then. process_vm_readv does the bulk; a range it refuses is
 * read page by page through /proc/PID/mem, and a page neither gives is left as zeroes and counted.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct copy_job {
	pid_t pid;	 /* 0: read the file memfd at offset remote (a shared object) */
	int memfd;	 /* /proc/PID/mem, or -1; with pid 0, the object's file */
	uint64_t remote; /* address in the target (with pid 0, offset in the file) */
	uint64_t len;
	uint8_t *dest;
	uint64_t unreadable; /* out: bytes neither method could read (zero-filled) */
	uint64_t file_off;   /* pre-copy's staged rounds: where the bytes go in the file */
};

struct copier;

/* Start n_workers threads (0 is fine: the caller copies alone). Returns NULL on failure. */
struct copier *copier_new(unsigned n_workers, size_t page_size);
/* Run all jobs to completion using the workers and the calling thread. Stops early and returns
 * the guard's error when a signal or the watchdog interrupts. Returns 0 or a negative errno.
 * Out of running targets (pre-copy's rounds, the shared objects' reads) at the threads' own
 * policy, never real-time (base/sched.h: holds in a row); a run of less than a few MiB is copied
 * by the calling thread alone (copier.c, PARALLEL_MIN_BYTES). */
int copier_run(struct copier *c, struct copy_job *jobs, size_t n_jobs);
/* The same inside the freeze: the workers copy at real-time priority, as the freezing thread
 * does (base/sched.h, the freeze), so that CPU hogs beside the frozen targets do not stretch
 * the pause; for the first 50 ms of the copy, after which they leave the machine's other work
 * its CPUs. */
int copier_run_frozen(struct copier *c, struct copy_job *jobs, size_t n_jobs);
/* fn(ctx, i) for every i < n, on the workers and the calling thread at once, as the copy in the
 * freeze runs (real-time priority): work of the pause that is one independent piece per target
 * (reading each target's layout) takes the targets' idle CPUs too. */
int copier_each_frozen(struct copier *c, void (*fn)(void *ctx, size_t i), void *ctx, size_t n);
/* The same out of the freeze, at the threads' own policy (as copier_run): the shared objects'
 * rounds scan their mappings, one process's page tables each, on every copy thread. */
int copier_each(struct copier *c, void (*fn)(void *ctx, size_t i), void *ctx, size_t n);
void copier_free(struct copier *c);

/* Copy one job on the calling thread (used by copier_run and by tests). */
void copy_job_run(struct copy_job *j, size_t page_size);
