/* SPDX-License-Identifier: MIT */
/*
 * The watcher's sampler: which processes are watched (fixed PIDs, trees found anew, a cgroup's
 * members found anew, so a service restarted under a new pid is watched again), and what is
 * read of each at every tick. Everything comes from /proc files that the kernel fills without
 * stopping the process: stat, task/TID/schedstat, the fd directory, limits, cgroup. A process
 * is known by its pid and start time together, so a reused pid is a new process with fresh
 * condition state. What cannot be read (a process that became unreadable) is reported once per
 * process and kind, and that reading is left unknown; the watch goes on.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/fs.h"
#include "base/log.h"
#include "base/parse.h"
#include "base/util.h"
#include "proc/process.h"
#include "proc/procfs.h"
#include "proc/targets.h"
#include "watch/watch.h"

struct wstat {
	char state;
	pid_t ppid;
	unsigned flags;
	uint64_t utime, stime, threads, starttime, rss_pages;
	char comm[17];
};

/* /proc/PID/stat: the fields after the command name, which may hold spaces and ')'. */
static int parse_stat(const char *buf, struct wstat *ret)
{
	const char *open = strchr(buf, '('), *close = strrchr(buf, ')');
	unsigned long long v[64] = {0};
	const char *p;
	size_t len;
	int field = 3;

	if (!open || !close || close < open || close[1] != ' ' || !close[2])
		return -EINVAL;
	len = MIN((size_t)(close - open - 1), sizeof(ret->comm) - 1);
	memcpy(ret->comm, open + 1, len);
	ret->comm[len] = 0;
	ret->state = close[2];
	p = close + 3;
	while (*p && field < 60) {
		char *end;
		field++;
		while (*p == ' ')
			p++;
		v[field] = strtoull(p, &end, 10);
		if (end == p)
			break;
		p = end;
	}
	if (field < 24)
		return -EINVAL;
	ret->ppid = (pid_t)v[4];
	ret->flags = (unsigned)v[9];
	ret->utime = v[14];
	ret->stime = v[15];
	ret->threads = v[20];
	ret->starttime = v[22];
	ret->rss_pages = v[24];
	return 0;
}

struct wproc *watch_find_proc(const struct watch *w, pid_t pid)
{
	for (size_t i = 0; i < w->n_procs; i++)
		if (w->procs[i]->pid == pid)
			return w->procs[i];
	return NULL;
}

struct wthread *wproc_find_thread(const struct wproc *p, pid_t tid)
{
	for (size_t i = 0; i < p->n_thr; i++)
		if (p->thr[i].tid == tid)
			return &p->thr[i];
	return NULL;
}

static void wproc_free(struct wproc *p)
{
	if (!p)
		return;
	pidref_done(&p->ref);
	if (p->memfd >= 0)
		close(p->memfd);
	free(p->thr);
	free(p);
}

static int add_proc(struct watch *w, pid_t pid)
{
	_cleanup_free_ char *buf = NULL;
	struct wproc *p;
	struct wstat st;
	int r;

	if (pid == w->self || w->n_procs >= WATCH_MAX_PROCS)
		return 0;
	p = calloc(1, sizeof(*p));
	if (!p)
		return log_error(ENOMEM, "out of memory");
	p->memfd = -1;
	p->cpu_pct = -1;
	r = pidref_open(pid, &p->ref);
	if (r < 0 || read_file_at(p->ref.procfd, "stat", &buf, NULL) < 0 ||
	    parse_stat(buf, &st) < 0 || st.ppid == w->self || (st.flags & PF_KTHREAD_FLAG)) {
		/* gone already, one of ours (a snapshot or a health check), or a kernel thread */
		wproc_free(p);
		return 0;
	}
	p->pid = pid;
	p->starttime = st.starttime;
	memcpy(p->comm, st.comm, sizeof(p->comm));
	p->ppid = st.ppid;
	if (grow_array((void **)&w->procs, &w->cap_procs, w->n_procs + 1, sizeof(*w->procs))) {
		wproc_free(p);
		return log_error(ENOMEM, "out of memory");
	}
	w->procs[w->n_procs++] = p;
	return 0;
}

static void drop_gone(struct watch *w)
{
	size_t k = 0;
	for (size_t i = 0; i < w->n_procs; i++) {
		if (w->procs[i]->gone || !pidref_alive(&w->procs[i]->ref)) {
			log_debug("pid %d (%s) is gone", w->procs[i]->pid, w->procs[i]->comm);
			wproc_free(w->procs[i]);
			continue;
		}
		w->procs[k++] = w->procs[i];
	}
	w->n_procs = k;
}

