/* SPDX-License-Identifier: MIT */
/* mutex-corruption: a waited-on mutex whose fields break the invariants glibc keeps (the Linux
 * form of the seed's negative LockCount). */
#include "patterns/pattern.h"

static const char *const recs[] = {
    "Something wrote over the mutex: look for buffer overruns next to it, use after free of "
    "the object that contains it, or a mutex used after pthread_mutex_destroy.",
    "Run the program under AddressSanitizer or valgrind, or watch the address with a hardware "
    "watchpoint (gdb: watch *(int *)ADDRESS).",
    NULL,
};

static void match(const struct analysis *a, const struct pattern *self, struct findings *out)
{
	for (size_t i = 0; i < a->n_procs; i++) {
		const struct aprocess *ap = &a->procs[i];
		for (size_t j = 0; j < ap->n_threads; j++) {
			const struct athread *t = &ap->threads[j];
			char label[160];
			if (t->wait.kind != WAIT_MUTEX || t->wait.verdict != MUTEX_CORRUPT)
				continue;
			struct finding *f = finding_new(
			    out, self, SEV_ERROR, "Mutex 0x%llx in pid %d (%s) is corrupt: %s.",
			    (unsigned long long)t->wait.addr, ap->p->pid, ap->p->comm, t->wait.why);
			if (!f)
				return;
			thread_label(t, label, sizeof(label));
			finding_pid(f, ap->p->pid);
			finding_tid(f, t->t->tid);
			finding_line(f, "waiter: %s", label);
			finding_line(f,
				     "words: __lock %u __count %u __owner %d __nusers %u __kind %d",
				     t->wait.words[0], t->wait.words[1], (int)t->wait.words[2],
				     t->wait.words[3], (int)t->wait.words[4]);
			finding_frames(f, t, 6);
			json_object_object_add(finding_ev(f), "address",
					       json_object_new_int64((int64_t)t->wait.addr));
			json_object_object_add(finding_ev(f), "why",
					       json_object_new_string(t->wait.why));
		}
	}
}

const struct pattern pattern_mutex_corruption = {
    .id = "mutex-corruption",
    .title = "Mutex corruption",
    .severity = SEV_ERROR,
    .description = "A mutex a thread waits on holds values no sound glibc mutex can hold.",
    .needs = "cores (mutex words)",
    .thresholds = NULL,
    .n_thresholds = 0,
    .recommendations = recs,
    .match = match,
};
