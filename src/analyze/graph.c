/* SPDX-License-Identifier: MIT */
/*
 * From decoded waits to the wait graph. Each waiting thread gets one edge per wait, naming
 * every possible waker and how they combine: "this one" for a mutex's owner, a joined thread, a
 * rwlock's writer, a child waited for by pid, a file lock's holder; "any of" for the children of
 * wait(-1), the processes holding a write end of the pipe it reads (a read end for a write),
 * and the processes holding the other end of the socket it reads or writes (on this machine).
 * Its own process counts too: another of its threads may write. Holders outside the snapshot
 * cannot be seen: a wait with no waker in the snapshot gets no edge (the chain ends there).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analyze/analysis.h"
#include "analyze/locks.h"
#include "arch.h"
#include "base/util.h"
#include "snapshot/describe.h"

void decode_waits(struct analysis *a)
{
	for (size_t i = 0; i < a->n_procs; i++) {
		struct aprocess *ap = &a->procs[i];
		pid_t *tids = calloc(ap->n_threads + 1, sizeof(pid_t));
		if (!tids)
			return;
		for (size_t j = 0; j < ap->n_threads; j++)
			tids[j] = ap->threads[j].t->tid;
		for (size_t j = 0; j < ap->n_threads; j++) {
			struct athread *t = &ap->threads[j];
			const char *fns[16];
			struct lock_input in = {0};

			if (t->t->syscall_nr < 0)
				continue;
			in.syscall = arch_syscall_name(t->t->syscall_nr);
			memcpy(in.args, t->t->syscall_args, sizeof(in.args));
			for (size_t k = 0; k < t->n_frames && k < ARRAY_SIZE(fns); k++)
				fns[in.n_functions++] = t->frames[k].function;
			in.functions = fns;
			in.syscall = lock_resolve_syscall(&in);
			in.tids = tids;
			in.n_tids = ap->n_threads;
			if (in.syscall && !strcmp(in.syscall, "futex") && ap->has_core) {
				in.have_words = aprocess_read(ap, in.args[0], in.words,
							      sizeof(in.words)) == sizeof(in.words);
				in.have_before =
				    in.args[0] >= 16 &&
				    aprocess_read(ap, in.args[0] - 16, in.before,
						  sizeof(in.before)) == sizeof(in.before);
			}
			lock_decode(&in, &t->wait);
		}
		free(tids);
	}
}

const char *wait_mode_name(enum wait_mode m)
{
	return m == WAIT_ANY_OF ? "any-of" : m == WAIT_ALL_OF ? "all-of" : "this-one";
}

struct edge *graph_add_wait(struct athread *from, enum edge_kind kind, enum wait_mode mode,
			    const char *text)
{
	size_t cap = from->n_edges;
	if (grow_array((void **)&from->edges, &cap, from->n_edges + 1, sizeof(*from->edges)))
		return NULL;
	struct edge *e = &from->edges[from->n_edges++];
	memset(e, 0, sizeof(*e));
	e->kind = kind;
	e->mode = mode;
	e->from = from;
	snprintf(e->text, sizeof(e->text), "%s", text ? text : "");
	return e;
}

void graph_free_edges(struct athread *t)
{
	for (size_t i = 0; i < t->n_edges; i++)
		free(t->edges[i].wakers);
	free(t->edges);
	t->edges = NULL;
	t->n_edges = 0;
}

int edge_add_waker(struct edge *e, struct athread *thread, struct aprocess *proc, int fd,
		   const char *role)
{
	if (!proc && thread)
		proc = thread->proc;
	if (!proc)
		return -EINVAL;
	if (grow_array((void **)&e->wakers, &e->cap_wakers, e->n_wakers + 1, sizeof(*e->wakers)))
		return -ENOMEM;
	struct waker *w = &e->wakers[e->n_wakers++];
	w->thread = thread;
	w->proc = proc;
	w->fd = fd;
	snprintf(w->role, sizeof(w->role), "%s", role ? role : "");
	return 0;
}

void analysis_add_edge(struct athread *from, enum edge_kind kind, struct athread *to_thread,
		       struct aprocess *to_proc, const char *text)
{
	struct edge *e = graph_add_wait(from, kind, WAIT_THIS_ONE, text);
	if (e && (to_thread || to_proc))
		edge_add_waker(e, to_thread, to_proc, -1,
			       kind == EDGE_GIL ? "holds the GIL" : "owner");
}

/* Append ", any of: pid 1 fd 4, pid 2 fd 4" (the wakers) to the edge's text, as room allows. */
static void name_wakers(struct edge *e, const char *what)
{
	size_t len = strlen(e->text);
	int n;

	if (!e->n_wakers)
		return;
	n = snprintf(e->text + len, sizeof(e->text) - len, ": %s%s", what,
		     e->n_wakers > 1 ? (e->mode == WAIT_ALL_OF ? " (all of)" : " (any of)") : "");
	for (size_t i = 0; n > 0 && i < e->n_wakers; i++) {
		const struct waker *w = &e->wakers[i];
		len = strlen(e->text);
		if (len + 40 >= sizeof(e->text)) {
			snprintf(e->text + len, sizeof(e->text) - len, ", and %zu more",
				 e->n_wakers - i);
			break;
		}
		if (w->fd >= 0)
			n = snprintf(e->text + len, sizeof(e->text) - len, "%s pid %d fd %d",
				     i ? "," : "", w->proc->p->pid, w->fd);
		else
			n = snprintf(e->text + len, sizeof(e->text) - len, "%s pid %d (%s)",
				     i ? "," : "", w->proc->p->pid, w->proc->p->comm);
	}
}

