/* SPDX-License-Identifier: MIT */
/*
 * The GIL and threading's locks as nodes of the wait graph.
 *
 * The GIL: a thread that waits for it sleeps in take_gil on the GIL's condition variable (or,
 * briefly, its mutex), so its futex address lies inside struct _gil_runtime_state; the holder
 * is `last_holder` while `locked` is set. Each waiter gets an edge to the holder, so a thread
 * waiting for the GIL held by a thread that waits on a mutex held by a third is one chain.
 *
 * threading.Lock and RLock: both wrap a PyThread_type_lock, a sem_t on Linux: a waiter
 * futex-waits on the sem_t that the lock object's lock_lock points to. The lock objects are
 * found on the frames' locals and value stacks: `with lock:` keeps the bound method
 * lock.__exit__ on the stack of the frame inside the block (that is how a plain Lock's holder
 * is known), and lock.acquire() keeps the lock itself there. An RLock names its owner (the
 * thread's ident). A plain Lock acquired with acquire() leaves no trace on its holder's stack:
 * then the holder is said to be unknown; a thread whose code (read back from its bytecode)
 * called acquire() on that very lock and no release() after is named as a suspect, by its
 * code, never as the holder, and gets no edge of the wait graph. Every object found is checked by
 * its type's name, so a stale slot can only name a live lock of the same kind; a lock is a holder's
 * only while it is locked and the thread does not itself wait on it.
 *
 * Waits inside threading.py and queue.py (Condition.wait, Event.wait, Semaphore.acquire,
 * Queue.get, Thread.join, Barrier.wait) are named by the library function the user's frame
 * called, and said to have no owner by design where that is so.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analyze/runtime/python_model.h"
#include "base/util.h"

enum obj_class { OC_OTHER, OC_LOCK, OC_RLOCK, OC_CFUNC };

struct type_cache {
	uint64_t type[32];
	enum obj_class cls[32];
	size_t n;
};

struct pylock {
	uint64_t obj;
	enum obj_class cls;
	uint64_t sem;
	bool locked;
	uint64_t owner_ident; /* RLock */
	uint64_t count;
	struct athread *holder;
	const struct py_frame *holder_frame;
};

struct locks {
	struct pylock *v;
	size_t n, cap;
};

static enum obj_class classify(const struct rmem *m, const struct py_layout *L,
			       struct type_cache *tc, uint64_t obj)
{
	uint64_t type;
	char name[40];
	enum obj_class c = OC_OTHER;

	if (!rmem_plausible(obj) || !rmem_read64(m, obj + L->ob_type, &type) ||
	    !rmem_plausible(type))
		return OC_OTHER;
	for (size_t i = 0; i < tc->n; i++)
		if (tc->type[i] == type)
			return tc->cls[i];
	if (py_type_name(m, L, obj, name, sizeof(name))) {
		if (!strcmp(name, "_thread.lock"))
			c = OC_LOCK;
		else if (!strcmp(name, "_thread.RLock"))
			c = OC_RLOCK;
		else if (!strcmp(name, "builtin_function_or_method"))
			c = OC_CFUNC;
	}
	if (tc->n < ARRAY_SIZE(tc->type)) {
		tc->type[tc->n] = type;
		tc->cls[tc->n++] = c;
	}
	return c;
}

static struct pylock *lock_add(const struct rmem *m, const struct py_layout *L, struct locks *ls,
			       uint64_t obj, enum obj_class cls)
{
	struct pylock *l;
	uint8_t locked = 0;

	for (size_t i = 0; i < ls->n; i++)
		if (ls->v[i].obj == obj)
			return &ls->v[i];
	if (ls->n >= 4096 || grow_array((void **)&ls->v, &ls->cap, ls->n + 1, sizeof(*ls->v)))
		return NULL;
	l = &ls->v[ls->n++];
	memset(l, 0, sizeof(*l));
	l->obj = obj;
	l->cls = cls;
	(void)rmem_read64(m, obj + L->lock_lock, &l->sem);
	if (cls == OC_LOCK) {
		(void)m->read(m->ctx, obj + L->lock_locked, &locked, 1);
		l->locked = locked != 0;
	} else {
		(void)rmem_read64(m, obj + L->rlock_owner, &l->owner_ident);
		(void)rmem_read64(m, obj + L->rlock_count, &l->count);
		l->locked = l->count > 0;
	}
	return l;
}

