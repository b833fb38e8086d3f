/* SPDX-License-Identifier: MIT */
/*
 * --check 'COMMAND': a health check run with /bin/sh -c every --check-interval seconds (default
 * 5); it fires when the command exits with a status other than 0, dies of a signal, or is still
 * running after --check-timeout seconds (default 10; then its process group is killed). The
 * check runs in its own process group with stdin from /dev/null and its output on osmosis's
 * stderr; osmosis watch never waits for it: each tick looks at it without blocking.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/log.h"
#include "watch/watch.h"

#define DEFAULT_INTERVAL_NS (5ull * 1000000000ull)
#define DEFAULT_TIMEOUT_NS  (10ull * 1000000000ull)

static int parse(struct watch_cond *c, const char *arg, char *err, size_t errlen)
{
	if (!arg[0] || strlen(arg) > 4096) {
		snprintf(err, errlen, "needs a shell command");
		return -EINVAL;
	}
	c->command = strdup(arg);
	if (!c->command)
		return -ENOMEM;
	c->every_ns = c->every_ns ? c->every_ns : DEFAULT_INTERVAL_NS;
	c->timeout_ns = c->timeout_ns ? c->timeout_ns : DEFAULT_TIMEOUT_NS;
	c->unit = "";
	snprintf(c->text, sizeof(c->text), "check '%.60s'", arg);
	return 0;
}

static void start(struct watch_cond *c, uint64_t now)
{
	sigset_t none;
	pid_t pid = fork();

	if (pid < 0) {
		log_warn("cannot run the check: %s", strerror(errno));
		return;
	}
	if (pid == 0) {
		int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
		setpgid(0, 0);
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		signal(SIGPIPE, SIG_DFL);
		if (null >= 0)
			dup2(null, STDIN_FILENO);
		dup2(STDERR_FILENO, STDOUT_FILENO);
		execl("/bin/sh", "sh", "-c", c->command, (char *)NULL);
		_exit(127);
	}
	setpgid(pid, pid); /* both sides, so the group exists before either goes on */
	c->child = pid;
	c->child_started = now;
}

static void stop_child(struct watch_cond *c)
{
	if (c->child > 0) {
		kill(-c->child, SIGKILL);
		kill(c->child, SIGKILL);
		while (waitpid(c->child, NULL, 0) < 0 && errno == EINTR)
			;
		c->child = 0;
	}
}

static bool poll(struct watch_cond *c, struct watch *w, uint64_t now, struct watch_fire *ret)
{
	int status;
	pid_t r;

	if (!c->child) {
		if (!c->next_ns)
			c->next_ns = now; /* the first check at once */
		if (now >= c->next_ns) {
			c->next_ns = now + c->every_ns;
			start(c, now);
		}
		return false;
	}
	siginfo_t si = {0};
	/* Peek first: while the exited check is a zombie its process group cannot be reused, so
	 * whatever it left behind in the group can be ended safely before it is reaped. */
	if (waitid(P_PID, (id_t)c->child, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid)
		kill(-c->child, SIGKILL);
	r = waitpid(c->child, &status, WNOHANG);
	if (r == 0) {
		if (now - c->child_started < c->timeout_ns)
			return false;
		stop_child(c);
		ret->value = ret->held_for_s = (double)(now - c->child_started) / 1e9;
		ret->threshold = (double)c->timeout_ns / 1e9;
		snprintf(ret->detail, sizeof(ret->detail),
			 "the check ran past its %.3g s timeout (killed after %.1f s)",
			 ret->threshold, ret->value);
		return true;
	}
	c->child = 0;
	if (r < 0)
		return false;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return false;
	ret->held_for_s = (double)(now - c->child_started) / 1e9;
	ret->threshold = 0;
	if (WIFEXITED(status)) {
		ret->value = WEXITSTATUS(status);
		snprintf(ret->detail, sizeof(ret->detail), "the check exited with status %d",
			 WEXITSTATUS(status));
	} else {
		ret->value = 128 + WTERMSIG(status);
		snprintf(ret->detail, sizeof(ret->detail), "the check was killed by SIG%s",
			 sigabbrev_np(WTERMSIG(status)) ? sigabbrev_np(WTERMSIG(status)) : "?");
	}
	return true;
}

static void done(struct watch_cond *c)
{
	stop_child(c);
	free(c->command);
	c->command = NULL;
}

const struct watch_condition watch_cond_check = {
    .name = "check",
    .arg = "'COMMAND'",
    .help = "a health check (sh -c) that fails or overruns; --check-interval S (default 5), "
	    "--check-timeout S (default 10)",
    .records = "the check's exit status (128+N for signal N), or its run time when it overran",
    .scope = COND_GLOBAL,
    .parse = parse,
    .poll = poll,
    .done = done,
};
