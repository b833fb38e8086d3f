/* SPDX-License-Identifier: MIT */
#include <stdio.h>
#include <string.h>

#include "base/parse.h"
#include "patterns/pattern.h"

double pattern_threshold(const struct analysis *a, const struct pattern *p, const char *name)
{
	for (size_t i = 0; i < p->n_thresholds; i++)
		if (!strcmp(p->thresholds[i].name, name))
			return analysis_threshold(a, name, p->thresholds[i].def);
	return analysis_threshold(a, name, 0);
}

void thread_label(const struct athread *t, char *buf, size_t len)
{
	const struct osm_process *p = t->proc->p;
	/* A runtime's name for the thread (threading.Thread.name) says more than the OS's. */
	const char *name = t->runtime_name && t->runtime_name[0] ? t->runtime_name : t->t->name;
	char quoted[160] = "";

	if (name[0])
		snprintf(quoted, sizeof(quoted), " \"%s\"", name);
	if (t->t->tid == p->pid)
		snprintf(buf, len, "thread %d%s (main thread of pid %d %s)", t->t->tid, quoted,
			 p->pid, p->comm);
	else
		snprintf(buf, len, "thread %d%s of pid %d (%s)", t->t->tid, quoted, p->pid,
			 p->comm);
}

/* Frames keep their numbers in the whole stack (as the stack trace collection numbers them);
 * a run of frames left out is said in one line, so the numbers never seem to skip. */
static void frames_left_out(struct finding *f, size_t from, size_t to)
{
	if (to == from + 1)
		finding_line(f, "      ... frame #%zu not shown", from);
	else if (to > from)
		finding_line(f, "      ... frames #%zu-#%zu not shown", from, to - 1);
}

const char *runtime_language(const struct athread *t)
{
	for (size_t i = 0; i < t->n_frames; i++)
		if (t->frames[i].kind == FRAME_JAVA)
			return "Java";
	return "Python";
}

void finding_frames(struct finding *f, const struct athread *t, size_t max)
{
	size_t python = 0, skipped_from = 0;
	bool skipping = false;

	for (size_t i = 0; i < t->n_frames; i++) {
		const struct frame *fr = &t->frames[i];
		/* Past the native frames asked for, a runtime's frames still say where the thread
		 * stands in its program: up to as many more. */
		if (i >= max &&
		    ((fr->kind != FRAME_PYTHON && fr->kind != FRAME_JAVA) || python >= max)) {
			if (!skipping)
				skipped_from = i;
			skipping = true;
			continue;
		}
		if (skipping)
			frames_left_out(f, skipped_from, i);
		skipping = false;
		if (fr->kind == FRAME_PYTHON) {
			python++;
			finding_line(f, "      #%zu %s (python) %s:%d", i,
				     fr->function ? fr->function : "?", fr->file ? fr->file : "?",
				     fr->line);
		} else if (fr->kind == FRAME_JAVA) {
			python++;
			if (fr->line > 0)
				finding_line(f, "      #%zu %s (java) line %d", i,
					     fr->function ? fr->function : "?", fr->line);
			else
				finding_line(f, "      #%zu %s (java)", i,
					     fr->function ? fr->function : "?");
		} else if (fr->function && fr->file)
			finding_line(f, "      #%zu %s (%s) %s:%d", i, fr->function,
				     fr->module ? fr->module : "?", fr->file, fr->line);
		else if (fr->function)
			finding_line(f, "      #%zu %s+0x%llx (%s)", i, fr->function,
				     (unsigned long long)fr->offset, fr->module ? fr->module : "?");
		else
			finding_line(f, "      #%zu 0x%llx (%s)", i, (unsigned long long)fr->pc,
				     fr->module ? fr->module : "?");
	}
	if (skipping)
		frames_left_out(f, skipped_from, t->n_frames);
	if (t->unwind_error)
		finding_line(f, "      (the stack stops here: %s)", t->unwind_error);
}

