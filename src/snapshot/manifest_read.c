/* SPDX-License-Identifier: MIT */
/*
 * Reading manifest.json back into the model. Manifests may come from other machines or be
 * damaged: every field is type-checked, every count bounded, strings copied with their length,
 * and what is missing takes a neutral default. A manifest that is not a JSON object with a known
 * schema_version is refused with a message that says why; anything else is read as far as it
 * goes. Registers and memory are not in the manifest (they are in the cores).
 */
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/fs.h"
#include "base/util.h"
#include "snapshot/manifest.h"

#define MAX_PROCESSES	   1000000
#define MAX_THREADS	   1000000
#define MAX_FDS		   4000000
#define MAX_KV		   100000
#define MAX_MANIFEST_BYTES INT32_MAX
#define MAX_CPUS	   65536
#define MAX_SWAPS	   1024

static json_object *get(json_object *o, const char *key, json_type type)
{
	json_object *v;
	if (!o || !json_object_is_type(o, json_type_object))
		return NULL;
	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, type))
		return NULL;
	return v;
}

static int64_t get_i64(json_object *o, const char *key, int64_t def)
{
	json_object *v = get(o, key, json_type_int);
	return v ? json_object_get_int64(v) : def;
}

static uint64_t get_u64(json_object *o, const char *key)
{
	int64_t v = get_i64(o, key, 0);
	return v < 0 ? 0 : (uint64_t)v;
}

static double get_double(json_object *o, const char *key, double def)
{
	json_object *v;
	if (!o || !json_object_object_get_ex(o, key, &v))
		return def;
	if (json_object_is_type(v, json_type_double) || json_object_is_type(v, json_type_int))
		return json_object_get_double(v);
	return def;
}

static bool get_bool(json_object *o, const char *key)
{
	json_object *v = get(o, key, json_type_boolean);
	return v && json_object_get_boolean(v);
}

static const char *get_str(json_object *o, const char *key)
{
	json_object *v = get(o, key, json_type_string);
	return v ? json_object_get_string(v) : NULL;
}

static char *dup_str(json_object *o, const char *key)
{
	const char *s = get_str(o, key);
	return s ? strdup(s) : NULL;
}

static void copy_str(json_object *o, const char *key, char *dst, size_t len)
{
	const char *s = get_str(o, key);
	snprintf(dst, len, "%s", s ? s : "");
}

static int32_t clamp_i32(int64_t v)
{
	return v < INT32_MIN ? INT32_MIN : v > INT32_MAX ? INT32_MAX : (int32_t)v;
}

/* Canonical static strings for the method fields, so the model never points into JSON. */
static const char *method_name(const char *s)
{
	return capture_method_name(capture_method_parse(s));
}

static int read_thread(json_object *o, struct osm_process *p)
{
	struct osm_thread *t = process_add_thread(p, clamp_i32(get_i64(o, "tid", 0)));
	json_object *sc, *args, *ss;
	const char *st, *ks;

	if (!t)
		return -ENOMEM;
	copy_str(o, "name", t->name, sizeof(t->name));
	st = get_str(o, "state");
	t->state = st && st[0] ? st[0] : '?';
	copy_str(o, "wchan", t->wchan, sizeof(t->wchan));
	t->captured = get_bool(o, "captured");
	t->gone = !t->captured;
	t->regs.gp.rip = get_u64(o, "pc");
	t->regs.gp.rsp = get_u64(o, "sp");
	if ((sc = get(o, "syscall", json_type_object))) {
		t->syscall_nr = (long)get_i64(sc, "nr", -1);
		if ((args = get(sc, "args", json_type_array)))
			for (size_t i = 0;
			     i < ARRAY_SIZE(t->syscall_args) && i < json_object_array_length(args);
			     i++) {
				json_object *a = json_object_array_get_idx(args, i);
				if (json_object_is_type(a, json_type_int))
					t->syscall_args[i] = (uint64_t)json_object_get_int64(a);
			}
	}
	t->utime_us = get_u64(o, "utime_us");
	t->stime_us = get_u64(o, "stime_us");
	if (get(o, "cpu_pct", json_type_double) || get(o, "cpu_pct", json_type_int)) {
		t->cpu_pct = get_double(o, "cpu_pct", 0);
		t->has_cpu_pct = true;
	}
	t->switches_in_sample = get_i64(o, "switches_in_sample", -1);
	t->vctx = get_u64(o, "voluntary_ctxt_switches");
	t->nvctx = get_u64(o, "nonvoluntary_ctxt_switches");
	t->last_cpu = clamp_i32(get_i64(o, "last_cpu", -1));
	t->last_ran_ago_ms = get_i64(o, "last_ran_ago_ms", -1);
	if (t->last_ran_ago_ms < -1)
		t->last_ran_ago_ms = -1;
	t->switches_after_thaw = get_i64(o, "switches_after_thaw", -1);
	if (t->switches_after_thaw < -1)
		t->switches_after_thaw = -1;
	t->stack_swapped_pages = get_u64(o, "stack_swapped_pages");
	if ((ss = get(o, "schedstat", json_type_object))) {
		t->sched_run_ns = get_u64(ss, "run_ns");
		t->sched_wait_ns = get_u64(ss, "wait_ns");
		t->sched_slices = get_u64(ss, "slices");
		t->has_schedstat = true;
	}
	if (get(o, "run_pct", json_type_double) || get(o, "run_pct", json_type_int)) {
		t->run_pct = get_double(o, "run_pct", 0);
		t->runq_wait_pct = get_double(o, "runq_wait_pct", 0);
		t->has_demand = true;
		t->voluntary_in_sample = get_i64(o, "voluntary_switches_in_sample", -1);
	}
	if ((ks = get_str(o, "kernel_stack")))
		t->kstack = strdup(ks);
	return 0;
}

