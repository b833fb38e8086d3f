/* SPDX-License-Identifier: MIT */
/*
 * Walking the wait graph.
 *
 * 1. Who can go on. A thread that waits on nothing the graph knows (running, sleeping, in
 *    epoll, a wait with no waker in the snapshot) can go on. A waiting thread can go on when
 *    each of its waits can be ended: "this one" and "any of" waits by one waker that can go on,
 *    "all of" waits by every waker. A whole process can go on when one of its threads can (any
 *    thread may write the pipe, answer the socket, exit). A condition variable, semaphore or
 *    unnamed private futex names no owner: another thread of its process may end it, so it can
 *    go on while one can; a shared futex may be woken from outside, so it always can. A waiter
 *    on an abandoned mutex never can. This is a greatest fixpoint: everything starts stuck that
 *    waits, and is freed as soon as one of its ways out is free, until nothing changes. What
 *    remains stuck can never be woken by anything in the snapshot.
 * 2. Cycles: strongly connected components (Tarjan), once among the stuck threads (deadlocks)
 *    and once among the others (cycles one of whose wakers can still end them).
 * 3. Chains: from a waiting thread nobody waits on, through its waits to where they end. A wait
 *    into another process continues through that process's own waiting threads (those that
 *    can go on, when the process can); a process none of whose threads waits on anything ends
 *    the chain, and so does a wait on its own process (another thread of it may act).
 */
#include <stdlib.h>
#include <string.h>

#include "analyze/analysis.h"
#include "base/util.h"

#define FUTEX_PRIVATE_FLAG 128
#define FUTEX_CMD_MASK	   (~(uint64_t)(128 | 256)) /* without PRIVATE and CLOCK_REALTIME */
#define FUTEX_WAIT	   0
#define FUTEX_WAIT_BITSET  9

/* The threads an edge continues to, one at a time, without an array (Tarjan recurses). */
struct target_iter {
	const struct edge *e;
	size_t w, k;
};

static struct athread *next_target(struct target_iter *it)
{
	while (it->w < it->e->n_wakers) {
		const struct waker *w = &it->e->wakers[it->w];
		if (w->thread) {
			it->w++;
			return w->thread;
		}
		while (it->k < w->proc->n_threads) {
			struct athread *t = &w->proc->threads[it->k++];
			if (t->n_edges)
				return t;
		}
		it->w++;
		it->k = 0;
	}
	return NULL;
}

size_t edge_targets(const struct edge *e, struct athread **out, size_t max)
{
	struct target_iter it = {.e = e};
	struct athread *t;
	size_t n = 0;

	while (n < max && (t = next_target(&it)))
		out[n++] = t;
	return n;
}

bool waker_can_go_on(const struct waker *w)
{
	if (w->thread)
		return !w->thread->stuck;
	return w->proc->n_free > 0 || !w->proc->n_threads;
}

static bool edge_can_end(const struct edge *e)
{
	size_t n = 0;
	if (!e->n_wakers)
		return true;
	for (size_t i = 0; i < e->n_wakers; i++)
		n += waker_can_go_on(&e->wakers[i]);
	return e->mode == WAIT_ALL_OF ? n == e->n_wakers : n > 0;
}

/* A futex wait with a timeout (FUTEX_WAIT's relative or FUTEX_WAIT_BITSET's absolute time in
 * the fourth argument) ends by itself: pthread_cond_timedwait, a JVM's Thread.sleep and timed
 * parks. Only an untimed wait can wait forever. */
static bool timed_futex_wait(const struct athread *t) /* t waits in futex (its wait kind) */
{
	uint64_t cmd = t->t->syscall_args[1] & FUTEX_CMD_MASK;
	return (cmd == FUTEX_WAIT || cmd == FUTEX_WAIT_BITSET) && t->t->syscall_args[3];
}

static bool private_ownerless(const struct athread *t)
{
	enum wait_kind k = t->wait.kind;
	return (k == WAIT_CONDVAR || k == WAIT_SEMAPHORE || k == WAIT_FUTEX) &&
	       (t->t->syscall_args[1] & FUTEX_PRIVATE_FLAG) && !timed_futex_wait(t);
}

static bool never_ends(const struct athread *t)
{
	return !t->n_edges && t->wait.kind == WAIT_MUTEX && t->wait.verdict == MUTEX_ABANDONED;
}

