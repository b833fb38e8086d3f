/* SPDX-License-Identifier: MIT */
/* Scheduler statistics per thread and the machine's top CPU consumers (see schedstat.h). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/fs.h"
#include "base/parse.h"
#include "base/timeutil.h"
#include "base/util.h"
#include "proc/procfs.h"
#include "proc/schedstat.h"

#define MAX_PROCESSES_SAMPLED 1000000

int schedstat_parse(const char *text, uint64_t *run_ns, uint64_t *wait_ns, uint64_t *slices)
{
	unsigned long long r, w, s;
	if (!text || sscanf(text, "%llu %llu %llu", &r, &w, &s) != 3)
		return -EINVAL;
	*run_ns = r;
	*wait_ns = w;
	*slices = s;
	return 0;
}

/* voluntary_ctxt_switches of a thread's status, or UINT64_MAX. */
static uint64_t read_voluntary(int procfd, pid_t tid)
{
	_cleanup_free_ char *text = NULL;
	char path[64];
	const char *p;

	snprintf(path, sizeof(path), "task/%d/status", tid);
	if (read_file_at(procfd, path, &text, NULL) < 0 ||
	    !(p = strstr(text, "\nvoluntary_ctxt_switches:")))
		return UINT64_MAX;
	return strtoull(p + 26, NULL, 10);
}

static int read_schedstat(int procfd, pid_t tid, uint64_t *run, uint64_t *wait, uint64_t *sl)
{
	_cleanup_free_ char *text = NULL;
	char path[64];
	int r;

	snprintf(path, sizeof(path), "task/%d/schedstat", tid);
	r = read_file_at(procfd, path, &text, NULL);
	return r < 0 ? r : schedstat_parse(text, run, wait, sl);
}

int proc_thread_demand(int procfd, const pid_t *tids, size_t n, struct sched_sample **ret)
{
	struct sched_sample *v = calloc(n ? n : 1, sizeof(*v));

	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		uint64_t sl;
		if (read_schedstat(procfd, tids[i], &v[i].run, &v[i].wait, &sl) < 0)
			v[i].run = UINT64_MAX;
		v[i].voluntary = read_voluntary(procfd, tids[i]);
	}
	*ret = v;
	return 0;
}

void proc_apply_demand_sample(int procfd, struct osm_process *p, const pid_t *tids,
			      const struct sched_sample *first, size_t n, uint64_t interval_ns)
{
	for (size_t i = 0; i < p->n_threads; i++) {
		struct osm_thread *t = p->threads[i];
		uint64_t run, wait, sl;

		if (read_schedstat(procfd, t->tid, &run, &wait, &sl) < 0)
			continue;
		t->sched_run_ns = run;
		t->sched_wait_ns = wait;
		t->sched_slices = sl;
		t->has_schedstat = true;
		for (size_t j = 0; j < n && first && interval_ns; j++) {
			if (tids[j] != t->tid || first[j].run == UINT64_MAX || run < first[j].run ||
			    wait < first[j].wait)
				continue;
			t->run_pct = 100.0 * (double)(run - first[j].run) / (double)interval_ns;
			t->runq_wait_pct =
			    100.0 * (double)(wait - first[j].wait) / (double)interval_ns;
			t->has_demand = true;
			if (first[j].voluntary != UINT64_MAX && t->vctx >= first[j].voluntary)
				t->voluntary_in_sample = (int64_t)(t->vctx - first[j].voluntary);
			break;
		}
	}
}

static int read_pid_ticks(int dirfd, const char *pid, uint64_t *ticks, char *comm)
{
	char path[64];
	struct proc_stat st;
	int r;

	snprintf(path, sizeof(path), "%s/stat", pid);
	r = proc_read_stat(dirfd, path, &st);
	if (r < 0)
		return r;
	*ticks = st.utime + st.stime;
	if (comm)
		snprintf(comm, OSM_COMM_LEN + 1, "%s", st.comm);
	return 0;
}

int proc_sample_all_cpu(struct proc_cpu_sample *ret)
{
	_cleanup_close_ int dirfd = open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d;
	struct dirent *de;
	size_t cap = 0, capt = 0, capa = 0;

	memset(ret, 0, sizeof(*ret));
	if (dirfd < 0)
		return -errno;
	d = opendir("/proc");
	if (!d)
		return -errno;
	while ((de = readdir(d)) && ret->n < MAX_PROCESSES_SAMPLED) {
		int64_t pid;
		uint64_t ticks;
		if (parse_i64(de->d_name, 10, &pid) < 0 || pid <= 0 || pid > INT32_MAX)
			continue;
		if (read_pid_ticks(dirfd, de->d_name, &ticks, NULL) < 0)
			continue;
		if (grow_array((void **)&ret->pids, &cap, ret->n + 1, sizeof(pid_t)) ||
		    grow_array((void **)&ret->ticks, &capt, ret->n + 1, sizeof(uint64_t)) ||
		    grow_array((void **)&ret->at_ns, &capa, ret->n + 1, sizeof(uint64_t))) {
			closedir(d);
			return -ENOMEM;
		}
		ret->at_ns[ret->n] = now_ns();
		ret->pids[ret->n] = (pid_t)pid;
		ret->ticks[ret->n++] = ticks;
	}
	closedir(d);
	return 0;
}

void proc_cpu_sample_done(struct proc_cpu_sample *s)
{
	free(s->pids);
	free(s->ticks);
	free(s->at_ns);
	memset(s, 0, sizeof(*s));
}

static int cmp_top(const void *a, const void *b)
{
	const struct osm_top *x = a, *y = b;
	return (x->cpu_pct < y->cpu_pct) - (x->cpu_pct > y->cpu_pct);
}

int proc_top_consumers(const struct proc_cpu_sample *before, uint64_t interval_ns, size_t max,
		       struct osm_system *sys)
{
	_cleanup_close_ int dirfd = open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	long hz = sysconf(_SC_CLK_TCK), cpus = sysconf(_SC_NPROCESSORS_ONLN);
	struct osm_top *all = NULL;
	size_t n = 0, cap = 0;

	if (dirfd < 0 || !interval_ns || hz <= 0 || !before->n)
		return dirfd < 0 ? -errno : 0;
	for (size_t i = 0; i < before->n; i++) {
		char pid[16], comm[OSM_COMM_LEN + 1];
		uint64_t ticks, now;
		double pct;
		/* osmosis itself is not a consumer of the machine it looks at (its own sample and
		 * pre-copy ran in the interval) */
		if (before->pids[i] == getpid())
			continue;
		snprintf(pid, sizeof(pid), "%d", before->pids[i]);
		if (read_pid_ticks(dirfd, pid, &ticks, comm) < 0 || ticks <= before->ticks[i])
			continue;
		now = now_ns();
		if (now <= before->at_ns[i])
			continue;
		pct = 100.0 * (double)(ticks - before->ticks[i]) * (1e9 / (double)hz) /
		      (double)(now - before->at_ns[i]);
		if (cpus > 0)
			pct = MIN(pct, 100.0 * (double)cpus); /* a tick's rounding on a short one */
		if (grow_array((void **)&all, &cap, n + 1, sizeof(*all))) {
			free(all);
			return -ENOMEM;
		}
		all[n].pid = before->pids[i];
		snprintf(all[n].comm, sizeof(all[n].comm), "%s", comm);
		all[n++].cpu_pct = pct;
	}
	if (n > 1)
		qsort(all, n, sizeof(*all), cmp_top);
	free(sys->top);
	sys->top = all;
	sys->n_top = MIN(n, max);
	return 0;
}