#define CGROUP_MAX_DEPTH 32
#define CGROUP_MAX_DIRS	 20000

struct pidvec {
	pid_t *v;
	size_t n, cap;
	size_t dirs;
};

/* Every member of the cgroup open at dfd and of the cgroups below it. */
static int cgroup_walk(int dfd, int depth, struct pidvec *out)
{
	_cleanup_free_ char *procs = NULL;
	_cleanup_closedir_ DIR *d = NULL;
	struct dirent *de;
	int fd;

	if (depth > CGROUP_MAX_DEPTH || ++out->dirs > CGROUP_MAX_DIRS)
		return 0;
	if (read_file_at(dfd, "cgroup.procs", &procs, NULL) == 0)
		for (char *line = procs, *nl; line && *line; line = nl ? nl + 1 : NULL) {
			pid_t pid;
			nl = strchr(line, '\n');
			if (nl)
				*nl = 0;
			if (parse_pid(line, &pid) < 0)
				continue;
			if (grow_array((void **)&out->v, &out->cap, out->n + 1, sizeof(*out->v)))
				return -ENOMEM;
			out->v[out->n++] = pid;
		}
	fd = dup(dfd);
	if (fd < 0 || !(d = fdopendir(fd))) {
		if (fd >= 0)
			close(fd);
		return 0;
	}
	while ((de = readdir(d))) {
		int sub;
		if (de->d_type != DT_DIR || de->d_name[0] == '.')
			continue;
		sub = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (sub < 0)
			continue;
		int r = cgroup_walk(sub, depth + 1, out);
		close(sub);
		if (r < 0)
			return r;
	}
	return 0;
}

