/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
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

int fault_point(const char *name)
{
	const char *spec = getenv("OSMOSIS_FAULT"), *colon, *action;
	size_t nl = strlen(name);
	uint64_t ns;
	int64_t pid;

	if (!spec)
		return 0;
	if (!known(name)) {
		/* A point missing from FAULT_POINTS would escape the tests' sweep. */
		log_warn("fault point %s is not in FAULT_POINTS", name);
		abort();
	}
	colon = strchr(spec, ':');
	if (!colon || (size_t)(colon - spec) != nl || strncmp(spec, name, nl))
		return 0;
	action = colon + 1;
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
		usleep(20000); /* let the kernel finish the kill */
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
			close(fd);
		}
		usleep(200000); /* let the reader act */
	}
	return 0;
}
