/* SPDX-License-Identifier: MIT */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>

#include "arch.h"
#include "snapshot/describe.h"

const struct osm_fd *process_find_fd(const struct osm_process *p, int fd)
{
	for (size_t i = 0; i < p->n_fds; i++)
		if (p->fds[i].fd == fd)
			return &p->fds[i];
	return NULL;
}

void describe_fd(const struct osm_fd *f, char *buf, size_t len)
{
	if (!strcmp(f->type, "pipe")) {
		int acc = (int)(f->flags & O_ACCMODE);
		snprintf(buf, len, "%s %s", f->target ? f->target : "pipe",
			 acc == O_RDONLY   ? "read end"
			 : acc == O_WRONLY ? "write end"
					   : "both ends");
	} else if (!strcmp(f->type, "socket")) {
		int n = snprintf(buf, len, "%s %s", f->proto[0] ? f->proto : "socket",
				 f->sock_state[0] ? f->sock_state : "");
		if (n < 0 || (size_t)n >= len)
			return;
		if (f->local || f->remote)
			n += snprintf(buf + n, len - (size_t)n, " %s%s%s", f->local ? f->local : "",
				      f->remote ? " -> " : "", f->remote ? f->remote : "");
		if (f->peer_inode && (size_t)n < len)
			snprintf(buf + n, len - (size_t)n, " (peer socket:[%llu])",
				 (unsigned long long)f->peer_inode);
	} else if (!strcmp(f->type, "epoll")) {
		snprintf(buf, len, "epoll watching %zu descriptor%s", f->n_epoll_tfds,
			 f->n_epoll_tfds == 1 ? "" : "s");
	} else {
		snprintf(buf, len, "%s", f->target ? f->target : f->type);
	}
}

static void fd_words(const struct osm_process *p, long fd, char *buf, size_t len)
{
	const struct osm_fd *f = fd >= 0 && fd <= INT32_MAX ? process_find_fd(p, (int)fd) : NULL;
	char what[256];

	if (!f) {
		snprintf(buf, len, "fd %ld", fd);
		return;
	}
	describe_fd(f, what, sizeof(what));
	snprintf(buf, len, "fd %ld: %s", fd, what);
}

void describe_wait(const struct osm_process *p, const struct osm_thread *t, char *buf, size_t len)
{
	const char *name = arch_syscall_name(t->syscall_nr);
	const uint64_t *a = t->syscall_args;
	char fdw[320];

	buf[0] = 0;
	if (t->syscall_nr < 0) {
		if (t->state == 'R')
			snprintf(buf, len, "running");
		return;
	}
	if (!name) {
		snprintf(buf, len, "syscall %ld", t->syscall_nr);
		return;
	}
	if (!strcmp(name, "read") || !strcmp(name, "write") || !strcmp(name, "recvfrom") ||
	    !strcmp(name, "sendto") || !strcmp(name, "recvmsg") || !strcmp(name, "sendmsg") ||
	    !strcmp(name, "accept") || !strcmp(name, "accept4") || !strcmp(name, "connect") ||
	    !strcmp(name, "readv") || !strcmp(name, "writev") || !strcmp(name, "pread64") ||
	    !strcmp(name, "flock") || !strcmp(name, "fsync") || !strcmp(name, "epoll_wait") ||
	    !strcmp(name, "epoll_pwait") || !strcmp(name, "epoll_pwait2")) {
		fd_words(p, (long)(int)a[0], fdw, sizeof(fdw));
		snprintf(buf, len, "%s(%s)", name, fdw);
	} else if (!strcmp(name, "futex")) {
		unsigned op = (unsigned)a[1] & 0x7f; /* without PRIVATE and CLOCK_REALTIME */
		snprintf(buf, len, "futex %s on 0x%llx (expected %lld)",
			 op == 0 || op == 9 ? "wait"
			 : op == 6	    ? "lock-pi"
					    : "op",
			 (unsigned long long)a[0], (long long)(int)a[2]);
	} else if (!strcmp(name, "wait4") || !strcmp(name, "waitid")) {
		long who = !strcmp(name, "wait4") ? (long)(int)a[0] : (long)(int)a[1];
		if (who > 0)
			snprintf(buf, len, "%s(child %ld)", name, who);
		else
			snprintf(buf, len, "%s(any child)", name);
	} else if (!strcmp(name, "poll") || !strcmp(name, "ppoll")) {
		snprintf(buf, len, "%s(%llu fds)", name, (unsigned long long)a[1]);
	} else if (!strcmp(name, "restart_syscall")) {
		snprintf(buf, len, "a call resumed after a stop (restart_syscall)");
	} else if (!strcmp(name, "select") || !strcmp(name, "pselect6")) {
		snprintf(buf, len, "%s(%llu fds)", name, (unsigned long long)a[0]);
	} else {
		snprintf(buf, len, "%s", name);
	}
}