static bool method_named(const struct rmem *m, const struct py_layout *L, uint64_t cfunc,
			 const char *want)
{
	uint64_t ml, name;
	char buf[16] = "";
	if (!rmem_read64(m, cfunc + L->cfunc_ml, &ml) || !rmem_plausible(ml) ||
	    !rmem_read64(m, ml, &name) || !name)
		return false;
	(void)m->read(m->ctx, name, buf, sizeof(buf) - 1);
	return !strcmp(buf, want);
}

static struct athread *thread_of(struct aprocess *ap, const struct py_thread *pt)
{
	for (size_t i = 0; i < ap->n_threads; i++)
		if (ap->threads[i].t->tid == pt->native_id)
			return &ap->threads[i];
	return NULL;
}

static bool waits_on(const struct athread *t, const struct pylock *l)
{
	return t && t->wait.addr && l->sem && t->wait.addr >= l->sem && t->wait.addr < l->sem + 32;
}

/* Every lock on every frame; `with` blocks make their thread the holder. */
static void collect(const struct rmem *m, const struct py_layout *L, struct aprocess *ap,
		    struct py_state *st, struct locks *ls, struct type_cache *tc)
{
	uint64_t slots[PY_MAX_SLOTS];

	for (size_t i = 0; i < st->n_threads; i++) {
		struct py_thread *pt = &st->threads[i];
		struct athread *t = thread_of(ap, pt);
		for (size_t j = 0; j < pt->n_frames; j++) {
			const struct py_frame *f = &pt->frames[j];
			size_t n = f->n_slots;
			if (!n)
				continue;
			n = m->read(m->ctx, f->localsplus, slots, n * 8) / 8;
			for (size_t k = 0; k < n; k++) {
				enum obj_class c = classify(m, L, tc, slots[k]);
				uint64_t self;
				struct pylock *l;

				if (c == OC_LOCK || c == OC_RLOCK) {
					lock_add(m, L, ls, slots[k], c);
					continue;
				}
				if (c != OC_CFUNC ||
				    !rmem_read64(m, slots[k] + L->cfunc_self, &self))
					continue;
				c = classify(m, L, tc, self);
				if (c != OC_LOCK && c != OC_RLOCK)
					continue;
				l = lock_add(m, L, ls, self, c);
				if (!l || c != OC_LOCK || !l->locked || l->holder || !t ||
				    waits_on(t, l) || !method_named(m, L, slots[k], "__exit__"))
					continue;
				l->holder = t;
				l->holder_frame = f;
			}
		}
	}
	/* An RLock says who owns it. */
	for (size_t i = 0; i < ls->n; i++) {
		struct pylock *l = &ls->v[i];
		if (l->cls != OC_RLOCK || !l->locked)
			continue;
		for (size_t j = 0; j < st->n_threads; j++)
			if (st->threads[j].ident == l->owner_ident)
				l->holder = thread_of(ap, &st->threads[j]);
	}
}

static const char *base_name(const char *p)
{
	const char *s = p ? strrchr(p, '/') : NULL;
	return s ? s + 1 : p ? p : "?";
}

static bool library_file(const char *file)
{
	const char *b = base_name(file);
	return !strcmp(b, "threading.py") || !strcmp(b, "queue.py");
}

/* "with b:" (app.py:11, transfer), or transfer (app.py:11) */
static void where_text(const struct py_frame *f, char *buf, size_t len)
{
	if (!f) {
		snprintf(buf, len, "?");
		return;
	}
	if (f->with_text[0])
		snprintf(buf, len, "\"%s\" (%s:%d, %s)", f->with_text, base_name(f->file), f->line,
			 f->function ? f->function : "?");
	else
		snprintf(buf, len, "%s (%s:%d)", f->function ? f->function : "?",
			 base_name(f->file), f->line);
}

static void holder_label(const struct athread *h, char *buf, size_t len)
{
	const char *name = h->runtime_name && h->runtime_name[0] ? h->runtime_name : h->t->name;

	if (name[0])
		snprintf(buf, len, "thread %d \"%s\"", h->t->tid, name);
	else
		snprintf(buf, len, "thread %d", h->t->tid);
}

