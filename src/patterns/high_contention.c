/* SPDX-License-Identifier: MIT */
/* high-contention: many threads waiting on one lock; its owner and what it does. */
#include <stdlib.h>

#include "patterns/pattern.h"

static const char *const recs[] = {
    "Hold the lock for less time: move I/O, allocation and logging out of the critical "
    "section.",
    "Split the lock (per bucket, per object) or use a reader-writer lock if most holders "
    "only read.",
    "Look at what the owner does (its stack below): that is what all the waiters wait for.",
    NULL,
};

static const struct threshold thresholds[] = {
    {"high-contention.waiters", 8, "threads", "waiters on one lock before it is reported"},
};

static void match(const struct analysis *a, const struct pattern *self, struct findings *out)
{
	double min = pattern_threshold(a, self, "high-contention.waiters");

	for (size_t i = 0; i < a->n_procs; i++) {
		const struct aprocess *ap = &a->procs[i];
		bool *done = calloc(ap->n_threads + 1, sizeof(bool));
		if (!done)
			return;
		for (size_t j = 0; j < ap->n_threads; j++) {
			const struct athread *t = &ap->threads[j];
			size_t n = 0;
			/* A Python lock (threading.Lock) is a semaphore underneath: its waiters
			 * count when the runtime named the wait. */
			bool pylock = t->n_edges && t->edges[0].kind == EDGE_PYLOCK;
			if (done[j] || (t->wait.kind != WAIT_MUTEX && t->wait.kind != WAIT_RWLOCK &&
					t->wait.kind != WAIT_FUTEX && !pylock))
				continue;
			for (size_t k = j; k < ap->n_threads; k++)
				if (ap->threads[k].wait.kind == t->wait.kind &&
				    ap->threads[k].wait.addr == t->wait.addr)
					n++;
			if ((double)n < min)
				continue;
			struct finding *f =
			    finding_new(out, self, SEV_WARNING,
					"%zu threads of pid %d (%s) wait on one lock, %s.", n,
					ap->p->pid, ap->p->comm, t->wait.text);
			if (!f)
				break;
			f->key = t->wait.addr;
			finding_pid(f, ap->p->pid);
			json_object_object_add(finding_ev(f), "address",
					       json_object_new_int64((int64_t)t->wait.addr));
			json_object_object_add(finding_ev(f), "waiters",
					       json_object_new_int((int)n));
			for (size_t k = j; k < ap->n_threads; k++)
				if (ap->threads[k].wait.kind == t->wait.kind &&
				    ap->threads[k].wait.addr == t->wait.addr) {
					done[k] = true;
					finding_tid(f, ap->threads[k].t->tid);
				}
			finding_line(f, "waiters: %zu threads, e.g. thread %d \"%s\"", n, t->t->tid,
				     t->t->name);
			finding_frames(f, t, 6);
			if (t->wait.owner > 0 || pylock) {
				struct athread *o = pylock ? t->edges[0].to_thread
							   : analysis_find_thread(a, t->wait.owner);
				json_object_object_add(
				    finding_ev(f), "owner",
				    json_object_new_int(o ? o->t->tid : t->wait.owner));
				if (o) {
					char label[160];
					thread_label(o, label, sizeof(label));
					finding_tid(f, o->t->tid);
					finding_line(f, "owner: %s, %s%s%s", label,
						     wait_end_class(o), o->wait.text[0] ? ": " : "",
						     o->wait.text);
					finding_frames(f, o, 8);
				}
			}
		}
		free(done);
	}
}

const struct pattern pattern_high_contention = {
    .id = "high-contention",
    .title = "High contention",
    .severity = SEV_WARNING,
    .description = "Many threads wait on one lock at the same instant.",
    .needs = "cores (lock words) and the manifest (syscalls); the Python variant (many "
	     "threads on one threading.Lock, its holder from a with block on its stack) needs the "
	     "interpreter's memory in the cores",
    .thresholds = thresholds,
    .n_thresholds = 1,
    .recommendations = recs,
    .match = match,
};
