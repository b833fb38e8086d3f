/* SPDX-License-Identifier: MIT */
/*
 * The snapshot directory. It is built under a hidden temporary name beside its final path
 * (".NAME.partial-XXXXXX", mode 0700) and renamed to its final name only when every file in it is
 * complete, never replacing an existing directory. So a snapshot directory under its final name is
 * always whole; an interrupted run leaves at most a hidden .partial directory (removed on ordinary
 * errors and signals; after a SIGKILL of osmosis it stays, holding no final-named file).
 */
#pragma once

struct snapdir {
	char *final; /* the path the user asked for */
	char *tmp;   /* the temporary directory path */
	int dirfd;   /* open on tmp */
};

/* Refuses an existing path. Logs its errors. Returns 0 or a negative errno. */
int snapdir_create(const char *path, struct snapdir *ret);
/* fsync and rename into place. Logs. */
int snapdir_commit(struct snapdir *d);
/* Remove the temporary directory and everything in it (idempotent). */
void snapdir_abort(struct snapdir *d);
