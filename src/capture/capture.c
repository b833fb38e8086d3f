/* SPDX-License-Identifier: MIT */
/*
 * The capture engine: one method per target, chosen here (see capture.h), and the steps every
 * method shares. --method auto decides per target, from estimates of what each method would
 * cost in the freeze (below):
 *
 *   copy       when copying the whole process costs no more than a clone (small processes),
 *              or when neither clone nor pre-copy can be used (no thread able to run an
 *              injected syscall);
 *   pre-copy   when the kernel has async write-protect and PAGEMAP_SCAN, and pre-copy's rounds
 *              bring the written set down to what the freeze copies faster than a clone is
 *              made (the rounds decide, not a guess: a writer's pace under tracking, with
 *              osmosis copying beside it, is only seen there);
 *   clone      otherwise (a large process writing much of its memory faster than it is copied).
 * The manifest records the method each target got and the figures behind the choice.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "base/fs.h"
#include "base/log.h"
#include "base/parse.h"
#include "base/timeutil.h"
#include "base/util.h"
#include "capture/capture.h"
#include "inject/inject.h"
#include "proc/maps.h"
#include "proc/pidref.h"
#include "proc/process.h"
#include "proc/procfs.h"

static const char *const method_names[] = {
    [METHOD_AUTO] = "auto",
    [METHOD_COPY] = "copy",
    [METHOD_CLONE] = "clone",
    [METHOD_PRECOPY] = "precopy",
};

int capture_method_parse(const char *name)
{
	for (size_t i = 0; i < ARRAY_SIZE(method_names); i++)
		if (!strcmp(name, method_names[i]))
			return (int)i;
	return -1;
}

const char *capture_method_name(enum capture_method m)
{
	return method_names[m];
}

static bool live(const struct target *t)
{
	return !t->skipped && !t->exited;
}

/*
 * A member of a set (--tree, --cgroup, --all) that cannot be captured is recorded and the rest
 * goes on: it exited (or became a zombie), ran a new program, or failed otherwise during
 * `phase`. Its tracking is removed. Returns true when t was optional and is now recorded; false
 * for a target named by its PID, whose failure is the snapshot's (the caller logs it).
 */
/* Exited, or a zombie (whose pidfd still answers). */
static bool target_ended(const struct target *t)
{
	struct proc_stat st;

	return !pidref_alive(&t->ref) || proc_read_stat(t->ref.procfd, "stat", &st) < 0 ||
	       st.state == 'Z' || st.state == 'X';
}

static bool member_lost(struct target *t, int r, const char *phase)
{
	struct osm_process *p = t->proc;
	char *note = NULL;
	int n;

	if (!t->optional || r == -EINTR || r == -ETIMEDOUT || r == -ENOMEM)
		return false;
	precopy_abandon(t);
	if (r == -ENOEXEC && !target_ended(t)) {
		t->skipped = true;
		p->capture = CAPTURE_SKIPPED;
		n = asprintf(&note, "ran a new program (execve) %s: not captured", phase);
	} else if (r == -ESRCH || target_ended(t)) {
		t->exited = true;
		p->capture = CAPTURE_EXITED;
		n = asprintf(&note, "exited %s", phase);
	} else {
		t->skipped = true;
		p->capture = CAPTURE_SKIPPED;
		n = asprintf(&note, "%s failed %s: not captured", strerror(-r), phase);
	}
	if (n < 0)
		note = NULL;
	free(p->capture_note);
	p->capture_note = note;
	log_debug("pid %d: %s", p->pid, note ? note : "not captured");
	return true;
}

__attribute__((format(printf, 3, 4))) static void
set_method(struct target *t, enum capture_method m, const char *fmt, ...)
{
	va_list ap;
	char *s = NULL;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	t->method = m;
	t->proc->method = method_names[m];
	free(t->proc->method_reason);
	t->proc->method_reason = s;
}

/* Arena bytes a target needs under its method (its shared objects have their own buffers). */
static uint64_t arena_need(struct capture *c, struct target *t)
{
	uint64_t n = 0;

	(void)c;
	switch (t->method) {
	case METHOD_PRECOPY:
		n = precopy_arena_bytes(t);
		break;
	case METHOD_CLONE:
		for (size_t i = 0; i < t->n_pre_maps; i++)
			if (clone_copies_in_freeze(&t->pre_maps[i]))
				n += capture_planned_size(&t->pre_maps[i]);
		break;
	default:
		n = t->planned_bytes;
	}
	return n - MIN(n, shared_planned_bytes(t));
}