static int read_fd(json_object *o, struct osm_fd *f)
{
	json_object *tfds;

	f->fd = clamp_i32(get_i64(o, "fd", -1));
	copy_str(o, "type", f->type, sizeof(f->type));
	f->target = dup_str(o, "target");
	f->inode = get_u64(o, "inode");
	f->flags = (uint32_t)get_u64(o, "flags");
	f->pos = get_u64(o, "pos");
	copy_str(o, "proto", f->proto, sizeof(f->proto));
	copy_str(o, "sock_state", f->sock_state, sizeof(f->sock_state));
	f->local = dup_str(o, "local");
	f->remote = dup_str(o, "remote");
	f->peer_inode = get_u64(o, "peer_inode");
	f->rqueue = (uint32_t)get_u64(o, "rqueue");
	f->wqueue = (uint32_t)get_u64(o, "wqueue");
	f->eventfd_count = get_i64(o, "eventfd_count", 0);
	if ((tfds = get(o, "epoll_tfds", json_type_array))) {
		size_t n = MIN(json_object_array_length(tfds), (size_t)MAX_FDS);
		f->epoll_tfds = calloc(n ? n : 1, sizeof(int));
		if (!f->epoll_tfds)
			return -ENOMEM;
		for (size_t i = 0; i < n; i++)
			f->epoll_tfds[f->n_epoll_tfds++] =
			    clamp_i32(json_object_get_int64(json_object_array_get_idx(tfds, i)));
	}
	return 0;
}

