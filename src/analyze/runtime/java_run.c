/* SPDX-License-Identifier: MIT */
/*
 * Running a helper program (jhsdb) bounded in time and output: fork and execve, no shell, no
 * PATH search, the environment given by the caller. The child gets /dev/null as stdin, two
 * pipes as stdout and stderr, the descriptors asked for as 3, 4, ..., and nothing else; it
 * leads its own process group and dies with osmosis (PR_SET_PDEATHSIG). At the deadline the
 * whole group is killed. Every path reaps the child, so no zombie outlives the call, and the
 * group is killed while the child is still unreaped (a zombie keeps its pid, so the group id
 * cannot name some newer process group).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "analyze/runtime/java.h"
#include "base/timeutil.h"
#include "base/util.h"

#define RUN_MAX_KEEP 8
#define RUN_HIGH_FD  64 /* where the child parks descriptors before putting them in place */

/* In the child, between fork and execve: async-signal-safe calls only. */
static _noreturn_ void child(const char *path, char *const argv[], char *const envp[], int devnull,
			     int out, int err, const int *keep, size_t n_keep, pid_t parent)
{
	int src[3 + RUN_MAX_KEEP];
	size_t n = 3 + n_keep;
	sigset_t none;

	if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
		_exit(127);
	setpgid(0, 0);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	for (int s = 1; s < NSIG; s++)
		if (s != SIGKILL && s != SIGSTOP)
			signal(s, SIG_DFL);
	src[0] = devnull;
	src[1] = out;
	src[2] = err;
	for (size_t i = 0; i < n_keep; i++)
		src[3 + i] = keep[i];
	/* Park every source above every target first, so no dup2 overwrites a source. */
	for (size_t i = 0; i < n; i++)
		if ((src[i] = fcntl(src[i], F_DUPFD, RUN_HIGH_FD)) < 0)
			_exit(127);
	for (size_t i = 0; i < n; i++)
		if (dup2(src[i], (int)i) < 0)
			_exit(127);
	syscall(SYS_close_range, (unsigned)n, ~0u, 0u);
	execve(path, argv, envp);
	_exit(127);
}

static int remaining_ms(uint64_t deadline)
{
	uint64_t now = now_ns();
	return now >= deadline ? 0 : (int)MIN((deadline - now) / 1000000 + 1, (uint64_t)INT32_MAX);
}

/* Kill the group, then reap pid. */
static int kill_and_reap(pid_t pid, int *ret_status)
{
	kill(-pid, SIGKILL);
	kill(pid, SIGKILL);
	while (waitpid(pid, ret_status, 0) < 0)
		if (errno != EINTR)
			return -errno;
	return 0;
}

int run_bounded(const char *path, char *const argv[], char *const envp[], const int *keep,
		size_t n_keep, int timeout_ms, size_t max_out, char **ret_out, size_t *ret_len,
		bool *ret_truncated, char *ret_err, size_t err_len, int *ret_status)
{
	_cleanup_close_ int devnull = -1, out_r = -1, out_w = -1, err_r = -1, err_w = -1;
	_cleanup_free_ char *out = NULL;
	char errbuf[1024];
	size_t len = 0, cap = 0, elen = 0;
	bool truncated = false, timed_out = false;
	uint64_t deadline = now_ns() + (uint64_t)MAX(timeout_ms, 1) * 1000000ull;
	pid_t parent = getpid(), pid;
	int p[2], status = 0, r;

	if (n_keep > RUN_MAX_KEEP)
		return -E2BIG;
	devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (devnull < 0)
		return -errno;
	if (pipe2(p, O_CLOEXEC) < 0)
		return -errno;
	out_r = p[0];
	out_w = p[1];
	if (pipe2(p, O_CLOEXEC) < 0)
		return -errno;
	err_r = p[0];
	err_w = p[1];
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0)
		child(path, argv, envp, devnull, out_w, err_w, keep, n_keep, parent);
	close(out_w);
	close(err_w);
	out_w = err_w = -1;

	/* Read both pipes until both close or the deadline passes. */
	while (out_r >= 0 || err_r >= 0) {
		struct pollfd pf[2] = {{.fd = out_r, .events = POLLIN},
				       {.fd = err_r, .events = POLLIN}};
		int ms = remaining_ms(deadline);
		if (!ms) {
			timed_out = true;
			break;
		}
		r = poll(pf, 2, ms);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			r = -errno;
			kill_and_reap(pid, &status);
			return r;
		}
		if (out_r >= 0 && pf[0].revents) {
			char tmp[65536];
			ssize_t n = read(out_r, tmp, sizeof(tmp));
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				close(out_r);
				out_r = -1;
			} else if (len + (size_t)n > max_out) {
				truncated = true; /* read and dropped, so the child never blocks */
			} else {
				if (grow_array((void **)&out, &cap, len + (size_t)n + 1, 1)) {
					kill_and_reap(pid, &status);
					return -ENOMEM;
				}
				memcpy(out + len, tmp, (size_t)n);
				len += (size_t)n;
			}
		}
		if (err_r >= 0 && pf[1].revents) {
			char tmp[4096];
			ssize_t n = read(err_r, tmp, sizeof(tmp));
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				close(err_r);
				err_r = -1;
			} else {
				/* keep the last bytes: an exception's message ends the stream */
				size_t k = (size_t)n;
				if (k >= sizeof(errbuf)) {
					memcpy(errbuf, tmp + k - sizeof(errbuf), sizeof(errbuf));
					elen = sizeof(errbuf);
				} else {
					size_t keep_old = MIN(elen, sizeof(errbuf) - k);
					memmove(errbuf, errbuf + elen - keep_old, keep_old);
					memcpy(errbuf + keep_old, tmp, k);
					elen = keep_old + k;
				}
			}
		}
	}
	/* Both pipes closed: wait for the exit, still within the deadline. */
	while (!timed_out) {
		siginfo_t si = {0};
		if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) < 0 &&
		    errno != EINTR)
			break;
		if (si.si_pid == pid)
			break;
		if (!remaining_ms(deadline)) {
			timed_out = true;
			break;
		}
		nanosleep(&(struct timespec){.tv_nsec = 10 * 1000 * 1000}, NULL);
	}
	r = kill_and_reap(pid, &status);
	if (r < 0)
		return r;
	if (ret_err && err_len) {
		size_t k = MIN(elen, err_len - 1);
		memcpy(ret_err, errbuf + elen - k, k);
		ret_err[k] = 0;
	}
	if (!out && !(out = calloc(1, 1)))
		return -ENOMEM;
	out[len] = 0;
	*ret_out = TAKE_PTR(out);
	*ret_len = len;
	*ret_truncated = truncated;
	*ret_status = status;
	return timed_out ? -ETIME : 0;
}
