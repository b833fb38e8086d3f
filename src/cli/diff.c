/* SPDX-License-Identifier: MIT */
/*
 * osmosis diff A B: what changed between two snapshots of the same processes, the way engineers
 * compare two thread dumps taken seconds apart to tell a hang from slowness.
 *
 * Both snapshots are read as osmosis analyze reads them (manifest, cores, stacks, waits), never
 * the live system. They must come from one boot of one machine (host and boot_id; an older
 * manifest without boot_id is accepted on its host with a warning), A before B. Processes match
 * by pid and start time (a reused pid is another process), threads by tid within them.
 *
 * A thread is stuck when, in both, it waits in the same syscall with the same arguments, at the
 * same pc and sp with the same stack, used no CPU time in between, and was not switched in
 * between: B's context switches equal A's read after A's thaw (switches_after_thaw), so that the
 * freeze's own wake-ups do not count. Threads idle by design (condition variables, semaphores,
 * poll/epoll/select, sleeps, accept) are counted apart, not listed as stuck: an idle pool does
 * not progress either, and that is healthy.
 */
#include <errno.h>
#include <getopt.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analyze/analysis.h"
#include "base/log.h"
#include "base/parse.h"
#include "base/util.h"
#include "cli/cli.h"

#define DIFF_SCHEMA_VERSION 1
#define TOP_CPU		    20
#define MAX_GROWTH_ROWS	    10

static const char diff_usage[] =
    "Usage: osmosis diff [--json] A B\n"
    "\n"
    "What changed between snapshots A and B (B taken after A) of the same processes: threads\n"
    "that made no progress (\"stuck for at least\" the interval), locks held by the same owner\n"
    "in both (persistent blockers), threads and processes that appeared or went away,\n"
    "descriptor growth by type and target, memory growth by mapping, and each thread's CPU\n"
    "over the interval. Snapshots of different machines or boots are refused.\n"
    "\n"
    "      --json   the difference as JSON (docs/diff-json.md)\n"
    "  -h, --help   show this help\n";

static bool idle_wait(enum wait_kind k)
{
	return k == WAIT_NONE || k == WAIT_CONDVAR || k == WAIT_SEMAPHORE || k == WAIT_POLL ||
	       k == WAIT_SLEEP || k == WAIT_ACCEPT;
}

/* A wait the analysis knows the owner of (a native lock's holder, or a runtime's lock such as
 * a Python threading.Lock, natively a semaphore without owner) or that is part of a cycle is
 * never idle by design. */
static const struct edge *owned_wait(const struct athread *t)
{
	for (size_t i = 0; i < t->n_edges; i++)
		for (size_t j = 0; j < t->edges[i].n_wakers; j++)
			if (t->edges[i].wakers[j].thread && t->edges[i].wakers[j].thread != t)
				return &t->edges[i];
	return t->n_edges && t->scc > 0 ? &t->edges[0] : NULL;
}

static const char *thread_name(const struct athread *t)
{
	return t->runtime_name && *t->runtime_name ? t->runtime_name : t->t->name;
}

static struct aprocess *match_process(const struct analysis *a, const struct aprocess *bp)
{
	struct aprocess *ap = analysis_find_process(a, bp->p->pid);
	if (!ap || ap->p->start_time_s != bp->p->start_time_s)
		return NULL;
	return ap;
}

static struct athread *find_thread(const struct aprocess *ap, pid_t tid)
{
	for (size_t i = 0; i < ap->n_threads; i++)
		if (ap->threads[i].t->tid == tid)
			return &ap->threads[i];
	return NULL;
}

static bool same_stack(const struct athread *x, const struct athread *y)
{
	if (x->n_frames != y->n_frames)
		return false;
	for (size_t i = 0; i < x->n_frames; i++)
		if (x->frames[i].pc != y->frames[i].pc)
			return false;
	return true;
}

