/* SPDX-License-Identifier: MIT */
/*
 * A process using Syscall User Dispatch the way Wine and Proton do: the leader runs "Windows
 * code" with its selector at BLOCK, so that every syscall instruction it executes outside the
 * allowed range raises SIGSYS, and a SIGSYS handler (the "Unix side") flips the selector to ALLOW,
 * performs the syscall itself and puts the result in the interrupted context. The leader spends
 * its time computing between such calls, so it is mostly stopped in user code with BLOCK set.
 *
 * A syscall injected into the leader would be dispatched to the handler (which would then run it
 * as its own, or worse); osmosis must never choose this thread. verify checks that every SIGSYS
 * the handler saw was one the leader made, that the handler is still installed, and the signal
 * state of both threads.
 *
 *   victim_sud          the leader under SUD, a waiter thread without it
 *   victim_sud all      the waiter enables SUD too (selector ALLOW while it waits): no thread of
 *                       the process may be injected into
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/ucontext.h>

#include "hostile.h"

#ifndef PR_SET_SYSCALL_USER_DISPATCH
#define PR_SET_SYSCALL_USER_DISPATCH 59
#endif
#define DISPATCH_ON    1
#define SELECTOR_ALLOW 0
#define SELECTOR_BLOCK 1
#define SYS_USER_DISP  2 /* si_code of a dispatched syscall */

static __thread volatile char selector = SELECTOR_ALLOW;
static atomic_long dispatched, made, foreign;
static atomic_bool stop;
static sigset_t leader_mask, waiter_mask;

static void on_sigsys(int sig, siginfo_t *si, void *ctx)
{
	ucontext_t *uc = ctx;
	greg_t *g = uc->uc_mcontext.gregs;

	(void)sig;
	selector = SELECTOR_ALLOW; /* the Unix side runs with syscalls allowed */
	if (si->si_code != SYS_USER_DISP) {
		atomic_fetch_add(&foreign, 1);
		return;
	}
	/* Only getppid is made by the leader's "Windows code": anything else was not ours. */
	if (si->si_syscall != SYS_getppid) {
		atomic_fetch_add(&foreign, 1);
		g[REG_RAX] = -ENOSYS;
		return;
	}
	atomic_fetch_add(&dispatched, 1);
	g[REG_RAX] = syscall(SYS_getppid);
}

/* A syscall instruction in "Windows code": trapped while the selector is BLOCK. */
static long windows_getppid(void)
{
	long ret = SYS_getppid;
	__asm__ volatile("syscall" : "+a"(ret) : : "rcx", "r11", "memory");
	return ret;
}

static void *waiter(void *arg)
{
	bool all = arg != NULL;

	if (all && prctl(PR_SET_SYSCALL_USER_DISPATCH, DISPATCH_ON, 0, 0, &selector) != 0) {
		perror("prctl");
		exit(2);
	}
	pthread_sigmask(SIG_BLOCK, NULL, &waiter_mask);
	hostile_wait_verify();
	atomic_store(&stop, true);
	return NULL;
}

int main(int argc, char **argv)
{
	struct sigaction sa = {.sa_sigaction = on_sigsys, .sa_flags = SA_SIGINFO};
	bool all = argc > 1 && !strcmp(argv[1], "all");
	pthread_t w;
	volatile uint64_t work = 0;

	sigemptyset(&sa.sa_mask);
	sigaction(SIGSYS, &sa, NULL);
	hostile_block_control_signals();
	pthread_sigmask(SIG_BLOCK, NULL, &leader_mask);
	pthread_create(&w, NULL, waiter, all ? "all" : NULL);
	if (prctl(PR_SET_SYSCALL_USER_DISPATCH, DISPATCH_ON, 0, 0, &selector) != 0) {
		perror("prctl(PR_SET_SYSCALL_USER_DISPATCH)");
		return 2;
	}
	selector = SELECTOR_BLOCK;
	long ppid = windows_getppid(); /* the handler leaves the selector at ALLOW */
	made = 1;
	if (ppid != getppid() || dispatched != 1) {
		fprintf(stderr, "syscall user dispatch does not work here\n");
		return 2;
	}
	printf("ready pid=%d sud=leader%s\n", getpid(), all ? ",waiter" : "");
	fflush(stdout);
	selector = SELECTOR_BLOCK;

	while (!atomic_load(&stop)) {
		/* A frame of "Windows code": compute (a fraction of a millisecond), one syscall
		 * through the dispatcher, then the Unix side sleeps a millisecond (selector ALLOW),
		 * as a game waiting for its next frame: stopped in user code with BLOCK a good part
		 * of the time, without taking a whole CPU from a small machine. */
		for (int i = 0; i < 500000; i++)
			work = work * 6364136223846793005ull + 1442695040888963407ull;
		long r = windows_getppid();
		atomic_fetch_add(&made, 1);
		if (r != getppid())
			atomic_fetch_add(&foreign, 1);
		usleep(1000);
		selector = SELECTOR_BLOCK;
	}
	selector = SELECTOR_ALLOW;
	pthread_join(w, NULL);

	struct sigaction now;
	const char *why = NULL;
	sigaction(SIGSYS, NULL, &now);
	if (now.sa_sigaction != on_sigsys)
		why = "the SIGSYS handler was reset";
	else if (atomic_load(&foreign))
		why = "the SIGSYS handler saw a syscall the program did not make";
	else if (atomic_load(&dispatched) != atomic_load(&made))
		why = "dispatched and made syscalls differ";
	else
		why = hostile_signal_state_changed(&leader_mask);
	return hostile_verdict(why);
}
