/* SPDX-License-Identifier: MIT */
/*
 * Running a syscall inside a thread osmosis holds in a ptrace stop, then putting the thread back
 * exactly as it was: the foundation of the capture methods that need the target's own hands (a
 * copy-on-write clone, a userfaultfd). The architecture-specific parts are in arch/<arch>/.
 *
 *   inject_begin   save the thread's registers; find a syscall instruction in the target (the
 *                  one the thread is stopped after, else one in the vDSO)
 *   inject_syscall point the thread at it with the number and arguments, step it through the
 *                  syscall with PTRACE_SYSCALL (entry stop, exit stop), read the result
 *   inject_end     restore the registers, with an interrupted syscall's restart done by hand
 *
 * Known window: between inject_syscall setting the registers and inject_end restoring them, a
 * SIGKILL of osmosis lets the kernel resume the thread with the injected registers. For short
 * syscalls (mmap, munmap, userfaultfd, close, wait4) that is tens of microseconds; long ones go
 * through the trampoline below, which closes it.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "arch.h"

struct inject {
	pid_t tid;
	int procfd; /* the target's /proc/PID directory (borrowed) */
	arch_gregs_t saved;
	uint64_t saved_mask; /* the thread's blocked signals when injection began */
	uint64_t insn;	     /* address of a syscall instruction in the target */
	bool active;	     /* registers changed and not yet restored */
	bool in_sigstop;     /* left in a signal-delivery-stop by a signal the injection raised */
	int lost_signal;     /* a signal from outside that arrived while injecting; re-send it */
	int fault_signal;    /* a signal the injected instruction raised (suppressed, never sent) */
	int interrupted;     /* -EINTR or -ETIMEDOUT: osmosis was told to stop while injecting */
	pid_t child;	     /* the task a clone-like syscall created (PTRACE_EVENT_CLONE/FORK) */
	uint64_t plain_insn; /* the syscall instruction found by inject_begin */
	uint64_t tramp;	     /* the trampoline page in the target, or 0 */
};

/*
 * Whether a thread, held by us in a ptrace stop, may run an injected syscall at all: NULL when
 * it may, else a static reason. Refused: a thread under a seccomp filter (the filter judges an
 * injected syscall like the thread's own and may kill the process, or trap it with SIGSYS); a
 * thread under Syscall User Dispatch (PTRACE_GET_SYSCALL_USER_DISPATCH_CONFIG, Linux 6.4: an
 * injected syscall would be turned into a SIGSYS to the program's own handler, which runs it as
 * the program's, and a blocked SIGSYS would reset the handler); and, on a kernel with Syscall
 * User Dispatch that cannot report it, every thread. Does not log.
 */
const char *inject_thread_refusal(int procfd, pid_t tid);

/* tid must be in a ptrace stop held by us and not in a signal-delivery-stop. procfd is the
 * target's /proc/PID directory, memfd its /proc/PID/mem; auxv its auxiliary vector (to find the
 * vDSO). The syscall instruction used is the one the thread is stopped after, else the vDSO's,
 * and only where the target's memory map says it is executable now (a program can make its vDSO
 * PROT_NONE). No injection touches the thread's stack: a thread whose stack pointer is invalid
 * is as safe as any. Returns 0, -ENOEXEC when no usable instruction exists, or another negative
 * errno; does not log. */
int inject_begin(struct inject *in, pid_t tid, int procfd, int memfd, const uint8_t *auxv,
		 size_t auxv_len);
/* Run syscall nr with args; *ret gets its return value (negative errno on failure). Returns 0 or
 * a negative errno of the machinery itself: -EFAULT when the injected instruction raised a
 * signal (in->fault_signal; the syscall did not run, the signal is never delivered), -ESRCH
 * when the thread died, -EIO after too many unexpected stops. The thread ends in a
 * syscall-exit-stop, or in the signal-delivery-stop of the fault until inject_end.
 * A signal to osmosis or the watchdog while the thread runs the syscall does not abandon it
 * mid-way (its registers are not ours to leave): the syscall is waited for, a little longer, and
 * in->interrupted records the request. */