/*
 * What each method would cost in the freeze, to compare them (auto). Rough, from
 * docs/design/kernel-facts.md: a clone copies one page-table entry per resident private page (~95
 * ns per 4 KiB page) plus a fixed cost for the injection; the copy and pre-copy methods copy at
 * memory speed, pre-copy only what the target writes, after a scan of its page tables (~0.5 ms per
 * GiB).
 */
#define FORK_NS_PER_PG	95ull
#define INJECT_NS	(500ull * 1000ull)
#define SCAN_NS_PER_GIB (500ull * 1000ull)
#define COPY_BPS_GUESS	(8ull * 1000000000ull) /* two copy threads: design/kernel-facts.md */
#define BOUNCE_BYTES	(16u << 20)	       /* staged rounds copy through this much memory */

static uint64_t copy_ns(uint64_t bytes, uint64_t bps)
{
	return bytes * 1000000000ull / MAX(bps, (uint64_t)1);
}

/* Bytes of t the freeze would copy under the copy method (its shared objects aside). */
static uint64_t own_bytes(const struct target *t)
{
	return t->planned_bytes - MIN(t->planned_bytes, shared_planned_bytes(t));
}

static uint64_t estimate_copy_ns(const struct target *t)
{
	return copy_ns(own_bytes(t), COPY_BPS_GUESS);
}

static uint64_t estimate_clone_ns(const struct target *t, size_t page_size)
{
	uint64_t pages = 0, copied = 0;

	for (size_t i = 0; i < t->n_pre_maps; i++) {
		const struct osm_mapping *m = &t->pre_maps[i];
		if (m->shared_object)
			continue;
		if (clone_copies_in_freeze(m))
			copied += capture_planned_size(m);
		else
			pages += m->rss_bytes / page_size;
	}
	return pages * FORK_NS_PER_PG + INJECT_NS + copy_ns(copied, COPY_BPS_GUESS);
}

static uint64_t estimate_precopy_ns(struct capture *c, const struct target *t, uint64_t written,
				    uint64_t bps)
{
	uint64_t tracked = precopy_tracked_bytes(t);
	uint64_t rest = precopy_untracked_bytes(t);

	rest -= MIN(rest, shared_planned_bytes(t));

	return copy_ns(written + rest, bps) + tracked / (1ull << 30) * SCAN_NS_PER_GIB +
	       SCAN_NS_PER_GIB / 2;
}

/* Whether some thread of t can run an injected syscall (inject_probe, before the freeze);
 * otherwise t is copied, with the reason. Returns 0 (*ret_ok says which), or -EINTR/-ETIMEDOUT.
 */
static int injectable(struct capture *c, struct target *t, bool *ret_ok)
{
	const char *why = NULL;
	int r = inject_probe(t, &why);

	*ret_ok = r == 0;
	if (r == -EINTR || r == -ETIMEDOUT)
		return r;
	if (r < 0) {
		t->no_inject = true;
		set_method(t, METHOD_COPY,
			   "%s: no thread can run an injected syscall (%s), so copied",
			   method_names[c->requested], why ? why : strerror(-r));
	}
	return 0;
}

/* Pre-copy's rounds write into a file of the snapshot directory, at the pages' place in the
 * core (precopy.c), when the caller gave the directory. Returns 0 or a negative errno; logs. */
static int open_stage(struct capture *c, struct target *t)
{
	char name[64];
	int r;

	if (c->stage_dirfd < 0)
		return 0;
	snprintf(name, sizeof(name), c->stage_separate ? ".stage.%d" : "core.%d", t->proc->pid);
	r = outfile_open(c->stage_dirfd, name, &t->stage);
	if (r < 0)
		return log_error(r, "cannot create the core file of pid %d: %m", t->proc->pid);
	t->stage_next = c->page_size; /* the first page holds the ELF header */
	return 0;
}

/* --method auto, first look (no injection): copy when it is cheaper than a clone (small
 * processes); otherwise start tracking writes, and pre-copy's rounds decide (precopy_all). */
