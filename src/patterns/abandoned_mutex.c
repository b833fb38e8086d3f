/* SPDX-License-Identifier: MIT */
/* abandoned-mutex: a mutex whose owner is not a live thread (it exited holding it). */
#include "patterns/pattern.h"

static const char *const recs[] = {
    "A thread exited (or was cancelled) while holding the lock: find the path that returns "
    "without unlocking (an early return, an error path, pthread_exit or cancellation).",
    "Use robust mutexes (PTHREAD_MUTEX_ROBUST) for locks shared with code that can die, and "
    "handle EOWNERDEAD.",
    "The waiters will never wake: restart the process.",
    NULL,
};

static void match(const struct analysis *a, const struct pattern *self, struct findings *out)
{
	for (size_t i = 0; i < a->n_procs; i++) {
		const struct aprocess *ap = &a->procs[i];
		struct finding *f = NULL;
		uint64_t addr = 0;
		for (size_t j = 0; j < ap->n_threads; j++) {
			const struct athread *t = &ap->threads[j];
			char label[160];
			if (t->wait.kind != WAIT_MUTEX || t->wait.verdict != MUTEX_ABANDONED)
				continue;
			if (!f || addr != t->wait.addr) {
				addr = t->wait.addr;
				f = finding_new(
				    out, self, SEV_ERROR,
				    "Mutex 0x%llx in pid %d (%s) is held by TID %d, which "
				    "no longer exists; its waiters will never wake.",
				    (unsigned long long)addr, ap->p->pid, ap->p->comm,
				    t->wait.owner);
				if (!f)
					return;
				finding_pid(f, ap->p->pid);
				finding_line(f, "mutex 0x%llx: %s", (unsigned long long)addr,
					     t->wait.why);
				json_object_object_add(finding_ev(f), "address",
						       json_object_new_int64((int64_t)addr));
				json_object_object_add(finding_ev(f), "owner",
						       json_object_new_int(t->wait.owner));
			}
			thread_label(t, label, sizeof(label));
			finding_tid(f, t->t->tid);
			finding_line(f, "waiter: %s", label);
			finding_frames(f, t, 6);
		}
	}
}

const struct pattern pattern_abandoned_mutex = {
    .id = "abandoned-mutex",
    .title = "Abandoned mutex",
    .severity = SEV_ERROR,
    .description = "A mutex is held by a thread that no longer exists.",
    .needs = "cores (mutex words) and the manifest (threads)",
    .thresholds = NULL,
    .n_thresholds = 0,
    .recommendations = recs,
    .match = match,
};
