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

static void match(const struct analysis *a, const struct pattern *self, struct findings *out)
{
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
		   "pipe or a socket that waits back.",
    .needs = "cores (lock words, stacks) and the manifest (syscalls, descriptors); the Python "
	     "variant (threads of a CPython process waiting on each other's threading.Lock or "
	     "RLock, named with their with statements) needs the interpreter's memory in the "
	     "cores and its binary or libpython (docs/python.md); the Java variant (threads of a "
	     "JVM in synchronized blocks waiting for each other's monitors) needs a JDK's jhsdb "
	     "(docs/java.md)",
    .thresholds = NULL,
    .n_thresholds = 0,
    .recommendations = recs,
    .match = match,
};