static bool same_socket_pair(const struct osm_fd *f, const struct osm_fd *g)
{
	return f->local && f->remote && g->local && g->remote && !strcmp(f->local, g->remote) &&
	       !strcmp(f->remote, g->local) && !strcmp(f->proto, g->proto);
}

/* The wait of t, blocked on descriptor f: every process holding the other end may end it
 * (its own process too, through another thread). */
static void fd_edges(struct analysis *a, struct athread *t, const struct osm_fd *f, bool reading)
{
	char text[200], what[160];
	bool pipe = !strcmp(f->type, "pipe"), sock = !strcmp(f->type, "socket");
	enum edge_kind kind = pipe ? EDGE_PIPE : !strcmp(f->proto, "unix") ? EDGE_UNIX : EDGE_TCP;
	struct edge *e = NULL;

	if (!pipe && !sock)
		return;
	describe_fd(f, what, sizeof(what));
	snprintf(text, sizeof(text), "%s fd %d (%s)", reading ? "reads" : "writes", f->fd, what);
	for (size_t i = 0; i < a->n_procs; i++) {
		struct aprocess *ap = &a->procs[i];
		for (size_t j = 0; j < ap->p->n_fds; j++) {
			const struct osm_fd *g = &ap->p->fds[j];
			const char *role;

			if (pipe && !strcmp(g->type, "pipe") && g->inode == f->inode &&
			    (int)(g->flags & O_ACCMODE) == (reading ? O_WRONLY : O_RDONLY)) {
				role = reading ? "holds a write end" : "holds a read end";
			} else if (sock && !strcmp(g->type, "socket") &&
				   ((f->peer_inode && g->inode == f->peer_inode) ||
				    ((!strcmp(f->proto, "tcp") || !strcmp(f->proto, "tcp6")) &&
				     same_socket_pair(f, g)))) {
				role = "holds the other end";
			} else {
				continue;
			}
			if (!e && !(e = graph_add_wait(t, kind, WAIT_ANY_OF, text)))
				return;
			if (edge_add_waker(e, NULL, ap, g->fd,
					   ap == t->proc ? "its own process" : role) < 0)
				return;
			break; /* one waker per process */
		}
	}
	/* A TCP connection not accepted yet: the process listening on its port will end it. */
	if (!e && sock && f->remote && strcmp(f->proto, "unix")) {
		const char *port = strrchr(f->remote, ':');
		for (size_t i = 0; port && i < a->n_procs; i++) {
			struct aprocess *ap = &a->procs[i];
			for (size_t j = 0; j < ap->p->n_fds; j++) {
				const struct osm_fd *g = &ap->p->fds[j];
				const char *gp = g->local ? strrchr(g->local, ':') : NULL;
				if (strcmp(g->type, "socket") || strcmp(g->sock_state, "listen") ||
				    strcmp(g->proto, f->proto) || !gp || strcmp(gp, port))
					continue;
				if (!e && !(e = graph_add_wait(t, kind, WAIT_ANY_OF, text)))
					return;
				if (edge_add_waker(e, NULL, ap, g->fd,
						   "listens: the connection is not accepted yet") <
				    0)
					return;
				break;
			}
		}
	}
	if (!e)
		return;
	if (e->n_wakers == 1 && e->wakers[0].proc == t->proc && pipe && reading)
		snprintf(t->wait.why, sizeof(t->wait.why),
			 "only its own process holds a write end of this pipe: end of file can "
			 "never come while it does");
	name_wakers(e, reading && pipe ? "written by" : pipe ? "read by" : "the other end is");
}

