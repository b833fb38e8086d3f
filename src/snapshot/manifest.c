/* SPDX-License-Identifier: MIT */
/*
 * Writing manifest.json from the model. Field by field documentation with units is in
 * docs/manifest.md; keep the two in step. Integers are JSON integers (json-c int64), sizes are in
 * bytes, times in microseconds or seconds as the name says, percentages 0-100 per CPU.
 */
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arch.h"
#include "snapshot/manifest.h"

#define ADD(o, k, v) json_object_object_add(o, k, v)

static json_object *jstr(const char *s)
{
	return json_object_new_string(s ? s : "");
}

static json_object *jint(int64_t v)
{
	return json_object_new_int64(v);
}

static json_object *ju64(uint64_t v)
{
	return json_object_new_int64(v > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)v);
}

static json_object *jlimit(uint64_t v)
{
	return v == UINT64_MAX ? NULL : ju64(v); /* null: unlimited */
}

const char *manifest_state_name(char c)
{
	switch (c) {
	case 'R':
		return "running";
	case 'S':
		return "sleeping";
	case 'D':
		return "disk-sleep";
	case 'T':
		return "stopped";
	case 't':
		return "tracing-stop";
	case 'Z':
		return "zombie";
	case 'X':
		return "dead";
	case 'I':
		return "idle";
	default:
		return "unknown";
	}
}

static json_object *thread_json(const struct osm_thread *t)
{
	json_object *o = json_object_new_object();
	char st[2] = {t->state, 0};

	ADD(o, "tid", jint(t->tid));
	ADD(o, "name", jstr(t->name));
	ADD(o, "state", jstr(st));
	ADD(o, "state_name", jstr(manifest_state_name(t->state)));
	ADD(o, "captured", json_object_new_boolean(t->captured));
	ADD(o, "wchan", jstr(t->wchan));
	if (t->captured) {
		ADD(o, "pc", ju64(arch_regs_pc(&t->regs)));
		ADD(o, "sp", ju64(arch_regs_sp(&t->regs)));
	}
	if (t->syscall_nr >= 0) {
		json_object *sc = json_object_new_object(), *args = json_object_new_array();
		const char *name = arch_syscall_name(t->syscall_nr);
		ADD(sc, "nr", jint(t->syscall_nr));
		ADD(sc, "name", name ? jstr(name) : NULL);
		for (int i = 0; i < 6; i++)
			json_object_array_add(args, ju64(t->syscall_args[i]));
		ADD(sc, "args", args);
		ADD(o, "syscall", sc);
	} else {
		ADD(o, "syscall", NULL);
	}
	ADD(o, "utime_us", ju64(t->utime_us));
	ADD(o, "stime_us", ju64(t->stime_us));
	ADD(o, "cpu_pct", t->has_cpu_pct ? json_object_new_double(t->cpu_pct) : NULL);
	ADD(o, "switches_in_sample",
	    t->switches_in_sample >= 0 ? jint(t->switches_in_sample) : NULL);
	ADD(o, "voluntary_ctxt_switches", ju64(t->vctx));
	ADD(o, "nonvoluntary_ctxt_switches", ju64(t->nvctx));
	ADD(o, "last_cpu", jint(t->last_cpu));
	ADD(o, "last_ran_ago_ms", t->last_ran_ago_ms >= 0 ? jint(t->last_ran_ago_ms) : NULL);
	ADD(o, "switches_after_thaw",
	    t->switches_after_thaw >= 0 ? jint(t->switches_after_thaw) : NULL);
	ADD(o, "kernel_stack", t->kstack ? jstr(t->kstack) : NULL);
	ADD(o, "stack_swapped_pages", ju64(t->stack_swapped_pages));
	if (t->has_schedstat) {
		json_object *ss = json_object_new_object();
		ADD(ss, "run_ns", ju64(t->sched_run_ns));
		ADD(ss, "wait_ns", ju64(t->sched_wait_ns));
		ADD(ss, "slices", ju64(t->sched_slices));
		ADD(o, "schedstat", ss);
	}
	ADD(o, "run_pct", t->has_demand ? json_object_new_double(t->run_pct) : NULL);
	ADD(o, "runq_wait_pct", t->has_demand ? json_object_new_double(t->runq_wait_pct) : NULL);
	ADD(o, "voluntary_switches_in_sample",
	    t->has_demand && t->voluntary_in_sample >= 0 ? jint(t->voluntary_in_sample) : NULL);
	return o;
}

