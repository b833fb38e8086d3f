/* SPDX-License-Identifier: MIT */
/*
 * The capture engine: the stages (capture.h), and each target's method called at each of them
 * through its ops table (method.h). Methods are chosen per target by the method requested
 * (--method: its choose hook; auto.c chooses among the others), and may change before the freeze
 * (a target that cannot take an injection is copied, a budget too small for copies gives clones)
 * and once inside it (a failed clone is copied): capture_set_method records every change and its
 * reason, which the manifest keeps.
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

/*
 * A member of a set (--tree, --cgroup, --all) that cannot be captured is recorded and the rest
 * goes on: it exited (or became a zombie), ran a new program, or failed otherwise during
 * `phase`. Its tracking is removed. Returns true when t was optional and is now recorded; false
 * for a target named by its PID, whose failure is the snapshot's (the caller logs it).
 */
static bool member_lost(struct target *t, int r, const char *phase)
{
	struct osm_process *p = t->proc;
	char *note = NULL;
	int n;

	if (!t->optional || r == -EINTR || r == -ETIMEDOUT || r == -ENOMEM)
		return false;
	if (t->method && t->method->abandon)
		t->method->abandon(t);
	if (r == -ENOEXEC && !capture_target_ended(t)) {
		t->skipped = true;
		p->capture = CAPTURE_SKIPPED;
		n = asprintf(&note, "ran a new program (execve) %s: not captured", phase);
	} else if (r == -ESRCH || capture_target_ended(t)) {
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

/* Arena bytes a target needs under its method (its shared objects have their own buffers). */
static uint64_t arena_need(struct capture *c, struct target *t)
{
	uint64_t n = t->method->arena_bytes(c, t);

	return n - MIN(n, shared_planned_bytes(t));
}

#define BOUNCE_BYTES (16u << 20) /* staged rounds copy through this much memory */

/* The requested method chooses (method.h); a process whose every thread runs under a seccomp
 * filter is copied whatever was requested. */
static int choose(struct capture *c, struct target *t)
{
	const struct capture_ops *req = capture_method_get(c->requested);

	if (c->requested != METHOD_COPY && capture_every_thread_filtered(t)) {
		/* A syscall injected into a thread is checked by the thread's seccomp filter, which
		 * may kill the process for one it does not expect. */
		t->no_inject = true;
		capture_set_method(
		    t, &capture_copy,
		    "%s: it runs under a seccomp filter, which could kill it for an injected "
		    "syscall, so copied",
		    capture_method_name(c->requested));
		return 0;
	}
	return req ? req->choose(c, t) : -EINVAL;
}

static int reserve(struct capture *c)
{
	uint64_t total = 0, slack, avail;
	char a[32], b[32];

	for (size_t i = 0; i < c->set->n; i++)
		if (target_live(c->set->v[i]))
			total += arena_need(c, c->set->v[i]);
	/* Room for growth between now and the freeze. */
	slack = MAX(total / 16, (uint64_t)(32u << 20));
	/* The buffer is touched now: never push the machine (or our cgroup) into reclaim or the
	 * OOM killer, whose victim could be the very service being diagnosed; and never past the
	 * budget. The shared objects' buffers (once each) count against it too. */
	avail = capture_budget(c);
	avail -= MIN(avail, shared_buffer_bytes(c));
	/* and the layouts read before the freeze (reserve_frozen) */
	for (size_t i = 0; i < c->set->n; i++)
		if (target_live(c->set->v[i]))
			avail -= MIN(avail, capture_ready_estimate(c->set->v[i]));
	if (total + slack > avail) {
		if (c->requested == METHOD_AUTO) {
			/* Clones need no buffer for private memory. */
			bool changed = false;
			for (size_t i = 0; i < c->set->n; i++) {
				struct target *t = c->set->v[i];
				if (!target_live(t) || t->method == &capture_clone || t->no_inject)
					continue;
				capture_set_method(
				    t, &capture_clone,
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
				 capture_method_name(c->requested),
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

/*
 * After the layouts for the freeze are read and its room taken: each method's last_round
 * (pre-copy: one more round for a target whose last is old by now, the others' rounds and the
 * layouts having run since). A target's last round comes before the others': the room its
 * freeze needs is counted again after all of them (freeze_room only ever adds), so that what the
 * freeze finds is what was counted and what is written in the moments after, as for a target
 * without a last round.
 */
static int last_rounds(struct capture *c)
{
	size_t ph = timeline_begin(c->tl, "last-rounds", 0);
	bool *again = calloc(c->set->n ? c->set->n : 1, sizeof(*again));
	int r = 0;

	if (!again)
		return log_error(ENOMEM, "out of memory");
	for (size_t i = 0; i < c->set->n && r == 0; i++) {
		struct target *t = c->set->v[i];
		if (!target_live(t) || !t->method->last_round)
			continue;
		r = t->method->last_round(c, t);
		again[i] = r > 0;
		if (r > 0)
			r = 0;
		if (r < 0 && member_lost(t, r, "in pre-copy's last round")) {
			r = 0;
			continue;
		}
		if (r < 0 && r != -EINTR && r != -ETIMEDOUT)
			log_error(r, "pre-copy of pid %d failed in its last round: %s",
				  t->proc->pid, strerror(-r));
	}
	for (size_t i = 0; i < c->set->n && r == 0; i++) {
		struct target *t = c->set->v[i];
		if (again[i] && target_live(t) && t->method->freeze_room &&
		    t->method->freeze_room(c, t) < 0)
			r = log_error(ENOMEM, "out of memory");
	}
	free(again);
	timeline_end(c->tl, ph);
	return r;
}

/* The methods' work while the targets run, after the reservation (pre-copy's rounds). */
static int rounds_all(struct capture *c)
{
	const struct capture_ops *req = capture_method_get(c->requested);

	for (size_t i = 0; i < c->set->n; i++) {
		struct target *t = c->set->v[i];
		int r;

		if (!target_live(t) || !t->method->rounds)
			continue;
		r = t->method->rounds(c, t);
		capture_note_buffers(c);
		if (r == -ESRCH && member_lost(t, r, "during pre-copy"))
			continue;
		if (r < 0)
			return r;
		/* The requested method may judge what the rounds found (auto: keep or clone). */
		if (req && req->review && t->method->rounds)
			req->review(c, t);
	}
	return 0;
}

/*
 * Memory that grew after the reservation (a service filling its cache, a process loading data:
 * pages touched in mappings already there change no line of its maps), or pages written since a
 * target's last round of pre-copy (seconds ago, when other targets' rounds came after it), would
 * be copied in the freeze beyond what is left of the reservation, and the target recorded there
 * as not captured. The ready layouts, read from the pagemaps just now, and a count of the
 * written pages say what the freeze will copy. When it does not fit, the largest targets go to a
 * clone now, which copies nothing of its own in the freeze (under auto, or a member of a set);
 * one named alone with --method copy or precopy is refused with the reason, before anything is
 * frozen.
 */
static int fit_the_freeze(struct capture *c)
{
	uint64_t left = arena_free_bytes(&c->arena), need = 0, bounded = 0, b_t;
	char a[32], b[32], d[32];

	for (size_t i = 0; i < c->set->n; i++) {
		struct target *t = c->set->v[i];
		b_t = 0;
		t->freeze_need = target_live(t) && t->method && t->method->freeze_bytes
				     ? t->method->freeze_bytes(c, t, &b_t)
				     : 0;
		need += t->freeze_need;
		bounded += b_t;
	}
	/* What cannot outgrow its bound (pages written where writes are tracked) gets room now,
	 * within the budget; what still grows (memory new since the plan) does not: it would
	 * outgrow any room added now. */
	if (need > left && bounded && need - bounded <= left) {
		/* A run copied in the freeze is never split across the arena's chunks, and one
		 * written run may be as large as a whole tracked mapping: the new chunk holds all
		 * the written pages by itself, what is left the rest. */
		uint64_t more = bounded;
		if (more <= capture_budget_left(c) && arena_reserve_more(&c->arena, more) == 0) {
			left = arena_free_bytes(&c->arena);
			capture_note_buffers(c);
		}
	}
	while (need > left) {
		struct target *big = NULL;
		uint64_t big_n = 0;

		for (size_t i = 0; i < c->set->n; i++) {
			struct target *t = c->set->v[i];
			if (!target_live(t) || t->no_inject || !t->method ||
			    (t->method->id != METHOD_COPY && t->method->id != METHOD_PRECOPY))
				continue;
			if (t->freeze_need > big_n) {
				big = t;
				big_n = t->freeze_need;
			}
		}
		if (!big)
			break; /* none can go another way: the freeze records who does not fit */
		format_bytes(big_n, a, sizeof(a));
		format_bytes(left, b, sizeof(b));
		format_bytes(need, d, sizeof(d));
		if (c->requested != METHOD_AUTO && !big->optional)
			return log_error(
			    ENOBUFS,
			    "pid %d: copying it in the freeze would take %s, more than the "
			    "%s left of the memory reserved: its memory grew, or it wrote, "
			    "after osmosis planned it (osmosis never maps more during the "
			    "pause); use --method clone or auto",
			    big->proc->pid, d, b);
		capture_set_method(big, &capture_clone,
				   "%s: the freeze would copy %s (%s of it this process's), more "
				   "than the %s left of the memory reserved: memory grew, or was "
				   "written, since it was planned; so a clone",
				   capture_method_name(c->requested), d, a, b);
		big->freeze_need = big->method->freeze_bytes(c, big, &b_t);
		need -= big_n;
		need += big->freeze_need;
	}
	return 0;
}

/*
 * What the freeze would otherwise allocate, reserved now (the pause allocates nothing beyond the
 * reservation, base/util.h): each target's layout read and planned with room for its extents
 * (plan.c), and the copy jobs every method may queue for it, with what its method adds (pre-copy:
 * the pages written meanwhile) and the shared objects' (shared.c). A target that needs more
 * inside the freeze is recorded as not captured (target_frozen).
 */
static int reserve_frozen(struct capture *c)
{
	size_t jobs = shared_jobs_bound(c), largest = 0;
	int r;

	c->layout_bytes = 0;
	for (size_t i = 0; i < c->set->n; i++) {
		struct target *t = c->set->v[i];
		if (!target_live(t))
			continue;
		r = capture_ready_layout(c, t);
		if (r == -ENOMEM)
			return log_error(r, "out of memory");
		if (r < 0)
			log_debug("pid %d: layout not read before the freeze: %s", t->proc->pid,
				  strerror(-r));
		if (t->method && t->method->freeze_room && t->method->freeze_room(c, t) < 0)
			return log_error(ENOMEM, "out of memory");
		c->layout_bytes += capture_ready_bytes(t);
		jobs += t->jobs_bound;
		largest = MAX(largest, t->jobs_bound);
		if (t->method && t->method->freeze_jobs)
			jobs += t->method->freeze_jobs(c, t);
	}
	r = fit_the_freeze(c);
	if (r < 0)
		return r;
	/* A tree's child born meanwhile joins in the freeze, copied: as large as the largest. */
	jobs += largest;
	/* The children of the tree met as the rounds ran that still run join in the freeze too,
	 * each copied there (a backend per connection under churn): room for their private memory,
	 * twice what they hold now (they go on growing), within the budget. Without it, the
	 * first of them to be copied would find the reservation full and be let go. */
	uint64_t joiners = 2 * shared_joiners_bytes(c);
	if (joiners && joiners <= capture_budget_left(c) &&
	    arena_reserve_more(&c->arena, joiners) == 0)
		log_debug("room for the tree's children born meanwhile: %llu bytes",
			  (unsigned long long)joiners);
	if (grow_array((void **)&c->jobs, &c->cap_jobs, jobs, sizeof(*c->jobs)) < 0)
		return log_error(ENOMEM, "out of memory");
	capture_note_buffers(c);
	return 0;
}

int capture_prepare(struct capture *c)
{
	int r;

	if (c->state_only)
		return 0;
	for (size_t i = 0; i < c->set->n; i++) {
		struct target *t = c->set->v[i];
		if (!target_live(t))
			continue;
		/* What a killed osmosis may have left in t, each method its own. */
		for (size_t k = 0; k < capture_method_count; k++)
			if (capture_methods[k]->tidy)
				capture_methods[k]->tidy(c, t);
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
	size_t priv = 0;
	for (size_t i = 0; i < capture_method_count; i++)
		priv = MAX(priv, capture_methods[i]->priv_size);
	for (size_t i = 0; i < c->set->n; i++) {
		struct target *t = c->set->v[i];
		if (!target_live(t))
			continue;
		/* Room for the state of whichever method t gets, now: never inside the freeze. */
		if (!t->method_priv && priv && !(t->method_priv = calloc(1, priv)))
			return log_error(ENOMEM, "out of memory");
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
		if (target_live(c->set->v[i]))
			c->planned_bytes += c->set->v[i]->planned_bytes;
	c->copier = copier_new(c->n_workers, c->page_size);
	if (!c->copier)
		return log_error(ENOMEM, "cannot start copy threads");
	for (size_t i = 0; i < c->set->n && !c->bounce; i++) {
		if (!target_live(c->set->v[i]) || !capture_staged(c->set->v[i]))
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
	r = rounds_all(c);
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
	size_t ph = timeline_begin(c->tl, "layouts", 0);
	for (size_t i = 0; i < c->set->n; i++)
		if (target_live(c->set->v[i]))
			capture_refresh_layout(c, c->set->v[i]);
	r = reserve_frozen(c);
	timeline_end(c->tl, ph);
	return r < 0 ? r : last_rounds(c);
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
	bool jobs = c->jobs_exhausted;
	c->jobs_exhausted = false;
	for (size_t i = 0; i < t->proc->n_maps; i++)
		t->proc->maps[i].n_ext = 0;
	t->skipped = true;
	t->proc->capture = CAPTURE_SKIPPED;
	free(t->proc->capture_note);
	t->proc->capture_note = NULL;
	if ((jobs ? asprintf(
			&t->proc->capture_note,
			"not captured: %s; its copy in the freeze needs more copy jobs than the "
			"%zu reserved (osmosis allocates nothing during the pause)",
			t->proc->method_reason ? t->proc->method_reason : "copy", c->cap_jobs)
	     : capture_copy_need(t) < arena_free_bytes(&c->arena)
		 ? asprintf(
		       &t->proc->capture_note,
		       "not captured: %s; its memory grew after it was planned (%s planned), and "
		       "copying it in the freeze would exceed the %s left of the memory "
		       "reserved (osmosis never maps more during the pause)",
		       t->proc->method_reason ? t->proc->method_reason : "copy",
		       format_bytes(capture_copy_need(t), a, sizeof(a)),
		       format_bytes(arena_free_bytes(&c->arena), b, sizeof(b)))
		 : asprintf(&t->proc->capture_note,
			    "not captured: %s; copying its %s in the freeze would exceed the "
			    "%s left of the memory reserved (osmosis never maps more during "
			    "the pause)",
			    t->proc->method_reason ? t->proc->method_reason : "copy",
			    format_bytes(capture_copy_need(t), a, sizeof(a)),
			    format_bytes(arena_free_bytes(&c->arena), b, sizeof(b)))) < 0)
		t->proc->capture_note = NULL;
	log_warn("pid %d %s", t->proc->pid,
		 t->proc->capture_note ? t->proc->capture_note : "not captured");
	return 0;
}

/* The method's work inside the freeze. -ENOBUFS: t does not fit in the reservation. */
static int keep_memory(struct capture *c, struct target *t)
{
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
	if (!t->method)
		capture_set_method(t, &capture_copy,
				   "joined the tree during the freeze, so copied");
	return t->method->frozen(c, t);
}

/* One target's method's frozen_scan (the set's i-th), on whichever copy thread. */
static void frozen_scan_one(void *ctx, size_t i)
{
	struct capture *c = ctx;
	struct target *t = c->set->v[i];

	if (target_live(t) && t->method && t->method->frozen_scan)
		t->method->frozen_scan(c, t);
}

static void frozen_scans(struct capture *c)
{
	uint64_t t0 = now_ns();
	bool any = false;

	/* none (a clone, a copy): no "written" time */
	for (size_t i = 0; i < c->set->n && !any; i++)
		any = target_live(c->set->v[i]) && c->set->v[i]->method &&
		      c->set->v[i]->method->frozen_scan;
	if (!any)
		return;
	if (c->copier && copier_each_frozen(c->copier, frozen_scan_one, c, c->set->n) < 0)
		return; /* interrupted: what is not done, frozen does itself */
	timeline_pause_part(c->tl, PAUSE_WRITTEN, now_ns() - t0);
}

int capture_frozen(struct capture *c)
{
	uint64_t t0;
	int r;

	c->n_jobs = 0;
	c->arena.sealed = true; /* until the thaw: nothing mapped beyond the reservation */
	if (!c->state_only) {
		shared_frozen_reaped(c);
		capture_prefetch_layouts(c);
		frozen_scans(c);
	}
	for (size_t i = 0; i < c->set->n; i++) {
		struct target *t = c->set->v[i];
		size_t first_job = c->n_jobs;

		if (!target_live(t))
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
	r = shared_frozen(c); /* the shared objects' written pages found: "written" */
	if (r < 0)
		return log_error(r, "cannot plan the copy of the shared objects: %s", strerror(-r));
	t0 = now_ns();
	r = copier_run_frozen(c->copier, c->jobs, c->n_jobs);
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
		if (t->method && t->method->thawed)
			t->method->thawed(c, t);
		if (t->uffd >= 0) { /* only for shared objects (shared.c untracked them) */
			size_t ph = timeline_begin(c->tl, "unregister", t->proc->pid);
			tracker_close(t); /* first: the target's writes are free again */
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

		if (target_live(t) && !c->state_only && t->method && t->method->finish) {
			r = t->method->finish(c, t);
			if (r < 0)
				return r;
		}
		p->captured_bytes = 0;
		p->unreadable_bytes = 0;
		p->mappings_count = p->n_maps;
		for (size_t j = 0; j < p->n_maps; j++) {
			struct osm_mapping *m = &p->maps[j];
			/* Placed whole in the stage (pre-copy tracked it: it was checked then). */
			bool staged = m->core_off && m->n_ext == 0;
			if (m->elf_header_only && !staged && !starts_with_elf_magic(m)) {
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
		if (t->method && t->method->release)
			t->method->release(t);
		t->method = NULL;
		free(t->method_priv);
		t->method_priv = NULL;
		tracker_close(t);	  /* the tracker of shared objects, if any */
		outfile_abort(&t->stage); /* a core not written is not left behind */
		capture_ready_free(t);
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