static void child_edges(struct analysis *a, struct athread *t)
{
	struct aprocess *ap = t->proc;
	struct lock_info *w = &t->wait;
	struct edge *e = NULL;
	char text[200];

	for (size_t k = 0; k < a->n_procs; k++) {
		struct aprocess *c = &a->procs[k];
		if (c == ap || c->p->ppid != ap->p->pid)
			continue;
		if (w->child > 0 && c->p->pid != w->child)
			continue;
		if (!e) {
			if (w->child > 0)
				snprintf(text, sizeof(text), "waits for child %d (%s) to exit",
					 c->p->pid, c->p->comm);
			else
				snprintf(text, sizeof(text), "waits for any child to exit");
			e = graph_add_wait(t, EDGE_CHILD,
					   w->child > 0 ? WAIT_THIS_ONE : WAIT_ANY_OF, text);
			if (!e)
				return;
		}
		if (edge_add_waker(e, NULL, c, -1, "child") < 0)
			return;
	}
	if (e && w->child <= 0)
		name_wakers(e, "children");
}

static void lock_range(const struct osm_file_lock *l, char *buf, size_t len)
{
	if (l->end < 0)
		snprintf(buf, len, "%s %s, bytes %llu-EOF", l->type, l->access,
			 (unsigned long long)l->start);
	else
		snprintf(buf, len, "%s %s, bytes %llu-%lld", l->type, l->access,
			 (unsigned long long)l->start, (long long)l->end);
}

/* A file lock wait: the "->" line of /proc/locks for this process and file names the lock it
 * waits for; the lines of that lock without "->" are its holders (an OFD lock names no pid:
 * every process with the file open may hold it). */
static void file_lock_edges(struct analysis *a, struct athread *t)
{
	const struct osm_snapshot *s = a->snap;
	const struct osm_fd *f = process_find_fd(t->proc->p, t->wait.fd);
	const struct osm_file_lock *wl = NULL;
	char text[320], range[64];
	struct edge *e = NULL;
	size_t holders = 0;

	if (!f || !f->inode)
		return;
	for (size_t i = 0; i < s->n_file_locks && !wl; i++) {
		const struct osm_file_lock *l = &s->file_locks[i];
		if (l->waiting && l->inode == f->inode &&
		    (l->pid == t->proc->p->pid || l->pid == -1))
			wl = l;
	}
	if (!wl)
		return;
	lock_range(wl, range, sizeof(range));
	snprintf(t->wait.text, sizeof(t->wait.text), "waits for a file lock (%s) on %s (fd %d)",
		 range,
		 wl->path    ? wl->path
		 : f->target ? f->target
			     : "?",
		 f->fd);
	for (size_t i = 0; i < s->n_file_locks; i++)
		holders += !s->file_locks[i].waiting && s->file_locks[i].id == wl->id;
	snprintf(text, sizeof(text), "%s", t->wait.text);
	for (size_t i = 0; i < s->n_file_locks; i++) {
		const struct osm_file_lock *l = &s->file_locks[i];
		enum wait_mode mode;
		if (l->waiting || l->id != wl->id)
			continue;
		lock_range(l, range, sizeof(range));
		/* Held through an open file description: any process with a descriptor on it can
		 * release it (flock(LOCK_UN), or the last close). */
		mode = holders > 1 ? WAIT_ALL_OF : l->n_holders > 1 ? WAIT_ANY_OF : WAIT_THIS_ONE;
		for (size_t h = 0; h < l->n_holders; h++) {
			struct aprocess *ap = analysis_find_process(a, l->holders[h].pid);
			char role[48];
			if (!ap || (ap == t->proc && l->holders[h].fd == f->fd))
				continue;
			if (!e && !(e = graph_add_wait(t, EDGE_FILE_LOCK, mode, text)))
				return;
			snprintf(role, sizeof(role), "holds it (%s)", range);
			if (edge_add_waker(e, NULL, ap, l->holders[h].fd, role) < 0)
				return;
		}
		if (l->n_holders)
			continue;
		for (size_t k = 0; k < a->n_procs; k++) {
			struct aprocess *ap = &a->procs[k];
			int fd = -1;
			char role[48];
			for (size_t j = 0; j < ap->p->n_fds && fd < 0; j++)
				if (ap->p->fds[j].inode == l->inode &&
				    !strcmp(ap->p->fds[j].type, "file"))
					fd = ap->p->fds[j].fd;
			if (l->pid > 0 ? ap->p->pid != l->pid : fd < 0 || ap == t->proc)
				continue;
			if (!e && !(e = graph_add_wait(t, EDGE_FILE_LOCK,
						       holders > 1  ? WAIT_ALL_OF
						       : l->pid > 0 ? WAIT_THIS_ONE
								    : WAIT_ANY_OF,
						       text)))
				return;
			snprintf(role, sizeof(role), "holds it (%s)", range);
			if (edge_add_waker(e, NULL, ap, fd, role) < 0)
				return;
		}
	}
	if (e)
		name_wakers(e, "held by");
}