const char *wait_end_class(const struct athread *t)
{
	switch (t->wait.kind) {
	case WAIT_NONE:
		return t->t->state == 'D' ? "blocked in the kernel" : "running";
	case WAIT_READ:
	case WAIT_WRITE:
	case WAIT_ACCEPT:
	case WAIT_POLL:
		return "in I/O";
	case WAIT_SLEEP:
		return "sleeping";
	case WAIT_CONDVAR:
	case WAIT_SEMAPHORE:
	case WAIT_FUTEX:
		return "an ownerless wait";
	case WAIT_MUTEX:
		if (t->wait.verdict == MUTEX_ABANDONED)
			return "a dead owner";
		if (t->wait.verdict == MUTEX_CORRUPT)
			return "a corrupt mutex";
		return "a lock with no known owner";
	case WAIT_CHILD: /* an edge: the child is in the snapshot */
		return t->n_edges ? "waiting for a child"
				  : "waiting for a child outside the snapshot";
	case WAIT_FILE_LOCK:
		return t->n_edges ? "waiting for a file lock"
				  : "waiting for a file lock held outside the snapshot";
	default:
		return t->t->state == 'D' ? "blocked in the kernel" : "another wait";
	}
}

size_t process_waiting_threads(const struct aprocess *ap, struct athread **out, size_t max)
{
	size_t n = 0;
	for (size_t i = 0; i < ap->n_threads && n < max; i++)
		if (ap->threads[i].n_edges)
			out[n++] = &ap->threads[i];
	return n;
}

/* The thread that explains what a waker does: itself, or the first thread of its process that
 * can go on (else the first one). */
const struct athread *waker_thread(const struct waker *w)
{
	if (w->thread)
		return w->thread;
	for (size_t i = 0; i < w->proc->n_threads; i++)
		if (!w->proc->threads[i].stuck)
			return &w->proc->threads[i];
	return w->proc->n_threads ? &w->proc->threads[0] : NULL;
}

const char *waker_class(const struct waker *w)
{
	const struct athread *t = waker_thread(w);
	if (!t)
		return "unknown";
	if (t->stuck)
		return t->scc ? "in a deadlock" : "stuck";
	if (t->n_edges)
		return "waits, and can still be woken";
	return wait_end_class(t);
}

void describe_waker(const struct waker *w, char *buf, size_t len)
{
	const struct athread *t = waker_thread(w);
	char who[96], fd[24] = "";

	if (w->fd >= 0)
		snprintf(fd, sizeof(fd), " fd %d", w->fd);
	if (w->thread)
		snprintf(who, sizeof(who), "thread %d \"%s\" of pid %d (%s)", w->thread->t->tid,
			 w->thread->t->name, w->proc->p->pid, w->proc->p->comm);
	else
		snprintf(who, sizeof(who), "pid %d (%s)", w->proc->p->pid, w->proc->p->comm);
	if (!t) {
		snprintf(buf, len, "%s%s, %s: no thread seen", who, fd, w->role);
		return;
	}
	if (w->thread || t->t->tid == w->proc->p->pid)
		snprintf(buf, len, "%s%s, %s: %s%s%s", who, fd, w->role, waker_class(w),
			 t->wait.text[0] ? " - " : "", t->wait.text);
	else
		snprintf(buf, len, "%s%s, %s: %s (thread %d%s%s)", who, fd, w->role, waker_class(w),
			 t->t->tid, t->wait.text[0] ? " " : "", t->wait.text);
}

json_object *waker_json(const struct waker *w)
{
	json_object *o = json_object_new_object();
	const struct athread *t = waker_thread(w);
	json_object_object_add(o, "pid", json_object_new_int(w->proc->p->pid));
	json_object_object_add(o, "tid", w->thread ? json_object_new_int(w->thread->t->tid) : NULL);
	json_object_object_add(o, "fd", w->fd >= 0 ? json_object_new_int(w->fd) : NULL);
	json_object_object_add(o, "role", json_object_new_string(w->role));
	json_object_object_add(o, "can_go_on", json_object_new_boolean(waker_can_go_on(w)));
	json_object_object_add(o, "state", json_object_new_string(waker_class(w)));
	if (t && !w->thread)
		json_object_object_add(o, "via_tid", json_object_new_int(t->t->tid));
	if (t && t->wait.text[0])
		json_object_object_add(o, "doing", json_object_new_string(t->wait.text));
	return o;
}

void finding_wakers(struct finding *f, const struct edge *e, json_object *arr)
{
	char buf[512];
	if (e->n_wakers > 1)
		finding_line(f, "      can be ended by %s of %zu:",
			     e->mode == WAIT_ALL_OF ? "all" : "any one", e->n_wakers);
	for (size_t k = 0; k < e->n_wakers; k++) {
		describe_waker(&e->wakers[k], buf, sizeof(buf));
		finding_line(f, "      %s %s", e->n_wakers > 1 ? "-" : "woken by", buf);
		if (arr)
			json_object_array_add(arr, waker_json(&e->wakers[k]));
	}
}

