/* SPDX-License-Identifier: MIT */
/*
 * Freezing: see freeze.h for the invariants. The order of work follows the measurements in
 * docs/design/kernel-facts.md: interrupt every thread of a pass before waiting for any, so busy
 * threads stop in parallel instead of one after another.
 *
 * One pass:
 *   1. list /proc/PID/task;
 *   2. PTRACE_SEIZE (with PTRACE_O_TRACECLONE, so threads cloned by an already seized thread are
 *      attached by the kernel at birth) and PTRACE_INTERRUPT each thread not yet held;
 *   3. wait until every seized thread reports a stop.
 * Passes repeat until one finds no new thread: a thread cloned by a thread we had not seized yet
 * shows up in the next listing.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/log.h"
#include "base/timeutil.h"
#include "base/util.h"
#include "freeze/freeze.h"
#include "freeze/guard.h"
#include "proc/procfs.h"

#define MAX_PASSES 1000

/* The tracer of tid (TracerPid), 0 for none or unknown. */
static pid_t tracer_of(pid_t tid)
{
	char path[64], *buf = NULL, *p;
	FILE *f;
	pid_t r = 0;
	size_t cap = 0;

	snprintf(path, sizeof(path), "/proc/%d/status", tid);
	f = fopen(path, "re");
	if (!f)
		return 0;
	while (getline(&buf, &cap, f) > 0) {
		if (!strncmp(buf, "TracerPid:", 10)) {
			p = buf + 10;
			r = (pid_t)strtol(p, NULL, 10);
			break;
		}
	}
	free(buf);
	fclose(f);
	return r;
}

/* Whether tid is traced by this process (it was auto-attached at clone). */
static bool traced_by_us(pid_t tid)
{
	return tracer_of(tid) == getpid();
}

/* Whether a thread has exited (zombie or dead): such a thread cannot be seized (EPERM). */
static bool thread_exited(int procfd, pid_t tid)
{
	struct proc_stat st;
	char path[64];

	snprintf(path, sizeof(path), "task/%d/stat", tid);
	if (proc_read_stat(procfd, path, &st) < 0)
		return true;
	return st.state == 'Z' || st.state == 'X';
}

static bool is_group_stop_sig(int sig)
{
	return sig == SIGSTOP || sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU;
}

static int seize_thread(struct target *t, pid_t tid, bool *ret_new)
{
	struct osm_thread *th = process_find_thread(t->proc, tid);

	*ret_new = false;
	if (th && (th->seized || th->gone))
		return 0;
	if (ptrace(PTRACE_SEIZE, tid, 0, PTRACE_O_TRACECLONE) < 0) {
		int err = errno; /* the checks below touch /proc and errno */

		if (err == ESRCH)
			return 0; /* exited between the listing and now */
		if (err == EPERM && traced_by_us(tid)) {
			/* Cloned by a thread we hold: the kernel attached it; it reports a stop. */
		} else if (err == EPERM && thread_exited(t->ref.procfd, tid)) {
			/* Exiting (or a zombie leader): nothing left to freeze. */
			if (!th && !(th = process_add_thread(t->proc, tid)))
				return log_error(ENOMEM, "out of memory");
			th->gone = true;
			return 0;
		} else if (err == EPERM && t->optional && tracer_of(tid) > 0) {
			/* Another tracer (strace, gdb) came after the vetting: an optional target
			 * is let go whole (target_lost). */
			return -EBUSY;
		} else {
			return log_error(err, "cannot seize thread %d of pid %d: %m", tid,
					 t->proc->pid);
		}
	} else if (ptrace(PTRACE_INTERRUPT, tid, 0, 0) < 0 && errno != ESRCH) {
		return log_error(errno, "cannot interrupt thread %d of pid %d: %m", tid,
				 t->proc->pid);
	}
	if (!th) {
		th = process_add_thread(t->proc, tid);
		if (!th)
			return log_error(ENOMEM, "out of memory");
	}
	th->seized = true;
	*ret_new = true;
	return 0;
}

/* A new task reported by PTRACE_EVENT_CLONE. Threads of the target join it; anything else (a
 * clone outside the thread group) is let go at once. */
static int adopt_clone(struct target *t, pid_t child)
{
	struct osm_thread *th = process_find_thread(t->proc, child);
	char path[64];

	snprintf(path, sizeof(path), "task/%d", child);
	if (faccessat(t->ref.procfd, path, F_OK, 0) < 0) {
		/* Not one of our threads: a separate process. Wait for its first stop, detach. */
		int st;
		if (waitpid(child, &st, __WALL) == child && WIFSTOPPED(st))
			ptrace(PTRACE_DETACH, child, 0, 0);
		return 0;
	}
	if (!th) {
		th = process_add_thread(t->proc, child);
		if (!th)
			return log_error(ENOMEM, "out of memory");
	}
	th->seized = true;
	return 0;
}