static int choose_auto(struct capture *c, struct target *t)
{
	uint64_t cp = estimate_copy_ns(t), cl = estimate_clone_ns(t, c->page_size);
	const char *why;
	char a[32];
	int r;

	if (cp <= cl) {
		set_method(t, METHOD_COPY,
			   "auto: copying its %s in the freeze (~%.1f ms) costs no more than a "
			   "clone (~%.1f ms)",
			   format_bytes(own_bytes(t), a, sizeof(a)), (double)cp / 1e6,
			   (double)cl / 1e6);
		return 0;
	}
	bool ok;
	r = injectable(c, t, &ok);
	if (r < 0 || !ok)
		return r;
	if (!precopy_supported(&why)) {
		set_method(t, METHOD_CLONE,
			   "auto: %s; a clone (~%.1f ms) costs less than copying "
			   "its %s (~%.1f ms)",
			   why, (double)cl / 1e6, format_bytes(t->planned_bytes, a, sizeof(a)),
			   (double)cp / 1e6);
		return 0;
	}
	size_t ph = timeline_begin(c->tl, "register", t->proc->pid);
	r = precopy_track(c, t);
	timeline_end(c->tl, ph);
	if (r < 0) {
		precopy_stop(t);
		if (r == -EINTR || r == -ETIMEDOUT)
			return r;
		set_method(t, METHOD_CLONE, "auto: write tracking could not start (%s), so a clone",
			   strerror(-r));
		return 0;
	}
	/* Tentative: precopy_all() keeps it or hands the target to the clone. */
	set_method(t, METHOD_PRECOPY, "auto: pre-copy tried first");
	return open_stage(c, t);
}

/* Whether every thread of t runs under a seccomp filter (from /proc: no stop needed). */
static bool every_thread_filtered(const struct target *t)
{
	const struct osm_process *p = t->proc;
	size_t live_threads = 0;

	for (size_t i = 0; i < p->n_threads; i++) {
		if (p->threads[i]->gone)
			continue;
		live_threads++;
		if (!inject_thread_filtered(t->ref.procfd, p->threads[i]->tid))
			return false;
	}
	return live_threads ? true : inject_thread_filtered(t->ref.procfd, p->pid);
}

static int choose(struct capture *c, struct target *t)
{
	const char *why;
	bool ok = true;
	int r;

	if (c->requested != METHOD_COPY && every_thread_filtered(t)) {
		/* A syscall injected into a thread is checked by the thread's seccomp filter, which
		 * may kill the process for one it does not expect. */
		t->no_inject = true;
		set_method(
		    t, METHOD_COPY,
		    "%s: it runs under a seccomp filter, which could kill it for an injected "
		    "syscall, so copied",
		    method_names[c->requested]);
		return 0;
	}
	if (c->requested == METHOD_CLONE || c->requested == METHOD_PRECOPY) {
		r = injectable(c, t, &ok);
		if (r < 0 || !ok)
			return r;
	}
	switch (c->requested) {
	case METHOD_COPY:
		set_method(t, METHOD_COPY, "requested with --method copy");
		return 0;
	case METHOD_CLONE:
		set_method(t, METHOD_CLONE, "requested with --method clone");
		return 0;
	case METHOD_PRECOPY:
		if (!precopy_supported(&why))
			return log_error(EOPNOTSUPP, "--method precopy: %s; use --method clone",
					 why);
		size_t ph = timeline_begin(c->tl, "register", t->proc->pid);
		r = precopy_track(c, t);
		timeline_end(c->tl, ph);
		if (r == -EAGAIN) {
			/* No thread could take the injection after all (stopped meanwhile). */
			precopy_stop(t);
			t->no_inject = true;
			set_method(t, METHOD_COPY,
				   "precopy: no thread can run an injected syscall now, so copied");
			return 0;
		}
		if (r < 0) {
			precopy_stop(t);
			if (r == -EINTR || r == -ETIMEDOUT)
				return r;
			if (!t->optional || target_ended(t))
				return t->optional
					   ? -ESRCH
					   : log_error(r, "cannot track the writes of pid %d: %s",
						       t->proc->pid, strerror(-r));
			/* One member of a set: it alone goes another way. */
			set_method(t, METHOD_CLONE,
				   "--method precopy: write tracking could not start (%s), so a "
				   "clone",
				   strerror(-r));
			return 0;
		}
		set_method(t, METHOD_PRECOPY, "requested with --method precopy");
		return open_stage(c, t);
	case METHOD_AUTO:
		return choose_auto(c, t);
	}
	return -EINVAL;
}

