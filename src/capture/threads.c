/* SPDX-License-Identifier: MIT */
/*
 * Per-thread state taken inside the freeze, common to every capture method: registers (arch),
 * the stop's siginfo, the blocked mask and the pending set. All are ptrace requests of a few
 * microseconds each; nothing here reads /proc.
 */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/ptrace.h>

#include "base/log.h"
#include "capture/capture.h"

static uint64_t pending_set(pid_t tid, int flags)
{
	struct __ptrace_peeksiginfo_args a = {.off = 0, .flags = flags, .nr = 32};
	siginfo_t si[32];
	uint64_t set = 0;
	long n;

	for (;;) {
		n = ptrace(PTRACE_PEEKSIGINFO, tid, &a, si);
		if (n <= 0)
			break;
		for (long i = 0; i < n; i++)
			if (si[i].si_signo > 0 && si[i].si_signo <= 64)
				set |= 1ull << (si[i].si_signo - 1);
		a.off += (uint64_t)n;
		if (n < 32 || a.off > 4096)
			break;
	}
	return set;
}

int capture_thread_state(struct osm_process *p)
{
	for (size_t i = 0; i < p->n_threads; i++) {
		struct osm_thread *t = p->threads[i];
		int r;

		if (t->gone || !t->stopped)
			continue;
		r = arch_get_regs(t->tid, &t->regs, t->xstate_buf);
		if (r == -ESRCH) {
			t->gone = true; /* killed while held (SIGKILL reaches a stopped thread) */
			continue;
		}
		if (r < 0)
			return log_error(r, "cannot read registers of thread %d of pid %d: %m",
					 t->tid, p->pid);
		if (ptrace(PTRACE_GETSIGINFO, t->tid, 0, &t->siginfo) < 0)
			memset(&t->siginfo, 0, sizeof(t->siginfo));
		if (ptrace(PTRACE_GETSIGMASK, t->tid, sizeof(t->sighold), &t->sighold) < 0)
			t->sighold = 0;
		t->sigpend =
		    pending_set(t->tid, 0) | pending_set(t->tid, PTRACE_PEEKSIGINFO_SHARED);
		t->syscall_nr = arch_regs_syscall(&t->regs, t->syscall_args);
		t->captured = true;
	}
	return 0;
}
