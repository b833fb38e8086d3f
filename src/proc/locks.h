/* SPDX-License-Identifier: MIT */
/*
 * File locks from /proc/locks: flock, POSIX (fcntl) and OFD locks, held and awaited. Each line
 * is "ID: [-> ]TYPE MODE ACCESS PID MAJ:MIN:INODE START END"; a "->" line is a waiter blocked
 * on the lock with the same ID. Read once, just before the freeze (the file is system-wide and
 * may be long: it is not read with the targets stopped).
 */
#pragma once

#include <stddef.h>

#include "snapshot/model.h"

/* Parse the text of /proc/locks (pure, bounded: at most 100,000 lines; a line that does not
 * parse is skipped). Fills a malloc'ed array; returns 0 or -ENOMEM. */
int proc_locks_parse(const char *text, struct osm_file_lock **ret, size_t *ret_n);
/* Read /proc/locks into s->file_locks, keeping the locks (and their waiters) that touch the
 * snapshot: taken by one of its processes, or on a file one of them has open; each gets the
 * path of such a descriptor. Returns 0 or a negative errno (the snapshot stays without). */
int proc_locks_load(struct osm_snapshot *s);