static int read_process(json_object *o, struct osm_process *p, char *err, size_t errlen)
{
	json_object *mem, *lim, *threads, *fds;
	const char *st, *core;
	int r;

	p->pid = clamp_i32(get_i64(o, "pid", 0));
	p->ppid = clamp_i32(get_i64(o, "ppid", 0));
	p->pgid = clamp_i32(get_i64(o, "pgid", 0));
	p->sid = clamp_i32(get_i64(o, "sid", 0));
	p->uid = (uid_t)get_u64(o, "uid");
	p->euid = (uid_t)get_u64(o, "euid");
	p->gid = (gid_t)get_u64(o, "gid");
	copy_str(o, "comm", p->comm, sizeof(p->comm));
	p->exe = dup_str(o, "exe");
	p->cmdline = dup_str(o, "cmdline");
	st = get_str(o, "state");
	p->state = st && st[0] ? st[0] : '?';
	p->start_time_s = get_u64(o, "start_time_s");
	p->utime_us = get_u64(o, "utime_us");
	p->stime_us = get_u64(o, "stime_us");
	p->capture = capture_state_parse(get_str(o, "capture"));
	p->capture_note = dup_str(o, "capture_note");
	p->method = get_str(o, "method") ? method_name(get_str(o, "method")) : NULL;
	p->method_reason = dup_str(o, "method_reason");
	if ((core = get_str(o, "core")))
		snprintf(p->core_name, sizeof(p->core_name), "%s", core);
	p->coredump_filter = (unsigned)get_u64(o, "coredump_filter");
	p->captured_bytes = get_u64(o, "captured_bytes");
	p->mappings_count = get_u64(o, "mappings");
	p->unreadable_bytes = get_u64(o, "unreadable_bytes");
	if ((mem = get(o, "memory", json_type_object))) {
		p->vm_size = get_u64(mem, "vm_size");
		p->vm_rss = get_u64(mem, "vm_rss");
		p->vm_swap = get_u64(mem, "vm_swap");
		p->rss_anon = get_u64(mem, "rss_anon");
		p->rss_file = get_u64(mem, "rss_file");
		p->rss_shmem = get_u64(mem, "rss_shmem");
		p->cg_mem_current = get_u64(mem, "cgroup_current");
		p->cg_mem_max =
		    get(mem, "cgroup_max", json_type_int) ? get_u64(mem, "cgroup_max") : UINT64_MAX;
	}
	p->nofile_soft = p->nofile_hard = UINT64_MAX;
	if ((lim = get(o, "limits", json_type_object))) {
		if (get(lim, "nofile_soft", json_type_int))
			p->nofile_soft = get_u64(lim, "nofile_soft");
		if (get(lim, "nofile_hard", json_type_int))
			p->nofile_hard = get_u64(lim, "nofile_hard");
	}
	p->cgroup = dup_str(o, "cgroup");
	p->oom_score_adj = clamp_i32(get_i64(o, "oom_score_adj", 0));
	if ((threads = get(o, "threads", json_type_array))) {
		size_t n = json_object_array_length(threads);
		if (n > MAX_THREADS) {
			snprintf(err, errlen, "process %d lists %zu threads (limit %d)", p->pid, n,
				 MAX_THREADS);
			return -E2BIG;
		}
		for (size_t i = 0; i < n; i++) {
			json_object *t = json_object_array_get_idx(threads, i);
			if (!json_object_is_type(t, json_type_object))
				continue;
			if ((r = read_thread(t, p)) < 0)
				return r;
		}
	}
	if ((fds = get(o, "fds", json_type_array))) {
		size_t n = json_object_array_length(fds);
		if (n > MAX_FDS) {
			snprintf(err, errlen, "process %d lists %zu descriptors (limit %d)", p->pid,
				 n, MAX_FDS);
			return -E2BIG;
		}
		p->fds = calloc(n ? n : 1, sizeof(*p->fds));
		if (!p->fds)
			return -ENOMEM;
		for (size_t i = 0; i < n; i++) {
			json_object *f = json_object_array_get_idx(fds, i);
			if (!json_object_is_type(f, json_type_object))
				continue;
			if ((r = read_fd(f, &p->fds[p->n_fds++])) < 0)
				return r;
		}
	} else if (get_str(o, "fd_error")) {
		p->fd_error = EACCES;
	}
	return 0;
}

