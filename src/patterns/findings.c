/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "patterns/pattern.h"

const char *severity_name(enum severity s)
{
	return s == SEV_ERROR ? "error" : s == SEV_WARNING ? "warning" : "info";
}

static char *vfmt(const char *fmt, va_list ap)
{
	char *s = NULL;
	if (vasprintf(&s, fmt, ap) < 0)
		return NULL;
	return s;
}

struct finding *finding_new(struct findings *out, const struct pattern *p, enum severity sev,
			    const char *fmt, ...)
{
	struct finding *f;
	va_list ap;

	if (grow_array((void **)&out->v, &out->cap, out->n + 1, sizeof(*out->v)))
		return NULL;
	f = &out->v[out->n++];
	memset(f, 0, sizeof(*f));
	f->pattern = p;
	f->severity = sev;
	va_start(ap, fmt);
	f->summary = vfmt(fmt, ap);
	va_end(ap);
	return f;
}

static void add_unique(pid_t **v, size_t *n, size_t *cap, pid_t x)
{
	for (size_t i = 0; i < *n; i++)
		if ((*v)[i] == x)
			return;
	if (grow_array((void **)v, cap, *n + 1, sizeof(pid_t)))
		return;
	(*v)[(*n)++] = x;
}

void finding_pid(struct finding *f, pid_t pid)
{
	if (f)
		add_unique(&f->pids, &f->n_pids, &f->cap_pids, pid);
}

void finding_tid(struct finding *f, pid_t tid)
{
	if (f)
		add_unique(&f->tids, &f->n_tids, &f->cap_tids, tid);
}

static void push_str(char ***v, size_t *n, size_t *cap, char *s)
{
	if (!s)
		return;
	if (grow_array((void **)v, cap, *n + 1, sizeof(char *))) {
		free(s);
		return;
	}
	(*v)[(*n)++] = s;
}

void finding_line(struct finding *f, const char *fmt, ...)
{
	va_list ap;
	if (!f)
		return;
	va_start(ap, fmt);
	push_str(&f->lines, &f->n_lines, &f->cap_lines, vfmt(fmt, ap));
	va_end(ap);
}

void finding_rec(struct finding *f, const char *fmt, ...)
{
	va_list ap;
	if (!f)
		return;
	va_start(ap, fmt);
	push_str(&f->recs, &f->n_recs, &f->cap_recs, vfmt(fmt, ap));
	va_end(ap);
}

void finding_relate(struct finding *f, const char *fmt, ...)
{
	va_list ap;
	if (!f)
		return;
	va_start(ap, fmt);
	push_str(&f->related, &f->n_related, &f->cap_related, vfmt(fmt, ap));
	va_end(ap);
}

json_object *finding_ev(struct finding *f)
{
	if (!f->evidence)
		f->evidence = json_object_new_object();
	return f->evidence;
}

static void free_strs(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

void findings_done(struct findings *fs)
{
	for (size_t i = 0; i < fs->n; i++) {
		struct finding *f = &fs->v[i];
		free(f->id);
		free(f->summary);
		free(f->pids);
		free(f->tids);
		free_strs(f->lines, f->n_lines);
		free_strs(f->recs, f->n_recs);
		free_strs(f->related, f->n_related);
		json_object_put(f->evidence);
	}
	free(fs->v);
	memset(fs, 0, sizeof(*fs));
}

/* Pattern cooperation: where one finding may explain another. */
static const struct {
	const char *a, *b, *why;
	bool by_thread; /* linked through a shared thread; else through a shared process */
} relations[] = {
    {"wait-chain", "deadlock", "the chain runs into this deadlock", true},
    {"high-contention", "wait-chain", "the contended lock is a link of this chain", true},
    {"high-contention", "spiking-thread", "the lock's owner spins", true},
    {"blocked-thread", "high-contention", "it waits on the contended lock", true},
    {"insufficient-memory", "process-factory", "the process factory may explain the shortage",
     false},
    {"insufficient-memory", "handle-leak", "leaked descriptors hold memory", false},
    {"busy-system", "spiking-thread", "this thread keeps a CPU busy", false},
    {"busy-system", "process-factory", "the process factory keeps the CPUs busy", false},
    {"zombie-processes", "process-factory", "the factory's children are not reaped", false},
    {"handle-leak", "process-factory", "children may inherit the leaked descriptors", false},
    {"paged-out-stack", "insufficient-memory", "memory pressure pushed the stacks out", false},
};

static bool overlap(const pid_t *a, size_t na, const pid_t *b, size_t nb)
{
	for (size_t i = 0; i < na; i++)
		for (size_t j = 0; j < nb; j++)
			if (a[i] == b[j])
				return true;
	return false;
}

static void relate(struct findings *fs)
{
	for (size_t i = 0; i < fs->n; i++)
		for (size_t j = 0; j < fs->n; j++) {
			struct finding *f = &fs->v[i], *g = &fs->v[j];
			if (i == j || f->n_related >= 6)
				continue;
			for (size_t k = 0; k < sizeof(relations) / sizeof(relations[0]); k++) {
				if (strcmp(f->pattern->id, relations[k].a) ||
				    strcmp(g->pattern->id, relations[k].b))
					continue;
				bool linked =
				    relations[k].by_thread
					? overlap(f->tids, f->n_tids, g->tids, g->n_tids)
					: !f->n_pids || !g->n_pids ||
					      overlap(f->pids, f->n_pids, g->pids, g->n_pids);
				if (!linked)
					continue;
				finding_relate(f, "%s: %s", g->id, relations[k].why);
			}
		}
}

void findings_finish(struct findings *fs)
{
	/* Stable insertion sort by severity, most severe first. */
	for (size_t i = 1; i < fs->n; i++) {
		struct finding tmp = fs->v[i];
		size_t j = i;
		while (j > 0 && fs->v[j - 1].severity < tmp.severity) {
			fs->v[j] = fs->v[j - 1];
			j--;
		}
		fs->v[j] = tmp;
	}
	for (size_t i = 0; i < fs->n; i++) {
		size_t n = 1;
		if (fs->v[i].id)
			continue;
		for (size_t j = 0; j < i; j++)
			n += fs->v[j].pattern == fs->v[i].pattern;
		if (asprintf(&fs->v[i].id, "%s#%zu", fs->v[i].pattern->id, n) < 0)
			fs->v[i].id = NULL;
	}
	/* Links name ids, so they come last; the chain's own link to its deadlock is redundant. */
	for (size_t i = 0; i < fs->n; i++) {
		struct finding *f = &fs->v[i];
		for (size_t j = 0; j < f->n_related; j++)
			free(f->related[j]);
		f->n_related = 0;
	}
	relate(fs);
}
