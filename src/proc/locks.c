/* SPDX-License-Identifier: MIT */
/* Reading /proc/locks (see locks.h). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/fs.h"
#include "base/util.h"
#include "proc/locks.h"

#define MAX_LOCK_LINES 100000

static bool parse_line(const char *line, struct osm_file_lock *l)
{
	char type[16], mode[16], access[16], start[24], end[24];
	long long id, pid;
	unsigned maj, min;
	unsigned long long ino;
	int n = 0;

	memset(l, 0, sizeof(*l));
	if (sscanf(line, "%lld: %n", &id, &n) != 1 || n <= 0)
		return false;
	line += n;
	if (!strncmp(line, "-> ", 3)) {
		l->waiting = true;
		line += 3;
		while (!strncmp(line, "-> ", 3)) /* nested waiters (older kernels) */
			line += 3;
	}
	if (sscanf(line, "%15s %15s %15s %lld %x:%x:%llu %23s %23s", type, mode, access, &pid, &maj,
		   &min, &ino, start, end) != 9)
		return false;
	l->id = id;
	snprintf(l->type, sizeof(l->type), "%s", type);
	snprintf(l->mode, sizeof(l->mode), "%s", mode);
	snprintf(l->access, sizeof(l->access), "%s", access);
	l->pid = pid < -1 || pid > INT32_MAX ? -1 : (pid_t)pid;
	l->dev_major = maj;
	l->dev_minor = min;
	l->inode = ino;
	l->start = strtoull(start, NULL, 10);
	l->end = !strcmp(end, "EOF") ? -1 : (int64_t)strtoll(end, NULL, 10);
	return true;
}

int proc_locks_parse(const char *text, struct osm_file_lock **ret, size_t *ret_n)
{
	struct osm_file_lock *v = NULL;
	size_t n = 0, cap = 0, lines = 0;
	const char *p = text;

	while (p && *p && lines++ < MAX_LOCK_LINES) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);
		char line[256];
		struct osm_file_lock l;

		if (len < sizeof(line)) {
			memcpy(line, p, len);
			line[len] = 0;
			if (parse_line(line, &l)) {
				if (grow_array((void **)&v, &cap, n + 1, sizeof(*v))) {
					free(v);
					return -ENOMEM;
				}
				v[n++] = l;
			}
		}
		p = nl ? nl + 1 : NULL;
	}
	*ret = v;
	*ret_n = n;
	return 0;
}

int proc_fd_locks_parse(const char *fdinfo, struct osm_file_lock **ret, size_t *ret_n)
{
	struct osm_file_lock *v = NULL;
	size_t n = 0, cap = 0;

	*ret = NULL;
	*ret_n = 0;
	for (const char *p = fdinfo; p && (p = strstr(p, "lock:\t")) && n < 64; p += 6) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);
		char line[256];
		struct osm_file_lock l;

		if (p != fdinfo && p[-1] != '\n')
			continue;
		if (len - 6 >= sizeof(line))
			continue;
		memcpy(line, p + 6, len - 6);
		line[len - 6] = 0;
		if (!parse_line(line, &l) || l.waiting)
			continue;
		if (grow_array((void **)&v, &cap, n + 1, sizeof(*v))) {
			free(v);
			return -ENOMEM;
		}
		v[n++] = l;
	}
	*ret = v;
	*ret_n = n;
	return 0;
}

bool file_lock_same(const struct osm_file_lock *a, const struct osm_file_lock *b)
{
	return !strcmp(a->type, b->type) && !strcmp(a->access, b->access) && a->pid == b->pid &&
	       a->dev_major == b->dev_major && a->dev_minor == b->dev_minor &&
	       a->inode == b->inode && a->start == b->start && a->end == b->end;
}

/* The descriptors of the snapshot through which held lock l is held. */
static int find_holders(const struct osm_snapshot *s, struct osm_file_lock *l)
{
	size_t cap = 0;

	for (size_t i = 0; i < s->n_procs; i++)
		for (size_t j = 0; j < s->procs[i]->n_fds; j++) {
			const struct osm_fd *f = &s->procs[i]->fds[j];
			bool has = false;
			for (size_t k = 0; k < f->n_locks && !has; k++)
				has = file_lock_same(&f->locks[k], l);
			if (!has)
				continue;
			if (grow_array((void **)&l->holders, &cap, l->n_holders + 1,
				       sizeof(*l->holders)))
				return -ENOMEM;
			l->holders[l->n_holders++] =
			    (struct osm_lock_holder){s->procs[i]->pid, f->fd};
			break; /* one descriptor per process */
		}
	return 0;
}

static const char *path_of(const struct osm_snapshot *s, uint64_t inode)
{
	for (size_t i = 0; i < s->n_procs; i++)
		for (size_t j = 0; j < s->procs[i]->n_fds; j++) {
			const struct osm_fd *f = &s->procs[i]->fds[j];
			if (f->inode == inode && f->target && f->target[0] == '/' &&
			    strcmp(f->type, "socket") && strcmp(f->type, "pipe"))
				return f->target;
		}
	return NULL;
}

static bool in_snapshot(const struct osm_snapshot *s, pid_t pid)
{
	for (size_t i = 0; i < s->n_procs; i++)
		if (s->procs[i]->pid == pid)
			return true;
	return false;
}

int proc_locks_load(struct osm_snapshot *s)
{
	_cleanup_free_ char *text = NULL;
	struct osm_file_lock *all = NULL;
	size_t n = 0, kept = 0;
	bool *keep;
	int r;

	r = read_file_at(AT_FDCWD, "/proc/locks", &text, NULL);
	if (r < 0)
		return r;
	r = proc_locks_parse(text, &all, &n);
	if (r < 0)
		return r;
	keep = calloc(n + 1, sizeof(bool));
	if (!keep) {
		free(all);
		return -ENOMEM;
	}
	/* A lock group (a lock and its waiters, on consecutive lines with one id) is kept whole
	 * when one of its lines touches the snapshot. */
	for (size_t i = 0; i < n;) {
		size_t end = i;
		bool touch = false;
		while (end < n && all[end].id == all[i].id) {
			touch |= in_snapshot(s, all[end].pid) || path_of(s, all[end].inode);
			end++;
		}
		for (size_t j = i; j < end; j++)
			keep[j] = touch;
		i = end;
	}
	for (size_t i = 0; i < n; i++) {
		const char *path;
		if (!keep[i])
			continue;
		all[kept] = all[i];
		path = path_of(s, all[i].inode);
		all[kept].path = path ? strdup(path) : NULL;
		if (!all[kept].waiting)
			(void)find_holders(s, &all[kept]);
		kept++;
	}
	free(keep);
	file_locks_free(s->file_locks, s->n_file_locks);
	s->file_locks = all;
	s->n_file_locks = kept;
	s->has_file_locks = true;
	return 0;
}