/* The default budget (no --max-memory) holds the shared objects besides (each is kept once, and
 * cannot be kept with less: a PostgreSQL with 1 GiB of shared buffers would leave nothing of a
 * 1 GiB budget), within half of what the machine has available. */
static uint64_t shared_allowance(const struct capture *c, uint64_t avail)
{
	return c->max_memory_default ? MIN(shared_buffer_bytes(c), avail / 2) : 0;
}

uint64_t capture_budget(const struct capture *c)
{
	uint64_t avail = proc_memory_available_to_self();

	avail -= MIN(avail, avail / 10);
	return c->max_memory ? MIN(c->max_memory + shared_allowance(c, avail), avail) : avail;
}

/* What the budget leaves now, beside what osmosis holds. */
static uint64_t budget_left(const struct capture *c)
{
	uint64_t held = c->arena.mapped + c->bounce_len + c->cap_jobs * sizeof(*c->jobs);
	uint64_t b = c->max_memory
			 ? c->max_memory + shared_allowance(c, proc_memory_available_to_self())
			 : capture_budget(c);

	return b > held ? b - held : 0;
}

static int reserve(struct capture *c)
{
	uint64_t total = 0, slack, avail;
	char a[32], b[32];

	for (size_t i = 0; i < c->set->n; i++)
		if (live(c->set->v[i]))
			total += arena_need(c, c->set->v[i]);
	/* Room for growth between now and the freeze. */
	slack = MAX(total / 16, (uint64_t)(32u << 20));
	/* The buffer is touched now: never push the machine (or our cgroup) into reclaim or the
	 * OOM killer, whose victim could be the very service being diagnosed; and never past the
	 * budget. The shared objects' buffers (once each) count against it too. */
	avail = capture_budget(c);
	avail -= MIN(avail, shared_buffer_bytes(c));
	if (total + slack > avail) {
		if (c->requested == METHOD_AUTO) {
			/* Clones need no buffer for private memory. */
			bool changed = false;
			for (size_t i = 0; i < c->set->n; i++) {
				struct target *t = c->set->v[i];
				if (!live(t) || t->method == METHOD_CLONE || t->no_inject)
					continue;
				precopy_abandon(t);
				set_method(
				    t, METHOD_CLONE,
				    "auto: %s of memory is available to osmosis (its budget), "
				    "too little to hold copies, so a clone",
				    format_bytes(avail, a, sizeof(a)));
				changed = true;
			}
			if (changed)
				return reserve(c);
		}
		return log_error(ENOMEM,
				 "the %s method needs %s of memory to hold the targets' memory, "
				 "but only %s is available to osmosis (its budget, --max-memory); "
				 "free memory, use --method clone, or snapshot fewer processes "
				 "(--state-only needs none)",
				 method_names[c->requested],
				 format_bytes(total + slack, a, sizeof(a)),
				 format_bytes(avail, b, sizeof(b)));
	}
	size_t ph = timeline_begin(c->tl, "reserve", 0);
	int r = arena_reserve(&c->arena, total + slack, c->page_size);
	timeline_end(c->tl, ph);
	capture_note_buffers(c);
	if (r == -EINTR || r == -ETIMEDOUT)
		return r; /* a signal to osmosis: reported by the caller */
	if (r < 0)
		return log_error(r, "cannot reserve %s to hold the targets' memory: %m",
				 format_bytes(total + slack, a, sizeof(a)));
	return 0;
}

