/* SPDX-License-Identifier: MIT */
/* deadlock: a cycle in the wait graph, of any length and any mix of mutex, join, child, pipe,
 * socket, file-lock and runtime-lock waits, none of whose possible wakers can go on: a pipe read
 * is a deadlock only when every holder of a write end is stuck too. A cycle one of whose wakers
 * can still end it is reported by coupled-processes. The Python variant (threading's locks) and
 * the Java variant (monitors of synchronized blocks, from jhsdb) name the runtime's objects. */
#include "base/util.h"
#include "patterns/pattern.h"

static const char *const recs[] = {
    "Break the cycle: make every thread take these locks in one global order, or take them "
    "with pthread_mutex_trylock/timedlock and back off.",
    "Keep no lock held while waiting on another thread, a child, a pipe or a socket.",
    "To recover now, restart the processes named here: the threads in the cycle cannot go on.",
    NULL,
};

/* The asyncio variant: tasks of one loop, each waiting for an asyncio.Lock held by the next
 * (atask.cycle, python_tasks.c). No thread is blocked: the loop's thread idles in its
 * selector, so the wait graph of threads has no cycle; the tasks' own links do. */
static void match_tasks(const struct aprocess *ap, const struct pattern *self, struct findings *out,
			bool suspects)
{
	for (int id = 1;; id++) {
		const struct atask *first = NULL;
		char names[400] = "";
		size_t n = 0, nl = 0;
		struct finding *f;

		for (size_t i = 0; i < ap->n_tasks; i++)
			if ((suspects ? ap->tasks[i].suspect_cycle : ap->tasks[i].cycle) == id) {
				int w = snprintf(names + nl, sizeof(names) - nl, "%s\"%s\"",
						 n ? ", " : "",
						 ap->tasks[i].name ? ap->tasks[i].name : "?");
				nl = w > 0 ? MIN(nl + (size_t)w, sizeof(names) - 1) : nl;
				first = first ? first : &ap->tasks[i];
				n++;
			}
		if (!first)
			return;
		if (suspects)
			f = finding_new(
			    out, self, SEV_ERROR,
			    "%zu asyncio tasks of pid %d (%s) wait for asyncio.Locks taken "
			    "with await lock.acquire(), each lock taken, by its code, by the "
			    "next task: most likely a deadlock (holders unknown: acquired "
			    "explicitly; tasks %s).",
			    n, ap->p->pid, ap->p->comm, names);
		else
			f = finding_new(
			    out, self, SEV_ERROR,
			    "%zu asyncio tasks of pid %d (%s) wait on each other through "
			    "asyncio.Locks in a cycle: none of them can go on (tasks %s).",
			    n, ap->p->pid, ap->p->comm, names);
		if (!f)
			return;
		finding_pid(f, ap->p->pid);
		if (ap->loop_thread) {
			char label[160];
			thread_label(ap->loop_thread, label, sizeof(label));
			finding_tid(f, ap->loop_thread->t->tid);
			finding_line(f,
				     "their event loop runs on %s, which waits for events that "
				     "cannot come for them",
				     label);
		}
		json_object *arr = json_object_new_array();
		const struct atask *t = first;
		do {
			json_object *o = json_object_new_object();
			finding_line(f, "task \"%s\" %s", t->name ? t->name : "?", t->awaits);
			for (size_t k = 0; k < t->n_frames && k < 6; k++)
				finding_line(f, "      #%zu %s (python) %s:%d", k,
					     t->frames[k].function ? t->frames[k].function : "?",
					     t->frames[k].file ? t->frames[k].file : "?",
					     t->frames[k].line);
			json_object_object_add(o, "task",
					       json_object_new_string(t->name ? t->name : "?"));
			json_object_object_add(o, "waits_on", json_object_new_string(t->awaits));
			json_object_object_add(o, "lock", json_object_new_int64((int64_t)t->lock));
			int next = t->waits_for >= 0 ? t->waits_for : t->suspect;
			json_object_object_add(
			    o, "holder",
			    t->waits_for >= 0
				? json_object_new_string(ap->tasks[next].name ? ap->tasks[next].name
									      : "?")
				: NULL);
			if (t->waits_for < 0)
				finding_line(
				    f,
				    "  holder: unknown (acquired explicitly); by its code, "
				    "task \"%s\" took it in %s",
				    ap->tasks[next].name ? ap->tasks[next].name : "?",
				    t->suspect_at);
			json_object_array_add(arr, o);
			t = &ap->tasks[next];
		} while (t != first);
		finding_line(f, "and so back to task \"%s\"", first->name ? first->name : "?");
		json_object_object_add(finding_ev(f), "task_cycle", arr);
		finding_rec(f,
			    "In asyncio: take the locks in one fixed order in every task, or use "
			    "asyncio.wait_for(lock.acquire(), timeout) and back off; hold no "
			    "asyncio.Lock across an await that takes another.");
		f->key = ((uint64_t)ap->p->pid << 16) | (uint64_t)id;
	}
}

