/* SPDX-License-Identifier: MIT */
/* wait-chain: a chain of two or more waits; every link named, and where it ends. */
#include <stdio.h>

#include "patterns/pattern.h"

static const char *const recs[] = {
    "Look at the end of the chain first: everything before it waits for that thread or "
    "process.",
    "If it ends in I/O or a sleep, the whole chain is as slow as that: add a timeout, or move "
    "the slow work out from under the lock.",
    NULL,
};

static const struct threshold thresholds[] = {
    {"wait-chain.length", 2, "waits", "the shortest chain reported"},
};

static void describe_end(const struct chain *c, char *buf, size_t len)
{
	char label[160];
	if (c->end_thread) {
		thread_label(c->end_thread, label, sizeof(label));
		if (c->ends_in_cycle)
			snprintf(buf, len, "%s, which is in a deadlock", label);
		else
			snprintf(buf, len, "%s, %s%s%s", label, wait_end_class(c->end_thread),
				 c->end_thread->wait.text[0] ? ": " : "", c->end_thread->wait.text);
	} else if (c->end_proc) {
		snprintf(buf, len, "pid %d (%s), none of whose threads waits on anything here",
			 c->end_proc->p->pid, c->end_proc->p->comm);
	} else {
		snprintf(buf, len, "unknown");
	}
}

static void match(const struct analysis *a, const struct pattern *self, struct findings *out)
{
	double min = pattern_threshold(a, self, "wait-chain.length");

	for (size_t i = 0; i < a->n_chains; i++) {
		const struct chain *c = &a->chains[i];
		char label[160], end[400];
		struct finding *f;
		size_t procs = 0;

		/* A chain into a deadlock goes on around the cycle: always worth reporting. */
		if ((double)c->n < min && !c->ends_in_cycle)
			continue;
		for (size_t j = 0; j < c->n; j++)
			procs += j == 0 || c->steps[j].t->proc != c->steps[j - 1].t->proc;
		describe_end(c, end, sizeof(end));
		f = finding_new(out, self, c->ends_in_cycle ? SEV_ERROR : SEV_WARNING,
				"A chain of %zu waits across %zu process%s ends at %s.", c->n,
				procs, procs == 1 ? "" : "es", end);
		if (!f)
			return;
		f->key = (uint64_t)c->ends_in_cycle;
		json_object *links = finding_wait_steps(f, c->steps, c->n, 4);
		if (c->end_thread) {
			finding_tid(f, c->end_thread->t->tid);
			finding_pid(f, c->end_thread->proc->p->pid);
			thread_label(c->end_thread, label, sizeof(label));
			finding_line(f, "%s (the end: %s)", label, wait_end_class(c->end_thread));
			finding_frames(f, c->end_thread, 6);
		} else if (c->end_proc) {
			finding_pid(f, c->end_proc->p->pid);
			finding_line(f, "pid %d (%s) (the end)", c->end_proc->p->pid,
				     c->end_proc->p->comm);
		}
		json_object_object_add(finding_ev(f), "chain", links);
		json_object_object_add(finding_ev(f), "end", json_object_new_string(end));
	}
}

const struct pattern pattern_wait_chain = {
    .id = "wait-chain",
    .title = "Wait chain",
    .severity = SEV_WARNING,
    .description = "A thread waits for another that waits for a third, through locks, joins, "
		   "children, pipes or sockets, across processes; the chain's end explains the "
		   "whole chain.",
    .needs = "cores (lock words, stacks) and the manifest (syscalls, descriptors); with "
	     "CPython, GIL waits and threading.Lock/RLock waits are links too (GIL waiter, GIL "
	     "holder, mutex owner is one chain), each step named with its Python frame",
    .thresholds = thresholds,
    .n_thresholds = 1,
    .recommendations = recs,
    .match = match,
};
