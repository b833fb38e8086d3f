/* SPDX-License-Identifier: MIT */
/* wait-chain: a chain of waits, every link and every possible waker named, and where it ends.
 * Reported when it runs into a deadlock or a dead owner (error), ends in a problem or holds
 * locks across two or more waits or has waited on a lock for seconds (warning), or is a lone
 * lock wait that lasted the whole sample (note); a parent waiting for a child that runs or sleeps
 * is supervision, not a hang. */
#include <stdio.h>

#include "patterns/pattern.h"
#include "snapshot/describe.h"

static const char *const recs[] = {
    "Look at the end of the chain first: everything before it waits for that thread or "
    "process.",
    "If it ends in I/O or a sleep, the whole chain is as slow as that: add a timeout, or move "
    "the slow work out from under the lock.",
    NULL,
};

static const struct threshold thresholds[] = {
    {"wait-chain.length", 2, "waits",
     "the shortest chain through a lock reported as a warning (a parent waiting for a child "
     "does not count)"},
    {"wait-chain.lock-wait-ms", 5000, "ms",
     "a chain through a lock whose first thread has not run for this long is a warning, "
     "however short (a request handler behind a lock held across a sleep)"},
};

/* The chain's head has not run for at least ms (and not once in the sample, if there was one).
 * A snapshot wakes every thread it stops, so after an earlier one this counts from there. */
static bool waited_for(const struct athread *head, double ms)
{
	if (head->t->switches_in_sample > 0)
		return false;
	return (double)head->t->last_ran_ago_ms >= ms;
}

static bool supervision(enum edge_kind k)
{
	return k == EDGE_CHILD || k == EDGE_JOIN;
}

static bool lock_link(enum edge_kind k)
{
	return k == EDGE_MUTEX || k == EDGE_RWLOCK || k == EDGE_FILE_LOCK || k == EDGE_RUNTIME ||
	       k == EDGE_PYLOCK || k == EDGE_MONITOR;
}

/* The thread that stands for where the chain ends. */
static const struct athread *end_thread(const struct chain *c)
{
	if (c->end_thread)
		return c->end_thread;
	const struct edge *e = c->steps[c->n - 1].e;
	for (size_t i = 0; i < e->n_wakers; i++)
		if (e->wakers[i].proc == c->end_proc)
			return waker_thread(&e->wakers[i]);
	return NULL;
}

static void describe_end(const struct chain *c, char *buf, size_t len)
{
	const struct athread *t = end_thread(c);
	char label[160];
	if (c->end_thread) {
		thread_label(c->end_thread, label, sizeof(label));
		if (c->ends_in_cycle)
			snprintf(buf, len, "%s, which is in a deadlock", label);
		else
			snprintf(buf, len, "%s, %s%s%s", label, wait_end_class(c->end_thread),
				 c->end_thread->wait.text[0] ? ": " : "", c->end_thread->wait.text);
	} else if (c->end_proc && t) {
		snprintf(buf, len, "pid %d (%s), whose thread %d is %s%s%s", c->end_proc->p->pid,
			 c->end_proc->p->comm, t->t->tid, wait_end_class(t),
			 t->wait.text[0] ? ": " : "", t->wait.text);
	} else if (c->end_proc) {
		snprintf(buf, len, "pid %d (%s), none of whose threads waits on anything here",
			 c->end_proc->p->pid, c->end_proc->p->comm);
	} else {
		snprintf(buf, len, "unknown");
	}
}

/* The chain's head has waited the whole sample (or, without one, at least a second). */
static bool stale(const struct athread *head)
{
	if (head->t->switches_in_sample >= 0)
		return head->t->switches_in_sample == 0;
	return head->t->last_ran_ago_ms >= 1000;
}

/* A problem where the chain ends, in words, or NULL: a dead owner, a corrupt lock, a thread
 * stuck in the kernel, a server that sleeps or does not read while a client waits on it. */
