/* SPDX-License-Identifier: MIT */
/* A process's descriptor table from /proc/PID/fd and fdinfo, sockets resolved through a socket
 * table. Read just before the freeze. */
#pragma once

#include "proc/pidref.h"
#include "proc/sockets.h"
#include "snapshot/model.h"

/* Fill p->fds. On a table that cannot be read, p->fd_error is set and 0 returned. Returns a
 * negative errno only for out of memory. Logs nothing. */
int proc_load_fds(const struct pidref *ref, struct osm_process *p, struct sock_table *socks);
/* Classify a /proc/PID/fd link text into type and inode (exposed for tests). */
void fd_classify(const char *link, struct osm_fd *f);