static void find_stuck(struct analysis *a)
{
	bool changed;

	for (size_t i = 0; i < a->n_procs; i++) {
		struct aprocess *ap = &a->procs[i];
		ap->n_free = 0;
		for (size_t j = 0; j < ap->n_threads; j++) {
			struct athread *t = &ap->threads[j];
			t->stuck =
			    t->t->captured && (t->n_edges || private_ownerless(t) || never_ends(t));
			ap->n_free += !t->stuck;
		}
	}
	do {
		changed = false;
		for (size_t i = 0; i < a->n_procs; i++) {
			struct aprocess *ap = &a->procs[i];
			for (size_t j = 0; j < ap->n_threads; j++) {
				struct athread *t = &ap->threads[j];
				bool can = true;
				if (!t->stuck || never_ends(t))
					continue;
				if (t->n_edges)
					for (size_t k = 0; k < t->n_edges && can; k++)
						can = edge_can_end(&t->edges[k]);
				else
					can = ap->n_free > 0;
				if (can) {
					t->stuck = false;
					ap->n_free++;
					changed = true;
				}
			}
		}
	} while (changed);
}

struct tarjan {
	struct athread **all;
	size_t n;
	int *index, *low;
	bool *on_stack;
	size_t *stack, sp;
	int counter, next_scc;
	bool stuck; /* this pass walks the stuck threads only (else only the others) */
};