/* Pre-copy's rounds; under auto, a target whose written set stayed large goes to a clone. */
static int precopy_all(struct capture *c)
{
	for (size_t i = 0; i < c->set->n; i++) {
		struct target *t = c->set->v[i];
		uint64_t freeze_bytes = 0, bps = 0;
		char a[32];
		int r;

		if (!live(t) || t->method != METHOD_PRECOPY)
			continue;
		size_t ph = timeline_begin(c->tl, "rounds", t->proc->pid);
		r = precopy_rounds(c, t, &freeze_bytes, &bps);
		timeline_end(c->tl, ph);
		capture_note_buffers(c);
		if (r == -EINTR || r == -ETIMEDOUT)
			return r;
		if (r < 0 && target_ended(t)) {
			if (member_lost(t, -ESRCH, "during pre-copy"))
				continue;
			return log_error(ESRCH, "pid %d exited during pre-copy", t->proc->pid);
		}
		if (r < 0 && c->requested != METHOD_AUTO && !t->optional)
			return log_error(r, "pre-copy of pid %d failed: %s", t->proc->pid,
					 strerror(-r));
		if (r < 0) {
			/* This target alone goes another way; the others keep theirs. */
			precopy_abandon(t);
			set_method(t, METHOD_CLONE, "%s: pre-copy failed (%s), so a clone",
				   method_names[c->requested], strerror(-r));
			continue;
		}
		/* Staged: the freeze copies the written set into the arena; it must fit the budget
		 * (twice the last round's, for what the target writes meanwhile). */
		uint64_t need = precopy_staged(t) ? freeze_bytes * 2 + (8u << 20) : 0;
		uint64_t left = budget_left(c);
		if (need > left && c->requested == METHOD_AUTO) {
			char b[32];
			precopy_abandon(t);
			set_method(
			    t, METHOD_CLONE,
			    "auto: pre-copy's last round found %s written, more than the %s the "
			    "memory budget leaves to copy in the freeze, so a clone",
			    format_bytes(freeze_bytes, a, sizeof(a)),
			    format_bytes(left, b, sizeof(b)));
			continue;
		}
		if (need > left) {
			char b[32];
			return log_error(
			    ENOMEM,
			    "pid %d writes %s between pre-copy's rounds, more than the "
			    "%s the memory budget leaves to copy in the freeze; use "
			    "--method clone, or a larger --max-memory",
			    t->proc->pid, format_bytes(freeze_bytes, a, sizeof(a)),
			    format_bytes(left, b, sizeof(b)));
		}
		if (need && (r = arena_reserve_more(
				 &c->arena, MIN(need, MAX(left, (uint64_t)(8u << 20))))) < 0)
			return log_error(r, "cannot reserve memory for the pages pid %d writes: %m",
					 t->proc->pid);
		capture_note_buffers(c);
		if (c->requested != METHOD_AUTO)
			continue;
		/* Round 0 copied beside the running target; the freeze copies with the targets'
		 * CPUs free, at least as fast as this machine's usual figure. */
		uint64_t pre_ns = estimate_precopy_ns(c, t, freeze_bytes, MAX(bps, COPY_BPS_GUESS));
		uint64_t clone_ns = estimate_clone_ns(t, c->page_size);
		bool keep = pre_ns <= clone_ns;
		if (!keep)
			precopy_abandon(t);
		set_method(t, keep ? METHOD_PRECOPY : METHOD_CLONE,
			   "auto: pre-copy's last round %s %s written (~%.1f ms to copy in the "
			   "freeze, a clone ~%.1f ms)%s",
			   keep ? "found" : "still found", format_bytes(freeze_bytes, a, sizeof(a)),
			   (double)pre_ns / 1e6, (double)clone_ns / 1e6,
			   keep ? "" : ", so a clone");
	}
	return 0;
}

