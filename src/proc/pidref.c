/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "base/util.h"
#include "proc/pidref.h"

int pidref_open(pid_t pid, struct pidref *ret)
{
	struct pidref ref = PIDREF_NULL;
	char path[32];

	ref.pid = pid;
	ref.pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (ref.pidfd < 0)
		return -errno;
	snprintf(path, sizeof(path), "/proc/%d", pid);
	ref.procfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (ref.procfd < 0) {
		int r = -errno;
		close(ref.pidfd);
		return r == -ENOENT ? -ESRCH : r;
	}
	/* The /proc directory was opened after the pidfd: if the pidfd's process is still alive
	 * now, the directory belongs to it (pids are unique among live processes). */
	if (!pidref_alive(&ref)) {
		pidref_done(&ref);
		return -ESRCH;
	}
	*ret = ref;
	return 0;
}

int pidref_open_mem(struct pidref *ref)
{
	if (ref->memfd >= 0)
		return 0;
	ref->memfd = openat(ref->procfd, "mem", O_RDONLY | O_CLOEXEC);
	return ref->memfd < 0 ? -errno : 0;
}

bool pidref_alive(const struct pidref *ref)
{
	if (ref->pidfd < 0)
		return false;
	return syscall(SYS_pidfd_send_signal, ref->pidfd, 0, NULL, 0) == 0 || errno == EPERM;
}

void pidref_done(struct pidref *ref)
{
	if (ref->memfd >= 0)
		close(ref->memfd);
	if (ref->procfd >= 0)
		close(ref->procfd);
	if (ref->pidfd >= 0)
		close(ref->pidfd);
	*ref = PIDREF_NULL;
}
