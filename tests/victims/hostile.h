/* SPDX-License-Identifier: MIT */
/*
 * What the hostile victims share (victim_sud.c, victim_vdso.c, victim_badsp.c,
 * victim_seccomp_trap.c): each is a program shaped like the real ones that do the hostile thing,
 * with the life of every victim (tests/victims/victim.c): it sets itself up, prints one line
 * "ready pid=N ..." once its state is in place, waits, and on SIGUSR2 checks that nothing about it
 * changed (registers of the thread that matters, signal masks, pending signals, handlers, counts of
 * the signals it expects), prints "verify ok" or "verify FAIL: why" and exits 0 or 1. SIGTERM ends
 * it quietly.
 *
 * One thread (the "waiter", never the leader) takes SIGUSR2 and SIGTERM with sigwait(); every
 * other thread blocks them, so the hostile thread is never the one a signal interrupts.
 */
#pragma once

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Block SIGUSR2 and SIGTERM in the calling thread (and the threads it creates afterwards). */
static inline void hostile_block_control_signals(void)
{
	sigset_t s;
	sigemptyset(&s);
	sigaddset(&s, SIGUSR2);
	sigaddset(&s, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &s, NULL);
}

/* In the waiter: wait for SIGUSR2 (returns true) or SIGTERM (exits 0 at once). */
static inline bool hostile_wait_verify(void)
{
	sigset_t s;
	int sig = 0;
	sigemptyset(&s);
	sigaddset(&s, SIGUSR2);
	sigaddset(&s, SIGTERM);
	while (sigwait(&s, &sig) != 0 || (sig != SIGUSR2 && sig != SIGTERM))
		;
	if (sig == SIGTERM)
		_exit(0);
	return true;
}

/* Whether the calling thread's blocked mask is still `want` and nothing is pending. */
static inline const char *hostile_signal_state_changed(const sigset_t *want)
{
	sigset_t now, pend;
	pthread_sigmask(SIG_BLOCK, NULL, &now);
	for (int s = 1; s < NSIG; s++)
		if (s != SIGKILL && s != SIGSTOP && sigismember(&now, s) != sigismember(want, s))
			return "a thread's blocked signal mask changed";
	sigpending(&pend);
	for (int s = 1; s < NSIG; s++)
		if (sigismember(&pend, s))
			return "a signal is pending that nobody sent";
	return NULL;
}

static inline int hostile_verdict(const char *why)
{
	if (why) {
		printf("verify FAIL: %s\n", why);
		fflush(stdout);
		return 1;
	}
	printf("verify ok\n");
	fflush(stdout);
	return 0;
}
