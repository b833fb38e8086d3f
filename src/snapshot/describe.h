/* SPDX-License-Identifier: MIT */
/* Words for what the model holds: what a blocked thread waits in (from its syscall and
 * arguments, with descriptors resolved to what they are), and what a descriptor is. Pure
 * functions of the model; used by osmosis show and the analysis report. */
#pragma once

#include <stddef.h>

#include "snapshot/model.h"

/* "read(fd 3: pipe:[123] read end)", "futex wait on 0x55..180 (expected 2)", "" if running. */
void describe_wait(const struct osm_process *p, const struct osm_thread *t, char *buf, size_t len);
/* "pipe:[123] read end", "unix connected, peer inode 456", "tcp 127.0.0.1:80 -> ..." */
void describe_fd(const struct osm_fd *f, char *buf, size_t len);
const struct osm_fd *process_find_fd(const struct osm_process *p, int fd);
