/* SPDX-License-Identifier: MIT */
/* blocked-thread: a thread blocked on a lock, a child or another process whose context switches
 * did not change over a sampling interval of at least blocked-thread.min-ms before the freeze,
 * and that holds something others wait for (or that the user named with --thread). Idle waits
 * (condition variables, epoll, sleeps), and idle readers nobody waits on (a tee, a launcher
 * joining its thread) are healthy and not reported. */
#include "base/parse.h"
#include "patterns/pattern.h"

static const char *const recs[] = {
    "Find what it waits for (the wait below, and the wait-chain finding if there is one) and "
    "why that does not come.",
    "A thread blocked for long on a lock or a peer is a hang in the making: add a timeout.",
    NULL,
};

/* Threads in a chain of two or more waits, or in a cycle, are reported there. */
static bool in_reported_chain(const struct analysis *a, const struct athread *t)
{
	if (t->scc)
		return true;
	for (size_t i = 0; i < a->n_chains; i++)
		for (size_t j = 0;
		     (a->chains[i].n >= 2 || a->chains[i].ends_in_cycle) && j < a->chains[i].n; j++)
			if (a->chains[i].steps[j].t == t)
				return true;
	return false;
}

/* Waiters of a lock with many waiters are reported by high-contention. */
static bool contended(const struct aprocess *ap, const struct athread *t, double min)
{
	size_t n = 0;
	if (!t->wait.addr)
		return false;
	for (size_t i = 0; i < ap->n_threads; i++)
		n += ap->threads[i].wait.addr == t->wait.addr &&
		     ap->threads[i].wait.kind == t->wait.kind;
	return (double)n >= min;
}

static const struct threshold thresholds[] = {
    {"blocked-thread.min-ms", 250, "ms", "how long a thread must have been blocked"},
};

static bool named(const struct analysis *a, pid_t tid)
{
	for (size_t i = 0; i < a->n_focus; i++)
		if (a->focus[i] == tid)
			return true;
	return false;
}

static void match(const struct analysis *a, const struct pattern *self, struct findings *out)
{
	double min = analysis_threshold(a, "high-contention.waiters", 8);
	double min_ms = pattern_threshold(a, self, "blocked-thread.min-ms");

	for (size_t i = 0; i < a->n_procs; i++) {
		const struct aprocess *ap = &a->procs[i];
		for (size_t j = 0; j < ap->n_threads; j++) {
			const struct athread *t = &ap->threads[j];
			char label[160];
			bool user = named(a, t->t->tid);
			if (!t->n_edges || t->t->switches_in_sample != 0 ||
			    (double)a->snap->sample_ms < min_ms)
				continue;
			if (!user &&
			    (!t->needed || in_reported_chain(a, t) || contended(ap, t, min)))
				continue;
			thread_label(t, label, sizeof(label));
			struct finding *f =
			    finding_new(out, self, SEV_INFO,
					"%s is blocked and did not run during the "
					"%llu ms before the freeze.",
					label, (unsigned long long)a->snap->sample_ms);
			if (!f)
				return;
			finding_tid(f, t->t->tid);
			finding_pid(f, ap->p->pid);
			if (t->t->last_ran_ago_ms >= 0) {
				char age[32];
				finding_line(
				    f, "waits on: %s (last ran %s before the freeze)",
				    t->edges[0].text,
				    format_duration_ms(t->t->last_ran_ago_ms, age, sizeof(age)));
				finding_oldest_wait(f, (const struct athread *const[]){t}, 1);
			} else {
				finding_line(f, "waits on: %s", t->edges[0].text);
			}
			finding_wakers(f, &t->edges[0], NULL);
			if (t->needed) /* a parent waiting for its exit holds nothing of it */
				finding_line(f, "and others wait on it (it holds what they need)");
			finding_frames(f, t, 6);
		}
	}
}

const struct pattern pattern_blocked_thread = {
    .id = "blocked-thread",
    .title = "Blocked thread",
    .severity = SEV_INFO,
    .description = "A thread waits on something another thread or process must release, did "
		   "not run over the sampling interval, and holds something others wait for (or "
		   "was named with --thread).",
    .needs = "the manifest (CPU sampling, syscalls) and cores (lock words); a Python thread "
	     "blocked on a threading.Lock or the GIL counts when CPython's structures are in the "
	     "cores",
    .thresholds = thresholds,
    .n_thresholds = 1,
    .recommendations = recs,
    .match = match,
};
