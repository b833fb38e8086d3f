/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/fs.h"
#include "base/util.h"
#include <stdint.h>
#include "proc/procfs.h"
#include "proc/process.h"
#include "proc/schedclock.h"
#include "base/timeutil.h"

static uint64_t ticks_to_us(uint64_t ticks)
{
	static long hz;
	if (!hz)
		hz = sysconf(_SC_CLK_TCK);
	return hz > 0 ? ticks * 1000000ull / (uint64_t)hz : 0;
}

int proc_load_identity(const struct pidref *ref, struct osm_process *p)
{
	struct proc_stat st;
	struct proc_ids ids;
	size_t len;
	int r;

	p->pid = ref->pid;
	r = proc_read_stat(ref->procfd, "stat", &st);
	if (r < 0)
		return r;
	r = proc_read_status_ids(ref->procfd, &ids);
	if (r < 0)
		return r;
	memcpy(p->comm, st.comm, sizeof(p->comm));
	p->state = st.state;
	p->ppid = st.ppid;
	p->pgid = st.pgrp;
	p->sid = st.session;
	p->starttime = st.starttime;
	p->uid = ids.ruid;
	p->euid = ids.euid;
	p->gid = ids.rgid;
	p->egid = ids.egid;
	p->dumpable = ids.euid == 0 || proc_is_dumpable(ref->procfd, ids.euid);

	free(p->cmdline);
	p->cmdline = NULL;
	if (proc_read_cmdline(ref->procfd, &p->cmdline) < 0)
		p->cmdline = strdup("");
	free(p->exe);
	p->exe = NULL;
	if (proc_read_exe(ref->procfd, &p->exe) < 0)
		p->exe = strdup("");
	if (!p->cmdline || !p->exe)
		return -ENOMEM;
	free(p->auxv);
	p->auxv = NULL;
	p->auxv_len = 0;
	if (read_file_at(ref->procfd, "auxv", (char **)&p->auxv, &len) == 0)
		p->auxv_len = len;
	if (proc_read_coredump_filter(ref->procfd, &p->coredump_filter) < 0)
		p->coredump_filter = 0x33;
	return 0;
}

uint64_t proc_status_kb(const char *status, const char *key)
{
	size_t kl = strlen(key);
	const char *p = status;

	while (p && *p) {
		if (!strncmp(p, key, kl) && p[kl] == ':') {
			unsigned long long v = strtoull(p + kl + 1, NULL, 10);
			return v > UINT64_MAX / 1024 ? UINT64_MAX : v * 1024;
		}
		p = strchr(p, '\n');
		if (p)
			p++;
	}
	return 0;
}

static uint64_t status_count(const char *status, const char *key)
{
	return proc_status_kb(status, key) / 1024;
}

int proc_parse_limits_nofile(const char *limits, uint64_t *soft, uint64_t *hard)
{
	const char *p = strstr(limits, "Max open files");
	char a[32], b[32];

	if (!p || sscanf(p + 14, " %31s %31s", a, b) != 2)
		return -EINVAL;
	*soft = !strcmp(a, "unlimited") ? UINT64_MAX : strtoull(a, NULL, 10);
	*hard = !strcmp(b, "unlimited") ? UINT64_MAX : strtoull(b, NULL, 10);
	return 0;
}

static void load_cgroup_memory(struct osm_process *p, const char *cgroups);

/* Where a cgroup hierarchy is mounted ("" if nowhere), from /proc/self/mountinfo: the v2 one
 * (controller NULL), or the v1 one that holds a controller. */
static void cgroup_mount(const char *controller, char *out, size_t len)
{
	_cleanup_free_ char *info = NULL;

	out[0] = 0;
	if (read_file_at(AT_FDCWD, "/proc/self/mountinfo", &info, NULL) < 0)
		return;
	for (char *line = info; line && *line;) {
		char *nl = strchr(line, '\n'), *sep;
		if (nl)
			*nl = 0;
		sep = strstr(line, " - ");
		if (sep) {
			char fstype[32] = "", opts[512] = "", path[256];
			sscanf(sep + 3, "%31s %*s %511s", fstype, opts);
			bool match = controller
					 ? !strcmp(fstype, "cgroup") && strstr(opts, controller)
					 : !strcmp(fstype, "cgroup2");
			if (match && sscanf(line, "%*s %*s %*s %*s %255s", path) == 1) {
				snprintf(out, len, "%s", path);
				return;
			}
		}
		line = nl ? nl + 1 : NULL;
	}
}

/* The process's cgroup line for a v1 controller ("N:memory:/path") or v2 ("0::/path"). */
static bool cgroup_path(const char *cgroups, const char *controller, char *out, size_t len)
{
	for (const char *line = cgroups; line && *line;) {
		const char *nl = strchr(line, '\n'), *c1 = strchr(line, ':'), *c2;
		size_t l = nl ? (size_t)(nl - line) : strlen(line);
		if (c1 && (c2 = memchr(c1 + 1, ':', l - (size_t)(c1 - line) - 1))) {
			size_t cl = (size_t)(c2 - c1 - 1);
			bool match = controller ? cl >= strlen(controller) &&
						      strstr(c1 + 1, controller) < c2 &&
						      strstr(c1 + 1, controller) != NULL
						: cl == 0;
			if (match) {
				snprintf(out, len, "%.*s", (int)(l - (size_t)(c2 + 1 - line)),
					 c2 + 1);
				return !strstr(out, "..");
			}
		}
		line = nl ? nl + 1 : NULL;
	}
	return false;
}