static const char *end_problem(const struct chain *c, char *buf, size_t len)
{
	const struct athread *t = end_thread(c);
	const struct wait_step *last = &c->steps[c->n - 1];
	const struct athread *head = c->steps[0].t;
	bool sock = last->e->kind == EDGE_UNIX || last->e->kind == EDGE_TCP;

	if (!t)
		return NULL;
	if (t->wait.kind == WAIT_MUTEX &&
	    (t->wait.verdict == MUTEX_ABANDONED || t->wait.verdict == MUTEX_CORRUPT))
		return wait_end_class(t);
	if (t->t->state == 'D')
		return "a thread blocked in the kernel";
	if (!sock)
		return NULL;
	/* A client that ran during the sample, or just before the freeze, is being served: a
	 * request the server has not read yet is traffic caught in flight (a server under load),
	 * not a hang. */
	if (!stale(head))
		return NULL;
	for (size_t i = 0; i < last->e->n_wakers; i++) {
		const struct waker *w = &last->e->wakers[i];
		const struct osm_fd *f = w->fd >= 0 ? process_find_fd(w->proc->p, w->fd) : NULL;
		if (f && f->rqueue > 0) {
			snprintf(buf, len,
				 "pid %d has %u bytes on its end of the connection it has not read",
				 w->proc->p->pid, f->rqueue);
			return buf;
		}
	}
	if (t->wait.kind == WAIT_SLEEP)
		return "the server sleeps while a client waits on it";
	return NULL;
}

static void match(const struct analysis *a, const struct pattern *self, struct findings *out)
{
	double min = pattern_threshold(a, self, "wait-chain.length");
	double long_ms = pattern_threshold(a, self, "wait-chain.lock-wait-ms");

	for (size_t i = 0; i < a->n_chains; i++) {
		const struct chain *c = &a->chains[i];
		char label[160], end[400], pbuf[160];
		const char *problem;
		struct finding *f;
		size_t procs = 0, links = 0, locks = 0;
		enum severity sev;

		for (size_t j = 0; j < c->n; j++) {
			procs += j == 0 || c->steps[j].t->proc != c->steps[j - 1].t->proc;
			links += !supervision(c->steps[j].e->kind);
			locks += lock_link(c->steps[j].e->kind);
		}
		problem = end_problem(c, pbuf, sizeof(pbuf));
		/* A chain into a deadlock or a dead owner can never go on; one that ends in a
		 * problem, or holds locks while it waits, is a hang in the making; a lone lock
		 * wait that lasted the whole sample is worth a note. Supervision (a parent
		 * waiting for a child, a launcher joining a thread) and requests to a peer that
		 * is working are not problems. */
		if (c->ends_in_cycle || c->stuck)
			sev = SEV_ERROR;
		else if (problem || (locks && (double)links >= min) ||
			 (locks && waited_for(c->steps[0].t, long_ms)))
			sev = SEV_WARNING;
		else if (locks && c->steps[0].t->t->switches_in_sample == 0 && a->snap->sample_ms)
			sev = SEV_INFO;
		else
			continue;
		describe_end(c, end, sizeof(end));
		f = finding_new(out, self, sev,
				"A chain of %zu wait%s across %zu process%s ends at %s.", c->n,
				c->n == 1 ? "" : "s", procs, procs == 1 ? "" : "es", end);
		if (!f)
			return;
		f->key = (uint64_t)c->ends_in_cycle;
		json_object *links_j = finding_wait_steps(f, c->steps, c->n, 4);
		if (c->end_thread) {
			finding_tid(f, c->end_thread->t->tid);
			finding_pid(f, c->end_thread->proc->p->pid);
			thread_label(c->end_thread, label, sizeof(label));
			finding_line(f, "%s (the end: %s)", label,
				     c->ends_in_cycle ? "in a deadlock"
						      : wait_end_class(c->end_thread));
			finding_frames(f, c->end_thread, 6);
		} else if (c->end_proc) {
			const struct athread *t = end_thread(c);
			finding_pid(f, c->end_proc->p->pid);
			finding_line(f, "pid %d (%s) (the end)", c->end_proc->p->pid,
				     c->end_proc->p->comm);
			if (t) {
				finding_tid(f, t->t->tid);
				finding_frames(f, t, 6);
			}
		}
		if (problem) {
			finding_line(f, "the problem at the end: %s", problem);
			json_object_object_add(finding_ev(f), "problem",
					       json_object_new_string(problem));
		}
		json_object_object_add(finding_ev(f), "chain", links_j);
		json_object_object_add(finding_ev(f), "end", json_object_new_string(end));
	}
}

const struct pattern pattern_wait_chain = {
    .id = "wait-chain",
    .title = "Wait chain",
    .severity = SEV_WARNING,
    .description = "A thread waits for another that waits for a third, through locks, joins, "
		   "children, pipes or sockets, across processes; the chain's end explains the "
		   "whole chain.",
    .needs = "cores (lock words, stacks) and the manifest (syscalls, descriptors); with "
	     "CPython, GIL waits and threading.Lock/RLock waits are links too (GIL waiter, GIL "
	     "holder, mutex owner is one chain), each step named with its Python frame",
    .thresholds = thresholds,
    .n_thresholds = 2,
    .recommendations = recs,
    .match = match,
};