int capture_prepare(struct capture *c)
{
	int r;

	if (c->state_only)
		return 0;
	for (size_t i = 0; i < c->set->n; i++) {
		struct target *t = c->set->v[i];
		if (!live(t))
			continue;
		clone_tidy_leftovers(c, t);
		r = capture_plan_target(c, t);
		if (r < 0 && member_lost(t, r, "before the freeze"))
			continue;
		if (r < 0)
			return r;
	}
	/* Shared objects first: each method's cost is that of the process's own memory. */
	r = shared_collect(c);
	if (r < 0)
		return r;
	for (size_t i = 0; i < c->set->n; i++) {
		struct target *t = c->set->v[i];
		if (!live(t))
			continue;
		r = choose(c, t);
		if (r < 0 && member_lost(t, r, "before the freeze"))
			continue;
		if (r < 0)
			return r;
	}
	r = reserve(c);
	if (r < 0)
		return r;
	c->planned_bytes = 0;
	for (size_t i = 0; i < c->set->n; i++)
		if (live(c->set->v[i]))
			c->planned_bytes += c->set->v[i]->planned_bytes;
	c->copier = copier_new(c->n_workers, c->page_size);
	if (!c->copier)
		return log_error(ENOMEM, "cannot start copy threads");
	for (size_t i = 0; i < c->set->n && !c->bounce; i++) {
		if (!live(c->set->v[i]) || !precopy_staged(c->set->v[i]))
			continue;
		c->bounce_len = BOUNCE_BYTES;
		c->bounce = mmap(NULL, c->bounce_len, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (c->bounce == MAP_FAILED) {
			c->bounce = NULL;
			c->bounce_len = 0;
			return log_error(errno, "cannot map a copy buffer: %m");
		}
		capture_note_buffers(c);
	}
	r = precopy_all(c);
	if (r == 0) {
		size_t ph = timeline_begin(c->tl, "shared-rounds", 0);
		r = shared_track(c);
		if (r == 0)
			r = shared_rounds(c);
		timeline_end(c->tl, ph);
	}
	if (r < 0)
		return r;
	/* Reserving and pre-copying took time: if a target's layout changed meanwhile, read its
	 * smaps again now rather than inside the freeze (seconds per 100 GiB). */
	for (size_t i = 0; i < c->set->n; i++)
		if (live(c->set->v[i]))
			capture_refresh_layout(c, c->set->v[i]);
	return 0;
}

int capture_settle(struct capture *c)
{
	size_t ph;
	int r;

	if (c->state_only || !c->shared)
		return 0;
	ph = timeline_begin(c->tl, "settle", 0);
	r = shared_settle(c);
	timeline_end(c->tl, ph);
	return r;
}

/* Plans the copy (jobs for the copy threads); counted with the layout in the pause. */
static int copy_all_jobs(struct capture *c, struct target *t, bool only_clone_misses);

static int copy_all(struct capture *c, struct target *t, bool only_clone_misses)
{
	uint64_t t0 = now_ns();
	int r = copy_all_jobs(c, t, only_clone_misses);

	timeline_pause_part(c->tl, PAUSE_LAYOUT, now_ns() - t0);
	return r;
}

static int copy_all_jobs(struct capture *c, struct target *t, bool only_clone_misses)
{
	for (size_t i = 0; i < t->proc->n_maps; i++) {
		struct osm_mapping *m = &t->proc->maps[i];
		if (m->shared_object)
			continue; /* kept once for all its mappers (shared.c) */
		if (only_clone_misses && !clone_copies_in_freeze(m))
			continue;
		int r = capture_copy_mapping(c, t, m);
		if (r < 0)
			return r;
	}
	return 0;
}

/* Bytes copying the whole of t in the freeze needs (its layout as read in the freeze). */
static uint64_t copy_need(const struct target *t)
{
	uint64_t n = 0;

	for (size_t i = 0; i < t->proc->n_maps; i++)
		n += capture_planned_size(&t->proc->maps[i]);
	return n;
}

static int keep_memory(struct capture *c, struct target *t);

/*
 * Inside the freeze the arena is sealed (arena.h): a target whose memory does not fit in what is
 * left of the reservation (it grew past the slack, or its clone failed and a copy needs more
 * than a clone's share) is given back what it took, and recorded as not captured with the
 * reason; the others go on. Nothing is mapped beyond the reservation during the pause.
 */
static int target_frozen(struct capture *c, struct target *t)
{
	struct arena_mark am;
	size_t n_jobs = c->n_jobs;
	bool marked = arena_mark(&c->arena, &am);
	char a[32], b[32];
	int r = keep_memory(c, t);

	if (r != -ENOBUFS && !(r == -ENOMEM && marked && c->arena.sealed))
		return r;
	if (!marked)
		return log_error(ENOMEM,
				 "pid %d does not fit in the memory reserved for the freeze",
				 t->proc->pid);
	arena_rewind(&c->arena, &am);
	c->n_jobs = n_jobs;
	for (size_t i = 0; i < t->proc->n_maps; i++)
		t->proc->maps[i].n_ext = 0;
	t->skipped = true;
	t->proc->capture = CAPTURE_SKIPPED;
	free(t->proc->capture_note);
	t->proc->capture_note = NULL;
	if (asprintf(&t->proc->capture_note,
		     "not captured: %s; copying its %s in the freeze would exceed the %s left of "
		     "the memory reserved (osmosis never maps more during the pause)",
		     t->proc->method_reason ? t->proc->method_reason : "copy",
		     format_bytes(copy_need(t), a, sizeof(a)),
		     format_bytes(arena_free_bytes(&c->arena), b, sizeof(b))) < 0)
		t->proc->capture_note = NULL;
	log_warn("pid %d %s", t->proc->pid,
		 t->proc->capture_note ? t->proc->capture_note : "not captured");
	return 0;
}

/* The method's work inside the freeze. -ENOBUFS: t does not fit in the reservation. */
static int keep_memory(struct capture *c, struct target *t)
{
	const char *why = NULL;
	uint64_t t0 = now_ns();
	int r;

	r = capture_layout_frozen(c, t);
	log_debug("pid %d: registers and layout in %.2f ms", t->proc->pid,
		  (double)(now_ns() - t0) / 1e6);
	if (r < 0 || c->state_only)
		return r;
	r = shared_frozen_assign(c, t);
	if (r < 0)
		return r;
	/* A target that joined during the freeze (a tree's new child) was not prepared. */
	if (!t->proc->method)
		set_method(t, METHOD_COPY, "joined the tree during the freeze, so copied");
	switch (t->method) {
	case METHOD_PRECOPY:
		t0 = now_ns();
		r = precopy_frozen(c, t);
		timeline_pause_part(c->tl, PAUSE_WRITTEN, now_ns() - t0);
		log_debug("pid %d: written pages found in %.2f ms", t->proc->pid,
			  (double)(now_ns() - t0) / 1e6);
		return r;
	case METHOD_CLONE:
		t0 = now_ns();
		r = clone_frozen(c, t, &why);
		timeline_pause_part(c->tl, PAUSE_CLONE, now_ns() - t0);
		if (r == -EINTR || r == -ETIMEDOUT)
			return r;
		if (r == 0)
			return copy_all(c, t, true);
		/* The reservation held only what a clone copies: copy only if the rest fits. */
		bool fits = copy_need(t) <= arena_free_bytes(&c->arena);
		set_method(t, METHOD_COPY, "%s: %s%s",
			   t->proc->method_reason ? t->proc->method_reason : "clone", why,
			   fits ? ", so copied in the freeze" : "");
		return fits ? copy_all(c, t, false) : -ENOBUFS;
	default:
		return copy_all(c, t, false);
	}
}

void capture_note_buffers(struct capture *c)
{
	uint64_t n = c->arena.mapped + c->bounce_len + c->cap_jobs * sizeof(*c->jobs);

	c->peak_buffers = MAX(c->peak_buffers, n);
}

int capture_frozen(struct capture *c)
{
	uint64_t t0;
	int r;

	c->n_jobs = 0;
	c->arena.sealed = true; /* until the thaw: nothing mapped beyond the reservation */
	for (size_t i = 0; i < c->set->n; i++) {
		struct target *t = c->set->v[i];
		size_t first_job = c->n_jobs;

		if (!live(t))
			continue;
		r = target_frozen(c, t);
		if (r < 0 && member_lost(t, r, "during the freeze")) {
			c->n_jobs = first_job; /* nothing of it is copied */
			continue;
		}
		if (r < 0)
			return r;
	}
	if (c->state_only)
		return 0;
	t0 = now_ns();
	r = shared_frozen(c); /* the shared objects' written pages found: "written" */
	timeline_pause_part(c->tl, PAUSE_WRITTEN, now_ns() - t0);
	if (r < 0)
		return log_error(r, "cannot plan the copy of the shared objects: %s", strerror(-r));
	t0 = now_ns();
	r = copier_run(c->copier, c->jobs, c->n_jobs);
	c->copy_ns = now_ns() - t0;
	timeline_pause_part(c->tl, PAUSE_COPY, c->copy_ns);
	capture_note_buffers(c);
	return r;
}

static bool starts_with_elf_magic(const struct osm_mapping *m)
{
	char magic[4];

	if (m->n_ext == 0 || m->ext[0].off != 0 || m->ext[0].len < 4)
		return false;
	if (m->ext[0].data)
		return !memcmp(m->ext[0].data, "\177ELF", 4);
	return pread(m->ext[0].fd, magic, 4, (off_t)m->ext[0].src) == 4 &&
	       !memcmp(magic, "\177ELF", 4);
}

/* Attribute unreadable bytes to their mapping, for the manifest. */
static void count_unreadable(struct capture *c)
{
	for (size_t i = 0; i < c->n_jobs; i++) {
		struct copy_job *j = &c->jobs[i];
		if (!j->unreadable)
			continue;
		for (size_t k = 0; k < c->set->n; k++) {
			struct osm_process *p = c->set->v[k]->proc;
			if (p->pid != j->pid)
				continue;
			for (size_t m = 0; m < p->n_maps; m++) {
				struct osm_mapping *mp = &p->maps[m];
				if (j->remote < mp->start || j->remote >= mp->end)
					continue;
				mp->unreadable += j->unreadable;
				/* The execute-only vsyscall page is unreadable by design (the
				 * kernel's own core has the same hole): not a loss. */
				if (!mp->path || strcmp(mp->path, "[vsyscall]"))
					p->unreadable_bytes += j->unreadable;
			}
		}
	}
}

int capture_finish(struct capture *c)
{
	int r;

	shared_untrack(c);
	for (size_t i = 0; i < c->set->n; i++) {
		struct target *t = c->set->v[i];
		if (t->method == METHOD_PRECOPY)
			precopy_finish(t);
		if (t->uffd >= 0) { /* pre-copy's, or only for shared objects (shared.c) */
			size_t ph = timeline_begin(c->tl, "unregister", t->proc->pid);
			precopy_stop(t); /* first: the target's writes are free again */
			timeline_end(c->tl, ph);
		}
	}
	capture_note_buffers(c);
	r = shared_describe(c, c->snap);
	if (r < 0)
		return log_error(r, "out of memory");
	c->copied_bytes = 0;
	for (size_t i = 0; i < c->n_jobs; i++)
		c->copied_bytes += c->jobs[i].len - c->jobs[i].unreadable;
	for (size_t i = 0; i < c->set->n; i++) {
		struct target *t = c->set->v[i];
		struct osm_process *p = t->proc;

		if (live(t) && !c->state_only && t->method == METHOD_CLONE && t->clone_pid) {
			size_t ph = timeline_begin(c->tl, "clone-map", p->pid);
			r = clone_finish(c, t);
			timeline_end(c->tl, ph);
			if (r < 0)
				return r;
		}
		p->captured_bytes = 0;
		p->unreadable_bytes = 0;
		p->mappings_count = p->n_maps;
		for (size_t j = 0; j < p->n_maps; j++) {
			struct osm_mapping *m = &p->maps[j];
			if (m->elf_header_only && !starts_with_elf_magic(m)) {
				m->dump_len = 0;
				m->n_ext = 0;
			}
			if (m->core_off) /* placed: all of it is in the core file */
				p->captured_bytes += m->dump_len;
			else
				for (size_t k = 0; k < m->n_ext; k++)
					p->captured_bytes += m->ext[k].len;
		}
	}
	count_unreadable(c);
	return 0;
}

void capture_release(struct capture *c)
{
	for (size_t i = 0; i < c->set->n; i++) {
		struct target *t = c->set->v[i];
		clone_release(t);
		precopy_stop(t);
		outfile_abort(&t->stage); /* a core not written is not left behind */
		maps_free(t->pre_maps, t->n_pre_maps);
		t->pre_maps = NULL;
		t->n_pre_maps = 0;
		if (t->pagemap_fd >= 0)
			close(t->pagemap_fd);
		t->pagemap_fd = -1;
	}
	copier_free(c->copier);
	c->copier = NULL;
	shared_release(c);
	if (c->bounce)
		munmap(c->bounce, c->bounce_len);
	c->bounce = NULL;
	c->bounce_len = 0;
	/* The model's extents point into the arena: release only after the cores are written. */
	arena_release(&c->arena);
	free(c->jobs);
	c->jobs = NULL;
	c->n_jobs = c->cap_jobs = 0;
}