static size_t idx_of(struct tarjan *tj, const struct athread *t)
{
	/* Threads live in per-process arrays; all[] lists them sorted by address. */
	size_t lo = 0, hi = tj->n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (tj->all[mid] < t)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static bool in_pass(const struct tarjan *tj, const struct athread *t)
{
	return t->n_edges && t->stuck == tj->stuck;
}

static bool self_edge(const struct athread *t)
{
	for (size_t i = 0; i < t->n_edges; i++) {
		struct target_iter it = {.e = &t->edges[i]};
		struct athread *u;
		while ((u = next_target(&it)))
			if (u == t)
				return true;
	}
	return false;
}

static void strongconnect(struct tarjan *tj, size_t v)
{
	tj->index[v] = tj->low[v] = tj->counter++;
	tj->stack[tj->sp++] = v;
	tj->on_stack[v] = true;
	for (size_t i = 0; i < tj->all[v]->n_edges; i++) {
		struct target_iter it = {.e = &tj->all[v]->edges[i]};
		struct athread *u;
		while ((u = next_target(&it))) {
			size_t w = idx_of(tj, u);
			if (w >= tj->n || tj->all[w] != u || !in_pass(tj, u))
				continue;
			if (tj->index[w] < 0) {
				strongconnect(tj, w);
				tj->low[v] = MIN(tj->low[v], tj->low[w]);
			} else if (tj->on_stack[w]) {
				tj->low[v] = MIN(tj->low[v], tj->index[w]);
			}
		}
	}
	if (tj->low[v] == tj->index[v]) {
		size_t members = 0, w;
		size_t start = tj->sp;
		int id;
		do {
			w = tj->stack[--start];
			members++;
		} while (w != v);
		/* A component of one is a cycle only when it waits on itself (a pipe only its
		 * own process could write, with no other thread of it free). */
		id = members > 1 || (tj->stuck && self_edge(tj->all[v])) ? ++tj->next_scc : 0;
		do {
			w = tj->stack[--tj->sp];
			tj->on_stack[w] = false;
			tj->all[w]->scc = id;
		} while (w != v);
	}
}

static int cmp_ptr(const void *a, const void *b)
{
	const struct athread *x = *(const struct athread *const *)a;
	const struct athread *y = *(const struct athread *const *)b;
	return (x > y) - (x < y);
}

/* Follow a component from its first member until a thread repeats: that loop is the cycle. */
static void extract_cycle(struct analysis *a, struct tarjan *tj, struct athread *start,
			  bool deadlock)
{
	size_t capo = 0;
	struct athread *cur = start;
	struct wait_step *steps = NULL;
	size_t n = 0, cap = 0, from = 0;
	struct cycle c = {0};

	for (;;) {
		struct edge *next_e = NULL;
		struct athread *next = NULL;
		for (size_t i = 0; i < n; i++)
			if (steps[i].t == cur) {
				from = i;
				goto found;
			}
		for (size_t i = 0; i < cur->n_edges && !next; i++) {
			struct target_iter it = {.e = &cur->edges[i]};
			struct athread *u;
			while (!next && (u = next_target(&it)))
				if (u->scc == start->scc) {
					next = u;
					next_e = &cur->edges[i];
				}
		}
		if (!next || grow_array((void **)&steps, &cap, n + 1, sizeof(*steps))) {
			free(steps);
			return;
		}
		steps[n++] = (struct wait_step){.t = cur, .e = next_e};
		cur = next;
	}
found:
	c.n = n - from;
	c.steps = calloc(c.n, sizeof(*c.steps));
	if (!c.steps) {
		free(steps);
		return;
	}
	memcpy(c.steps, steps + from, c.n * sizeof(*c.steps));
	free(steps);
	c.deadlock = c.all_blocked = deadlock;
	for (size_t i = 0; i < tj->n; i++) {
		struct athread *t = tj->all[i];
		bool on = false;
		if (t->scc != start->scc || !t->n_edges)
			continue;
		for (size_t j = 0; j < c.n && !on; j++)
			on = c.steps[j].t == t;
		if (!on &&
		    !grow_array((void **)&c.others, &capo, c.n_others + 1, sizeof(*c.others)))
			c.others[c.n_others++] = (struct wait_step){.t = t, .e = &t->edges[0]};
	}
	for (size_t i = 0; i < c.n; i++)
		for (size_t k = 0; k < c.steps[i].e->n_wakers; k++)
			c.via_process |= !c.steps[i].e->wakers[k].thread;
	size_t capc = a->n_cycles;
	if (grow_array((void **)&a->cycles, &capc, a->n_cycles + 1, sizeof(*a->cycles))) {
		free(c.steps);
		free(c.others);
		return;
	}
	a->cycles[a->n_cycles++] = c;
}

static int cycle_of(const struct analysis *a, const struct athread *t)
{
	for (size_t i = 0; i < a->n_cycles; i++)
		for (size_t j = 0; j < a->cycles[i].n; j++)
			if (a->cycles[i].steps[j].t == t)
				return (int)i + 1;
	return 0;
}

static bool in_chain(const struct chain *c, const struct athread *t)
{
	for (size_t i = 0; i < c->n; i++)
		if (c->steps[i].t == t)
			return true;
	return false;
}

static void follow_chain(struct analysis *a, struct athread *head)
{
	struct athread *cur = head;
	struct chain c = {.stuck = head->stuck};
	size_t cap = 0;

	while (cur->n_edges && c.n < 64) {
		struct edge *e = &cur->edges[0];
		struct athread *next = NULL, *end_thread = NULL;
		struct aprocess *end_proc = NULL;

		if (grow_array((void **)&c.steps, &cap, c.n + 1, sizeof(*c.steps)))
			break;
		c.steps[c.n++] = (struct wait_step){.t = cur, .e = e};
		/* Into a cycle first; else on through a waiting thread not yet passed; else a
		 * thread that waits on nothing ends it; else the first waker process does. */
		for (size_t i = 0; i < e->n_wakers && !(next && next->scc); i++) {
			const struct waker *w = &e->wakers[i];
			if (w->thread) {
				if (w->thread->scc ||
				    (!next && w->thread->n_edges && !in_chain(&c, w->thread)))
					next = w->thread;
				else if (!w->thread->n_edges && !end_thread)
					end_thread = w->thread;
				continue;
			}
			/* Its own process: another of its threads may act; which one is not
			 * known, so the chain does not go sideways into them. */
			if (w->proc == cur->proc) {
				if (!end_proc)
					end_proc = w->proc;
				continue;
			}
			/* Through a process that can go on, only threads that can too. */
			for (size_t k = 0; k < w->proc->n_threads; k++) {
				struct athread *u = &w->proc->threads[k];
				if (!u->n_edges || in_chain(&c, u) || u->stuck != !w->proc->n_free)
					continue;
				if (u->scc || !next)
					next = u;
				if (u->scc)
					break;
			}
			if (!next && !end_proc)
				end_proc = w->proc;
		}
		if (next && next->scc) {
			c.ends_in_cycle = cycle_of(a, next);
			c.end_thread = next;
			break;
		}
		if (next) {
			cur = next;
			continue;
		}
		if (end_thread)
			c.end_thread = end_thread;
		else if (end_proc)
			c.end_proc = end_proc;
		else if (e->n_wakers)
			c.end_proc = e->wakers[0].proc;
		break;
	}
	if (!c.end_proc && !c.end_thread)
		c.end_thread = cur;
	size_t capc = a->n_chains;
	if (!c.n || grow_array((void **)&a->chains, &capc, a->n_chains + 1, sizeof(*a->chains))) {
		free(c.steps);
		return;
	}
	a->chains[a->n_chains++] = c;
}

static void free_cycles_and_chains(struct analysis *a)
{
	for (size_t i = 0; i < a->n_cycles; i++) {
		free(a->cycles[i].steps);
		free(a->cycles[i].others);
	}
	free(a->cycles);
	a->cycles = NULL;
	a->n_cycles = 0;
	for (size_t i = 0; i < a->n_chains; i++)
		free(a->chains[i].steps);
	free(a->chains);
	a->chains = NULL;
	a->n_chains = 0;
}

void find_cycles_and_chains(struct analysis *a)
{
	struct tarjan tj = {0};
	size_t total = 0, k = 0;

	free_cycles_and_chains(a);
	find_stuck(a);
	for (size_t i = 0; i < a->n_procs; i++)
		total += a->procs[i].n_threads;
	if (!total)
		return;
	tj.all = calloc(total, sizeof(*tj.all));
	tj.index = malloc(total * sizeof(int));
	tj.low = malloc(total * sizeof(int));
	tj.on_stack = calloc(total, sizeof(bool));
	tj.stack = malloc(total * sizeof(size_t));
	if (!tj.all || !tj.index || !tj.low || !tj.on_stack || !tj.stack)
		goto out;
	for (size_t i = 0; i < a->n_procs; i++)
		for (size_t j = 0; j < a->procs[i].n_threads; j++) {
			struct athread *t = &a->procs[i].threads[j];
			t->scc = 0;
			t->waited_on = t->needed = false;
			tj.all[k++] = t;
		}
	tj.n = total;
	qsort(tj.all, total, sizeof(*tj.all), cmp_ptr);
	/* Deadlocks first (the stuck threads), then the cycles that can still unwind. */
	for (int pass = 0; pass < 2; pass++) {
		int first = tj.next_scc + 1;
		tj.stuck = pass == 0;
		for (size_t i = 0; i < total; i++)
			tj.index[i] = -1;
		for (size_t i = 0; i < total; i++)
			if (tj.index[i] < 0 && in_pass(&tj, tj.all[i]))
				strongconnect(&tj, i);
		for (int id = first; id <= tj.next_scc; id++)
			for (size_t i = 0; i < total; i++)
				if (tj.all[i]->scc == id) {
					extract_cycle(a, &tj, tj.all[i], pass == 0);
					break;
				}
	}
	/* Waited on: a thread named as a waker, or a waiting thread of another process named as
	 * one (a wait on its own process marks nobody: which thread would act is not known). */
	for (size_t v = 0; v < total; v++)
		for (size_t i = 0; i < tj.all[v]->n_edges; i++) {
			const struct edge *e = &tj.all[v]->edges[i];
			for (size_t m = 0; m < e->n_wakers; m++) {
				const struct waker *w = &e->wakers[m];
				bool holds = e->kind != EDGE_CHILD;
				if (w->thread) {
					w->thread->waited_on |= holds && w->thread != tj.all[v];
					w->thread->needed |= holds && w->thread != tj.all[v];
					continue;
				}
				if (w->proc == tj.all[v]->proc)
					continue;
				for (size_t j = 0; j < w->proc->n_threads; j++) {
					struct athread *u = &w->proc->threads[j];
					u->waited_on |= holds && u->n_edges > 0;
					u->needed |= holds && u->n_edges > 0;
				}
			}
		}
	/* Chains start at threads that wait, are not in a cycle, and nobody waits on but a parent
	 * waiting for its child: each of a shell's children that waits on a server heads its own
	 * chain into it. */
	for (size_t i = 0; i < total; i++) {
		struct athread *t = tj.all[i];
		if (t->n_edges && !t->scc && !t->waited_on)
			follow_chain(a, t);
	}
	/* A parent's chain that only leads into a child's own chain says nothing more. */
	size_t kept = 0;
	for (size_t i = 0; i < a->n_chains; i++) {
		struct chain *c = &a->chains[i];
		const struct athread *u = c->n >= 2 ? c->steps[1].t : NULL;
		if (c->steps[0].e->kind == EDGE_CHILD && u && u->n_edges && !u->scc &&
		    !u->waited_on) {
			free(c->steps);
			continue;
		}
		a->chains[kept++] = *c;
	}
	a->n_chains = kept;
out:
	free(tj.all);
	free(tj.index);
	free(tj.low);
	free(tj.on_stack);
	free(tj.stack);
}