static bool same_wait(const struct osm_thread *x, const struct osm_thread *y)
{
	if (x->syscall_nr != y->syscall_nr || x->syscall_nr < 0)
		return false;
	for (int i = 0; i < 6; i++)
		if (x->syscall_args[i] != y->syscall_args[i])
			return false;
	return arch_regs_pc(&x->regs) == arch_regs_pc(&y->regs) &&
	       arch_regs_sp(&x->regs) == arch_regs_sp(&y->regs);
}

static uint64_t switches(const struct osm_thread *t)
{
	return t->vctx + t->nvctx;
}

static uint64_t cpu_us(const struct osm_thread *t)
{
	return t->utime_us + t->stime_us;
}

/* Why B's thread is stuck since A, or NULL when it progressed. */
static bool is_stuck(const struct athread *ta, const struct athread *tb)
{
	uint64_t after_a = ta->t->switches_after_thaw >= 0 ? (uint64_t)ta->t->switches_after_thaw
							   : switches(ta->t);
	if (!ta->t->captured || !tb->t->captured || tb->t->state == 'R')
		return false;
	if (!same_wait(ta->t, tb->t) || !same_stack(ta, tb))
		return false;
	if (cpu_us(ta->t) != cpu_us(tb->t))
		return false;
	return switches(tb->t) == after_a;
}

static const char *fd_key(const struct osm_fd *f, char *buf, size_t len)
{
	/* Files by path; everything else by type (each pipe or socket has its own target). */
	if ((!strcmp(f->type, "file") || !strcmp(f->type, "dir") || !strcmp(f->type, "char") ||
	     !strcmp(f->type, "block")) &&
	    f->target)
		snprintf(buf, len, "%s", f->target);
	else if (!strcmp(f->type, "socket"))
		snprintf(buf, len, "socket:%s", f->proto[0] ? f->proto : "?");
	else
		snprintf(buf, len, "%s", f->type);
	return buf;
}

struct count {
	char key[256];
	int64_t a, b;
};

static void count_add(struct count **v, size_t *n, size_t *cap, const char *key, bool in_b)
{
	for (size_t i = 0; i < *n; i++)
		if (!strcmp((*v)[i].key, key)) {
			(*(in_b ? &(*v)[i].b : &(*v)[i].a))++;
			return;
		}
	if (grow_array((void **)v, cap, *n + 1, sizeof(**v)))
		return;
	memset(&(*v)[*n], 0, sizeof(**v));
	snprintf((*v)[*n].key, sizeof((*v)[*n].key), "%s", key);
	*(in_b ? &(*v)[*n].b : &(*v)[*n].a) = 1;
	(*n)++;
}

static int cmp_growth(const void *x, const void *y)
{
	const struct count *a = x, *b = y;
	int64_t ga = a->b - a->a, gb = b->b - b->a;
	return ga < gb ? 1 : ga > gb ? -1 : strcmp(a->key, b->key);
}

/* Descriptors of one process: by type and by target, counts in A and B. */
static json_object *fd_growth(const struct osm_process *pa, const struct osm_process *pb, FILE *txt)
{
	struct count *types = NULL, *targets = NULL;
	size_t nt = 0, ct = 0, ng = 0, cg = 0;
	json_object *o = NULL;
	char key[256];

	for (int side = 0; side < 2; side++) {
		const struct osm_process *p = side ? pb : pa;
		for (size_t i = 0; i < p->n_fds; i++) {
			count_add(&types, &nt, &ct, p->fds[i].type, side);
			count_add(&targets, &ng, &cg, fd_key(&p->fds[i], key, sizeof(key)), side);
		}
	}
	if (pa->n_fds != pb->n_fds) {
		json_object *bt = json_object_new_object(), *bg = json_object_new_object();
		o = json_object_new_object();
		json_object_object_add(o, "pid", json_object_new_int(pb->pid));
		json_object_object_add(o, "comm", json_object_new_string(pb->comm));
		json_object_object_add(o, "fds_a", json_object_new_int64((int64_t)pa->n_fds));
		json_object_object_add(o, "fds_b", json_object_new_int64((int64_t)pb->n_fds));
		if (nt)
			qsort(types, nt, sizeof(*types), cmp_growth);
		if (ng)
			qsort(targets, ng, sizeof(*targets), cmp_growth);
		fprintf(txt, "  pid %d (%s): %zu -> %zu descriptors (%+lld):", pb->pid, pb->comm,
			pa->n_fds, pb->n_fds, (long long)pb->n_fds - (long long)pa->n_fds);
		for (size_t i = 0; i < nt; i++)
			if (types[i].b != types[i].a) {
				json_object_object_add(
				    bt, types[i].key,
				    json_object_new_int64(types[i].b - types[i].a));
				fprintf(txt, " %s %+lld", types[i].key,
					(long long)(types[i].b - types[i].a));
			}
		fprintf(txt, "\n");
		for (size_t i = 0, shown = 0; i < ng; i++)
			if (targets[i].b != targets[i].a) {
				json_object_object_add(
				    bg, targets[i].key,
				    json_object_new_int64(targets[i].b - targets[i].a));
				if (shown++ < MAX_GROWTH_ROWS)
					fprintf(txt, "    %+lld %s\n",
						(long long)(targets[i].b - targets[i].a),
						targets[i].key);
			}
		json_object_object_add(o, "by_type", bt);
		json_object_object_add(o, "by_target", bg);
	}
	free(types);
	free(targets);
	return o;
}