/* Wait until one seized thread reports its stop. */
static int wait_stop(struct target *t, struct osm_thread *th)
{
	for (;;) {
		int status, r;
		pid_t w = waitpid(th->tid, &status, __WALL);

		if (w < 0) {
			if (errno == EINTR) {
				r = guard_check();
				if (r < 0)
					return r;
				continue;
			}
			if (errno == ECHILD) {
				th->gone = true;
				return 0;
			}
			return log_error(errno, "waiting for thread %d of pid %d: %m", th->tid,
					 t->proc->pid);
		}
		if (WIFEXITED(status) || WIFSIGNALED(status)) {
			th->gone = true;
			return 0;
		}
		if (!WIFSTOPPED(status))
			continue;

		int event = status >> 16, sig = WSTOPSIG(status);
		th->stopped = true;
		if (event == PTRACE_EVENT_CLONE) {
			unsigned long child = 0;
			if (ptrace(PTRACE_GETEVENTMSG, th->tid, 0, &child) == 0 && child > 0)
				return adopt_clone(t, (pid_t)child);
		} else if (event == PTRACE_EVENT_STOP) {
			if (is_group_stop_sig(sig))
				th->group_stop_sig = sig;
		} else if (event == 0) {
			/* A signal-delivery-stop: the signal was on its way in; give it back at
			 * the thaw. */
			th->inject_sig = sig;
		}
		return 0;
	}
}

/* -ESRCH for a target that exited; logged only when its exit is fatal. */
static int exited_error(const struct target *t)
{
	if (t->optional)
		return -ESRCH;
	return log_error(ESRCH, "pid %d exited during the snapshot", t->proc->pid);
}

/* Threads listed without allocating (the pause allocates nothing: base/util.h, freeze_allocs);
 * a process with more threads than this is listed the allocating way. */
#define TASKS_ON_STACK 4096

static int freeze_target_pass(struct target *t, bool *ret_new)
{
	_cleanup_free_ pid_t *more = NULL;
	pid_t stack[TASKS_ON_STACK], *tids = stack;
	size_t n = 0;
	int r;

	*ret_new = false;
	r = proc_list_tasks_into(t->ref.procfd, stack, ARRAY_SIZE(stack), &n);
	if (r == -ENOBUFS && (r = proc_list_tasks(t->ref.procfd, &more, &n)) == 0)
		tids = more;
	if (r < 0 || !pidref_alive(&t->ref))
		return exited_error(t);
	for (size_t i = 0; i < n; i++) {
		struct osm_thread *th = process_find_thread(t->proc, tids[i]);
		bool added;

		/* A zombie thread (a leader that called pthread_exit) never stops again. */
		if (th && th->state == 'Z' && !th->seized) {
			th->gone = true;
			continue;
		}
		r = seize_thread(t, tids[i], &added);
		if (r < 0)
			return r;
		*ret_new |= added;
	}
	return 0;
}

static int wait_target(struct target *t)
{
	/* Threads may be appended while we wait (clone events): index, do not cache n. */
	for (size_t i = 0; i < t->proc->n_threads; i++) {
		struct osm_thread *th = t->proc->threads[i];
		int r;

		if (!th->seized || th->stopped || th->gone)
			continue;
		r = wait_stop(t, th);
		if (r < 0)
			return r;
	}
	size_t held = 0;
	for (size_t i = 0; i < t->proc->n_threads; i++)
		held += t->proc->threads[i]->stopped && !t->proc->threads[i]->gone;
	if (held == 0)
		return exited_error(t);
	return 0;
}

static void thaw_thread(struct osm_thread *th);

/* A target went away, or another tracer holds it. Required targets fail the freeze; optional
 * ones are let go (the threads held so far resumed) and recorded. */
static int target_gone(struct target *t, int r)
{
	if (r == -EBUSY && t->optional) {
		pid_t tracer = 0;
		for (size_t i = 0; i < t->proc->n_threads; i++) {
			if (!tracer && !t->proc->threads[i]->seized)
				tracer = tracer_of(t->proc->threads[i]->tid);
			thaw_thread(t->proc->threads[i]);
		}
		t->skipped = true;
		t->proc->capture = CAPTURE_SKIPPED;
		free(t->proc->capture_note);
		if (asprintf(&t->proc->capture_note,
			     "traced by pid %d since the vetting; let go "
			     "at the freeze",
			     tracer) < 0)
			t->proc->capture_note = NULL;
		log_debug("pid %d is traced by pid %d: let go", t->proc->pid, tracer);
		return 0;
	}
	if (r != -ESRCH)
		return r;
	t->exited = true;
	if (!t->optional)
		return r;
	log_debug("pid %d exited during the snapshot; recorded", t->proc->pid);
	return 0;
}

