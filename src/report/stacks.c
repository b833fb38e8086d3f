/* SPDX-License-Identifier: MIT */
/* The stack trace collection: threads with identical stacks (same functions, or same module
 * offsets where there is no symbol) that also wait on the same object (the same lock address,
 * the same pipe or socket; not for ownerless waits, such as pool workers each on its own
 * condition variable), grouped, across processes. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "report/report.h"
#include "snapshot/describe.h"

static bool frame_same(const struct frame *x, const struct frame *y)
{
	if (x->kind != y->kind)
		return false;
	if (x->kind == FRAME_PYTHON || x->kind == FRAME_JAVA)
		return x->function && y->function && !strcmp(x->function, y->function) &&
		       x->line == y->line &&
		       (x->file == y->file || (x->file && y->file && !strcmp(x->file, y->file)));
	if (x->function || y->function)
		return x->function && y->function && !strcmp(x->function, y->function);
	if (!x->module || !y->module)
		return x->pc == y->pc;
	return !strcmp(x->module, y->module) && x->offset == y->offset;
}

/* The object a thread waits on: its kind and the lock's address, or the descriptor's inode. */
static uint64_t wait_object(const struct athread *t)
{
	if (t->wait.addr)
		return t->wait.addr;
	if (t->wait.fd >= 0) {
		const struct osm_fd *f = process_find_fd(t->proc->p, t->wait.fd);
		return f && f->inode ? f->inode : (uint64_t)t->wait.fd;
	}
	return 0;
}

/* An ownerless wait nothing leads from (an idle pool worker parked on its own condition
 * variable): its object tells nothing about who would wake it. */
static bool ownerless(const struct athread *t)
{
	return !t->n_edges && (t->wait.kind == WAIT_CONDVAR || t->wait.kind == WAIT_SEMAPHORE ||
			       t->wait.kind == WAIT_FUTEX);
}

static bool stack_same(const struct athread *a, const struct athread *b)
{
	if (a->n_frames != b->n_frames)
		return false;
	/* Two threads in the same code waiting on different mutexes are not one group; pool
	 * workers each parked on its own condition variable are. */
	if (a->wait.kind != b->wait.kind ||
	    (wait_object(a) != wait_object(b) && !(ownerless(a) && ownerless(b))))
		return false;
	for (size_t i = 0; i < a->n_frames; i++)
		if (!frame_same(&a->frames[i], &b->frames[i]))
			return false;
	/* Holding the GIL sets a thread apart from its look-alikes. */
	return a->holds_gil == b->holds_gil;
}

static int cmp_group(const void *x, const void *y)
{
	const struct stack_group *a = x, *b = y;
	return (a->n < b->n) - (a->n > b->n);
}

int stack_groups(const struct analysis *a, struct stack_group **ret, size_t *ret_n)
{
	struct stack_group *g = NULL;
	size_t n = 0, cap = 0;

	for (size_t i = 0; i < a->n_procs; i++)
		for (size_t j = 0; j < a->procs[i].n_threads; j++) {
			struct athread *t = &a->procs[i].threads[j];
			size_t k;
			size_t gcap;
			if (!t->n_frames)
				continue;
			for (k = 0; k < n && !stack_same(g[k].threads[0], t); k++)
				;
			if (k == n) {
				if (grow_array((void **)&g, &cap, n + 1, sizeof(*g))) {
					stack_groups_free(g, n);
					return -ENOMEM;
				}
				g[n++] = (struct stack_group){0};
			}
			gcap = g[k].n;
			if (grow_array((void **)&g[k].threads, &gcap, g[k].n + 1, sizeof(void *))) {
				stack_groups_free(g, n);
				return -ENOMEM;
			}
			g[k].threads[g[k].n++] = t;
		}
	if (n > 1)
		qsort(g, n, sizeof(*g), cmp_group);
	*ret = g;
	*ret_n = n;
	return 0;
}

void stack_groups_free(struct stack_group *g, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(g[i].threads);
	free(g);
}