/* A thread reading a pipe saw it empty, one writing it saw it full: both at one instant is
 * impossible, so when the snapshot holds a reader and a writer of the same pipe both "waiting",
 * one of them was copying data at the freeze (a `yes | head` pipeline). Neither is a wait. */
static bool pipe_flows_both_ways(const struct analysis *a, const struct athread *t,
				 const struct osm_fd *f)
{
	if (strcmp(f->type, "pipe"))
		return false;
	for (size_t i = 0; i < a->n_procs; i++) {
		const struct aprocess *ap = &a->procs[i];
		for (size_t j = 0; j < ap->n_threads; j++) {
			const struct athread *u = &ap->threads[j];
			const struct osm_fd *g;
			if (u == t || (u->wait.kind != WAIT_READ && u->wait.kind != WAIT_WRITE) ||
			    u->wait.kind == t->wait.kind)
				continue;
			g = process_find_fd(ap->p, u->wait.fd);
			if (g && !strcmp(g->type, "pipe") && g->inode == f->inode)
				return true;
		}
	}
	return false;
}

void build_wait_graph(struct analysis *a)
{
	for (size_t i = 0; i < a->n_procs; i++) {
		struct aprocess *ap = &a->procs[i];
		for (size_t j = 0; j < ap->n_threads; j++) {
			struct athread *t = &ap->threads[j];
			struct lock_info *w = &t->wait;
			struct athread *owner;
			const struct osm_fd *f;
			struct edge *e;

			switch (w->kind) {
			case WAIT_MUTEX:
			case WAIT_RWLOCK:
			case WAIT_JOIN:
				if (w->owner <= 0 || w->verdict == MUTEX_ABANDONED ||
				    w->verdict == MUTEX_CORRUPT)
					break;
				owner = analysis_find_thread(a, w->owner);
				if (!owner || owner == t)
					break;
				e = graph_add_wait(t,
						   w->kind == WAIT_MUTEX  ? EDGE_MUTEX
						   : w->kind == WAIT_JOIN ? EDGE_JOIN
									  : EDGE_RWLOCK,
						   WAIT_THIS_ONE, w->text);
				if (e)
					edge_add_waker(e, owner, NULL, -1,
						       w->kind == WAIT_JOIN    ? "the joined thread"
						       : w->kind == WAIT_MUTEX ? "owner"
									       : "writer");
				break;
			case WAIT_CHILD:
				child_edges(a, t);
				break;
			case WAIT_FILE_LOCK:
				file_lock_edges(a, t);
				break;
			case WAIT_READ:
			case WAIT_WRITE:
				f = process_find_fd(ap->p, w->fd);
				if (f) {
					char what[160];
					describe_fd(f, what, sizeof(what));
					snprintf(w->text, sizeof(w->text), "%s fd %d: %s",
						 w->kind == WAIT_READ ? "reads" : "writes", w->fd,
						 what);
					/* Running at the freeze (state R): the call was moving
					 * data, not waiting for it (redis and redis-benchmark
					 * each writing its end of one connection). */
					if (t->t->state != 'R' && !pipe_flows_both_ways(a, t, f))
						fd_edges(a, t, f, w->kind == WAIT_READ);
				}
				break;
			default:
				break;
			}
		}
	}
}