static const char *mapping_name(const struct aprocess *ap, uint64_t start)
{
	for (size_t i = 0; i < ap->n_modules; i++)
		if (ap->modules[i].start == start)
			return ap->modules[i].path;
	return "[anonymous or unnamed]";
}

/* Resident memory, and the cores' mappings that appeared or grew. */
static json_object *memory_growth(const struct aprocess *aa, const struct aprocess *ab, FILE *txt)
{
	const struct osm_process *pa = aa->p, *pb = ab->p;
	json_object *o, *maps = json_object_new_array();
	char x[32], y[32], z[32];
	int64_t drss = (int64_t)pb->vm_rss - (int64_t)pa->vm_rss;
	size_t shown = 0;

	for (size_t i = 0; i < ab->n_loads; i++) {
		uint64_t before = 0;
		for (size_t j = 0; j < aa->n_loads; j++)
			if (aa->loads[j].vaddr == ab->loads[i].vaddr)
				before = aa->loads[j].memsz;
		if (ab->loads[i].memsz <= before)
			continue;
		json_object *m = json_object_new_object();
		json_object_object_add(m, "start",
				       json_object_new_int64((int64_t)ab->loads[i].vaddr));
		json_object_object_add(m, "size_a", json_object_new_int64((int64_t)before));
		json_object_object_add(m, "size_b",
				       json_object_new_int64((int64_t)ab->loads[i].memsz));
		json_object_object_add(
		    m, "name", json_object_new_string(mapping_name(ab, ab->loads[i].vaddr)));
		json_object_array_add(maps, m);
	}
	if (!drss && !json_object_array_length(maps)) {
		json_object_put(maps);
		return NULL;
	}
	o = json_object_new_object();
	json_object_object_add(o, "pid", json_object_new_int(pb->pid));
	json_object_object_add(o, "comm", json_object_new_string(pb->comm));
	json_object_object_add(o, "rss_a", json_object_new_int64((int64_t)pa->vm_rss));
	json_object_object_add(o, "rss_b", json_object_new_int64((int64_t)pb->vm_rss));
	json_object_object_add(o, "mappings", maps);
	fprintf(txt, "  pid %d (%s): resident %s -> %s (%s%s)\n", pb->pid, pb->comm,
		format_bytes(pa->vm_rss, x, sizeof(x)), format_bytes(pb->vm_rss, y, sizeof(y)),
		drss < 0 ? "-" : "+",
		format_bytes((uint64_t)(drss < 0 ? -drss : drss), z, sizeof(z)));
	for (size_t i = 0; i < json_object_array_length(maps) && shown < MAX_GROWTH_ROWS; i++) {
		json_object *m = json_object_array_get_idx(maps, i), *v;
		uint64_t s, a, b;
		json_object_object_get_ex(m, "start", &v);
		s = (uint64_t)json_object_get_int64(v);
		json_object_object_get_ex(m, "size_a", &v);
		a = (uint64_t)json_object_get_int64(v);
		json_object_object_get_ex(m, "size_b", &v);
		b = (uint64_t)json_object_get_int64(v);
		fprintf(txt, "    mapping 0x%llx %s: %s -> %s\n", (unsigned long long)s,
			mapping_name(ab, s), a ? format_bytes(a, x, sizeof(x)) : "new",
			format_bytes(b, y, sizeof(y)));
		shown++;
	}
	return o;
}