static int read_kv(json_object *o, struct osm_kv **ret, size_t *ret_n)
{
	struct osm_kv *v;
	size_t n = 0;

	if (!o || !json_object_is_type(o, json_type_object))
		return 0;
	v = calloc(MIN((size_t)json_object_object_length(o), (size_t)MAX_KV) + 1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	json_object_object_foreach(o, key, val)
	{
		if (n >= MAX_KV)
			break;
		if (!json_object_is_type(val, json_type_int))
			continue;
		v[n].key = strdup(key);
		v[n++].value = json_object_get_int64(val);
	}
	*ret = v;
	*ret_n = n;
	return 0;
}

static void read_psi_part(json_object *o, double avg[3], uint64_t *total)
{
	avg[0] = get_double(o, "avg10", 0);
	avg[1] = get_double(o, "avg60", 0);
	avg[2] = get_double(o, "avg300", 0);
	*total = get_u64(o, "total_us");
}

static int read_system(json_object *o, struct osm_system *sys)
{
	static const char *const tick_names[] = {"user",   "nice", "system",  "idle",
						 "iowait", "irq",  "softirq", "steal"};
	_Static_assert(ARRAY_SIZE(tick_names) == ARRAY_SIZE(((struct osm_cpu *)0)->ticks),
		       "one name per tick counter");
	json_object *a, *psi;
	int r;

	if (!o)
		return 0;
	sys->ncpu = (long)get_i64(o, "ncpu", 0);
	sys->uptime_s = get_double(o, "uptime_s", 0);
	if ((a = get(o, "loadavg", json_type_array)))
		for (size_t i = 0; i < ARRAY_SIZE(sys->load) && i < json_object_array_length(a);
		     i++)
			sys->load[i] = json_object_get_double(json_object_array_get_idx(a, i));
	sys->runnable = clamp_i32(get_i64(o, "runnable", 0));
	sys->threads_total = clamp_i32(get_i64(o, "threads_total", 0));
	sys->procs_running = get_u64(o, "procs_running");
	sys->procs_blocked = get_u64(o, "procs_blocked");
	sys->ctxt = get_u64(o, "context_switches");
	sys->processes_forked = get_u64(o, "forks");
	if ((a = get(o, "cpus", json_type_array))) {
		size_t n = MIN(json_object_array_length(a), (size_t)MAX_CPUS);
		sys->cpus = calloc(n + 1, sizeof(*sys->cpus));
		if (!sys->cpus)
			return -ENOMEM;
		for (size_t i = 0; i < n; i++) {
			json_object *c = json_object_array_get_idx(a, i), *ticks;
			struct osm_cpu *cpu = &sys->cpus[sys->n_cpus++];
			cpu->cpu =
			    get(c, "cpu", json_type_int) ? clamp_i32(get_i64(c, "cpu", 0)) : -1;
			if ((ticks = get(c, "ticks", json_type_object)))
				for (size_t k = 0; k < ARRAY_SIZE(tick_names); k++)
					cpu->ticks[k] = get_u64(ticks, tick_names[k]);
			cpu->busy_pct = get_double(c, "busy_pct", -1);
		}
	}
	if ((r = read_kv(get(o, "meminfo", json_type_object), &sys->meminfo, &sys->n_meminfo)) <
		0 ||
	    (r = read_kv(get(o, "vmstat", json_type_object), &sys->vmstat, &sys->n_vmstat)) < 0)
		return r;
	if ((psi = get(o, "pressure", json_type_object))) {
		static const char *const res[] = {"cpu", "memory", "io"};
		for (size_t i = 0; i < ARRAY_SIZE(res) && sys->n_psi < ARRAY_SIZE(sys->psi); i++) {
			json_object *r1 = get(psi, res[i], json_type_object), *part;
			struct osm_psi *ps;
			if (!r1)
				continue;
			ps = &sys->psi[sys->n_psi++];
			snprintf(ps->resource, sizeof(ps->resource), "%s", res[i]);
			if ((part = get(r1, "some", json_type_object)))
				read_psi_part(part, ps->some, &ps->some_total_us);
			if ((part = get(r1, "full", json_type_object))) {
				read_psi_part(part, ps->full, &ps->full_total_us);
				ps->has_full = true;
			}
		}
	}
	if ((a = get(o, "top_consumers", json_type_array))) {
		size_t n = MIN(json_object_array_length(a), (size_t)1024);
		sys->top = calloc(n + 1, sizeof(*sys->top));
		if (!sys->top)
			return -ENOMEM;
		for (size_t i = 0; i < n; i++) {
			json_object *c = json_object_array_get_idx(a, i);
			struct osm_top *tp;
			if (!json_object_is_type(c, json_type_object))
				continue;
			tp = &sys->top[sys->n_top++];
			tp->pid = clamp_i32(get_i64(c, "pid", 0));
			copy_str(c, "comm", tp->comm, sizeof(tp->comm));
			tp->cpu_pct = get_double(c, "cpu_pct", 0);
		}
	}
	if ((a = get(o, "swaps", json_type_array))) {
		size_t n = MIN(json_object_array_length(a), (size_t)MAX_SWAPS);
		sys->swaps = calloc(n + 1, sizeof(*sys->swaps));
		if (!sys->swaps)
			return -ENOMEM;
		for (size_t i = 0; i < n; i++) {
			json_object *s = json_object_array_get_idx(a, i);
			struct osm_swap *sw = &sys->swaps[sys->n_swaps++];
			sw->name = dup_str(s, "name");
			sw->type = dup_str(s, "type");
			sw->size = get_u64(s, "size");
			sw->used = get_u64(s, "used");
			sw->priority = clamp_i32(get_i64(s, "priority", 0));
		}
	}
	return 0;
}

static int read_file_locks(json_object *a, struct osm_snapshot *s)
{
	size_t n = MIN(json_object_array_length(a), (size_t)MAX_FDS);

	s->has_file_locks = true;
	s->file_locks = calloc(n + 1, sizeof(*s->file_locks));
	if (!s->file_locks)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		json_object *o = json_object_array_get_idx(a, i);
		struct osm_file_lock *l;
		json_object *h;
		const char *dev;
		unsigned maj = 0, min = 0;
		if (!json_object_is_type(o, json_type_object))
			continue;
		l = &s->file_locks[s->n_file_locks++];
		l->id = get_i64(o, "id", 0);
		l->waiting = get_bool(o, "waiting");
		copy_str(o, "type", l->type, sizeof(l->type));
		copy_str(o, "mode", l->mode, sizeof(l->mode));
		copy_str(o, "access", l->access, sizeof(l->access));
		l->pid = clamp_i32(get_i64(o, "pid", -1));
		if ((dev = get_str(o, "dev")) && sscanf(dev, "%x:%x", &maj, &min) == 2) {
			l->dev_major = maj;
			l->dev_minor = min;
		}
		l->inode = get_u64(o, "inode");
		l->start = get_u64(o, "start");
		l->end = get_i64(o, "end", -1);
		l->path = dup_str(o, "path");
		if ((h = get(o, "holders", json_type_array))) {
			size_t m = MIN(json_object_array_length(h), (size_t)MAX_FDS);
			if (!(l->holders = calloc(m + 1, sizeof(*l->holders))))
				return -ENOMEM;
			for (size_t k = 0; k < m; k++) {
				json_object *x = json_object_array_get_idx(h, k);
				if (!json_object_is_type(x, json_type_object))
					continue;
				l->holders[l->n_holders++] =
				    (struct osm_lock_holder){clamp_i32(get_i64(x, "pid", -1)),
							     clamp_i32(get_i64(x, "fd", -1))};
			}
		}
	}
	return 0;
}

