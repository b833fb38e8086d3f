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
	arch_gregs_t saved;
	uint64_t insn;	     /* address of a syscall instruction in the target */
	bool active;	     /* registers changed and not yet restored */
	int lost_signal;     /* a signal that arrived while injecting; re-send it after the thaw */
	pid_t child;	     /* the task a clone-like syscall created (PTRACE_EVENT_CLONE/FORK) */
	uint64_t plain_insn; /* the syscall instruction found by inject_begin */
	uint64_t tramp;	     /* the trampoline page in the target, or 0 */
};

/* tid must be in a ptrace stop held by us and not in a signal-delivery-stop. memfd is the
 * target's /proc/PID/mem; auxv its auxiliary vector (to find the vDSO). Returns 0 or a negative
 * errno; does not log. */
int inject_begin(struct inject *in, pid_t tid, int memfd, const uint8_t *auxv, size_t auxv_len);
/* Run syscall nr with args; *ret gets its return value (negative errno on failure). Returns 0 or
 * a negative errno of the machinery itself. The thread ends in a syscall-exit-stop. */
int inject_syscall(struct inject *in, long nr, const uint64_t args[6], int64_t *ret);
/* Restore the registers (idempotent). Returns 0 or a negative errno. */
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
 * (or strict mode). An injected syscall is checked against the thread's filter like its own, and
 * a filter's answer to a syscall it does not expect can be to kill the process (systemd's
 * SystemCallFilter= does by default): osmosis never injects into such a thread. */
bool inject_thread_filtered(int procfd, pid_t tid);

/* For a thread not held by a freeze: PTRACE_SEIZE it and hold it in an interrupt stop, ready
 * for inject_begin. Returns 0; -EAGAIN when it is in a group stop (SIGSTOP) or a signal came
 * first (it is let go at once with the signal); or another negative errno. */
int inject_seize(pid_t tid);
/* Wait for tid's next ptrace stop (EINTR retried): 0 with *status, -ESRCH if it died instead,
 * or another negative errno. */
int inject_wait_stop(pid_t tid, int *status);
/* Let a thread held by inject_seize go, re-delivering sig (0 for none). */
void inject_release(pid_t tid, int sig);