static int refuse(const char *why, const char *a, const char *b, bool json)
{
	if (json) {
		json_object *o = json_object_new_object();
		json_object_object_add(o, "schema_version",
				       json_object_new_int(DIFF_SCHEMA_VERSION));
		json_object_object_add(o, "error", json_object_new_string(why));
		puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
		json_object_put(o);
	}
	log_error(EINVAL, "cannot compare %s and %s: %s", a, b, why);
	return 1;
}

struct cpu_row {
	pid_t pid, tid;
	char name[64];
	double pct;
};

static int cmp_cpu(const void *x, const void *y)
{
	double a = ((const struct cpu_row *)x)->pct, b = ((const struct cpu_row *)y)->pct;
	return a < b ? 1 : a > b ? -1 : 0;
}

static int diff_dirs(const char *da, const char *db, bool json)
{
	struct analysis a = {0}, b = {0};
	char err[512], why[600];
	json_object *root = json_object_new_object(), *stuck = json_object_new_array();
	json_object *blockers = json_object_new_array(), *tnew = json_object_new_array();
	json_object *tgone = json_object_new_array(), *pnew = json_object_new_array();
	json_object *pgone = json_object_new_array(), *fds = json_object_new_array();
	json_object *mem = json_object_new_array(), *cpu = json_object_new_array();
	_cleanup_free_ char *txtbuf = NULL;
	size_t txtlen = 0, n_idle = 0, n_rows = 0, cap_rows = 0;
	struct cpu_row *rows = NULL;
	FILE *txt = open_memstream(&txtbuf, &txtlen);
	double interval;
	int ret = 1;

	if (!txt)
		goto out;
	if (analysis_load(da, &a, err, sizeof(err)) < 0) {
		snprintf(why, sizeof(why), "%s: %s", da, err);
		ret = refuse(why, da, db, json);
		goto out;
	}
	if (analysis_load(db, &b, err, sizeof(err)) < 0) {
		snprintf(why, sizeof(why), "%s: %s", db, err);
		ret = refuse(why, da, db, json);
		goto out;
	}
	if (strcmp(a.snap->host ? a.snap->host : "", b.snap->host ? b.snap->host : "")) {
		snprintf(why, sizeof(why), "they come from different machines (%s, %s)",
			 a.snap->host, b.snap->host);
		ret = refuse(why, da, db, json);
		goto out;
	}
	if (a.snap->boot_id && b.snap->boot_id) {
		if (strcmp(a.snap->boot_id, b.snap->boot_id)) {
			ret = refuse("they come from different boots (boot_id differs)", da, db,
				     json);
			goto out;
		}
	} else {
		log_warn("a manifest has no boot_id: assuming one boot of %s", b.snap->host);
	}
	interval = b.snap->sys.uptime_s - a.snap->sys.uptime_s;
	if (a.snap->sys.uptime_s <= 0 || b.snap->sys.uptime_s <= 0 || interval < 0) {
		if (interval < 0) {
			ret = refuse("B was taken before A (give the older snapshot first)", da, db,
				     json);
			goto out;
		}
		interval = 0;
	}

	fprintf(txt, "diff %s -> %s: %.1f s apart, host %s\n", da, db, interval, b.snap->host);
	fflush(txt);
	/* Processes and threads that came and went. */
	for (size_t i = 0; i < b.n_procs; i++) {
		struct aprocess *bp = &b.procs[i], *ap = match_process(&a, bp);
		if (!ap) {
			json_object *p = json_object_new_object();
			json_object_object_add(p, "pid", json_object_new_int(bp->p->pid));
			json_object_object_add(p, "comm", json_object_new_string(bp->p->comm));
			json_object_array_add(pnew, p);
			continue;
		}
		for (size_t j = 0; j < bp->n_threads; j++) {
			struct athread *tb = &bp->threads[j], *ta = find_thread(ap, tb->t->tid);
			if (!ta) {
				json_object *t = json_object_new_object();
				json_object_object_add(t, "pid", json_object_new_int(bp->p->pid));
				json_object_object_add(t, "tid", json_object_new_int(tb->t->tid));
				json_object_object_add(t, "name",
						       json_object_new_string(tb->t->name));
				json_object_array_add(tnew, t);
				continue;
			}
			if (interval > 0 && cpu_us(tb->t) >= cpu_us(ta->t) &&
			    !grow_array((void **)&rows, &cap_rows, n_rows + 1, sizeof(*rows))) {
				rows[n_rows].pid = bp->p->pid;
				rows[n_rows].tid = tb->t->tid;
				snprintf(rows[n_rows].name, sizeof(rows[n_rows].name), "%s",
					 thread_name(tb));
				rows[n_rows].pct =
				    (double)(cpu_us(tb->t) - cpu_us(ta->t)) / 1e4 / interval;
				n_rows++;
			}
			if (!is_stuck(ta, tb))
				continue;
			const struct edge *owned = owned_wait(tb);
			if (idle_wait(tb->wait.kind) && !owned) {
				n_idle++;
				continue;
			}
			json_object *s = json_object_new_object();
			json_object_object_add(s, "pid", json_object_new_int(bp->p->pid));
			json_object_object_add(s, "tid", json_object_new_int(tb->t->tid));
			json_object_object_add(s, "name", json_object_new_string(thread_name(tb)));
			json_object_object_add(
			    s, "wait",
			    json_object_new_string(
				owned && idle_wait(tb->wait.kind) ? owned->text : tb->wait.text));
			json_object_object_add(s, "for_at_least_s",
					       json_object_new_double(interval));
			json_object_object_add(
			    s, "last_ran_ago_s",
			    tb->t->last_ran_ago_ms >= 0
				? json_object_new_double((double)tb->t->last_ran_ago_ms / 1000.0)
				: NULL);
			json_object_array_add(stuck, s);
		}
		for (size_t j = 0; j < ap->n_threads; j++)
			if (!find_thread(bp, ap->threads[j].t->tid)) {
				json_object *t = json_object_new_object();
				json_object_object_add(t, "pid", json_object_new_int(ap->p->pid));
				json_object_object_add(t, "tid",
						       json_object_new_int(ap->threads[j].t->tid));
				json_object_object_add(
				    t, "name", json_object_new_string(ap->threads[j].t->name));
				json_object_array_add(tgone, t);
			}
		/* Locks with one owner in both: each lock once, with its waiters in B. */
		for (size_t j = 0; j < bp->n_threads; j++) {
			struct athread *tb = &bp->threads[j];
			bool first = true, in_a = false;
			json_object *waiters;
			if (tb->wait.kind != WAIT_MUTEX && tb->wait.kind != WAIT_RWLOCK)
				continue;
			if (tb->wait.owner <= 0)
				continue;
			for (size_t k = 0; k < j && first; k++)
				first = !(bp->threads[k].wait.addr == tb->wait.addr &&
					  bp->threads[k].wait.owner == tb->wait.owner);
			for (size_t k = 0; k < ap->n_threads && !in_a; k++)
				in_a = ap->threads[k].wait.addr == tb->wait.addr &&
				       ap->threads[k].wait.owner == tb->wait.owner &&
				       (ap->threads[k].wait.kind == WAIT_MUTEX ||
					ap->threads[k].wait.kind == WAIT_RWLOCK);
			if (!first || !in_a)
				continue;
			json_object *bl = json_object_new_object();
			waiters = json_object_new_array();
			for (size_t k = 0; k < bp->n_threads; k++)
				if (bp->threads[k].wait.addr == tb->wait.addr &&
				    bp->threads[k].wait.owner == tb->wait.owner)
					json_object_array_add(
					    waiters, json_object_new_int(bp->threads[k].t->tid));
			json_object_object_add(bl, "pid", json_object_new_int(bp->p->pid));
			json_object_object_add(bl, "kind",
					       json_object_new_string(tb->wait.kind == WAIT_MUTEX
									  ? "mutex"
									  : "rwlock"));
			json_object_object_add(bl, "address",
					       json_object_new_int64((int64_t)tb->wait.addr));
			json_object_object_add(bl, "owner_tid",
					       json_object_new_int(tb->wait.owner));
			json_object_object_add(bl, "waiters", waiters);
			json_object_array_add(blockers, bl);
		}
	}
	for (size_t i = 0; i < a.n_procs; i++) {
		bool found = false;
		for (size_t j = 0; j < b.n_procs && !found; j++)
			found = match_process(&a, &b.procs[j]) == &a.procs[i];
		if (!found) {
			json_object *p = json_object_new_object();
			json_object_object_add(p, "pid", json_object_new_int(a.procs[i].p->pid));
			json_object_object_add(p, "comm",
					       json_object_new_string(a.procs[i].p->comm));
			json_object_array_add(pgone, p);
		}
	}

	/* The text report, in the order of the JSON. */
	{
		_cleanup_free_ char *fdtxt = NULL, *memtxt = NULL;
		size_t l1 = 0, l2 = 0;
		FILE *ft = open_memstream(&fdtxt, &l1), *mt = open_memstream(&memtxt, &l2);

		for (size_t i = 0; ft && mt && i < b.n_procs; i++) {
			struct aprocess *bp = &b.procs[i], *ap = match_process(&a, bp);
			json_object *g;
			if (!ap)
				continue;
			if ((g = fd_growth(ap->p, bp->p, ft)))
				json_object_array_add(fds, g);
			if ((g = memory_growth(ap, bp, mt)))
				json_object_array_add(mem, g);
		}
		if (ft)
			fclose(ft);
		if (mt)
			fclose(mt);
		fprintf(txt, "\nstuck: %zu thread%s made no progress for at least %.1f s",
			json_object_array_length(stuck),
			json_object_array_length(stuck) == 1 ? "" : "s", interval);
		if (n_idle)
			fprintf(txt,
				" (and %zu idle by design: condition variables, polls, sleeps)",
				n_idle);
		fprintf(txt, "\n");
		for (size_t i = 0; i < json_object_array_length(stuck); i++) {
			json_object *s = json_object_array_get_idx(stuck, i), *v;
			int pid, tid;
			const char *name, *wait;
			json_object_object_get_ex(s, "pid", &v);
			pid = json_object_get_int(v);
			json_object_object_get_ex(s, "tid", &v);
			tid = json_object_get_int(v);
			json_object_object_get_ex(s, "name", &v);
			name = json_object_get_string(v);
			json_object_object_get_ex(s, "wait", &v);
			wait = json_object_get_string(v);
			json_object_object_get_ex(s, "last_ran_ago_s", &v);
			fprintf(txt, "  thread %d \"%s\" of pid %d: %s", tid, name, pid,
				wait && *wait ? wait : "(wait unknown)");
			if (v)
				fprintf(txt, "; last ran %.1f s before B",
					json_object_get_double(v));
			fprintf(txt, "\n");
		}
		fprintf(txt, "\npersistent blockers: %zu\n", json_object_array_length(blockers));
		for (size_t i = 0; i < json_object_array_length(blockers); i++) {
			json_object *bl = json_object_array_get_idx(blockers, i), *v, *w;
			json_object_object_get_ex(bl, "kind", &v);
			fprintf(txt, "  %s", json_object_get_string(v));
			json_object_object_get_ex(bl, "address", &v);
			fprintf(txt, " 0x%llx", (unsigned long long)json_object_get_int64(v));
			json_object_object_get_ex(bl, "pid", &v);
			fprintf(txt, " of pid %d", json_object_get_int(v));
			json_object_object_get_ex(bl, "owner_tid", &v);
			json_object_object_get_ex(bl, "waiters", &w);
			fprintf(txt, " held by thread %d in both, %zu waiter%s in B\n",
				json_object_get_int(v), json_object_array_length(w),
				json_object_array_length(w) == 1 ? "" : "s");
		}
		fprintf(txt, "\nthreads: %zu new, %zu gone; processes: %zu new, %zu gone\n",
			json_object_array_length(tnew), json_object_array_length(tgone),
			json_object_array_length(pnew), json_object_array_length(pgone));
		fprintf(txt, "\ndescriptors: %zu process%s changed\n%s",
			json_object_array_length(fds),
			json_object_array_length(fds) == 1 ? "" : "es", fdtxt ? fdtxt : "");
		fprintf(txt, "\nmemory: %zu process%s changed\n%s", json_object_array_length(mem),
			json_object_array_length(mem) == 1 ? "" : "es", memtxt ? memtxt : "");
	}
	if (n_rows)
		qsort(rows, n_rows, sizeof(*rows), cmp_cpu);
	fprintf(txt, "\ncpu over the interval (%% of one CPU), busiest first:\n");
	for (size_t i = 0; i < n_rows; i++) {
		json_object *c = json_object_new_object();
		json_object_object_add(c, "pid", json_object_new_int(rows[i].pid));
		json_object_object_add(c, "tid", json_object_new_int(rows[i].tid));
		json_object_object_add(c, "name", json_object_new_string(rows[i].name));
		json_object_object_add(c, "cpu_pct", json_object_new_double(rows[i].pct));
		json_object_array_add(cpu, c);
		if (i < TOP_CPU && rows[i].pct > 0)
			fprintf(txt, "  %6.1f  thread %d \"%s\" of pid %d\n", rows[i].pct,
				rows[i].tid, rows[i].name, rows[i].pid);
	}
	fflush(txt);

	json_object_object_add(root, "schema_version", json_object_new_int(DIFF_SCHEMA_VERSION));
	json_object_object_add(root, "a", json_object_new_string(da));
	json_object_object_add(root, "b", json_object_new_string(db));
	json_object_object_add(root, "interval_s", json_object_new_double(interval));
	json_object_object_add(root, "stuck", json_object_get(stuck));
	json_object_object_add(root, "idle_unchanged", json_object_new_int64((int64_t)n_idle));
	json_object_object_add(root, "persistent_blockers", json_object_get(blockers));
	json_object_object_add(root, "threads_new", json_object_get(tnew));
	json_object_object_add(root, "threads_gone", json_object_get(tgone));
	json_object_object_add(root, "processes_new", json_object_get(pnew));
	json_object_object_add(root, "processes_gone", json_object_get(pgone));
	json_object_object_add(root, "fds_growth", json_object_get(fds));
	json_object_object_add(root, "memory_growth", json_object_get(mem));
	json_object_object_add(root, "cpu", json_object_get(cpu));
	if (json)
		puts(json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY |
							      JSON_C_TO_STRING_SPACED |
							      JSON_C_TO_STRING_NOSLASHESCAPE));
	else
		fwrite(txtbuf, 1, txtlen, stdout);
	ret = 0;
out:
	if (txt)
		fclose(txt);
	free(rows);
	json_object_put(stuck);
	json_object_put(blockers);
	json_object_put(tnew);
	json_object_put(tgone);
	json_object_put(pnew);
	json_object_put(pgone);
	json_object_put(fds);
	json_object_put(mem);
	json_object_put(cpu);
	json_object_put(root);
	analysis_done(&a);
	analysis_done(&b);
	return ret;
}

int cmd_diff(int argc, char **argv)
{
	bool json;
	int r;

	r = cli_parse_json_help(argc, argv, diff_usage, &json);
	if (r >= 0)
		return r;
	if (optind != argc - 2) {
		log_error(EINVAL,
			  "give two snapshot directories, A then B (see osmosis diff --help)");
		return EXIT_USAGE;
	}
	return diff_dirs(argv[optind], argv[optind + 1], json);
}