int watch_cgroup_members(const char *path, pid_t **ret, size_t *ret_n)
{
	_cleanup_free_ char *full = NULL;
	_cleanup_close_ int dfd = -1;
	struct pidvec out = {0};
	int r;

	/* "/" is the whole machine: the unified hierarchy's root (its mount, where v1 and v2
	 * hierarchies live side by side), else /sys/fs/cgroup */
	if (!strcmp(path, "/"))
		full =
		    strdup(faccessat(AT_FDCWD, "/sys/fs/cgroup/unified/cgroup.procs", F_OK, 0) == 0
			       ? "/sys/fs/cgroup/unified"
			       : "/sys/fs/cgroup");
	else if (path[0] == '/')
		full = strdup(path);
	else if (asprintf(&full, "/sys/fs/cgroup/%s", path) < 0)
		full = NULL;
	if (!full)
		return log_error(ENOMEM, "out of memory");
	dfd = open(full, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return log_error(errno, "cannot open cgroup %s: %m", full);
	if (faccessat(dfd, "cgroup.procs", F_OK, 0) < 0)
		return log_error(ENOENT, "%s is not a cgroup directory (no cgroup.procs)", full);
	r = cgroup_walk(dfd, 0, &out);
	if (r < 0) {
		free(out.v);
		return log_error(r, "out of memory");
	}
	*ret = out.v;
	*ret_n = out.n;
	return 0;
}

int watch_refresh_targets(struct watch *w, const struct watch_targets *t)
{
	_cleanup_free_ pid_t *pids = NULL;
	size_t n = 0;
	int r;

	drop_gone(w);
	if (t->cgroup) {
		r = watch_cgroup_members(t->cgroup, &pids, &n);
		if (r < 0)
			return r; /* the cgroup itself is gone: logged */
	} else if (t->tree) {
		pid_t roots[WATCH_MAX_CONDS * 64];
		size_t n_roots = 0;
		/* The roots given, and every watched process, so the tree stays known through
		 * a root that exits while its children live on. */
		for (size_t i = 0; i < t->n_pids && n_roots < ARRAY_SIZE(roots); i++)
			roots[n_roots++] = t->pids[i];
		for (size_t i = 0; i < w->n_procs && n_roots < ARRAY_SIZE(roots); i++)
			roots[n_roots++] = w->procs[i]->pid;
		r = targets_descendants(roots, n_roots, &pids, &n);
		if (r < 0)
			return r;
	} else if (!w->started) {
		for (size_t i = 0; i < t->n_pids; i++)
			if ((r = add_proc(w, t->pids[i])) < 0)
				return r;
		return (int)MIN(w->n_procs, (size_t)INT32_MAX);
	}
	for (size_t i = 0; i < n; i++) {
		if (watch_find_proc(w, pids[i]))
			continue;
		if ((r = add_proc(w, pids[i])) < 0)
			return r;
	}
	return (int)MIN(w->n_procs, (size_t)INT32_MAX);
}

static void warn_once(struct wproc *p, unsigned what, const char *name, int err)
{
	if (p->warned & what)
		return;
	p->warned |= what;
	log_warn("cannot read the %s of pid %d (%s): %s; watching the rest", name, p->pid, p->comm,
		 strerror(err));
}

static void reset_levels(struct wproc *p)
{
	memset(p->since, 0, sizeof(p->since));
	p->n_thr = 0;
	p->n_hist = 0;
	p->cpu_pct = -1;
}

/* A thread's CPU over a window of about a second, as update_cpu() for processes: one tick is
 * too short to judge a thread that a loaded machine runs in bursts. */
static void thread_cpu(struct wthread *t, uint64_t now)
{
	unsigned from = 0;

	if (t->n_hist == WATCH_THREAD_HIST) {
		memmove(t->hist_t, t->hist_t + 1, sizeof(t->hist_t[0]) * (WATCH_THREAD_HIST - 1));
		memmove(t->hist_run, t->hist_run + 1,
			sizeof(t->hist_run[0]) * (WATCH_THREAD_HIST - 1));
		t->n_hist--;
	}
	t->hist_t[t->n_hist] = now;
	t->hist_run[t->n_hist++] = t->run_ns;
	if (t->n_hist < 2) {
		t->cpu_pct = -1;
		return;
	}
	for (unsigned i = 0; i + 1 < t->n_hist; i++)
		if (now - t->hist_t[i] >= WATCH_CPU_WINDOW_NS)
			from = i;
	t->cpu_pct =
	    t->run_ns >= t->hist_run[from]
		? 100.0 * (double)(t->run_ns - t->hist_run[from]) / (double)(now - t->hist_t[from])
		: -1;
}

static void sample_threads(struct watch *w, struct wproc *p, uint64_t dt, uint64_t now)
{
	_cleanup_free_ pid_t *tids = NULL;
	size_t n = 0, k = 0;
	int r = proc_list_tasks(p->ref.procfd, &tids, &n);

	if (r < 0) {
		if (r != -ESRCH)
			warn_once(p, NEED_THREADS, "threads", -r);
		return;
	}
	n = MIN(n, (size_t)WATCH_MAX_THREADS);
	for (size_t i = 0; i < p->n_thr; i++)
		p->thr[i].seen = false;
	for (size_t i = 0; i < n; i++) {
		char path[64], buf[128];
		unsigned long long run, wait, slices;
		struct wthread *t = wproc_find_thread(p, tids[i]);
		ssize_t len;
		int fd;

		snprintf(path, sizeof(path), "task/%d/schedstat", tids[i]);
		fd = openat(p->ref.procfd, path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue; /* exited meanwhile */
		len = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		if (len <= 0)
			continue;
		buf[len] = 0;
		if (sscanf(buf, "%llu %llu %llu", &run, &wait, &slices) != 3)
			continue;
		if (!t) {
			if (grow_array((void **)&p->thr, &p->cap_thr, p->n_thr + 1,
				       sizeof(*p->thr)))
				return;
			t = &p->thr[p->n_thr++];
			memset(t, 0, sizeof(*t));
			t->tid = tids[i];
			t->cpu_pct = -1;
			t->run_ns = run;
			t->slices = slices;
			t->ran = true;
		} else {
			t->ran = run != t->run_ns || slices != t->slices;
			if (t->ran) {
				t->still_since = 0;
				t->hkind = 0;
			}
			t->prev_run_ns = t->run_ns;
			t->run_ns = run;
			t->slices = slices;
		}
		thread_cpu(t, now);
		t->seen = true;
	}
	/* Threads that exited: dropped, keeping the order of the rest. */
	for (size_t i = 0; i < p->n_thr; i++)
		if (p->thr[i].seen)
			p->thr[k++] = p->thr[i];
	p->n_thr = k;
	(void)w;
}

static uint64_t count_fds(struct wproc *p)
{
	_cleanup_closedir_ DIR *d = NULL;
	struct dirent *de;
	uint64_t n = 0;
	int fd = openat(p->ref.procfd, "fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0) {
		if (errno != ENOENT && errno != ESRCH)
			warn_once(p, NEED_FDS, "descriptors", errno);
		return UINT64_MAX;
	}
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return UINT64_MAX;
	}
	errno = 0;
	while ((de = readdir(d)))
		n += de->d_name[0] != '.';
	if (errno) {
		warn_once(p, NEED_FDS, "descriptors", errno);
		return UINT64_MAX;
	}
	return n;
}

/* CPU over the window from the newest reading at least WATCH_CPU_WINDOW_NS old (or the oldest
 * there is) to now. */
static void update_cpu(struct watch *w, struct wproc *p, uint64_t now)
{
	unsigned from = 0;

	if (p->n_hist == WATCH_CPU_HIST) {
		memmove(p->hist_t, p->hist_t + 1, sizeof(p->hist_t[0]) * (WATCH_CPU_HIST - 1));
		memmove(p->hist_ticks, p->hist_ticks + 1,
			sizeof(p->hist_ticks[0]) * (WATCH_CPU_HIST - 1));
		p->n_hist--;
	}
	p->hist_t[p->n_hist] = now;
	p->hist_ticks[p->n_hist++] = p->cpu_ticks;
	if (p->n_hist < 2 || w->hz <= 0) {
		p->cpu_pct = -1;
		return;
	}
	for (unsigned i = 0; i + 1 < p->n_hist; i++)
		if (now - p->hist_t[i] >= WATCH_CPU_WINDOW_NS)
			from = i;
	p->cpu_pct = 100.0 * (double)(p->cpu_ticks - p->hist_ticks[from]) * 1e9 / (double)w->hz /
		     (double)(now - p->hist_t[from]);
}

static void sample_proc(struct watch *w, struct wproc *p, uint64_t dt, uint64_t now)
{
	_cleanup_free_ char *buf = NULL;
	struct wstat st;
	int r;

	r = read_file_at(p->ref.procfd, "stat", &buf, NULL);
	if (r < 0 || parse_stat(buf, &st) < 0) {
		p->gone = r == -ESRCH || r == -ENOENT || !pidref_alive(&p->ref);
		if (!p->gone)
			warn_once(p, NEED_STAT, "status", r < 0 ? -r : EINVAL);
		return;
	}
	if (st.starttime != p->starttime) {
		/* Not the process we opened: the pid was reused (cannot happen through procfd,
		 * but a process that exec'd keeps its start time; be safe). */
		p->starttime = st.starttime;
		reset_levels(p);
	}
	if (st.state == 'Z' || st.state == 'X') {
		p->gone = true;
		return;
	}
	memcpy(p->comm, st.comm, sizeof(p->comm));
	p->state = st.state;
	p->ppid = st.ppid;
	p->threads = st.threads;
	p->rss = st.rss_pages * (uint64_t)w->page_size;
	p->cpu_ticks = st.utime + st.stime;
	update_cpu(w, p, now);

	if (w->needs & NEED_THREADS)
		sample_threads(w, p, dt, now);
	if (w->needs & NEED_FDS)
		p->fds = count_fds(p);
	if (w->needs & NEED_NOFILE) {
		_cleanup_free_ char *lim = NULL;
		uint64_t hard;
		p->nofile = UINT64_MAX;
		if (read_file_at(p->ref.procfd, "limits", &lim, NULL) == 0)
			proc_parse_limits_nofile(lim, &p->nofile, &hard);
	}
	if (w->needs & NEED_CGROUP_MEM) {
		_cleanup_free_ char *cg = NULL;
		p->cg_current = 0;
		p->cg_max = UINT64_MAX;
		if (read_file_at(p->ref.procfd, "cgroup", &cg, NULL) == 0)
			proc_cgroup_memory(cg, &p->cg_current, &p->cg_max);
	}
}

void watch_sample(struct watch *w, uint64_t now)
{
	uint64_t dt = w->last_tick ? now - w->last_tick : 0;

	for (size_t i = 0; i < w->n_procs; i++)
		if (!w->procs[i]->gone)
			sample_proc(w, w->procs[i], dt, now);
	w->last_tick = now;
}

void watch_done(struct watch *w)
{
	for (size_t i = 0; i < w->n_procs; i++)
		wproc_free(w->procs[i]);
	free(w->procs);
	w->procs = NULL;
	w->n_procs = 0;
	for (size_t i = 0; i < w->n_conds; i++)
		if (w->conds[i].d->done)
			w->conds[i].d->done(&w->conds[i]);
	schedclock_done(&w->clock);
}
