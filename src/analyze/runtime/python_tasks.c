/* SPDX-License-Identifier: MIT */
/*
 * asyncio Tasks in the analysis model (struct atask): each task's coroutine chain as Python
 * frames, what it awaits in words, and which task can end its wait.
 *
 * What a task awaits is told by the asyncio frame its own code called (Lock.acquire,
 * Event.wait, Queue.get, sleep, StreamReader.readline, Server.serve_forever...), else by the
 * future it waits on (another Task, a gather). asyncio.Lock records no owner: like
 * threading's locks in a `with` block, `async with lock:` keeps the bound method
 * lock.__aexit__ on the value stack of the coroutine frame inside the block, so the task
 * whose frames hold it (and which is not itself waiting to acquire that lock) holds the lock,
 * while the lock's _locked is True. A lock taken with `await lock.acquire()` leaves no such
 * trace: its holder is then said to be unknown. A task waiting for a lock held by a task
 * waiting for a lock held by the first is a cycle (atask.cycle): the deadlock pattern reports
 * it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analyze/runtime/python_model.h"
#include "base/util.h"

static const char *base_name(const char *p)
{
	const char *s = p ? strrchr(p, '/') : NULL;
	return s ? s + 1 : p ? p : "?";
}

/* A file of the asyncio package: .../asyncio/NAME.py */
static bool asyncio_file(const char *file)
{
	const char *slash = file ? strrchr(file, '/') : NULL;
	return slash && slash - file >= 8 && !strncmp(slash - 8, "/asyncio", 8);
}

static bool type_is(const struct rmem *m, const struct py_layout *L, uint64_t obj, const char *want)
{
	char tn[48];
	return py_type_name(m, L, obj, tn, sizeof(tn)) && !strcmp(tn, want);
}

/* "async with b:" (app.py:11, transfer), or transfer (app.py:11) */
static void where_text(const struct py_frame *f, char *buf, size_t len)
{
	if (!f)
		snprintf(buf, len, "?");
	else if (f->with_text[0])
		snprintf(buf, len, "\"%s\" (%s:%d, %s)", f->with_text, base_name(f->file), f->line,
			 f->function ? f->function : "?");
	else
		snprintf(buf, len, "%s (%s:%d)", f->function ? f->function : "?",
			 base_name(f->file), f->line);
}

/* An asyncio.Lock held in an `async with` block: the lock and the task holding it. */
struct held {
	uint64_t lock;
	size_t task;
	const struct py_frame *frame;
};

struct held_set {
	struct held *v;
	size_t n, cap;
};

static uint64_t first_local(const struct rmem *m, const struct py_frame *f)
{
	uint64_t v;
	return f && f->n_slots && rmem_read64(m, f->localsplus, &v) && rmem_plausible(v) ? v : 0;
}

/* The lock a task waits to acquire: the self of its Lock.acquire frame. */
static uint64_t acquiring(const struct rmem *m, const struct py_task *t)
{
	for (size_t j = 0; j < t->n_frames; j++)
		if (t->frames[j].function && !strcmp(t->frames[j].function, "Lock.acquire") &&
		    asyncio_file(t->frames[j].file))
			return first_local(m, &t->frames[j]);
	return 0;
}

static void collect_held(const struct rmem *m, const struct py_state *st, struct held_set *hs)
{
	const struct py_layout *L = &st->L;
	uint64_t slots[PY_MAX_SLOTS];

	for (size_t i = 0; i < st->n_tasks; i++) {
		const struct py_task *t = &st->tasks[i];
		uint64_t mine = acquiring(m, t);
		for (size_t j = 0; j < t->n_frames; j++) {
			const struct py_frame *f = &t->frames[j];
			size_t n = f->n_slots;
			if (!n || asyncio_file(f->file))
				continue;
			n = m->read(m->ctx, f->localsplus, slots, n * 8) / 8;
			for (size_t k = 0; k < n; k++) {
				char *qn = NULL;
				uint64_t self;
				bool locked = false;
				if (!rmem_plausible(slots[k]))
					continue;
				self = py_method_self(m, L, slots[k], &qn);
				bool aexit =
				    self && qn && !strcmp(qn, "_ContextManagerMixin.__aexit__");
				free(qn);
				/* `async with cond:` holds the condition's own lock */
				if (aexit && type_is(m, L, self, "Condition"))
					self = py_instance_attr(m, L, self, "_lock");
				if (!aexit || !self || self == mine || !type_is(m, L, self, "Lock"))
					continue;
				uint64_t lk = py_instance_attr(m, L, self, "_locked");
				if (!lk || !py_read_bool(m, L, lk, &locked) || !locked)
					continue;
				if (grow_array((void **)&hs->v, &hs->cap, hs->n + 1,
					       sizeof(*hs->v)))
					return;
				hs->v[hs->n++] = (struct held){.lock = self, .task = i, .frame = f};
			}
		}
	}
}

