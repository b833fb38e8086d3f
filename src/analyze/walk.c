/* SPDX-License-Identifier: MIT */
/*
 * Walking the wait graph: cycles (strongly connected components, Tarjan) and chains (from a
 * thread nobody waits on, following its waits to where they end). A wait into a process
 * continues through that process's own waiting threads; a process none of whose threads waits on
 * anything ends the chain.
 */
#include <stdlib.h>
#include <string.h>

#include "analyze/analysis.h"
#include "base/util.h"

#define MAX_TARGETS 64

size_t edge_targets(const struct edge *e, struct athread **out, size_t max)
{
	size_t n = 0;
	if (e->to_thread) {
		out[0] = e->to_thread;
		return 1;
	}
	if (!e->to_proc)
		return 0;
	for (size_t i = 0; i < e->to_proc->n_threads && n < max; i++)
		if (e->to_proc->threads[i].n_edges)
			out[n++] = &e->to_proc->threads[i];
	return n;
}

struct tarjan {
	struct athread **all;
	size_t n;
	int *index, *low;
	bool *on_stack;
	size_t *stack, sp;
	int counter, next_scc;
};

static size_t idx_of(struct tarjan *tj, const struct athread *t)
{
	/* Threads live in per-process arrays; all[] lists them in order, so search. */
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

static void strongconnect(struct tarjan *tj, size_t v)
{
	struct athread *targets[MAX_TARGETS];

	tj->index[v] = tj->low[v] = tj->counter++;
	tj->stack[tj->sp++] = v;
	tj->on_stack[v] = true;
	for (size_t i = 0; i < tj->all[v]->n_edges; i++) {
		size_t n = edge_targets(&tj->all[v]->edges[i], targets, MAX_TARGETS);
		for (size_t k = 0; k < n; k++) {
			size_t w = idx_of(tj, targets[k]);
			if (w >= tj->n || tj->all[w] != targets[k])
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
		int id = ++tj->next_scc;
		size_t start = tj->sp;
		do {
			w = tj->stack[--start];
			members++;
		} while (w != v);
		/* A component of one is a cycle only with an edge to itself (never built). */
		do {
			w = tj->stack[--tj->sp];
			tj->on_stack[w] = false;
			tj->all[w]->scc = members > 1 ? id : 0;
		} while (w != v);
	}
}

static int cmp_ptr(const void *a, const void *b)
{
	const struct athread *x = *(const struct athread *const *)a;
	const struct athread *y = *(const struct athread *const *)b;
	return (x > y) - (x < y);
}

static bool process_all_blocked(const struct aprocess *ap)
{
	for (size_t i = 0; i < ap->n_threads; i++) {
		const struct athread *t = &ap->threads[i];
		if (t->t->state == 'R' || (t->t->captured && t->wait.kind == WAIT_NONE))
			return false;
	}
	return true;
}

/* Follow a component from its first member until a thread repeats: that loop is the cycle. */
static void extract_cycle(struct analysis *a, struct athread *start)
{
	struct athread *targets[MAX_TARGETS], *cur = start;
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
			size_t k = edge_targets(&cur->edges[i], targets, MAX_TARGETS);
			for (size_t j = 0; j < k && !next; j++)
				if (targets[j]->scc == start->scc) {
					next = targets[j];
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
	c.all_blocked = true;
	for (size_t i = 0; i < c.n; i++)
		if (!c.steps[i].e->to_thread) {
			c.via_process = true;
			c.all_blocked &= process_all_blocked(c.steps[i].e->to_proc);
		}
	size_t capc = a->n_cycles;
	if (grow_array((void **)&a->cycles, &capc, a->n_cycles + 1, sizeof(*a->cycles))) {
		free(c.steps);
		return;
	}
	a->cycles[a->n_cycles++] = c;
}

static bool is_waited_on(struct tarjan *tj, const struct athread *t)
{
	struct athread *targets[MAX_TARGETS];
	for (size_t v = 0; v < tj->n; v++)
		for (size_t i = 0; i < tj->all[v]->n_edges; i++) {
			size_t n = edge_targets(&tj->all[v]->edges[i], targets, MAX_TARGETS);
			for (size_t k = 0; k < n; k++)
				if (targets[k] == t && tj->all[v] != t)
					return true;
		}
	return false;
}

static void follow_chain(struct analysis *a, struct athread *head)
{
	struct athread *targets[MAX_TARGETS], *cur = head;
	struct chain c = {0};
	size_t cap = 0;

	while (cur->n_edges && c.n < 64) {
		struct edge *e = &cur->edges[0];
		size_t k = edge_targets(e, targets, MAX_TARGETS);
		bool seen = false;

		if (grow_array((void **)&c.steps, &cap, c.n + 1, sizeof(*c.steps)))
			break;
		c.steps[c.n++] = (struct wait_step){.t = cur, .e = e};
		if (k == 0) {
			c.end_proc = e->to_proc;
			c.end_thread = NULL;
			break;
		}
		for (size_t i = 0; i < c.n; i++)
			seen |= c.steps[i].t == targets[0];
		cur = targets[0];
		if (cur->scc) {
			for (size_t i = 0; i < a->n_cycles; i++)
				for (size_t j = 0; j < a->cycles[i].n; j++)
					if (a->cycles[i].steps[j].t == cur)
						c.ends_in_cycle = (int)i + 1;
			c.end_thread = cur;
			break;
		}
		if (seen)
			break;
		c.end_thread = cur;
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

void find_cycles_and_chains(struct analysis *a)
{
	struct tarjan tj = {0};
	size_t total = 0, k = 0;

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
		for (size_t j = 0; j < a->procs[i].n_threads; j++)
			tj.all[k++] = &a->procs[i].threads[j];
	tj.n = total;
	qsort(tj.all, total, sizeof(*tj.all), cmp_ptr);
	for (size_t i = 0; i < total; i++)
		tj.index[i] = -1;
	for (size_t i = 0; i < total; i++)
		if (tj.index[i] < 0 && tj.all[i]->n_edges)
			strongconnect(&tj, i);
	/* One cycle per component. */
	for (int id = 1; id <= tj.next_scc; id++)
		for (size_t i = 0; i < total; i++)
			if (tj.all[i]->scc == id) {
				extract_cycle(a, tj.all[i]);
				break;
			}
	/* Chains start at threads that wait, are not in a cycle, and nobody waits on. */
	for (size_t i = 0; i < total; i++) {
		struct athread *t = tj.all[i];
		if (t->n_edges && !t->scc && !is_waited_on(&tj, t))
			follow_chain(a, t);
	}
out:
	free(tj.all);
	free(tj.index);
	free(tj.low);
	free(tj.on_stack);
	free(tj.stack);
}