static int cmp_process(const void *x, const void *y, void *arg)
{
	struct osm_process *const *procs = arg;
	const struct osm_process *a = procs[*(const size_t *)x], *b = procs[*(const size_t *)y];

	if (a->pid != b->pid)
		return a->pid < b->pid ? -1 : 1;
	if (a->start_time_s != b->start_time_s)
		return a->start_time_s < b->start_time_s ? -1 : 1;
	return *(const size_t *)x < *(const size_t *)y ? -1
						       : *(const size_t *)x > *(const size_t *)y;
}

/* Leave out every process entry that repeats one before it (same pid and start time), keeping
 * the first and the order: a manifest from anywhere may list one process a million times, and
 * each entry would be analyzed (its core opened and unwound) again. O(n log n). */
static int dedupe_processes(struct osm_snapshot *s)
{
	_cleanup_free_ size_t *order = NULL;
	_cleanup_free_ bool *drop = NULL;
	size_t k = 0;

	if (s->n_procs < 2)
		return 0;
	order = calloc(s->n_procs, sizeof(*order));
	drop = calloc(s->n_procs, sizeof(*drop));
	if (!order || !drop)
		return -ENOMEM;
	for (size_t i = 0; i < s->n_procs; i++)
		order[i] = i;
	qsort_r(order, s->n_procs, sizeof(*order), cmp_process, s->procs);
	for (size_t i = 1; i < s->n_procs; i++) {
		const struct osm_process *a = s->procs[order[i - 1]], *b = s->procs[order[i]];
		if (a->pid == b->pid && a->start_time_s == b->start_time_s) {
			drop[order[i]] = true;
			if (!s->n_duplicates++)
				s->duplicate_pid = b->pid;
		}
	}
	for (size_t i = 0; i < s->n_procs; i++) {
		if (drop[i])
			process_free(s->procs[i]);
		else
			s->procs[k++] = s->procs[i];
	}
	s->n_procs = k;
	return 0;
}