/* What a library wait is, from the outermost threading.py / queue.py frame. */
static const char *library_wait(const char *qualname, const char **ownerless)
{
	static const struct {
		const char *fn, *what, *ownerless;
	} known[] = {
	    {"Queue.get", "queue.Queue.get", "any thread that puts an item wakes it"},
	    {"Queue.put", "queue.Queue.put", "any thread that takes an item wakes it"},
	    {"Queue.join", "queue.Queue.join", "the consumers calling task_done() wake it"},
	    {"Event.wait", "threading.Event.wait", "any thread that sets the event wakes it"},
	    {"Condition.wait", "threading.Condition.wait", "any thread that notifies wakes it"},
	    {"Condition.wait_for", "threading.Condition.wait_for",
	     "any thread that notifies wakes it"},
	    {"Semaphore.acquire", "threading.Semaphore.acquire",
	     "any thread that releases the semaphore wakes it"},
	    {"BoundedSemaphore.acquire", "threading.BoundedSemaphore.acquire",
	     "any thread that releases the semaphore wakes it"},
	    {"Barrier.wait", "threading.Barrier.wait", "the other parties arriving wake it"},
	    {"Thread.join", "threading.Thread.join", "the thread's end wakes it"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(known); i++)
		if (qualname && !strcmp(qualname, known[i].fn)) {
			*ownerless = known[i].ownerless;
			return known[i].what;
		}
	*ownerless = NULL;
	return NULL;
}

/* The thread a Thread.join waits for: the Thread object is the join frame's first local
 * (self); its _ident names the thread. */
static struct athread *join_target(const struct rmem *m, struct aprocess *ap,
				   const struct py_state *st, const struct py_frame *join)
{
	uint64_t self, ident_obj, ident;

	if (!join || strcmp(join->function ? join->function : "", "Thread.join") ||
	    !rmem_read64(m, join->localsplus, &self))
		return NULL;
	ident_obj = py_instance_attr(m, &st->L, self, "_ident");
	if (!ident_obj || !py_read_long(m, &st->L, ident_obj, &ident))
		return NULL;
	for (size_t i = 0; i < st->n_threads; i++)
		if (st->threads[i].ident == ident)
			return thread_of(ap, &st->threads[i]);
	return NULL;
}

static void lock_waits(struct analysis *a, struct aprocess *ap, const struct rmem *m,
		       struct py_state *st, struct locks *ls)
{
	char text[200], where[140], holder[80];

	(void)a;
	for (size_t i = 0; i < st->n_threads; i++) {
		struct py_thread *pt = &st->threads[i];
		struct athread *t = thread_of(ap, pt);
		const struct py_frame *user = NULL, *lib = NULL;
		struct pylock *l = NULL;

		if (!t || !pt->n_frames || t->waits_gil || t->wait.kind == WAIT_NONE)
			continue;
		for (size_t j = 0; j < ls->n && !l; j++)
			if (waits_on(t, &ls->v[j]))
				l = &ls->v[j];
		for (size_t j = 0; j < pt->n_frames; j++) {
			if (!library_file(pt->frames[j].file)) {
				user = &pt->frames[j];
				break;
			}
			lib = &pt->frames[j];
		}
		if (user)
			py_frame_with_text(m, st, (struct py_frame *)user);
		where_text(user, where, sizeof(where));
		const char *ownerless = NULL,
			   *what = lib ? library_wait(lib->function, &ownerless) : NULL;
		if (what && !strcmp(what, "threading.Thread.join")) {
			struct athread *joined = join_target(m, ap, st, lib);
			if (joined && joined != t) {
				holder_label(joined, holder, sizeof(holder));
				snprintf(
				    text, sizeof(text),
				    "waits in threading.Thread.join, called at %s, for %s to end",
				    where, holder);
				snprintf(t->wait.text, sizeof(t->wait.text), "%s", text);
				analysis_add_edge(t, EDGE_JOIN, joined, NULL, text);
				continue;
			}
		}
		if (what) {
			snprintf(text, sizeof(text), "waits in %s, called at %s: %s%s", what, where,
				 ownerless ? "no owner by design, " : "",
				 ownerless ? ownerless : "");
			snprintf(t->wait.text, sizeof(t->wait.text), "%s", text);
			continue;
		}
		if (!l)
			continue;
		const char *kind = l->cls == OC_LOCK ? "threading.Lock" : "threading.RLock";
		if (l->holder && l->holder != t) {
			holder_label(l->holder, holder, sizeof(holder));
			snprintf(text, sizeof(text), "waits in %s for a %s at 0x%llx held by %s",
				 where, kind, (unsigned long long)l->obj, holder);
			if (l->holder_frame && l->holder_frame->function)
				snprintf(text + strlen(text), sizeof(text) - strlen(text),
					 " (a with block in %s)", l->holder_frame->function);
			snprintf(t->wait.text, sizeof(t->wait.text), "%s", text);
			analysis_add_edge(t, EDGE_PYLOCK, l->holder, NULL, text);
		} else {
			struct athread *sus = NULL;
			const struct py_frame *sf = NULL;
			int line = 0, n_sus = 0;
			t->runtime_lock = l->obj;
			/* Threads whose code took this lock with acquire() and, by the code, has
			 * not released it: suspects, said as such. */
			for (size_t k = 0; k < st->n_threads && l->locked && !l->holder; k++) {
				struct athread *o = thread_of(ap, &st->threads[k]);
				if (!o || o == t || waits_on(o, l))
					continue;
				for (size_t j = 0; j < st->threads[k].n_frames; j++) {
					int ln = py_frame_acquired(m, st, &st->threads[k].frames[j],
								   l->obj);
					if (!ln)
						continue;
					if (sus != o)
						n_sus++;
					sus = o;
					sf = &st->threads[k].frames[j];
					line = ln;
					break;
				}
			}
			if (n_sus == 1) {
				t->runtime_lock_suspect = sus;
				snprintf(t->runtime_lock_suspect_at,
					 sizeof(t->runtime_lock_suspect_at), "%s (%s:%d)",
					 sf->function ? sf->function : "?", base_name(sf->file),
					 line > 0 ? line : sf->line);
				holder_label(sus, holder, sizeof(holder));
				snprintf(t->wait.text, sizeof(t->wait.text),
					 "waits in %s for a %s at 0x%llx; holder unknown: acquired "
					 "explicitly (by its code, %s took it)",
					 where, kind, (unsigned long long)l->obj, holder);
			} else {
				snprintf(t->wait.text, sizeof(t->wait.text),
					 "waits in %s for a %s at 0x%llx; holder unknown: acquired "
					 "explicitly (it was not taken in a with block)",
					 where, kind, (unsigned long long)l->obj);
			}
		}
	}
}

/* Whether one of t's innermost native frames is the interpreter's take_gil (an optimizer's suffix
 * such as ".lto_priv.0" allowed): t is in the GIL's wait loop even when the freeze met it between
 * two of its timed waits, running that loop's code (on a busy machine a waiter woken by its 5 ms
 * timeout can wait that long for a CPU). Needs symbols; without them the futex says it. */
static bool in_take_gil(const struct athread *t)
{
	for (size_t k = 0, native = 0; k < t->n_frames && native < 8; k++) {
		const char *f = t->frames[k].function;
		if (t->frames[k].kind != FRAME_NATIVE)
			break;
		native++;
		if (f && !strncmp(f, "take_gil", 8) && (f[8] == 0 || f[8] == '.'))
			return true;
	}
	return false;
}

static void gil_waits(struct aprocess *ap, struct py_state *st)
{
	const struct py_layout *L = &st->L;
	struct athread *holder = NULL;
	char text[200], label[80];

	if (!st->gil.known)
		return;
	for (size_t i = 0; i < st->n_threads && st->gil.locked; i++)
		if (st->threads[i].tstate == st->gil.holder)
			holder = thread_of(ap, &st->threads[i]);
	for (size_t i = 0; i < ap->n_threads; i++) {
		struct athread *t = &ap->threads[i];
		uint64_t w = t->wait.addr, g = st->gil.addr;
		bool on_gil = t->wait.kind != WAIT_NONE && w && w >= g + L->gil_cond &&
			      w < g + L->gil_switch_cond;
		if (t == holder || (!on_gil && (t->wait.kind != WAIT_NONE || !in_take_gil(t))))
			continue;
		t->waits_gil = true;
		if (holder && holder != t) {
			holder_label(holder, label, sizeof(label));
			snprintf(text, sizeof(text), "waits for the GIL, held by %s%s%s", label,
				 holder->runtime_where[0] ? " in " : "", holder->runtime_where);
			snprintf(t->wait.text, sizeof(t->wait.text), "%s", text);
			analysis_add_edge(t, EDGE_GIL, holder, NULL, text);
		} else {
			snprintf(t->wait.text, sizeof(t->wait.text), "waits for the GIL (%s)",
				 st->gil.locked
				     ? "its holder is not a thread of the snapshot"
				     : "released at the instant: it was about to get it");
		}
	}
}

void python_locks(struct analysis *a, struct aprocess *ap, const struct rmem *m,
		  struct py_state *st)
{
	struct locks ls = {0};
	struct type_cache tc = {0};

	gil_waits(ap, st);
	collect(m, &st->L, ap, st, &ls, &tc);
	lock_waits(a, ap, m, st, &ls);
	free(ls.v);
}
