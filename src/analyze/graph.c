/* SPDX-License-Identifier: MIT */
/*
 * From decoded waits to the wait graph. Edges go from a waiting thread to the thread that can
 * release it (a mutex's owner, a joined thread, a rwlock's writer) or to the processes that can
 * (the children it waits for; the processes holding the other end of the pipe or unix socket it
 * reads or writes; the process at the other end of a TCP connection on this machine).
 */
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

void analysis_add_edge(struct athread *from, enum edge_kind kind, struct athread *to_thread,
		       struct aprocess *to_proc, const char *text)
{
	size_t cap = from->n_edges;
	if (grow_array((void **)&from->edges, &cap, from->n_edges + 1, sizeof(*from->edges)))
		return;
	struct edge *e = &from->edges[from->n_edges++];
	e->kind = kind;
	e->from = from;
	e->to_thread = to_thread;
	e->to_proc = to_proc ? to_proc : (to_thread ? to_thread->proc : NULL);
	snprintf(e->text, sizeof(e->text), "%s", text);
}

static bool same_socket_pair(const struct osm_fd *f, const struct osm_fd *g)
{
	return f->local && f->remote && g->local && g->remote && !strcmp(f->local, g->remote) &&
	       !strcmp(f->remote, g->local) && !strcmp(f->proto, g->proto);
}

/* Edges from t, blocked on descriptor f, to the processes at the other end. */
static void fd_edges(struct analysis *a, struct athread *t, const struct osm_fd *f, bool reading)
{
	char text[200], what[160];

	describe_fd(f, what, sizeof(what));
	for (size_t i = 0; i < a->n_procs; i++) {
		struct aprocess *ap = &a->procs[i];
		bool self_end = false;
		for (size_t j = 0; j < ap->p->n_fds; j++) {
			const struct osm_fd *g = &ap->p->fds[j];
			enum edge_kind kind;

			if (!strcmp(f->type, "pipe") && !strcmp(g->type, "pipe") &&
			    g->inode == f->inode &&
			    (int)(g->flags & O_ACCMODE) == (reading ? O_WRONLY : O_RDONLY)) {
				kind = EDGE_PIPE;
			} else if (!strcmp(f->type, "socket") && !strcmp(g->type, "socket") &&
				   ((f->peer_inode && g->inode == f->peer_inode) ||
				    (!strcmp(f->proto, "tcp") && same_socket_pair(f, g)) ||
				    (!strcmp(f->proto, "tcp6") && same_socket_pair(f, g)))) {
				kind = !strcmp(f->proto, "unix") ? EDGE_UNIX : EDGE_TCP;
			} else {
				continue;
			}
			if (ap == t->proc) {
				self_end = true;
				continue;
			}
			snprintf(text, sizeof(text), "%s fd %d (%s): the other end is pid %d fd %d",
				 reading ? "reads" : "writes", f->fd, what, ap->p->pid, g->fd);
			analysis_add_edge(t, kind, NULL, ap, text);
			break; /* one edge per process */
		}
		if (self_end && !strcmp(f->type, "pipe") && reading)
			snprintf(t->wait.why, sizeof(t->wait.why),
				 "its own process holds a write end of this pipe: end of file can "
				 "never come while it does");
	}
}

void build_wait_graph(struct analysis *a)
{
	char text[200];

	for (size_t i = 0; i < a->n_procs; i++) {
		struct aprocess *ap = &a->procs[i];
		for (size_t j = 0; j < ap->n_threads; j++) {
			struct athread *t = &ap->threads[j];
			struct lock_info *w = &t->wait;
			struct athread *owner;
			const struct osm_fd *f;

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
				snprintf(text, sizeof(text), "%s", w->text);
				analysis_add_edge(t,
						  w->kind == WAIT_MUTEX	 ? EDGE_MUTEX
						  : w->kind == WAIT_JOIN ? EDGE_JOIN
									 : EDGE_RWLOCK,
						  owner, NULL, text);
				break;
			case WAIT_CHILD:
				for (size_t k = 0; k < a->n_procs; k++) {
					struct aprocess *c = &a->procs[k];
					if (c == ap || c->p->ppid != ap->p->pid)
						continue;
					if (w->child > 0 && c->p->pid != w->child)
						continue;
					snprintf(text, sizeof(text),
						 "waits for child %d (%s) to exit", c->p->pid,
						 c->p->comm);
					analysis_add_edge(t, EDGE_CHILD, NULL, c, text);
				}
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
					fd_edges(a, t, f, w->kind == WAIT_READ);
				}
				break;
			default:
				break;
			}
		}
	}
}