static json_object *fd_json(const struct osm_fd *f)
{
	json_object *o = json_object_new_object();

	ADD(o, "fd", jint(f->fd));
	ADD(o, "type", jstr(f->type));
	ADD(o, "target", jstr(f->target));
	ADD(o, "inode", ju64(f->inode));
	ADD(o, "flags", jint(f->flags));
	ADD(o, "pos", ju64(f->pos));
	if (!strcmp(f->type, "socket")) {
		ADD(o, "proto", jstr(f->proto));
		ADD(o, "sock_state", jstr(f->sock_state));
		if (f->local)
			ADD(o, "local", jstr(f->local));
		if (f->remote)
			ADD(o, "remote", jstr(f->remote));
		ADD(o, "peer_inode", ju64(f->peer_inode));
		ADD(o, "rqueue", ju64(f->rqueue));
		ADD(o, "wqueue", ju64(f->wqueue));
	}
	if (!strcmp(f->type, "epoll")) {
		json_object *a = json_object_new_array();
		for (size_t i = 0; i < f->n_epoll_tfds; i++)
			json_object_array_add(a, jint(f->epoll_tfds[i]));
		ADD(o, "epoll_tfds", a);
	}
	if (!strcmp(f->type, "eventfd"))
		ADD(o, "eventfd_count", jint(f->eventfd_count));
	return o;
}

static json_object *process_json(const struct osm_process *p)
{
	json_object *o = json_object_new_object(), *threads = json_object_new_array();
	json_object *mem = json_object_new_object(), *lim = json_object_new_object();
	char st[2] = {p->state, 0};

	ADD(o, "pid", jint(p->pid));
	ADD(o, "ppid", jint(p->ppid));
	ADD(o, "pgid", jint(p->pgid));
	ADD(o, "sid", jint(p->sid));
	ADD(o, "uid", ju64(p->uid));
	ADD(o, "euid", ju64(p->euid));
	ADD(o, "gid", ju64(p->gid));
	ADD(o, "comm", jstr(p->comm));
	ADD(o, "exe", jstr(p->exe));
	ADD(o, "cmdline", jstr(p->cmdline));
	ADD(o, "state", jstr(st));
	ADD(o, "state_name", jstr(manifest_state_name(p->state)));
	ADD(o, "start_time_s", ju64(p->start_time_s));
	ADD(o, "utime_us", ju64(p->utime_us));
	ADD(o, "stime_us", ju64(p->stime_us));
	ADD(o, "capture", jstr(capture_state_name(p->capture)));
	if (p->capture_note)
		ADD(o, "capture_note", jstr(p->capture_note));
	if (p->method) {
		ADD(o, "method", jstr(p->method));
		ADD(o, "method_reason", jstr(p->method_reason));
	}
	ADD(o, "core", p->core_name[0] ? jstr(p->core_name) : NULL);
	ADD(o, "coredump_filter", jint(p->coredump_filter));
	ADD(o, "mappings", ju64(p->mappings_count));
	ADD(o, "captured_bytes", ju64(p->captured_bytes));
	ADD(o, "unreadable_bytes", ju64(p->unreadable_bytes));
	json_object *shm = NULL;
	for (size_t i = 0; i < p->n_maps; i++) {
		const struct osm_mapping *m = &p->maps[i];
		json_object *e;
		if (!m->shared_object)
			continue;
		if (!shm)
			shm = json_object_new_array();
		e = json_object_new_object();
		ADD(e, "start", ju64(m->start));
		ADD(e, "end", ju64(m->end));
		ADD(e, "object", jint(m->shared_object));
		json_object_array_add(shm, e);
	}
	if (shm)
		ADD(o, "shared_mappings", shm);
	ADD(mem, "vm_size", ju64(p->vm_size));
	ADD(mem, "vm_rss", ju64(p->vm_rss));
	ADD(mem, "vm_swap", ju64(p->vm_swap));
	ADD(mem, "rss_anon", ju64(p->rss_anon));
	ADD(mem, "rss_file", ju64(p->rss_file));
	ADD(mem, "rss_shmem", ju64(p->rss_shmem));
	ADD(mem, "cgroup_current", p->cg_mem_current ? ju64(p->cg_mem_current) : NULL);
	ADD(mem, "cgroup_max", jlimit(p->cg_mem_max ? p->cg_mem_max : UINT64_MAX));
	ADD(o, "memory", mem);
	ADD(lim, "nofile_soft", jlimit(p->nofile_soft));
	ADD(lim, "nofile_hard", jlimit(p->nofile_hard));
	ADD(o, "limits", lim);
	ADD(o, "cgroup", jstr(p->cgroup));
	ADD(o, "oom_score_adj", jint(p->oom_score_adj));
	for (size_t i = 0; i < p->n_threads; i++) {
		if (!p->threads[i]->captured && p->threads[i]->gone)
			continue;
		json_object_array_add(threads, thread_json(p->threads[i]));
	}
	ADD(o, "threads", threads);
	if (p->fd_error) {
		ADD(o, "fds", NULL);
		ADD(o, "fd_error", jstr(strerror(p->fd_error)));
	} else {
		json_object *fds = json_object_new_array();
		for (size_t i = 0; i < p->n_fds; i++)
			json_object_array_add(fds, fd_json(&p->fds[i]));
		ADD(o, "fds", fds);
	}
	return o;
}

