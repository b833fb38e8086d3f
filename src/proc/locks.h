/* SPDX-License-Identifier: MIT */
/*
 * File locks from /proc/locks: flock, POSIX (fcntl) and OFD locks, held and awaited. Each line
 * is "ID: [-> ]TYPE MODE ACCESS PID MAJ:MIN:INODE START END"; a "->" line is a waiter blocked
 * on the lock with the same ID. Read once, just before the freeze (the file is system-wide and
 * may be long: it is not read with the targets stopped).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "snapshot/model.h"

/* Parse the text of /proc/locks (pure, bounded: at most 100,000 lines; a line that does not
 * parse is skipped). Fills a malloc'ed array; returns 0 or -ENOMEM. */
int proc_locks_parse(const char *text, struct osm_file_lock **ret, size_t *ret_n);
/* The "lock:" lines of a /proc/PID/fdinfo/FD text: the locks held through that descriptor's
 * open file description, in /proc/locks's format (their ids are per descriptor, not the global
 * ones). Returns 0 or -ENOMEM; *ret stays NULL when there is none. */
int proc_fd_locks_parse(const char *fdinfo, struct osm_file_lock **ret, size_t *ret_n);
/* Whether two lines name the same held lock (type, access, pid, file and range; not the id). */
bool file_lock_same(const struct osm_file_lock *a, const struct osm_file_lock *b);
/* Read /proc/locks into s->file_locks, keeping the locks (and their waiters) that touch the
 * snapshot: taken by one of its processes, or on a file one of them has open; each gets the
 * path of such a descriptor, and each held one its holders (descriptors whose fdinfo lists it:
 * call after the processes' descriptors are read). Returns 0 or a negative errno (the snapshot
 * stays without). */
int proc_locks_load(struct osm_snapshot *s);