int inject_syscall(struct inject *in, long nr, const uint64_t args[6], int64_t *ret);
/* A traced task about to make a syscall of its own code (the trampoline's next one, or the
 * intermediate's): resume it with PTRACE_SYSCALL until that syscall's exit-stop (a restarted
 * syscall is followed through its restart) and give its result in *ret. Uses in->tid and
 * records in->child, lost and fault signals as inject_syscall does. Returns 0 or a negative
 * errno of the machinery. */
int inject_follow_syscall(struct inject *in, int64_t *ret);
/* Restore the registers and the blocked signal mask (idempotent). A thread stopped by a fault
 * of the injection leaves that stop with the signal discarded and ends in an ordinary
 * interrupt stop, running no instruction of its own meanwhile. Returns 0 or a negative errno. */
int inject_end(struct inject *in);

/*
 * A long syscall (the clone) goes through a trampoline page (arch trampoline.S) mapped in the
 * target, so that if osmosis dies while the thread is in it, the thread restores its own
 * registers and goes on where it was; without it the thread would resume with the injected
 * registers. The page's mmap and munmap are short plain injections. memfd_rw is the target's
 * /proc/PID/mem opened for writing. Both return 0 or a negative errno; do not log.
 */
int inject_trampoline_map(struct inject *in, int memfd_rw);
int inject_trampoline_unmap(struct inject *in);

/* Whether thread tid of the process whose /proc directory is procfd runs under a seccomp filter
 * (or strict mode), from /proc (no stop needed). An injected syscall is checked against the
 * thread's filter like its own, and a filter's answer to a syscall it does not expect can be to
 * kill the process (systemd's SystemCallFilter= does by default): osmosis never injects into
 * such a thread. */
bool inject_thread_filtered(int procfd, pid_t tid);

/* For a thread not held by a freeze: PTRACE_SEIZE it and hold it in an interrupt stop, ready
 * for inject_begin. Call under guard_hold_begin (freeze/guard.h). Returns 0; -EAGAIN when it is
 * in a group stop (SIGSTOP) or a signal came first (it is let go at once with the signal);
 * -EINTR or -ETIMEDOUT when osmosis was told to stop before the thread stopped (a thread in an
 * uninterruptible wait, such as a vfork parent, may never stop: it stays seized until osmosis
 * exits, which then detaches it); or another negative errno. */
int inject_seize(pid_t tid);
/* Wait for tid's next ptrace stop: 0 with *status, -ESRCH if it died instead, -EINTR or
 * -ETIMEDOUT when osmosis was told to stop first (guard_check), or another negative errno. */
int inject_wait_stop(pid_t tid, int *status);
/* Let a thread held by inject_seize go, re-delivering sig (0 for none). */
void inject_release(pid_t tid, int sig);

/*
 * One way into a target for every injector (the clone, its reaping, pre-copy's userfaultfd, the
 * tidying of what a killed osmosis left): run fn inside one thread of t that can safely run an
 * injected syscall (inject_thread_refusal, a verified syscall instruction).
 *
 * Threads the freeze holds are used as they are (not one in a group stop or with a signal in
 * hand); when the freeze holds none of t's threads, threads are seized one at a time, each let
 * go before the next. All of it is under the --max-pause watchdog (guard_hold_begin). fn gets
 * an injection begun (inject_begin done) and runs its syscalls; inject_end is called after it
 * (fn may call it earlier). fn returns 0 or an error of the machinery (inject_syscall's);
 * the results of its syscalls go back through ctx. A thread where fn's injection faulted (-EFAULT:
 * the signal was suppressed and the thread restored) or found no instruction (-ENOEXEC) is passed
 * over for the next; any other result of fn is returned as it is. A signal from outside met while
 * injecting is given back to the thread (at the thaw for a held one).
 *
 * Returns fn's result; -EAGAIN with *why (static) when no thread could be used; -EINTR or
 * -ETIMEDOUT when osmosis was told to stop. *ret_tid (may be NULL) gets the thread used. Does
 * not log.
 */
struct target;
typedef int (*inject_fn)(struct inject *in, void *ctx);
int inject_in_safe_thread(struct target *t, inject_fn fn, void *ctx, pid_t *ret_tid,
			  const char **why);
/* Before the freeze: whether some thread of t could run an injected syscall now (each thread
 * checked is held for microseconds). Returns 0, or -EAGAIN with *why, or -EINTR/-ETIMEDOUT. */
int inject_probe(struct target *t, const char **why);
