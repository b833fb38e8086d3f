/* SPDX-License-Identifier: MIT */
/*
 * Choosing the thread an injection runs in (inject.h, inject_in_safe_thread): the one sequence
 * every injector uses, so that the rules are written once:
 *   - never a thread under a seccomp filter or Syscall User Dispatch (inject_thread_refusal);
 *   - only a syscall instruction in memory the target's map says is executable (inject_begin);
 *   - a fault of the injected instruction is caught and suppressed (inject_syscall), and the
 *     thread is restored before the next thread is tried;
 *   - a thread held outside the freeze is held under the --max-pause watchdog, one at a time;
 *   - bounded: each thread is tried once.
 * Nothing here allocates: it runs inside the freeze.
 */
#include <errno.h>
#include <stdbool.h>

#include "base/fault.h"
#include "freeze/guard.h"
#include "inject/inject.h"
#include "proc/targets.h"
#include "snapshot/model.h"

/* A thread the freeze holds that can take an injection as it stands. */
static bool held_usable(const struct osm_thread *th)
{
	return th->stopped && !th->gone && th->captured && !th->inject_sig && !th->group_stop_sig;
}

#define TRY_NEXT 1 /* this thread cannot be used: try the next */

/* One thread, held (by the freeze or by us): refusal checks, then fn. Returns fn's result or
 * TRY_NEXT with *why. */
static int try_thread(struct target *t, pid_t tid, inject_fn fn, void *ctx, int *lost,
		      const char **why)
{
	struct osm_process *p = t->proc;
	struct inject in;
	const char *no = inject_thread_refusal(t->ref.procfd, tid);
	int r;

	*lost = 0;
	if (no) {
		*why = no;
		return TRY_NEXT;
	}
	r = inject_begin(&in, tid, t->ref.procfd, t->ref.memfd, p->auxv, p->auxv_len);
	if (r == -ENOEXEC) {
		*why = "no syscall instruction in executable memory to borrow";
		return TRY_NEXT;
	}
	if (r < 0) {
		*why = "its registers cannot be read";
		return TRY_NEXT;
	}
	r = fn ? fn(&in, ctx) : 0;
	int e = inject_end(&in);
	long resumed = arch_gregs_restart_block_nr(&in.saved);
	for (size_t i = 0; e == 0 && resumed >= 0 && i < p->n_threads; i++) {
		struct osm_thread *th = p->threads[i];
		if (th->tid != tid)
			continue;
		/* A second injection finds it in the restart of the call the first interrupted:
		 * that call it still is. */
		if (arch_syscall_is_restart(resumed) && th->resumed_nr >= 0 &&
		    th->resumed_pc == arch_gregs_pc(&in.saved))
			continue;
		th->resumed_nr = resumed;
		th->resumed_pc = arch_gregs_pc(&in.saved);
	}
	*lost = in.lost_signal;
	if (in.fault_signal) {
		*why = "an injected syscall raised a signal (suppressed)";
		return e < 0 ? e : TRY_NEXT;
	}
	if (r == -ENOEXEC) {
		*why = "no syscall instruction in executable memory to borrow";
		return TRY_NEXT;
	}
	if (r == 0 && e < 0)
		r = e;
	if (r == 0 && in.interrupted)
		r = in.interrupted;
	return r;
}

static int run(struct target *t, inject_fn fn, void *ctx, pid_t *ret_tid, const char **why)
{
	struct osm_process *p = t->proc;
	bool any_held = false;
	int r;

	*why = "no thread can run an injected syscall";
	if (t->ref.memfd < 0 || t->ref.procfd < 0) {
		*why = "its memory cannot be opened";
		return -EAGAIN;
	}
	for (size_t i = 0; i < p->n_threads; i++)
		any_held |= p->threads[i]->stopped && !p->threads[i]->gone;

	for (size_t i = 0; i < p->n_threads; i++) {
		struct osm_thread *th = p->threads[i];
		int lost = 0, g;

		if ((g = guard_check()) < 0)
			return g;
		if (any_held) {
			if (!held_usable(th)) {
				if (th->group_stop_sig || th->inject_sig)
					*why = "every thread is stopped by a signal or has one on "
					       "its way";
				continue;
			}
			r = try_thread(t, th->tid, fn, ctx, &lost, why);
			if (lost)
				th->inject_sig = lost; /* re-delivered at the thaw */
		} else {
			if (th->gone || th->stopped)
				continue;
			if (inject_thread_filtered(t->ref.procfd, th->tid)) {
				*why = "it runs under a seccomp filter";
				continue;
			}
			r = inject_seize(th->tid);
			if (r == -EINTR || r == -ETIMEDOUT)
				return r;
			if (r == -EAGAIN)
				*why = "every thread is stopped by a signal or has one on its way";
			if (r < 0)
				continue;
			r = fault_point("held");
			if (r == 0)
				r = guard_check();
			if (r < 0) {
				inject_release(th->tid, 0);
				return r;
			}
			r = try_thread(t, th->tid, fn, ctx, &lost, why);
			inject_release(th->tid, lost);
		}
		if (r != TRY_NEXT) {
			if (ret_tid)
				*ret_tid = th->tid;
			return r;
		}
	}
	return -EAGAIN;
}

int inject_in_safe_thread(struct target *t, inject_fn fn, void *ctx, pid_t *ret_tid,
			  const char **why)
{
	bool armed;
	int r = guard_hold_begin(&armed);

	if (r < 0)
		return r;
	r = run(t, fn, ctx, ret_tid, why);
	guard_hold_end(armed);
	return r;
}

int inject_probe(struct target *t, const char **why)
{
	return inject_in_safe_thread(t, NULL, NULL, NULL, why);
}
