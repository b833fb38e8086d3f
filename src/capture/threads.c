/* SPDX-License-Identifier: MIT */
/*
 * Per-thread state taken inside the freeze, common to every capture method: registers (arch),
 * the stop's siginfo, the blocked mask and the pending set. All are ptrace requests of a few
 * microseconds each; nothing here reads /proc.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/ptrace.h>

#include "base/log.h"
#include "capture/capture.h"
#include "snapshot/data_calls.h"
#include "snapshot/describe.h"

/*
 * Whether the stop met t waiting in the syscall its registers name. A stop that interrupted the
 * wait leaves a restart code or EINTR in the result. A stop on the way out of a call that had
 * ended keeps the call's number too, with its result: for a read or a write on a descriptor
 * that is no wait (a redis or a pgbench caught just after a non-blocking read or write: taken
 * for waits, both ends of a connection would "wait" on each other), unless the stop cut short a
 * write blocked on a blocking descriptor (it returns what it wrote so far: fewer bytes than
 * asked, by a thread sleeping just before the freeze). Other calls keep their number: a futex
 * wait that returned sits in its lock's or condition's loop, whose memory says what it waits
 * for (a GIL waiter between two of its 5 ms waits).
 */
static bool waits_in(const struct osm_process *p, const struct osm_thread *t, long nr,
		     int64_t result)
{
	enum data_call kind;
	const struct osm_fd *f;

	if (nr < 0)
		return false;
	kind = data_call_of(arch_syscall_name(nr));
	if (arch_syscall_interrupted(result) || kind == DATA_NONE)
		return true;
	if (kind == DATA_READ || result <= 0 || t->state == 'R')
		return false;
	f = process_find_fd(p, (int)t->syscall_args[0]);
	if (!f || (f->flags & O_NONBLOCK))
		return false;
	return kind == DATA_WRITE || (uint64_t)result < t->syscall_args[2];
}

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
		int64_t result;
		long nr = arch_regs_syscall(&t->regs, t->syscall_args, &result);
		/* Back in the call an injection interrupted (resumed as restart_syscall, with its
		 * arguments in place): that call, not "a call resumed after a stop". */
		if (t->resumed_nr >= 0 && arch_syscall_is_restart(nr) &&
		    arch_regs_pc(&t->regs) == t->resumed_pc)
			nr = t->resumed_nr;
		t->syscall_nr = waits_in(p, t, nr, result) ? nr : -1;
		t->captured = true;
	}
	return 0;
}
