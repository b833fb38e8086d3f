/* SPDX-License-Identifier: MIT */
/*
 * A worker thread sandboxed with a seccomp filter whose answer to any syscall outside a short
 * allow-list is SECCOMP_RET_TRAP (SIGSYS), as sandboxes that emulate or report forbidden calls
 * do (Chromium's broker, gVisor's systrap). The worker blocks in read() on a pipe; its SIGSYS
 * handler counts every trap. A syscall injected into it would be trapped (a SIGSYS the program
 * never caused, and the injection's result lost).
 *
 *   victim_seccomp_trap       the worker filtered; the leader (the waiter) is not
 *   victim_seccomp_trap all   the leader installs the same filter after starting the worker: no
 *                             thread may be injected into
 *
 * verify: the worker reads the byte the leader writes, no SIGSYS was ever raised, handler and
 * signal state unchanged.
 */
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#include "hostile.h"

static int pipefd[2];
static atomic_int traps, worker_ok, installed;
static const char *worker_why;

static void on_sigsys(int sig, siginfo_t *si, void *ctx)
{
	(void)sig;
	(void)si;
	(void)ctx;
	atomic_fetch_add(&traps, 1);
}

static int install_filter(void)
{
	static const int allowed[] = {
	    SYS_read,	      SYS_write,	SYS_futex,	    SYS_exit,
	    SYS_exit_group,   SYS_rt_sigreturn, SYS_rt_sigprocmask, SYS_rt_sigtimedwait,
	    SYS_getpid,	      SYS_madvise,	SYS_munmap,	    SYS_rt_sigpending,
	    SYS_rt_sigaction, SYS_gettid,	SYS_tgkill,	    SYS_openat,
	    SYS_close,	      SYS_fstat,	SYS_newfstatat,	    SYS_lseek,
	    SYS_mmap,	      SYS_brk};
	struct sock_filter f[64];
	size_t n = 0, k = sizeof(allowed) / sizeof(allowed[0]);

	f[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
					      offsetof(struct seccomp_data, nr));
	for (size_t i = 0; i < k; i++)
		f[n++] = (struct sock_filter)BPF_JUMP(
		    BPF_JMP | BPF_JEQ | BPF_K, (unsigned)allowed[i], (unsigned char)(k - i), 0);
	f[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRAP);
	f[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
	struct sock_fprog prog = {.len = (unsigned short)n, .filter = f};
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
		return -1;
	return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog);
}

static void *worker(void *arg)
{
	sigset_t mask;
	char c = 0;

	(void)arg;
	if (install_filter() != 0) {
		perror("seccomp");
		exit(2);
	}
	pthread_sigmask(SIG_BLOCK, NULL, &mask);
	atomic_store(&installed, 1);
	ssize_t n = read(pipefd[0], &c, 1);
	if (n != 1 || c != 'v')
		worker_why = "the worker's read() did not return the byte written";
	else
		worker_why = hostile_signal_state_changed(&mask);
	atomic_store(&worker_ok, 1);
	return NULL;
}

/* Whether the worker is blocked in read() now (/proc's "syscall" file). */
static bool worker_blocked(pid_t tid)
{
	char path[64], buf[256];
	FILE *f;
	long nr = -1;

	snprintf(path, sizeof(path), "/proc/self/task/%d/syscall", tid);
	f = fopen(path, "re");
	if (f && fgets(buf, sizeof(buf), f))
		nr = strtol(buf, NULL, 10);
	if (f)
		fclose(f);
	return nr == SYS_read;
}

static atomic_int worker_tid;

static void *worker_start(void *arg)
{
	atomic_store(&worker_tid, (int)syscall(SYS_gettid));
	return worker(arg);
}

int main(int argc, char **argv)
{
	struct sigaction sa = {.sa_sigaction = on_sigsys, .sa_flags = SA_SIGINFO};
	bool all = argc > 1 && !strcmp(argv[1], "all");
	sigset_t leader_mask;
	pthread_t w;

	sigemptyset(&sa.sa_mask);
	sigaction(SIGSYS, &sa, NULL);
	if (pipe(pipefd) != 0)
		return 2;
	hostile_block_control_signals();
	pthread_sigmask(SIG_BLOCK, NULL, &leader_mask);
	pthread_create(&w, NULL, worker_start, NULL);
	while (!atomic_load(&installed) || !worker_blocked(atomic_load(&worker_tid)))
		usleep(1000);
	if (all && install_filter() != 0) {
		perror("seccomp");
		return 2;
	}
	printf("ready pid=%d worker=%d filtered=%s\n", getpid(), atomic_load(&worker_tid),
	       all ? "all" : "worker");
	fflush(stdout);
	hostile_wait_verify();
	if (write(pipefd[1], "v", 1) != 1)
		return hostile_verdict("cannot write the pipe");
	pthread_join(w, NULL);

	struct sigaction now;
	const char *why = worker_why;
	sigaction(SIGSYS, NULL, &now);
	if (!why && now.sa_sigaction != on_sigsys)
		why = "the SIGSYS handler was reset";
	if (!why && atomic_load(&traps))
		why = "a SIGSYS was raised by the filter";
	if (!why)
		why = hostile_signal_state_changed(&leader_mask);
	return hostile_verdict(why);
}
