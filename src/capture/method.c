/* SPDX-License-Identifier: MIT */
/*
 * What the capture methods share (method.h): changing a target's method with the reason, the
 * checks before an injection, copying a target in the freeze, and the memory budget. The engine
 * (capture.c) uses them too; they call no method but through its ops table.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/timeutil.h"
#include "base/util.h"
#include "capture/capture.h"
#include "inject/inject.h"
#include "proc/pidref.h"
#include "proc/process.h"
#include "proc/procfs.h"

bool capture_target_ended(const struct target *t)
{
	struct proc_stat st;

	return !pidref_alive(&t->ref) || proc_read_stat(t->ref.procfd, "stat", &st) < 0 ||
	       st.state == 'Z' || st.state == 'X';
}

void capture_set_method(struct target *t, const struct capture_ops *m, const char *fmt, ...)
{
	va_list ap;
	char *s = NULL;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	if (t->method != m) {
		/* What the former method started goes; its state is the new method's room. */
		if (t->method && t->method->abandon)
			t->method->abandon(t);
		if (t->method && t->method->release)
			t->method->release(t);
		if (t->method_priv && m->priv_size) {
			memset(t->method_priv, 0, m->priv_size);
			if (m->priv_init)
				m->priv_init(t->method_priv);
		}
	}
	t->method = m;
	t->proc->method = capture_method_name(m->id);
	free(t->proc->method_reason);
	t->proc->method_reason = s;
}

int capture_injectable(struct capture *c, struct target *t, bool *ret_ok)
{
	const char *why = NULL;
	int r = inject_probe(t, &why);

	*ret_ok = r == 0;
	if (r == -EINTR || r == -ETIMEDOUT)
		return r;
	if (r < 0) {
		t->no_inject = true;
		capture_set_method(t, &capture_copy,
				   "%s: no thread can run an injected syscall (%s), so copied",
				   capture_method_name(c->requested), why ? why : strerror(-r));
	}
	return 0;
}

bool capture_every_thread_filtered(const struct target *t)
{
	const struct osm_process *p = t->proc;
	size_t live_threads = 0;

	for (size_t i = 0; i < p->n_threads; i++) {
		if (p->threads[i]->gone)
			continue;
		live_threads++;
		if (!inject_thread_filtered(t->ref.procfd, p->threads[i]->tid))
			return false;
	}
	return live_threads ? true : inject_thread_filtered(t->ref.procfd, p->pid);
}

/* The default budget (no --max-memory) holds the shared objects besides (each is kept once, and
 * cannot be kept with less: a PostgreSQL with 1 GiB of shared buffers would leave nothing of a
 * 1 GiB budget), within half of what the machine has available. */
static uint64_t shared_allowance(const struct capture *c, uint64_t avail)
{
	return c->max_memory_default ? MIN(shared_buffer_bytes(c), avail / 2) : 0;
}

uint64_t capture_budget(const struct capture *c)
{
	uint64_t avail = proc_memory_available_to_self();

	avail -= MIN(avail, avail / 10);
	return c->max_memory ? MIN(c->max_memory + shared_allowance(c, avail), avail) : avail;
}

uint64_t capture_budget_limit(const struct capture *c)
{
	return c->max_memory ? c->max_memory + shared_allowance(c, proc_memory_available_to_self())
			     : capture_budget(c);
}

uint64_t capture_budget_left(const struct capture *c)
{
	uint64_t held =
	    c->arena.mapped + c->bounce_len + c->cap_jobs * sizeof(*c->jobs) + c->layout_bytes;
	uint64_t b = capture_budget_limit(c);

	return b > held ? b - held : 0;
}

/* Plans the copy (jobs for the copy threads); counted with the layout in the pause. */
static int copy_all_jobs(struct capture *c, struct target *t, bool only_clone_misses)
{
	for (size_t i = 0; i < t->proc->n_maps; i++) {
		struct osm_mapping *m = &t->proc->maps[i];
		if (m->shared_object)
			continue; /* kept once for all its mappers (shared.c) */
		if (only_clone_misses && !clone_copies_in_freeze(m))
			continue;
		int r = capture_copy_mapping(c, t, m);
		if (r < 0)
			return r;
	}
	return 0;
}

int capture_copy_all(struct capture *c, struct target *t, bool only_clone_misses)
{
	uint64_t t0 = now_ns();
	int r = copy_all_jobs(c, t, only_clone_misses);

	timeline_pause_part(c->tl, PAUSE_LAYOUT, now_ns() - t0);
	return r;
}

uint64_t capture_copy_need(const struct target *t)
{
	uint64_t n = 0;

	for (size_t i = 0; i < t->proc->n_maps; i++)
		n += capture_planned_size(&t->proc->maps[i]);
	return n;
}

void capture_note_buffers(struct capture *c)
{
	uint64_t n = c->arena.mapped + c->bounce_len + c->cap_jobs * sizeof(*c->jobs) +
		     shared_buffer_bytes(c) + c->layout_bytes;

	c->peak_buffers = MAX(c->peak_buffers, n);
}