/* Threads waiting for threading.Locks taken with acquire(): the holders are not known, but
 * when each lock's only suspect (a thread whose code took it and, by its code, has not
 * released it) waits for the next lock, around a cycle, it is most likely a deadlock. Said
 * as such, with the holders unknown. */
static void match_suspects(const struct aprocess *ap, const struct pattern *self,
			   struct findings *out)
{
	for (size_t i = 0; i < ap->n_threads; i++) {
		const struct athread *start = &ap->threads[i], *t = start;
		size_t n = 0;
		bool lowest = true;

		if (!start->runtime_lock_suspect)
			continue;
		do {
			t = t->runtime_lock_suspect;
			n++;
			lowest = lowest && t->t->tid >= start->t->tid;
		} while (t && t != start && t->runtime_lock_suspect && n <= ap->n_threads);
		if (t != start || !lowest) /* no cycle, or reported from its lowest thread */
			continue;
		struct finding *f = finding_new(
		    out, self, SEV_ERROR,
		    "%zu threads of pid %d (%s) wait for threading.Locks taken with acquire(), "
		    "each lock taken, by its code, by the next thread: most likely a deadlock "
		    "(holders unknown: acquired explicitly).",
		    n, ap->p->pid, ap->p->comm);
		if (!f)
			return;
		finding_pid(f, ap->p->pid);
		json_object *arr = json_object_new_array();
		t = start;
		do {
			char label[160], sl[160];
			json_object *o = json_object_new_object();
			thread_label(t, label, sizeof(label));
			thread_label(t->runtime_lock_suspect, sl, sizeof(sl));
			finding_tid(f, t->t->tid);
			finding_line(f, "%s", label);
			finding_line(f, "  %s", t->wait.text);
			finding_line(
			    f,
			    "  holder: unknown (acquired explicitly); by its code, %s took "
			    "it in %s",
			    sl, t->runtime_lock_suspect_at);
			finding_frames(f, t, 4);
			json_object_object_add(o, "tid", json_object_new_int(t->t->tid));
			json_object_object_add(o, "lock",
					       json_object_new_int64((int64_t)t->runtime_lock));
			json_object_object_add(o, "holder", NULL);
			json_object_object_add(
			    o, "suspect", json_object_new_int(t->runtime_lock_suspect->t->tid));
			json_object_array_add(arr, o);
			t = t->runtime_lock_suspect;
		} while (t != start);
		json_object_object_add(finding_ev(f), "suspect_cycle", arr);
		finding_rec(f,
			    "In Python: take the locks with `with lock:` (osmosis then knows the "
			    "holder), in one fixed order everywhere, or with "
			    "lock.acquire(timeout=...) and back off.");
		f->key = ((uint64_t)ap->p->pid << 32) | (uint64_t)start->t->tid;
	}
}

