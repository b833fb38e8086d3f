/* SPDX-License-Identifier: MIT */
/* gil-held-in-blocking-call: a CPython thread holds the GIL inside a C call (outside the
 * interpreter) that blocks in the kernel or keeps running, while other threads wait for the
 * GIL: every Python thread of the process is stopped behind that one call. */
#include <stdio.h>
#include <string.h>

#include "patterns/pattern.h"

static const char *const recs[] = {
    "A C extension must release the GIL around blocking or long work "
    "(Py_BEGIN_ALLOW_THREADS ... Py_END_ALLOW_THREADS).",
    "With ctypes, call blocking functions through ctypes.CDLL, not PyDLL or ctypes.pythonapi: "
    "only CDLL releases the GIL during the call.",
    "Move the blocking call out of the threads that need the interpreter: a separate "
    "process, or an I/O API that does not hold the GIL.",
    NULL,
};

static bool interpreter_module(const char *m)
{
	return m && (!strncmp(m, "python3", 7) || !strncmp(m, "libpython3", 10));
}

static bool glue_module(const char *m)
{
	return m && (!strncmp(m, "libffi", 6) || !strncmp(m, "_ctypes", 7));
}

/* The C library and its kin, which the interpreter itself calls all the time (a list grown with
 * memmove, a deque with malloc): the holder running in one of them is the interpreter at work. */
static bool runtime_module(const char *m)
{
	static const char *const libs[] = {"libc.so",	    "libm.so",	   "ld-linux",
					   "libpthread.so", "libgcc_s.so", NULL};
	for (size_t i = 0; m && libs[i]; i++)
		if (!strncmp(m, libs[i], strlen(libs[i])))
			return true;
	return false;
}

/* The C function the thread called from Python: the outermost frame of its innermost run of
 * native frames outside the interpreter (and outside ctypes' glue). */
static const struct frame *c_call(const struct athread *t, char *buf, size_t len)
{
	const struct frame *last = NULL;
	for (size_t i = 0; i < t->n_frames; i++) {
		const struct frame *f = &t->frames[i];
		if (f->kind != FRAME_NATIVE || interpreter_module(f->module) ||
		    glue_module(f->module))
			break;
		last = f;
	}
	if (!last)
		return NULL;
	snprintf(buf, len, "%s, in %s", last->function ? last->function : "?",
		 last->module ? last->module : "?");
	return last;
}

/*
 * Whether the holder's C call stops the others: it blocks in the kernel, or it runs long. A busy
 * threaded program always has a holder at work and threads waiting for it (they take turns every
 * 5 ms), so a running holder counts only when its call is not the interpreter's own work in the
 * C library, and it ran through the whole sample without once giving up the CPU.
 */
static bool stops_the_others(const struct analysis *a, const struct athread *holder,
			     const struct frame *call)
{
	/* Blocked: asleep, on a lock, on I/O. A call that only passes through the kernel (the
	 * mmap under a malloc) is as good as running. */
	if (holder->wait.kind != WAIT_NONE && holder->wait.kind != WAIT_OTHER)
		return true;
	return !runtime_module(call->module) && a->snap->sample_ms &&
	       holder->t->switches_in_sample == 0;
}

static void match(const struct analysis *a, const struct pattern *self, struct findings *out)
{
	for (size_t i = 0; i < a->n_procs; i++) {
		const struct aprocess *ap = &a->procs[i];
		const struct athread *holder = NULL;
		size_t waiters = 0;
		char call[160], label[160];

		for (size_t j = 0; j < ap->n_threads; j++) {
			if (ap->threads[j].holds_gil)
				holder = &ap->threads[j];
			waiters += ap->threads[j].waits_gil;
		}
		const struct frame *cf =
		    holder && waiters ? c_call(holder, call, sizeof(call)) : NULL;
		if (!cf || !stops_the_others(a, holder, cf))
			continue;
		bool blocked = holder->wait.kind != WAIT_NONE && holder->wait.kind != WAIT_OTHER;
		thread_label(holder, label, sizeof(label));
		struct finding *f = finding_new(
		    out, self, SEV_WARNING,
		    "The GIL is held by %s in a %sC call (%s)%s; %zu thread%s wait%s for it.",
		    label, blocked ? "blocking " : "", call,
		    blocked && holder->t->switches_in_sample == 0 && a->snap->sample_ms
			? " for the whole sample"
			: "",
		    waiters, waiters == 1 ? "" : "s", waiters == 1 ? "s" : "");
		if (!f)
			return;
		finding_pid(f, ap->p->pid);
		finding_tid(f, holder->t->tid);
		finding_line(f, "holder: %s, %s%s%s", label, wait_end_class(holder),
			     holder->wait.text[0] ? ": " : "", holder->wait.text);
		finding_frames(f, holder, 8);
		for (size_t j = 0; j < ap->n_threads; j++)
			if (ap->threads[j].waits_gil) {
				thread_label(&ap->threads[j], label, sizeof(label));
				finding_tid(f, ap->threads[j].t->tid);
				finding_line(f, "waits for the GIL: %s%s%s", label,
					     ap->threads[j].runtime_where[0] ? " in " : "",
					     ap->threads[j].runtime_where);
			}
		json_object_object_add(finding_ev(f), "holder",
				       json_object_new_int(holder->t->tid));
		json_object_object_add(finding_ev(f), "waiters", json_object_new_int((int)waiters));
		json_object_object_add(finding_ev(f), "c_call", json_object_new_string(call));
	}
}

const struct pattern pattern_gil_held = {
    .id = "gil-held-in-blocking-call",
    .title = "GIL held in a C call",
    .severity = SEV_WARNING,
    .description = "A CPython thread holds the GIL inside a C call that blocks (or runs long: "
		   "outside the C library, on the CPU through the whole sample) while other Python "
		   "threads of its process wait for the GIL.",
    .needs = "cores (CPython's GIL and thread states; the holder's native stack) and the "
	     "manifest (syscalls)",
    .thresholds = NULL,
    .n_thresholds = 0,
    .recommendations = recs,
    .match = match,
};