static const char *scope_name(const char *s)
{
	static const char *const names[] = {"pids", "tree", "cgroup", "all"};
	for (size_t i = 0; s && i < ARRAY_SIZE(names); i++)
		if (!strcmp(s, names[i]))
			return names[i];
	return "pids";
}

/* The timeline (optional): phases beyond OSM_MAX_PHASES are counted as dropped. */
static void read_timeline(json_object *o, struct osm_timeline *tl)
{
	json_object *phases = get(o, "phases", json_type_array);

	if (!o)
		return;
	tl->t0_ns = get_u64(o, "start_ns");
	tl->pause_ns = MIN(get_u64(o, "pause_start_us"), UINT64_MAX / 1000) * 1000;
	tl->pause_end_ns = MIN(get_u64(o, "pause_end_us"), UINT64_MAX / 1000) * 1000;
	tl->peak_rss = get_u64(o, "peak_rss");
	tl->peak_buffers = get_u64(o, "peak_buffers");
	tl->max_memory = get_u64(o, "max_memory");
	tl->allocations_in_freeze = get(o, "allocations_in_freeze", json_type_int)
					? get_u64(o, "allocations_in_freeze")
					: UINT64_MAX;
	tl->dropped = get_u64(o, "phases_dropped");
	json_object *parts = get(o, "pause_breakdown_us", json_type_object);
	for (int i = 0; parts && i < PAUSE_N_PARTS; i++)
		tl->part_ns[i] =
		    MIN(get_u64(parts, osm_pause_part_names[i]), UINT64_MAX / 1000) * 1000;
	for (size_t i = 0; phases && i < json_object_array_length(phases); i++) {
		json_object *e = json_object_array_get_idx(phases, i);
		struct osm_phase *ph;
		if (!json_object_is_type(e, json_type_object))
			continue;
		if (tl->n >= OSM_MAX_PHASES) {
			tl->dropped++;
			continue;
		}
		ph = &tl->phases[tl->n++];
		copy_str(e, "name", ph->name, sizeof(ph->name));
		ph->pid = (pid_t)get_i64(e, "pid", 0);
		ph->start_ns = MIN(get_u64(e, "start_us"), UINT64_MAX / 1000) * 1000;
		int64_t dur = get_i64(e, "duration_us", -1);
		ph->dur_ns =
		    dur < 0 ? OSM_PHASE_OPEN : MIN((uint64_t)dur, UINT64_MAX / 1000) * 1000;
	}
}

