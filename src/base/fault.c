/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "base/fault.h"
#include "base/log.h"
#include "base/parse.h"

#define FAULT_NAME(name, method, when) name,
static const char *const fault_names[] = {FAULT_POINTS(FAULT_NAME)};

static bool known(const char *name)
{
	for (size_t i = 0; i < sizeof(fault_names) / sizeof(fault_names[0]); i++)
		if (!strcmp(fault_names[i], name))
			return true;
	return false;
}

static bool gone(pid_t pid)
{
	char path[64], buf[512], *p;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return true;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return true;
	buf[n] = 0;
	p = strrchr(buf, ')');
	return !p || p[1] == 0 || p[2] == 'Z' || p[2] == 'X';
}

/* One entry's action at its point. */
static int act(const char *name, const char *action)
{
	uint64_t ns;
	int64_t pid;

	if (!strcmp(action, "sigkill")) {
		kill(getpid(), SIGKILL);
	} else if (!strcmp(action, "fail")) {
		return log_error(EIO, "fault point %s: injected failure", name);
	} else if (!strncmp(action, "sleep=", 6) && parse_duration_ns(action + 6, &ns) == 0) {
		struct timespec ts = {(time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull)};
		nanosleep(&ts, NULL); /* a signal ends it early */
	} else if (!strncmp(action, "hang=", 5) && parse_duration_ns(action + 5, &ns) == 0) {
		struct timespec ts = {(time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull)};
		while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
			;
	} else if (!strncmp(action, "kill=", 5) && parse_i64(action + 5, 10, &pid) == 0 &&
		   pid > 0) {
		kill((pid_t)pid, SIGKILL);
		/* Until it has exited (a zombie or gone; a loaded machine may take a while), so
		 * that what follows the point meets a target that is gone, not one dying. */
		for (int i = 0; i < 5000 && !gone((pid_t)pid); i++)
			usleep(1000);
	} else if (!strncmp(action, "sigkill-after=", 14) &&
		   parse_duration_ns(action + 14, &ns) == 0) {
		/* A killer that strikes while osmosis is in its next step (a long syscall). */
		pid_t self = getpid();
		if (fork() == 0) {
			struct timespec ts = {(time_t)(ns / 1000000000ull),
					      (long)(ns % 1000000000ull)};
			nanosleep(&ts, NULL);
			kill(self, SIGKILL);
			_exit(0);
		}
	} else if (!strncmp(action, "write=", 6)) {
		int fd = open(action + 6, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
		if (fd >= 0) {
			if (write(fd, "x", 1) != 1)
				log_debug("fault point %s: cannot write %s", name, action + 6);
			/* Until the reader has taken the byte (a loaded machine may not run it
			 * for a while), then a moment for it to act. */
			int queued = 0;
			for (int i = 0;
			     i < 30000 && ioctl(fd, FIONREAD, &queued) == 0 && queued > 0; i++)
				usleep(1000);
			close(fd);
		}
		usleep(200000); /* let the reader act */
	}
	return 0;
}

int fault_point(const char *name)
{
	const char *spec = getenv("OSMOSIS_FAULT");
	size_t nl = strlen(name);

	if (!spec)
		return 0;
	if (!known(name)) {
		/* A point missing from FAULT_POINTS would escape the tests' sweep. */
		log_warn("fault point %s is not in FAULT_POINTS", name);
		abort();
	}
	/* Entries separated by ';', each POINT:ACTION; every entry for this point acts, in order.
	 */
	for (const char *e = spec; *e;) {
		const char *end = strchrnul(e, ';'), *colon = memchr(e, ':', (size_t)(end - e));
		if (colon && (size_t)(colon - e) == nl && !strncmp(e, name, nl)) {
			char action[512];
			size_t al = (size_t)(end - colon - 1);
			if (al >= sizeof(action))
				return log_error(EINVAL, "fault point %s: action too long", name);
			memcpy(action, colon + 1, al);
			action[al] = 0;
			int r = act(name, action);
			if (r < 0)
				return r;
		}
		e = *end ? end + 1 : end;
	}
	return 0;
}