static void match(const struct analysis *a, const struct pattern *self, struct findings *out)
{
	for (size_t i = 0; i < a->n_procs; i++) {
		match_tasks(&a->procs[i], self, out, false);
		match_tasks(&a->procs[i], self, out, true);
		match_suspects(&a->procs[i], self, out);
	}
	for (size_t i = 0; i < a->n_cycles; i++) {
		const struct cycle *c = &a->cycles[i];
		struct finding *f;
		char label[160];

		char python[600] = "", java[600] = "";
		size_t pl = 0, jl = 0;

		if (!c->deadlock)
			continue;
		/* The Python variant: each step through a Python lock said at Python level. */
		for (size_t j = 0; j < c->n && pl < sizeof(python) - 1; j++)
			if (c->steps[j].e->kind == EDGE_PYLOCK || c->steps[j].e->kind == EDGE_GIL) {
				const struct athread *t = c->steps[j].t;
				int w =
				    snprintf(python + pl, sizeof(python) - pl,
					     "%sthread %d \"%s\" %s", pl ? "; " : " ", t->t->tid,
					     t->runtime_name ? t->runtime_name : t->t->name,
					     c->steps[j].e->text);
				pl = w > 0 ? MIN(pl + (size_t)w, sizeof(python) - 1) : pl;
			}
		/* The Java variant: each step through a monitor, its class and address. */
		for (size_t j = 0; j < c->n && jl < sizeof(java) - 1; j++)
			if (c->steps[j].e->kind == EDGE_MONITOR) {
				const struct athread *t = c->steps[j].t;
				int w = snprintf(java + jl, sizeof(java) - jl,
						 "%sJava thread \"%s\" (tid %d) waits to lock %s",
						 jl ? "; " : " ",
						 t->runtime_name ? t->runtime_name : t->t->name,
						 t->t->tid, c->steps[j].e->text);
				jl = w > 0 ? MIN(jl + (size_t)w, sizeof(java) - 1) : jl;
			}
		f = finding_new(out, self, SEV_ERROR,
				"%zu threads wait on each other in a cycle%s%s: "
				"none of them can go on.%s%s",
				c->n + c->n_others, c->via_process ? " across processes" : "",
				pl   ? " through Python locks"
				: jl ? " through Java monitors (a Java-level deadlock)"
				     : "",
				python, java);
		if (!f)
			return;
		if (jl)
			finding_rec(
			    f, "In Java: take the monitors in one fixed order everywhere (the same "
			       "order of nested synchronized blocks in every thread), or use "
			       "java.util.concurrent.locks.ReentrantLock.tryLock(timeout) and back "
			       "off; "
			       "on the live process, jstack PID shows the same deadlock.");
		if (pl)
			finding_rec(
			    f, "In Python: take the locks in one fixed order everywhere, or use "
			       "lock.acquire(timeout=...) and back off; keep no lock held across "
			       "a call that takes another.");
		f->key = i + 1;
		json_object *steps = finding_wait_steps(f, c->steps, c->n, 6);
		thread_label(c->steps[0].t, label, sizeof(label));
		finding_line(f, "and so back to %s", label);
		json_object_object_add(finding_ev(f), "cycle", steps);
		if (c->n_others) {
			finding_line(
			    f, "stuck in the same knot of waits, every waker of theirs in it:");
			json_object_object_add(finding_ev(f), "also_stuck",
					       finding_wait_steps(f, c->others, c->n_others, 4));
		}
	}
}

const struct pattern pattern_deadlock = {
    .id = "deadlock",
    .title = "Deadlock",
    .severity = SEV_ERROR,
    .description = "Threads (in one process or several) each waiting for the next, around a "
		   "cycle: a mutex held by a thread that waits for a joined thread, a child, a "
		   "pipe or a socket that waits back; or asyncio tasks each waiting for an "
		   "asyncio.Lock held by the next. Locks taken with acquire() (threading's or "
		   "asyncio's) name no holder: when each lock's one suspect (the thread or task "
		   "whose code took it and has not released it) waits for the next lock around a "
		   "cycle, it is reported as most likely a deadlock, the holders said unknown.",
    .needs = "cores (lock words, stacks) and the manifest (syscalls, descriptors); the Python "
	     "variant (threads of a CPython process waiting on each other's threading.Lock or "
	     "RLock, named with their with statements) and the asyncio variant (tasks waiting on "
	     "each other's asyncio.Lock, named with their async with statements; tasks are read "
	     "from asyncio's registry of tasks, not from any thread's stack) need the "
	     "interpreter's memory in the cores and its binary or libpython (docs/python.md); the "
	     "Java variant (threads of a JVM in synchronized blocks waiting for each other's "
	     "monitors) needs a JDK's jhsdb (docs/java.md)",
    .thresholds = NULL,
    .n_thresholds = 0,
    .recommendations = recs,
    .match = match,
};