int manifest_parse(const char *buf, size_t len, struct osm_snapshot **ret, char *err, size_t errlen)
{
	struct json_tokener *tok = json_tokener_new_ex(64);
	json_object *root = NULL, *procs;
	struct osm_snapshot *s = NULL;
	int64_t version;
	int r = 0;

	err[0] = 0;
	if (!tok)
		return -ENOMEM;
	if (len > INT32_MAX) {
		snprintf(err, errlen, "the manifest is larger than 2 GiB");
		r = -EFBIG;
		goto out;
	}
	root = json_tokener_parse_ex(tok, buf, (int)len);
	if (!root || json_tokener_get_error(tok) != json_tokener_success) {
		snprintf(err, errlen, "not valid JSON at byte %zu: %s",
			 (size_t)json_tokener_get_parse_end(tok),
			 json_tokener_error_desc(json_tokener_get_error(tok)));
		r = -EBADMSG;
		goto out;
	}
	if (!json_object_is_type(root, json_type_object)) {
		snprintf(err, errlen, "the manifest is not a JSON object");
		r = -EBADMSG;
		goto out;
	}
	version = get_i64(root, "schema_version", -1);
	if (version != MANIFEST_SCHEMA_VERSION) {
		snprintf(err, errlen, "unknown schema_version %lld (this osmosis reads %d)",
			 (long long)version, MANIFEST_SCHEMA_VERSION);
		r = -EPROTONOSUPPORT;
		goto out;
	}
	s = calloc(1, sizeof(*s));
	if (!s) {
		r = -ENOMEM;
		goto out;
	}
	s->host = dup_str(root, "host");
	s->kernel = dup_str(root, "kernel");
	s->boot_id = dup_str(root, "boot_id");
	{
		json_object *trig = get(root, "trigger", json_type_object);
		const char *txt =
		    trig ? json_object_to_json_string_ext(trig, JSON_C_TO_STRING_PLAIN) : NULL;
		if (txt && strlen(txt) < 65536)
			s->trigger_json = strdup(txt);
	}
	copy_str(root, "created", s->created, sizeof(s->created));
	s->method = method_name(get_str(root, "method"));
	s->method_reason = NULL;
	s->scope = scope_name(get_str(root, "scope"));
	s->scope_arg = dup_str(root, "scope_arg");
	s->state_only = get_bool(root, "state_only");
	s->pause_us = get_u64(root, "pause_us");
	s->total_ms = get_u64(root, "total_ms");
	s->sample_ms = get_u64(root, "sample_ms");
	read_timeline(get(root, "timeline", json_type_object), &s->timeline);
	r = read_system(get(root, "system", json_type_object), &s->sys);
	if (r < 0)
		goto out;
	if ((procs = get(root, "processes", json_type_array))) {
		size_t n = json_object_array_length(procs);
		if (n > MAX_PROCESSES) {
			snprintf(err, errlen, "the manifest lists %zu processes (limit %d)", n,
				 MAX_PROCESSES);
			r = -E2BIG;
			goto out;
		}
		s->procs = calloc(n ? n : 1, sizeof(*s->procs));
		if (!s->procs) {
			r = -ENOMEM;
			goto out;
		}
		s->cap_procs = n;
		for (size_t i = 0; i < n; i++) {
			json_object *po = json_object_array_get_idx(procs, i);
			struct osm_process *p;
			if (!json_object_is_type(po, json_type_object))
				continue;
			p = calloc(1, sizeof(*p));
			if (!p) {
				r = -ENOMEM;
				goto out;
			}
			s->procs[s->n_procs++] = p;
			r = read_process(po, p, err, errlen);
			if (r < 0)
				goto out;
		}
		r = dedupe_processes(s);
		if (r < 0)
			goto out;
	}
	if ((procs = get(root, "file_locks", json_type_array)) &&
	    (r = read_file_locks(procs, s)) < 0)
		goto out;
	*ret = s;
	s = NULL;
out:
	if (r == -ENOMEM && !err[0])
		snprintf(err, errlen, "out of memory");
	snapshot_free(s);
	json_object_put(root);
	json_tokener_free(tok);
	return r;
}

/* manifest.json of a snapshot from anywhere: opened only if it is a regular file (a FIFO there
 * would block, a device would be opened), never through a symbolic link, read up to the limit. */
static int read_manifest_file(int dirfd, char **ret, size_t *ret_len, char *err, size_t errlen)
{
	_cleanup_close_ int fd = -1;
	_cleanup_free_ char *buf = NULL;
	const char *kind;
	struct stat st;
	size_t len = 0, cap;

	fd = open_regular_file(dirfd, "manifest.json", O_NOFOLLOW, &kind);
	if (fd < 0) {
		if (kind)
			snprintf(err, errlen, "manifest.json is %s, not a regular file", kind);
		else
			snprintf(err, errlen, "cannot read manifest.json: %s", strerror(-fd));
		return fd;
	}
	if (fstat(fd, &st) < 0) {
		snprintf(err, errlen, "cannot read manifest.json: %s", strerror(errno));
		return -errno;
	}
	if ((uint64_t)st.st_size > MAX_MANIFEST_BYTES) {
		snprintf(err, errlen, "the manifest is larger than 2 GiB");
		return -EFBIG;
	}
	cap = (size_t)st.st_size + 1;
	if (!(buf = malloc(cap)))
		return -ENOMEM;
	/* The file may change size while it is read: read what fits, then stop. */
	while (len < cap - 1) {
		ssize_t n = read(fd, buf + len, cap - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			snprintf(err, errlen, "cannot read manifest.json: %s", strerror(errno));
			return -errno;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	buf[len] = 0;
	*ret = TAKE_PTR(buf);
	*ret_len = len;
	return 0;
}

int manifest_load(int dirfd, struct osm_snapshot **ret, char *err, size_t errlen)
{
	_cleanup_free_ char *buf = NULL;
	size_t len = 0;
	int r = read_manifest_file(dirfd, &buf, &len, err, errlen);

	if (r < 0) {
		if (r == -ENOMEM)
			snprintf(err, errlen, "out of memory");
		return r;
	}
	return manifest_parse(buf, len, ret, err, errlen);
}