/* asyncio's library waits, by the qualified name of the asyncio frame the user's code called. */
static const char *library_wait(const char *qualname, const char **ownerless)
{
	static const struct {
		const char *fn, *what, *ownerless;
	} known[] = {
	    {"Event.wait", "asyncio.Event.wait", "any task that sets the event wakes it"},
	    {"Queue.get", "asyncio.Queue.get", "any task that puts an item wakes it"},
	    {"Queue.put", "asyncio.Queue.put", "any task that takes an item wakes it"},
	    {"Queue.join", "asyncio.Queue.join", "the consumers calling task_done() wake it"},
	    {"Condition.wait", "asyncio.Condition.wait", "any task that notifies wakes it"},
	    {"Condition.wait_for", "asyncio.Condition.wait_for", "any task that notifies wakes it"},
	    {"Semaphore.acquire", "asyncio.Semaphore.acquire",
	     "any task that releases the semaphore wakes it"},
	    {"Barrier.wait", "asyncio.Barrier.wait", "the other parties arriving wake it"},
	    {"Server.serve_forever", "asyncio.Server.serve_forever",
	     "it ends when the server is closed"},
	    {"wait", "asyncio.wait", "the awaited tasks' ends wake it"},
	    {"wait_for", "asyncio.wait_for", "the awaited task's end or the timeout wakes it"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(known); i++)
		if (qualname && !strcmp(qualname, known[i].fn)) {
			*ownerless = known[i].ownerless;
			return known[i].what;
		}
	*ownerless = NULL;
	return NULL;
}

static void frames_to_model(const struct py_task *pt, struct atask *t)
{
	t->frames = calloc(pt->n_frames ? pt->n_frames : 1, sizeof(*t->frames));
	if (!t->frames)
		return;
	for (size_t i = 0; i < pt->n_frames; i++) {
		const struct py_frame *pf = &pt->frames[i];
		struct frame *f = &t->frames[t->n_frames++];
		f->kind = FRAME_PYTHON;
		f->pc = pf->addr;
		f->function = strdup(pf->function ? pf->function : "?");
		f->file = pf->file ? strdup(pf->file) : NULL;
		f->line = pf->line;
	}
}

static size_t task_index(const struct py_state *st, uint64_t addr)
{
	for (size_t i = 0; i < st->n_tasks; i++)
		if (st->tasks[i].addr == addr)
			return i;
	return SIZE_MAX;
}

static const char *task_label(const struct py_state *st, size_t i)
{
	return st->tasks[i].name ? st->tasks[i].name : "?";
}

/* What task i awaits, in words, and the task that can end it. */
static void describe(const struct rmem *m, struct py_state *st, const struct held_set *hs, size_t i,
		     struct atask *out)
{
	const struct py_layout *L = &st->L;
	struct py_task *t = &st->tasks[i];
	struct py_frame *user = NULL, *lib = NULL;
	char where[200], extra[160] = "";
	const char *ownerless = NULL, *what;

	out->waits_for = -1;
	out->suspect = -1;
	if (t->done) {
		snprintf(out->awaits, sizeof(out->awaits), "finished");
		return;
	}
	if (t->running) {
		snprintf(out->awaits, sizeof(out->awaits),
			 "runs: its frames are on its loop's thread");
		return;
	}
	if (!t->n_frames) {
		snprintf(out->awaits, sizeof(out->awaits), "its coroutine could not be read%s%s",
			 t->error[0] ? ": " : "", t->error);
		return;
	}
	size_t u = 0;
	while (u < t->n_frames && asyncio_file(t->frames[u].file))
		u++;
	if (u < t->n_frames)
		user = &t->frames[u];
	/* the asyncio call the user's code made; `async with` enters through __aenter__ */
	for (size_t j = u; j-- > 0 && !lib;)
		if (!t->frames[j].function ||
		    strcmp(t->frames[j].function, "_ContextManagerMixin.__aenter__"))
			lib = &t->frames[j];
	if (user)
		py_frame_with_text(m, st, user);
	where_text(user ? user : &t->frames[0], where, sizeof(where));
	const char *fn = lib && lib->function ? lib->function : "";

	if (!strcmp(fn, "Lock.acquire")) {
		uint64_t lock = first_local(m, lib);
		const struct held *h = NULL;
		for (size_t k = 0; k < hs->n && !h; k++)
			if (hs->v[k].lock == lock && hs->v[k].task != i)
				h = &hs->v[k];
		out->lock = lock;
		if (h) {
			out->waits_for = (int)h->task;
			snprintf(
			    out->awaits, sizeof(out->awaits),
			    "waits in %s for an asyncio.Lock at 0x%llx held by task \"%s\" (an "
			    "async with block in %s)",
			    where, (unsigned long long)lock, task_label(st, h->task),
			    h->frame->function ? h->frame->function : "?");
		} else {
			/* A task whose code took this lock with acquire() and, by its code, has
			 * not released it: a suspect, said as such. */
			size_t sus = SIZE_MAX, n_sus = 0;
			bool locked = false;
			uint64_t lk = py_instance_attr(m, L, lock, "_locked");
			if (!lk || !py_read_bool(m, L, lk, &locked))
				locked = false;
			for (size_t k = 0; k < st->n_tasks && locked; k++) {
				if (k == i || acquiring(m, &st->tasks[k]) == lock)
					continue;
				for (size_t j = 0; j < st->tasks[k].n_frames; j++) {
					const struct py_frame *sf = &st->tasks[k].frames[j];
					int ln = py_frame_acquired(m, st, sf, lock);
					if (!ln)
						continue;
					n_sus++;
					sus = k;
					snprintf(out->suspect_at, sizeof(out->suspect_at),
						 "%s (%s:%d)", sf->function ? sf->function : "?",
						 base_name(sf->file), ln > 0 ? ln : sf->line);
					break;
				}
			}
			if (n_sus == 1) {
				out->suspect = (int)sus;
				snprintf(
				    out->awaits, sizeof(out->awaits),
				    "waits in %s for an asyncio.Lock at 0x%llx; holder unknown: "
				    "acquired explicitly (by its code, task \"%s\" took it in %s)",
				    where, (unsigned long long)lock, task_label(st, sus),
				    out->suspect_at);
			} else {
				out->suspect_at[0] = 0;
				snprintf(
				    out->awaits, sizeof(out->awaits),
				    "waits in %s for an asyncio.Lock at 0x%llx; holder unknown: "
				    "acquired explicitly (it was not taken in an async with block)",
				    where, (unsigned long long)lock);
			}
		}
		return;
	}
	if (!strcmp(fn, "sleep")) {
		uint64_t delay = first_local(m, lib);
		char num[32] = "?";
		(void)py_number_text(m, L, delay, num, sizeof(num));
		snprintf(out->awaits, sizeof(out->awaits),
			 "sleeps in asyncio.sleep(%s), called at %s", num, where);
		return;
	}
	if (!strncmp(fn, "StreamReader.", 13)) {
		/* the outermost StreamReader frame is the call the user made; its transport's
		 * _sock_fd is the socket */
		uint64_t reader = first_local(m, lib), tr, fdo, fd;
		tr = reader ? py_instance_attr(m, L, reader, "_transport") : 0;
		fdo = tr ? py_instance_attr(m, L, tr, "_sock_fd") : 0;
		if (fdo && py_read_long(m, L, fdo, &fd))
			snprintf(extra, sizeof(extra), " on fd %llu", (unsigned long long)fd);
		snprintf(out->awaits, sizeof(out->awaits),
			 "waits for data%s in asyncio.%s, called at %s: the peer's data wakes it",
			 extra, fn, where);
		return;
	}
	what = library_wait(fn, &ownerless);
	if (what) {
		snprintf(out->awaits, sizeof(out->awaits), "waits in %s, called at %s: %s%s", what,
			 where, ownerless ? "no owner by design, " : "",
			 ownerless ? ownerless : "");
		return;
	}
	if (t->fut_waiter && type_is(m, L, t->fut_waiter, "_asyncio.Task")) {
		size_t k = task_index(st, t->fut_waiter);
		if (k != SIZE_MAX) {
			out->waits_for = (int)k;
			snprintf(out->awaits, sizeof(out->awaits), "awaits task \"%s\" at %s",
				 task_label(st, k), where);
			return;
		}
	}
	if (t->awaited_type[0])
		snprintf(out->awaits, sizeof(out->awaits), "awaits %s at 0x%llx at %s",
			 !strcmp(t->awaited_type, "_GatheringFuture") ? "an asyncio.gather() future"
			 : !strcmp(t->awaited_type, "_asyncio.Future") ? "an asyncio.Future"
								       : t->awaited_type,
			 (unsigned long long)t->awaited, where);
	else
		snprintf(out->awaits, sizeof(out->awaits), "suspended at %s", where);
}

/* Cycles of waits_for: each task waits on at most one, so following the links from a task
 * either ends or comes back round. */
static int link_of(const struct atask *t, bool suspects)
{
	return suspects && t->waits_for < 0 ? t->suspect : t->waits_for;
}

/* suspects false: through known holders (and awaited tasks) alone, into cycle; true: through
 * suspects too, into suspect_cycle, for the cycles that need a suspect to close */
static void find_cycles(struct atask *v, size_t n, bool suspects)
{
	int next_id = 1;
	for (size_t i = 0; i < n; i++) {
		size_t cur = i, steps = 0;
		if (v[i].cycle || v[i].suspect_cycle || link_of(&v[i], suspects) < 0)
			continue;
		while (link_of(&v[cur], suspects) >= 0 && steps++ <= n) {
			cur = (size_t)link_of(&v[cur], suspects);
			if (cur == i)
				break;
		}
		if (cur != i)
			continue;
		cur = i;
		do {
			if (suspects)
				v[cur].suspect_cycle = next_id;
			else
				v[cur].cycle = next_id;
			cur = (size_t)link_of(&v[cur], suspects);
		} while (cur != i);
		next_id++;
	}
}

void python_tasks(struct analysis *a, struct aprocess *ap, const struct rmem *m,
		  struct py_state *st)
{
	struct held_set hs = {0};

	py_read_tasks(m, st);
	if (st->tasks_error[0])
		analysis_problem(a, "pid %d: %s: %s", ap->p->pid, ap->runtime_version,
				 st->tasks_error);
	if (!st->n_tasks)
		return;
	ap->tasks = calloc(st->n_tasks, sizeof(*ap->tasks));
	if (!ap->tasks)
		return;
	ap->n_tasks = st->n_tasks;
	/* The loop's thread: the one whose BaseEventLoop.run_forever frame has the tasks' loop
	 * as self. */
	for (size_t i = 0; i < st->n_threads && !ap->loop_thread; i++)
		for (size_t j = 0; j < st->threads[i].n_frames; j++) {
			const struct py_frame *f = &st->threads[i].frames[j];
			if (!f->function || strcmp(f->function, "BaseEventLoop.run_forever") ||
			    first_local(m, f) != st->tasks[0].loop)
				continue;
			for (size_t k = 0; k < ap->n_threads; k++)
				if (ap->threads[k].t->tid == st->threads[i].native_id)
					ap->loop_thread = &ap->threads[k];
			break;
		}
	collect_held(m, st, &hs);
	for (size_t i = 0; i < st->n_tasks; i++) {
		struct atask *t = &ap->tasks[i];
		t->name = st->tasks[i].name ? strdup(st->tasks[i].name) : NULL;
		t->addr = st->tasks[i].addr;
		t->loop = st->tasks[i].loop;
		t->done = st->tasks[i].done;
		describe(m, st, &hs, i, t);
		frames_to_model(&st->tasks[i], t);
	}
	find_cycles(ap->tasks, ap->n_tasks, false);
	find_cycles(ap->tasks, ap->n_tasks, true);
	free(hs.v);
}