static uint64_t read_u64_file(const char *path, bool *ok)
{
	_cleanup_free_ char *buf = NULL;
	*ok = read_file_at(AT_FDCWD, path, &buf, NULL) == 0 && buf[0] >= '0' && buf[0] <= '9';
	return *ok ? strtoull(buf, NULL, 10) : 0;
}

void proc_cgroup_memory(const char *cgroups, uint64_t *ret_current, uint64_t *ret_max)
{
	struct osm_process tmp = {0};
	load_cgroup_memory(&tmp, cgroups);
	*ret_current = tmp.cg_mem_current;
	*ret_max = tmp.cg_mem_max;
}

/* memory.current/memory.max (v2), else memory.usage_in_bytes/limit_in_bytes (v1). */
static void load_cgroup_memory(struct osm_process *p, const char *cgroups)
{
	static char v2[256], v1[256];
	static bool probed;
	char rel[1024], path[1400];
	bool ok;

	p->cg_mem_max = UINT64_MAX;
	if (!probed) {
		cgroup_mount(NULL, v2, sizeof(v2));
		cgroup_mount("memory", v1, sizeof(v1));
		probed = true;
	}
	if (v2[0] && cgroup_path(cgroups, NULL, rel, sizeof(rel))) {
		snprintf(path, sizeof(path), "%s%s/memory.current", v2, rel);
		p->cg_mem_current = read_u64_file(path, &ok);
		if (ok) {
			snprintf(path, sizeof(path), "%s%s/memory.max", v2, rel);
			uint64_t max = read_u64_file(path, &ok);
			p->cg_mem_max = ok ? max : UINT64_MAX;
			return;
		}
	}
	if (v1[0] && cgroup_path(cgroups, "memory", rel, sizeof(rel))) {
		snprintf(path, sizeof(path), "%s%s/memory.usage_in_bytes", v1, rel);
		p->cg_mem_current = read_u64_file(path, &ok);
		snprintf(path, sizeof(path), "%s%s/memory.limit_in_bytes", v1, rel);
		uint64_t max = read_u64_file(path, &ok);
		/* v1 says "no limit" with a huge page-rounded number */
		p->cg_mem_max = ok && max < (1ull << 62) ? max : UINT64_MAX;
	}
}

void proc_load_details(const struct pidref *ref, struct osm_process *p)
{
	_cleanup_free_ char *status = NULL, *limits = NULL, *cg = NULL, *oom = NULL, *up = NULL;
	struct proc_stat st;

	if (read_file_at(ref->procfd, "status", &status, NULL) == 0) {
		p->vm_size = proc_status_kb(status, "VmSize");
		p->vm_rss = proc_status_kb(status, "VmRSS");
		p->vm_swap = proc_status_kb(status, "VmSwap");
		p->rss_anon = proc_status_kb(status, "RssAnon");
		p->rss_file = proc_status_kb(status, "RssFile");
		p->rss_shmem = proc_status_kb(status, "RssShmem");
	}
	if (read_file_at(ref->procfd, "limits", &limits, NULL) == 0)
		proc_parse_limits_nofile(limits, &p->nofile_soft, &p->nofile_hard);
	if (read_file_at(ref->procfd, "cgroup", &cg, NULL) == 0) {
		load_cgroup_memory(p, cg);
		/* Prefer the unified (v2) line "0::/path"; else the first line. */
		char *line = strstr(cg, "0::");
		if (!line || (line != cg && line[-1] != '\n'))
			line = cg;
		line[strcspn(line, "\n")] = 0;
		free(p->cgroup);
		p->cgroup = strdup(line);
	}
	if (read_file_at(ref->procfd, "oom_score_adj", &oom, NULL) == 0)
		p->oom_score_adj = (int)strtol(oom, NULL, 10);
	if (proc_read_stat(ref->procfd, "stat", &st) == 0) {
		p->utime_us = ticks_to_us(st.utime);
		p->stime_us = ticks_to_us(st.stime);
		p->start_time_s = ticks_to_us(st.starttime) / 1000000;
	}
}