void finding_oldest_wait(struct finding *f, const struct athread *const *threads, size_t n)
{
	const struct athread *oldest = NULL;
	char label[160], age[32];

	for (size_t i = 0; i < n; i++)
		if (threads[i]->t->last_ran_ago_ms >= 0 &&
		    (!oldest || threads[i]->t->last_ran_ago_ms > oldest->t->last_ran_ago_ms))
			oldest = threads[i];
	if (!oldest)
		return;
	thread_label(oldest, label, sizeof(label));
	finding_line(f, "the oldest wait: %s, which last ran %s before the freeze", label,
		     format_duration_ms(oldest->t->last_ran_ago_ms, age, sizeof(age)));
	json_object_object_add(finding_ev(f), "oldest_wait_ms",
			       json_object_new_int64(oldest->t->last_ran_ago_ms));
	json_object_object_add(finding_ev(f), "oldest_wait_tid",
			       json_object_new_int(oldest->t->tid));
}

json_object *finding_wait_steps(struct finding *f, const struct wait_step *steps, size_t n,
				size_t frames)
{
	json_object *arr = json_object_new_array();
	char label[160];

	for (size_t j = 0; j < n; j++) {
		const struct wait_step *s = &steps[j];
		json_object *o = json_object_new_object(), *wakers = json_object_new_array();
		thread_label(s->t, label, sizeof(label));
		finding_tid(f, s->t->t->tid);
		finding_pid(f, s->t->proc->p->pid);
		finding_line(f, "%s", label);
		if (s->t->t->last_ran_ago_ms >= 0) {
			char age[32];
			finding_line(
			    f, "    waits on: %s (last ran %s before the freeze)", s->e->text,
			    format_duration_ms(s->t->t->last_ran_ago_ms, age, sizeof(age)));
			json_object_object_add(o, "waiting_ms",
					       json_object_new_int64(s->t->t->last_ran_ago_ms));
		} else {
			finding_line(f, "    waits on: %s", s->e->text);
		}
		finding_wakers(f, s->e, wakers);
		if (s->t->runtime_where[0])
			finding_line(f, "    in %s: %s", runtime_language(s->t),
				     s->t->runtime_where);
		finding_frames(f, s->t, frames);
		json_object_object_add(o, "tid", json_object_new_int(s->t->t->tid));
		json_object_object_add(o, "pid", json_object_new_int(s->t->proc->p->pid));
		json_object_object_add(o, "waits_on", json_object_new_string(s->e->text));
		json_object_object_add(o, "mode",
				       json_object_new_string(wait_mode_name(s->e->mode)));
		json_object_object_add(o, "wakers", wakers);
		if (s->t->runtime_where[0])
			json_object_object_add(
			    o,
			    strcmp(runtime_language(s->t), "Java") ? "python_where" : "java_where",
			    json_object_new_string(s->t->runtime_where));
		if (s->t->wait.addr)
			json_object_object_add(o, "address",
					       json_object_new_int64((int64_t)s->t->wait.addr));
		json_object_array_add(arr, o);
	}
	{
		const struct athread *ts[64];
		size_t k = 0;
		for (size_t j = 0; j < n && k < 64; j++)
			ts[k++] = steps[j].t;
		finding_oldest_wait(f, ts, k);
	}
	return arr;
}

void finding_process_activity(struct finding *f, const struct aprocess *ap, const char *what)
{
	for (size_t k = 0; k < ap->n_threads; k++) {
		const struct athread *t = &ap->threads[k];
		finding_line(f, "%s thread %d: %s", what, t->t->tid,
			     t->wait.text[0] ? t->wait.text : wait_end_class(t));
		finding_frames(f, t, 5);
	}
}

size_t process_siblings(const struct analysis *a, size_t i, process_same_fn same, bool *done,
			struct finding *f)
{
	const struct osm_process *p = a->procs[i].p;
	size_t n = 0;

	for (size_t j = i; j < a->n_procs; j++) {
		const struct osm_process *q = a->procs[j].p;
		if (q->ppid != p->ppid || !same(p, q))
			continue;
		n++;
		if (f) {
			done[j] = true;
			finding_pid(f, q->pid);
		}
	}
	return n;
}
