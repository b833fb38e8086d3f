/* SPDX-License-Identifier: MIT */
/*
 * A reference to one process that cannot silently move to another process when the pid is reused:
 * a pidfd plus an open /proc/PID directory. Every /proc read goes through procfd, and
 * pidref_alive() (a signal 0 sent through the pidfd) tells that the process the pid named when we
 * opened it is still the one alive, so what we read or seized by number was the right one.
 */
#pragma once

#include <stdbool.h>
#include <sys/types.h>

struct pidref {
	pid_t pid;
	int pidfd;
	int procfd;
	int memfd; /* /proc/PID/mem, opened before the freeze; -1 until pidref_open_mem() */
};

#define PIDREF_NULL ((struct pidref){.pid = 0, .pidfd = -1, .procfd = -1, .memfd = -1})

/* Returns 0, -ESRCH when there is no such process, or another negative errno. Does not log. */
int pidref_open(pid_t pid, struct pidref *ret);
int pidref_open_mem(struct pidref *ref);
bool pidref_alive(const struct pidref *ref);
void pidref_done(struct pidref *ref);