int proc_thread_ticks(int procfd, pid_t **ret_tids, uint64_t **ret_ticks, uint64_t **ret_switches,
		      size_t *ret_n)
{
	_cleanup_free_ pid_t *tids = NULL;
	uint64_t *ticks, *switches;
	size_t n = 0;
	int r;

	r = proc_list_tasks(procfd, &tids, &n);
	if (r < 0)
		return r;
	ticks = calloc(n ? n : 1, sizeof(*ticks));
	switches = calloc(n ? n : 1, sizeof(*switches));
	if (!ticks || !switches) {
		free(ticks);
		free(switches);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		_cleanup_free_ char *status = NULL;
		struct proc_stat st;
		char path[64];
		snprintf(path, sizeof(path), "task/%d/stat", tids[i]);
		ticks[i] =
		    proc_read_stat(procfd, path, &st) == 0 ? st.utime + st.stime : UINT64_MAX;
		snprintf(path, sizeof(path), "task/%d/status", tids[i]);
		switches[i] = read_file_at(procfd, path, &status, NULL) == 0
				  ? status_count(status, "voluntary_ctxt_switches") +
					status_count(status, "nonvoluntary_ctxt_switches")
				  : UINT64_MAX;
	}
	*ret_tids = TAKE_PTR(tids);
	*ret_ticks = ticks;
	*ret_switches = switches;
	*ret_n = n;
	return 0;
}

void proc_thread_last_ran(int procfd, struct osm_thread *t)
{
	uint64_t es;
	int64_t ago;

	if (t->state == 'R') {
		t->last_ran_ago_ms = 0; /* on a CPU, or about to be */
		return;
	}
	if (schedclock_read_exec_start(procfd, t->tid, &es) < 0)
		return;
	ago = schedclock_ago_ns(schedclock_default(), es, t->last_cpu, now_ns());
	if (ago >= 0)
		t->last_ran_ago_ms = ago / 1000000;
}

int proc_load_threads(const struct pidref *ref, struct osm_process *p)
{
	_cleanup_free_ pid_t *tids = NULL;
	size_t n = 0;
	int r;

	r = proc_list_tasks(ref->procfd, &tids, &n);
	if (r < 0)
		return r;
	for (size_t i = 0; i < n; i++) {
		struct osm_thread *t = process_find_thread(p, tids[i]);
		char path[64];
		struct proc_stat st;

		snprintf(path, sizeof(path), "task/%d/stat", tids[i]);
		if (proc_read_stat(ref->procfd, path, &st) < 0)
			continue; /* exited meanwhile */
		if (!t && !(t = process_add_thread(p, tids[i])))
			return -ENOMEM;
		memcpy(t->name, st.comm, sizeof(t->name));
		t->state = st.state;
		t->utime_us = ticks_to_us(st.utime);
		t->stime_us = ticks_to_us(st.stime);
		t->last_cpu = st.processor;
		proc_thread_last_ran(ref->procfd, t);

		_cleanup_free_ char *status = NULL, *wchan = NULL, *stack = NULL;
		snprintf(path, sizeof(path), "task/%d/status", tids[i]);
		if (read_file_at(ref->procfd, path, &status, NULL) == 0) {
			t->vctx = status_count(status, "voluntary_ctxt_switches");
			t->nvctx = status_count(status, "nonvoluntary_ctxt_switches");
		}
		snprintf(path, sizeof(path), "task/%d/wchan", tids[i]);
		if (read_file_at(ref->procfd, path, &wchan, NULL) == 0 && strcmp(wchan, "0"))
			snprintf(t->wchan, sizeof(t->wchan), "%s", wchan);
		snprintf(path, sizeof(path), "task/%d/stack", tids[i]);
		if (geteuid() == 0 && read_file_at(ref->procfd, path, &stack, NULL) == 0 &&
		    *stack) {
			free(t->kstack);
			t->kstack = TAKE_PTR(stack);
		}
	}
	return 0;
}

void proc_apply_cpu_sample(struct osm_process *p, const pid_t *tids, const uint64_t *ticks,
			   const uint64_t *switches, size_t n, uint64_t interval_ns)
{
	uint64_t tick_us = ticks_to_us(1);

	if (!interval_ns || !tick_us)
		return;
	for (size_t i = 0; i < p->n_threads; i++) {
		struct osm_thread *t = p->threads[i];
		for (size_t j = 0; j < n; j++) {
			uint64_t before_us, now_us;
			if (tids[j] != t->tid || ticks[j] == UINT64_MAX)
				continue;
			before_us = ticks[j] * tick_us;
			now_us = t->utime_us + t->stime_us;
			t->cpu_pct = now_us > before_us ? 100.0 * (double)(now_us - before_us) *
							      1000.0 / (double)interval_ns
							: 0.0;
			t->has_cpu_pct = true;
			if (switches[j] != UINT64_MAX && t->vctx + t->nvctx >= switches[j])
				t->switches_in_sample = (int64_t)(t->vctx + t->nvctx - switches[j]);
			break;
		}
	}
}

uint64_t proc_memory_available_to_self(void)
{
	_cleanup_free_ char *mem = NULL, *cg = NULL;
	uint64_t avail = UINT64_MAX, cur = 0, max = UINT64_MAX;

	if (read_file_at(AT_FDCWD, "/proc/meminfo", &mem, NULL) == 0)
		avail = proc_status_kb(mem, "MemAvailable") ?: UINT64_MAX;
	if (read_file_at(AT_FDCWD, "/proc/self/cgroup", &cg, NULL) == 0) {
		proc_cgroup_memory(cg, &cur, &max);
		if (max != UINT64_MAX)
			avail = MIN(avail, max > cur ? max - cur : 0);
	}
	return avail;
}