static json_object *shared_json(const struct osm_shared_object *so)
{
	json_object *o = json_object_new_object(), *by = json_object_new_array();
	json_object *out = json_object_new_array();
	char dev[24];

	snprintf(dev, sizeof(dev), "%02x:%02x", so->dev_major, so->dev_minor);
	ADD(o, "id", jint(so->id));
	ADD(o, "kind", jstr(so->kind));
	ADD(o, "path", jstr(so->path));
	ADD(o, "device", jstr(dev));
	ADD(o, "inode", ju64(so->inode));
	ADD(o, "offset", ju64(so->offset));
	ADD(o, "size", ju64(so->size));
	for (size_t i = 0; i < so->n_mappers; i++) {
		const struct osm_shared_mapper *m = &so->mappers[i];
		json_object *e = json_object_new_object();
		ADD(e, "pid", jint(m->pid));
		ADD(e, "start", ju64(m->start));
		ADD(e, "end", ju64(m->end));
		ADD(e, "offset", ju64(m->offset));
		ADD(e, "dumped", json_object_new_boolean(m->dumped));
		json_object_array_add(by, e);
	}
	ADD(o, "mapped_by", by);
	ADD(o, "kept", jstr(so->kept));
	ADD(o, "kept_reason", so->kept_reason ? jstr(so->kept_reason) : NULL);
	ADD(o, "copied_before_bytes", ju64(so->copied_before));
	ADD(o, "copied_in_pause_bytes", ju64(so->copied_in_pause));
	for (size_t i = 0; i < so->n_writers_outside; i++)
		json_object_array_add(out, jint(so->writers_outside[i]));
	ADD(o, "writers_outside", out);
	return o;
}

static json_object *kv_json(const struct osm_kv *kv, size_t n)
{
	json_object *o = json_object_new_object();
	for (size_t i = 0; i < n; i++)
		ADD(o, kv[i].key, jint(kv[i].value));
	return o;
}

static json_object *psi_part(const double avg[3], uint64_t total)
{
	json_object *o = json_object_new_object();
	ADD(o, "avg10", json_object_new_double(avg[0]));
	ADD(o, "avg60", json_object_new_double(avg[1]));
	ADD(o, "avg300", json_object_new_double(avg[2]));
	ADD(o, "total_us", ju64(total));
	return o;
}

