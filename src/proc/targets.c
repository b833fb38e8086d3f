/* SPDX-License-Identifier: MIT */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "base/fs.h"
#include "base/log.h"
#include "base/parse.h"
#include "base/util.h"
#include "proc/procfs.h"
#include "proc/targets.h"

struct target *target_set_add(struct target_set *set, struct osm_snapshot *snap, pid_t pid)
{
	struct target *t;
	struct osm_process *p;

	if (grow_array((void **)&set->v, &set->cap, set->n + 1, sizeof(*set->v)))
		return NULL;
	if (grow_array((void **)&snap->procs, &snap->cap_procs, snap->n_procs + 1,
		       sizeof(*snap->procs)))
		return NULL;
	t = calloc(1, sizeof(*t));
	p = calloc(1, sizeof(*p));
	if (!t || !p) {
		free(t);
		free(p);
		return NULL;
	}
	p->pid = pid;
	t->ref = PIDREF_NULL;
	t->proc = p;
	t->pagemap_fd = -1;
	t->uffd = -1;
	t->stage.fd = -1;
	snap->procs[snap->n_procs++] = p;
	set->v[set->n++] = t;
	return t;
}

struct target *target_set_find(const struct target_set *set, pid_t pid)
{
	for (size_t i = 0; i < set->n; i++)
		if (set->v[i]->proc->pid == pid)
			return set->v[i];
	return NULL;
}

void target_set_done(struct target_set *set)
{
	for (size_t i = 0; i < set->n; i++) {
		pidref_done(&set->v[i]->ref);
		free(set->v[i]);
	}
	free(set->v);
	*set = (struct target_set){0};
}

static int cmp_pid(const void *a, const void *b)
{
	pid_t x = *(const pid_t *)a, y = *(const pid_t *)b;
	return (x > y) - (x < y);
}

static int push_pid(pid_t **v, size_t *n, size_t *cap, pid_t pid)
{
	if (grow_array((void **)v, cap, *n + 1, sizeof(**v)))
		return -ENOMEM;
	(*v)[(*n)++] = pid;
	return 0;
}

static void sort_unique(pid_t *v, size_t *n)
{
	size_t w = 0;
	if (!*n)
		return; /* an empty cgroup: v may be NULL */
	qsort(v, *n, sizeof(*v), cmp_pid);
	for (size_t i = 0; i < *n; i++)
		if (w == 0 || v[w - 1] != v[i])
			v[w++] = v[i];
	*n = w;
}

/* Every process in /proc with its parent; kernel threads marked: into s->all, growing it only
 * when it is too small (getdents64 into the stack: no DIR is allocated). */
static int scan_proc(struct targets_scratch *s, size_t *ret_n)
{
	_cleanup_close_ int fd = open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	char ents[8192] __attribute__((aligned(8)));
	size_t n = 0;

	if (fd < 0)
		return log_error(errno, "cannot list /proc: %m");
	for (;;) {
		long got = syscall(SYS_getdents64, fd, ents, sizeof(ents));
		if (got < 0)
			return log_error(errno, "cannot list /proc: %m");
		if (got == 0)
			break;
		for (long off = 0; off < got;) {
			const struct dirent64 *de = (const struct dirent64 *)(ents + off);
			struct proc_stat st;
			char path[64];
			pid_t pid;

			if (de->d_reclen == 0 || off + de->d_reclen > got)
				return log_error(EIO, "cannot list /proc: a bad directory entry");
			off += de->d_reclen;
			if (parse_pid(de->d_name, &pid) < 0)
				continue;
			snprintf(path, sizeof(path), "%d/stat", pid);
			if (proc_read_stat(fd, path, &st) < 0)
				continue; /* gone meanwhile */
			if (grow_array((void **)&s->all, &s->cap_all, n + 1, sizeof(*s->all)))
				return log_error(ENOMEM, "out of memory");
			s->all[n++] =
			    (struct proc_entry){.pid = pid,
						.ppid = st.ppid,
						.kthread = (st.flags & PF_KTHREAD_FLAG) != 0};
		}
	}
	*ret_n = n;
	return 0;
}