static bool target_active(const struct target *t)
{
	return !t->skipped && !t->exited;
}

int freeze_session_freeze(struct freeze_session *s)
{
	struct target_set *set = s->set;
	int r = 0;

	s->frozen = true;
	s->t_first_stop = now_ns();
	for (int pass = 0;; pass++) {
		bool any_new = false, grew = false;

		if (pass >= MAX_PASSES) {
			r = log_error(EAGAIN,
				      "threads keep appearing faster than they can be frozen");
			goto fail;
		}
		/* Interrupt everything new in every target first, then wait for all of it. */
		for (size_t i = 0; i < set->n; i++) {
			bool n = false;
			if (!target_active(set->v[i]))
				continue;
			r = guard_check();
			if (r < 0)
				goto fail;
			r = target_gone(set->v[i], freeze_target_pass(set->v[i], &n));
			if (r < 0)
				goto fail;
			any_new |= n;
		}
		for (size_t i = 0; i < set->n; i++) {
			if (!target_active(set->v[i]))
				continue;
			r = target_gone(set->v[i], wait_target(set->v[i]));
			if (r < 0)
				goto fail;
		}
		if (s->grow) {
			r = s->grow(s, &grew);
			if (r < 0)
				goto fail;
		}
		if (!any_new && !grew)
			break;
	}
	for (size_t i = 0; i < set->n; i++) {
		struct target *t = set->v[i];
		/* Threads listed before the freeze but never met while freezing have exited. */
		for (size_t j = 0; target_active(t) && j < t->proc->n_threads; j++)
			if (!t->proc->threads[j]->seized)
				t->proc->threads[j]->gone = true;
		/* The pids were seized by number: confirm each is still the process we opened. */
		if (target_active(t) && !pidref_alive(&t->ref)) {
			r = target_gone(t, exited_error(t));
			if (r < 0)
				goto fail;
		}
	}
	return 0;
fail:
	freeze_session_thaw(s);
	return r;
}

static void thaw_thread(struct osm_thread *th)
{
	if (!th->seized || th->gone)
		return;
	if (!th->stopped) {
		/* Seized but its stop not collected yet (we are aborting): a tracee can be
		 * detached only in a stop, so collect it briefly. If it never comes, the kernel
		 * detaches it when osmosis exits, which every abort path does promptly. */
		for (int i = 0; i < 100; i++) {
			int status;
			pid_t w = waitpid(th->tid, &status, __WALL | WNOHANG);
			if (w == th->tid) {
				if (!WIFSTOPPED(status)) {
					th->gone = true;
					return;
				}
				if ((status >> 16) == 0)
					th->inject_sig = WSTOPSIG(status);
				th->stopped = true;
				break;
			}
			if (w < 0) {
				th->gone = true;
				return;
			}
			usleep(1000);
		}
	}
	ptrace(PTRACE_DETACH, th->tid, 0, th->inject_sig);
	th->seized = false;
	th->stopped = false;
}

void freeze_session_thaw(struct freeze_session *s)
{
	if (!s->frozen)
		return;
	for (size_t i = 0; i < s->set->n; i++) {
		struct osm_process *p = s->set->v[i]->proc;
		for (size_t j = 0; j < p->n_threads; j++)
			thaw_thread(p->threads[j]);
	}
	s->t_thawed = now_ns();
	s->frozen = false;
}

uint64_t freeze_session_pause_us(const struct freeze_session *s)
{
	if (!s->t_thawed || s->t_thawed < s->t_first_stop)
		return 0;
	return (s->t_thawed - s->t_first_stop) / 1000;
}

int freeze_session_check_survivors(const struct freeze_session *s)
{
	for (size_t i = 0; i < s->set->n; i++) {
		struct target *t = s->set->v[i];
		struct proc_stat st;

		if (t->skipped)
			continue;
		if (t->exited || proc_read_stat(t->ref.procfd, "stat", &st) < 0 ||
		    st.state == 'Z' || st.state == 'X' || process_captured_threads(t->proc) == 0) {
			t->exited = true;
			if (!t->optional)
				return log_error(ESRCH, "pid %d exited during the snapshot",
						 t->proc->pid);
		}
	}
	return 0;
}