static json_object *system_json(const struct osm_system *sys)
{
	static const char *const tick_names[8] = {"user",   "nice", "system",  "idle",
						  "iowait", "irq",  "softirq", "steal"};
	json_object *o = json_object_new_object(), *cpus = json_object_new_array();
	json_object *load = json_object_new_array(), *psi = json_object_new_object();
	json_object *swaps = json_object_new_array();

	ADD(o, "ncpu", jint(sys->ncpu));
	ADD(o, "uptime_s", json_object_new_double(sys->uptime_s));
	for (int i = 0; i < 3; i++)
		json_object_array_add(load, json_object_new_double(sys->load[i]));
	ADD(o, "loadavg", load);
	ADD(o, "runnable", jint(sys->runnable));
	ADD(o, "threads_total", jint(sys->threads_total));
	ADD(o, "procs_running", ju64(sys->procs_running));
	ADD(o, "procs_blocked", ju64(sys->procs_blocked));
	ADD(o, "context_switches", ju64(sys->ctxt));
	ADD(o, "forks", ju64(sys->processes_forked));
	for (size_t i = 0; i < sys->n_cpus; i++) {
		const struct osm_cpu *c = &sys->cpus[i];
		json_object *co = json_object_new_object(), *ticks = json_object_new_object();
		ADD(co, "cpu", c->cpu < 0 ? jstr("all") : jint(c->cpu));
		for (int k = 0; k < 8; k++)
			ADD(ticks, tick_names[k], ju64(c->ticks[k]));
		ADD(co, "ticks", ticks);
		ADD(co, "busy_pct", c->busy_pct >= 0 ? json_object_new_double(c->busy_pct) : NULL);
		json_object_array_add(cpus, co);
	}
	ADD(o, "cpus", cpus);
	ADD(o, "meminfo", kv_json(sys->meminfo, sys->n_meminfo));
	ADD(o, "vmstat", kv_json(sys->vmstat, sys->n_vmstat));
	for (size_t i = 0; i < sys->n_psi; i++) {
		json_object *r = json_object_new_object();
		ADD(r, "some", psi_part(sys->psi[i].some, sys->psi[i].some_total_us));
		if (sys->psi[i].has_full)
			ADD(r, "full", psi_part(sys->psi[i].full, sys->psi[i].full_total_us));
		ADD(psi, sys->psi[i].resource, r);
	}
	ADD(o, "pressure", psi);
	for (size_t i = 0; i < sys->n_swaps; i++) {
		json_object *s = json_object_new_object();
		ADD(s, "name", jstr(sys->swaps[i].name));
		ADD(s, "type", jstr(sys->swaps[i].type));
		ADD(s, "size", ju64(sys->swaps[i].size));
		ADD(s, "used", ju64(sys->swaps[i].used));
		ADD(s, "priority", jint(sys->swaps[i].priority));
		json_object_array_add(swaps, s);
	}
	ADD(o, "swaps", swaps);
	if (sys->n_top) {
		json_object *top = json_object_new_array();
		for (size_t i = 0; i < sys->n_top; i++) {
			json_object *c = json_object_new_object();
			ADD(c, "pid", jint(sys->top[i].pid));
			ADD(c, "comm", jstr(sys->top[i].comm));
			ADD(c, "cpu_pct", json_object_new_double(sys->top[i].cpu_pct));
			json_object_array_add(top, c);
		}
		ADD(o, "top_consumers", top);
	}
	return o;
}

static json_object *file_lock_json(const struct osm_file_lock *l)
{
	json_object *o = json_object_new_object();
	char dev[24];

	snprintf(dev, sizeof(dev), "%02x:%02x", l->dev_major, l->dev_minor);
	ADD(o, "id", jint(l->id));
	ADD(o, "waiting", json_object_new_boolean(l->waiting));
	ADD(o, "type", jstr(l->type));
	ADD(o, "mode", jstr(l->mode));
	ADD(o, "access", jstr(l->access));
	ADD(o, "pid", jint(l->pid));
	ADD(o, "dev", jstr(dev));
	ADD(o, "inode", ju64(l->inode));
	ADD(o, "start", ju64(l->start));
	ADD(o, "end", l->end < 0 ? NULL : jint(l->end));
	if (l->n_holders) {
		json_object *h = json_object_new_array();
		for (size_t i = 0; i < l->n_holders; i++) {
			json_object *x = json_object_new_object();
			ADD(x, "pid", jint(l->holders[i].pid));
			ADD(x, "fd", jint(l->holders[i].fd));
			json_object_array_add(h, x);
		}
		ADD(o, "holders", h);
	}
	ADD(o, "path", l->path ? jstr(l->path) : NULL);
	return o;
}

