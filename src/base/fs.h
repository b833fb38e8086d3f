/* SPDX-License-Identifier: MIT */
/*
 * File helpers. Output files hold secrets (a process's memory), so every file osmosis creates is
 * made with O_CREAT|O_EXCL|O_NOFOLLOW, mode 0600, under a temporary name; it gets its final name
 * only by outfile_commit(), after fsync. Nothing partial is ever visible under a final name.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Read a whole (possibly /proc) file relative to dirfd into a NUL-terminated malloc'ed buffer.
 * Returns 0 or a negative errno. Does not log. */
int read_file_at(int dirfd, const char *path, char **ret, size_t *ret_len);
int write_all(int fd, const void *buf, size_t len);
int pwrite_all(int fd, const void *buf, size_t len, off_t off);

struct outfile {
	int dirfd;   /* borrowed */
	int fd;	     /* -1 when closed */
	char *tmp;   /* temporary name inside dirfd */
	char *final; /* final name inside dirfd */
};

/* Create final's temporary sibling ".final.tmp". Returns 0 or a negative errno; does not log. */
int outfile_open(int dirfd, const char *final, struct outfile *ret);
/* fsync, close and rename to the final name (never replacing an existing file). Returns 0 or a
 * negative errno; on failure the temporary file is removed. Does not log. */
int outfile_commit(struct outfile *of);
/* Close and remove the temporary file. Safe to call on a committed or never-opened outfile. */
void outfile_abort(struct outfile *of);

/* Open dirfd/path for reading only if it is a regular file, without ever opening anything else:
 * the path is first opened with O_PATH (which opens no device, blocks on no FIFO), checked with
 * fstat, and only a regular file is then reopened (through /proc/self/fd) with
 * O_RDONLY|O_NONBLOCK|O_NOCTTY|O_CLOEXEC and checked again to be the same file. flags may add
 * O_NOFOLLOW. Returns the descriptor, or a negative errno: -EINVAL for something that is not a
 * regular file, and then *ret_kind names what it is ("a FIFO", "a directory", ...), else NULL.
 * Does not log. */
int open_regular_file(int dirfd, const char *path, int flags, const char **ret_kind);