int targets_scratch_reserve(struct targets_scratch *s, size_t n_procs)
{
	if (grow_array((void **)&s->all, &s->cap_all, n_procs, sizeof(*s->all)) ||
	    grow_array((void **)&s->out, &s->cap_out, n_procs, sizeof(*s->out)))
		return -ENOMEM;
	return 0;
}

void targets_scratch_done(struct targets_scratch *s)
{
	free(s->all);
	free(s->out);
	*s = (struct targets_scratch){0};
}

int targets_descendants_in(struct targets_scratch *s, const pid_t *roots, size_t n_roots,
			   const pid_t **ret, size_t *ret_n)
{
	size_t n_all = 0, n = 0;
	int r;

	r = scan_proc(s, &n_all);
	if (r < 0)
		return r;
	for (size_t i = 0; i < n_roots; i++)
		if (push_pid(&s->out, &n, &s->cap_out, roots[i]) < 0)
			return log_error(ENOMEM, "out of memory");
	/* Breadth first: out grows while we walk it. */
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < n_all; j++)
			if (s->all[j].ppid == s->out[i] && !s->all[j].kthread &&
			    s->all[j].pid != s->out[i] && s->all[j].pid != getpid()) {
				bool seen = false;
				for (size_t k = 0; k < n && !seen; k++)
					seen = s->out[k] == s->all[j].pid;
				if (!seen && push_pid(&s->out, &n, &s->cap_out, s->all[j].pid) < 0)
					return log_error(ENOMEM, "out of memory");
			}
	sort_unique(s->out, &n);
	*ret = s->out;
	*ret_n = n;
	return 0;
}

int targets_descendants(const pid_t *roots, size_t n_roots, pid_t **ret, size_t *ret_n)
{
	struct targets_scratch s = {0};
	const pid_t *out;
	size_t n;
	int r = targets_descendants_in(&s, roots, n_roots, &out, &n);

	if (r == 0) {
		*ret = TAKE_PTR(s.out);
		*ret_n = n;
	}
	targets_scratch_done(&s);
	return r;
}

int targets_cgroup(const char *path, pid_t **ret, size_t *ret_n)
{
	_cleanup_free_ char *full = NULL, *buf = NULL;
	_cleanup_close_ int dfd = -1;
	pid_t *out = NULL;
	size_t n = 0, cap = 0;
	char *line, *save = NULL;
	int r;

	/* A path under /sys/fs/cgroup, or relative to it ("system.slice/x.service"). */
	if (path[0] == '/')
		full = strdup(path);
	else if (asprintf(&full, "/sys/fs/cgroup/%s", path) < 0)
		full = NULL;
	if (!full)
		return log_error(ENOMEM, "out of memory");
	dfd = open(full, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return log_error(errno, "cannot open cgroup %s: %m", full);
	/* cgroup.procs lists processes in v2 and v1 alike. */
	r = read_file_at(dfd, "cgroup.procs", &buf, NULL);
	if (r < 0)
		return log_error(r, "%s is not a cgroup directory (no cgroup.procs): %m", full);
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		pid_t pid;
		if (parse_pid(line, &pid) < 0)
			continue;
		if (pid == getpid())
			continue;
		if (push_pid(&out, &n, &cap, pid) < 0) {
			free(out);
			return log_error(ENOMEM, "out of memory");
		}
	}
	sort_unique(out, &n);
	*ret = out;
	*ret_n = n;
	return 0;
}

int targets_all(pid_t **ret, size_t *ret_n)
{
	struct targets_scratch s = {0};
	pid_t *out = NULL;
	size_t n_all = 0, n = 0, cap = 0;
	int r;

	r = scan_proc(&s, &n_all);
	if (r < 0) {
		targets_scratch_done(&s);
		return r;
	}
	for (size_t i = 0; i < n_all; i++) {
		if (s.all[i].kthread || s.all[i].pid == getpid())
			continue;
		if (push_pid(&out, &n, &cap, s.all[i].pid) < 0) {
			free(out);
			targets_scratch_done(&s);
			return log_error(ENOMEM, "out of memory");
		}
	}
	targets_scratch_done(&s);
	sort_unique(out, &n);
	*ret = out;
	*ret_n = n;
	return 0;
}
