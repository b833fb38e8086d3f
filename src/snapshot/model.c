/* SPDX-License-Identifier: MIT */
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "snapshot/model.h"

void mapping_done(struct osm_mapping *m)
{
	free(m->path);
	free(m->ext);
	memset(m, 0, sizeof(*m));
}

void process_free(struct osm_process *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->n_threads; i++)
		free(p->threads[i]);
	free(p->threads);
	for (size_t i = 0; i < p->n_maps; i++)
		mapping_done(&p->maps[i]);
	free(p->maps);
	free(p->exe);
	free(p->cmdline);
	free(p->auxv);
	free(p);
}

void snapshot_free(struct osm_snapshot *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n_procs; i++)
		process_free(s->procs[i]);
	free(s->procs);
	free(s->host);
	free(s->kernel);
	free(s);
}

struct osm_thread *process_add_thread(struct osm_process *p, pid_t tid)
{
	struct osm_thread *t;

	if (grow_array((void **)&p->threads, &p->cap_threads, p->n_threads + 1,
		       sizeof(*p->threads)))
		return NULL;
	t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->tid = tid;
	t->state = '?';
	p->threads[p->n_threads++] = t;
	return t;
}

struct osm_thread *process_find_thread(const struct osm_process *p, pid_t tid)
{
	for (size_t i = 0; i < p->n_threads; i++)
		if (p->threads[i]->tid == tid)
			return p->threads[i];
	return NULL;
}

size_t process_live_threads(const struct osm_process *p)
{
	size_t n = 0;
	for (size_t i = 0; i < p->n_threads; i++)
		n += !p->threads[i]->gone;
	return n;
}

int mapping_add_extent(struct osm_mapping *m, uint64_t off, uint64_t len, uint8_t *data)
{
	if (grow_array((void **)&m->ext, &m->cap_ext, m->n_ext + 1, sizeof(*m->ext)))
		return -ENOMEM;
	m->ext[m->n_ext++] = (struct osm_extent){.off = off, .len = len, .data = data};
	return 0;
}

size_t process_captured_threads(const struct osm_process *p)
{
	size_t n = 0;
	for (size_t i = 0; i < p->n_threads; i++)
		n += p->threads[i]->captured;
	return n;
}