static json_object *timeline_json(const struct osm_timeline *tl)
{
	json_object *o = json_object_new_object(), *phases = json_object_new_array();

	ADD(o, "clock", jstr("CLOCK_MONOTONIC"));
	ADD(o, "start_ns", ju64(tl->t0_ns));
	ADD(o, "pause_start_us", ju64(tl->pause_ns / 1000));
	ADD(o, "pause_end_us", ju64(tl->pause_end_ns / 1000));
	bool parts = false;
	for (int i = 0; i < PAUSE_N_PARTS; i++)
		parts |= tl->part_ns[i] != 0;
	if (parts) {
		json_object *b = json_object_new_object();
		for (int i = 0; i < PAUSE_N_PARTS; i++)
			ADD(b, osm_pause_part_names[i], ju64(tl->part_ns[i] / 1000));
		ADD(o, "pause_breakdown_us", b);
	}
	for (size_t i = 0; i < tl->n && i < OSM_MAX_PHASES; i++) {
		const struct osm_phase *ph = &tl->phases[i];
		json_object *e = json_object_new_object();
		ADD(e, "name", jstr(ph->name));
		if (ph->pid)
			ADD(e, "pid", jint(ph->pid));
		ADD(e, "start_us", ju64(ph->start_ns / 1000));
		if (ph->dur_ns != OSM_PHASE_OPEN)
			ADD(e, "duration_us", ju64(ph->dur_ns / 1000));
		json_object_array_add(phases, e);
	}
	ADD(o, "phases", phases);
	if (tl->dropped)
		ADD(o, "phases_dropped", ju64(tl->dropped));
	ADD(o, "peak_rss", ju64(tl->peak_rss));
	ADD(o, "peak_buffers", ju64(tl->peak_buffers));
	ADD(o, "max_memory", ju64(tl->max_memory));
	if (tl->allocations_in_freeze != UINT64_MAX)
		ADD(o, "allocations_in_freeze", ju64(tl->allocations_in_freeze));
	return o;
}

char *manifest_to_json(const struct osm_snapshot *s)
{
	json_object *root = json_object_new_object(), *procs = json_object_new_array();
	char *out;

	ADD(root, "schema_version", jint(MANIFEST_SCHEMA_VERSION));
	ADD(root, "osmosis_version", jstr(OSMOSIS_VERSION));
	ADD(root, "created", jstr(s->created));
	ADD(root, "host", jstr(s->host));
	ADD(root, "kernel", jstr(s->kernel));
	ADD(root, "boot_id", s->boot_id ? jstr(s->boot_id) : NULL);
	ADD(root, "arch", jstr(ARCH_NAME));
	ADD(root, "scope", jstr(s->scope ? s->scope : "pids"));
	ADD(root, "scope_arg", jstr(s->scope_arg));
	ADD(root, "state_only", json_object_new_boolean(s->state_only));
	ADD(root, "method", jstr(s->method));
	ADD(root, "method_reason", jstr(s->method_reason));
	ADD(root, "pause_us", ju64(s->pause_us));
	ADD(root, "total_ms", ju64(s->total_ms));
	ADD(root, "sample_ms", ju64(s->sample_ms));
	if (s->trigger_json) {
		json_object *trig = json_tokener_parse(s->trigger_json);
		if (trig && json_object_is_type(trig, json_type_object))
			ADD(root, "trigger", trig);
		else
			json_object_put(trig);
	}
	if (s->timeline.t0_ns)
		ADD(root, "timeline", timeline_json(&s->timeline));
	ADD(root, "system", system_json(&s->sys));
	for (size_t i = 0; i < s->n_procs; i++)
		json_object_array_add(procs, process_json(s->procs[i]));
	ADD(root, "processes", procs);
	if (s->has_file_locks) {
		json_object *locks = json_object_new_array();
		for (size_t i = 0; i < s->n_file_locks; i++)
			json_object_array_add(locks, file_lock_json(&s->file_locks[i]));
		ADD(root, "file_locks", locks);
	}
	json_object *shared = json_object_new_array();
	for (size_t i = 0; i < s->n_shared; i++)
		json_object_array_add(shared, shared_json(&s->shared[i]));
	ADD(root, "shared_objects", shared);

	const char *txt =
	    json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
						     JSON_C_TO_STRING_NOSLASHESCAPE);
	out = txt ? strdup(txt) : NULL;
	json_object_put(root);
	return out;
}
