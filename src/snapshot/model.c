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

void fd_done(struct osm_fd *f)
{
	free(f->target);
	free(f->local);
	free(f->remote);
	free(f->epoll_tfds);
	file_locks_free(f->locks, f->n_locks);
	memset(f, 0, sizeof(*f));
}

void kv_free(struct osm_kv *kv, size_t n)
{
	for (size_t i = 0; kv && i < n; i++)
		free(kv[i].key);
	free(kv);
}

void system_done(struct osm_system *sys)
{
	free(sys->cpus);
	kv_free(sys->meminfo, sys->n_meminfo);
	kv_free(sys->vmstat, sys->n_vmstat);
	for (size_t i = 0; i < sys->n_swaps; i++) {
		free(sys->swaps[i].name);
		free(sys->swaps[i].type);
	}
	free(sys->swaps);
	free(sys->top);
	memset(sys, 0, sizeof(*sys));
}

void process_free(struct osm_process *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->n_threads; i++) {
		free(p->threads[i]->kstack);
		free(p->threads[i]);
	}
	for (size_t i = 0; i < p->n_fds; i++)
		fd_done(&p->fds[i]);
	free(p->fds);
	free(p->cgroup);
	free(p->capture_note);
	free(p->method_reason);
	free(p->threads);
	for (size_t i = 0; i < p->n_maps; i++)
		mapping_done(&p->maps[i]);
	free(p->maps);
	free(p->exe);
	free(p->cmdline);
	free(p->auxv);
	free(p);
}

void file_locks_free(struct osm_file_lock *v, size_t n)
{
	for (size_t i = 0; v && i < n; i++) {
		free(v[i].path);
		free(v[i].holders);
	}
	free(v);
}

void snapshot_free(struct osm_snapshot *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n_procs; i++)
		process_free(s->procs[i]);
	free(s->procs);
	file_locks_free(s->file_locks, s->n_file_locks);
	for (size_t i = 0; i < s->n_shared; i++) {
		free(s->shared[i].path);
		free(s->shared[i].mappers);
		free(s->shared[i].kept_reason);
		free(s->shared[i].writers_outside);
	}
	free(s->shared);
	system_done(&s->sys);
	free(s->scope_arg);
	free(s->host);
	free(s->kernel);
	free(s->boot_id);
	free(s->trigger_json);
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
	t->syscall_nr = -1;
	t->last_cpu = -1;
	t->switches_in_sample = -1;
	t->voluntary_in_sample = -1;
	t->last_ran_ago_ms = -1;
	t->switches_after_thaw = -1;
	t->resumed_nr = -1;
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
	m->ext[m->n_ext++] = (struct osm_extent){.off = off, .len = len, .data = data, .fd = -1};
	return 0;
}

int mapping_add_fd_extent(struct osm_mapping *m, uint64_t off, uint64_t len, int fd, uint64_t src)
{
	if (grow_array((void **)&m->ext, &m->cap_ext, m->n_ext + 1, sizeof(*m->ext)))
		return -ENOMEM;
	m->ext[m->n_ext++] = (struct osm_extent){.off = off, .len = len, .fd = fd, .src = src};
	return 0;
}

size_t process_captured_threads(const struct osm_process *p)
{
	size_t n = 0;
	for (size_t i = 0; i < p->n_threads; i++)
		n += p->threads[i]->captured;
	return n;
}

static const char *const capture_method_names[] = {
    [METHOD_AUTO] = "auto",	  [METHOD_COPY] = "copy",	[METHOD_CLONE] = "clone",
    [METHOD_PRECOPY] = "precopy", [METHOD_UNKNOWN] = "unknown",
};

const char *capture_method_name(enum capture_method m)
{
	return (size_t)m < ARRAY_SIZE(capture_method_names) ? capture_method_names[m] : "unknown";
}

enum capture_method capture_method_parse(const char *name)
{
	for (size_t i = 0; name && i < ARRAY_SIZE(capture_method_names); i++)
		if (!strcmp(name, capture_method_names[i]))
			return (enum capture_method)i;
	return METHOD_UNKNOWN;
}

static const char *const capture_state_names[] = {
    [CAPTURE_MEMORY] = "memory", [CAPTURE_STATE] = "state",	[CAPTURE_SKIPPED] = "skipped",
    [CAPTURE_EXITED] = "exited", [CAPTURE_UNKNOWN] = "unknown",
};

const char *capture_state_name(enum osm_capture c)
{
	return (size_t)c < ARRAY_SIZE(capture_state_names) ? capture_state_names[c] : "unknown";
}

enum osm_capture capture_state_parse(const char *name)
{
	for (size_t i = 0; name && i < ARRAY_SIZE(capture_state_names); i++)
		if (!strcmp(name, capture_state_names[i]))
			return (enum osm_capture)i;
	return CAPTURE_UNKNOWN;
}

bool capture_state_frozen(enum osm_capture c)
{
	return c == CAPTURE_MEMORY || c == CAPTURE_STATE;
}
