/* SPDX-License-Identifier: MIT */
/*
 * --hang SECONDS: a wait cycle among the targets, or a thread blocked on an object someone owns
 * (a mutex, a file lock), that has not run for SECONDS. Read from /proc while the targets run:
 * nothing is frozen or traced to decide.
 *
 * At every tick the sampler reads each thread's task/TID/schedstat (time on a CPU, times put on
 * a CPU): when neither changed, the thread did not run since the previous tick. The first time a
 * thread is seen still, its sched file's se.exec_start (calibrated per CPU, proc/schedclock.h)
 * says when it last ran, which may be long before the watch started. A thread still for SECONDS
 * has what it waits on read once (a thread that has not run cannot have changed it):
 *   futex FUTEX_WAIT with value 2 on a word that reads 2 with an owner TID at +8 of one of its
 *     process's threads: a glibc mutex (normal kinds), owned by that thread;
 *   futex FUTEX_WAIT whose value holds a TID with FUTEX_WAITERS, or FUTEX_LOCK_PI: a robust or
 *     PI mutex, owned by the TID in the word;
 *   futex FUTEX_WAIT whose value is a thread's TID and the word holds it: pthread_join;
 *   wait4/waitid: its child, or all its children among the targets;
 *   read/readv/pread64 of a pipe: every target holding the pipe's write end;
 *   flock or fcntl F_SETLKW/F_OFD_SETLKW: the holder of the lock it waits behind in /proc/locks.
 * The lock word is read with pread on /proc/PID/mem, which does not stop the process.
 * Condition variables, semaphores, epoll, poll, sleeps and accept have no owner: a thread idle in
 * them is healthy and leads nowhere. A wait that leads to a process continues into it only when
 * every one of its threads has been still for SECONDS too; then into those of its threads that
 * wait on something. A cycle fires; so does a thread still for SECONDS on an owned object (a
 * mutex or a file lock) outside any cycle.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/fs.h"
#include "base/log.h"
#include "base/parse.h"
#include "base/util.h"
#include "proc/locks.h"
#include "proc/procfs.h"
#include "watch/watch.h"

enum hang_kind { HW_UNREAD, HW_NONE, HW_MUTEX, HW_JOIN, HW_CHILD, HW_PIPE, HW_FLOCK };

static const char *const kind_names[] = {"?",	  "nothing", "mutex",	 "join",
					 "child", "pipe",    "file lock"};

#define FUTEX_WAIT     0
#define FUTEX_LOCK_PI  6
#define FUTEX_LOCK_PI2 13
#define FUTEX_CMD_MASK (~(128 | 256))
#define FUTEX_WAITERS  0x80000000u
#define FUTEX_TID_MASK 0x3fffffffu
#define SYS_READ       0
#define SYS_PREAD64    17
#define SYS_READV      19
#define SYS_WAIT4      61
#define SYS_FCNTL      72
#define SYS_FLOCK      73
#define SYS_FUTEX      202
#define SYS_WAITID     247
#define F_SETLKW_      7
#define F_OFD_SETLKW_  38
#define MAX_CYCLE      64

static int parse(struct watch_cond *c, const char *arg, char *err, size_t errlen)
{
	char t[32];
	if (parse_duration_ns(arg, &c->hold_ns) < 0) {
		snprintf(err, errlen, "needs a number of seconds, not '%s'", arg);
		return -EINVAL;
	}
	c->threshold = (double)c->hold_ns / 1e9;
	c->unit = "s";
	watch_format_seconds(c->hold_ns, t, sizeof(t));
	snprintf(c->text, sizeof(c->text), "hang for %s", t);
	return 0;
}

static bool is_thread_of(const struct wproc *p, pid_t tid)
{
	char path[32];
	snprintf(path, sizeof(path), "task/%d", tid);
	return tid > 0 && faccessat(p->ref.procfd, path, F_OK, 0) == 0;
}

static bool read_words(struct wproc *p, uint64_t addr, uint32_t *w, size_t n)
{
	if (p->memfd < 0) {
		p->memfd = openat(p->ref.procfd, "mem", O_RDONLY | O_CLOEXEC);
		if (p->memfd < 0) {
			if (!(p->warned & (1u << 30)))
				log_warn("cannot read the memory of pid %d (%s): %s; its lock "
					 "owners stay unknown",
					 p->pid, p->comm, strerror(errno));
			p->warned |= 1u << 30;
			return false;
		}
	}
	return pread(p->memfd, w, n * 4, (off_t)addr) == (ssize_t)(n * 4);
}

static void add_to(struct wthread *t, pid_t pid)
{
	for (size_t i = 0; i < t->n_hto; i++)
		if (t->hto[i] == pid)
			return;
	if (t->n_hto < ARRAY_SIZE(t->hto))
		t->hto[t->n_hto++] = pid;
}

/* The pipe inode behind fd of process p, or 0. */
static uint64_t pipe_inode(const struct wproc *p, pid_t tid, int fd)
{
	char path[64], link[64];
	unsigned long long ino;
	ssize_t n;

	snprintf(path, sizeof(path), "task/%d/fd/%d", tid, fd);
	n = readlinkat(p->ref.procfd, path, link, sizeof(link) - 1);
	if (n <= 0)
		return 0;
	link[n] = 0;
	return sscanf(link, "pipe:[%llu]", &ino) == 1 ? ino : 0;
}

/* Which targets hold a write end of which pipe: one scan of every target's descriptors, made
 * when a still reader needs it and kept PIPE_TABLE_TTL_NS (a reader whose writers changed has
 * been woken, or will be re-read once the table is renewed). */
#define PIPE_TABLE_TTL_NS (10ull * 1000000000ull)
#define PIPE_TABLE_MAX	  262144

struct pipe_end {
	uint64_t ino;
	pid_t pid;
};

static struct {
	struct pipe_end *v;
	size_t n, cap;
	uint64_t built;
} pipes;

static void pipe_table_build(struct watch *w, uint64_t now)
{
	pipes.n = 0;
	pipes.built = now;
	for (size_t i = 0; i < w->n_procs; i++) {
		struct wproc *q = w->procs[i];
		_cleanup_closedir_ DIR *d = NULL;
		struct dirent *de;
		int dfd =
		    q->gone ? -1 : openat(q->ref.procfd, "fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		size_t seen = 0;

		if (dfd < 0 || !(d = fdopendir(dfd))) {
			if (dfd >= 0)
				close(dfd);
			continue;
		}
		while ((de = readdir(d)) && seen++ < 65536 && pipes.n < PIPE_TABLE_MAX) {
			char link[64], path[300];
			_cleanup_free_ char *info = NULL;
			unsigned long long ino;
			const char *fl;
			ssize_t n;
			if (de->d_name[0] == '.')
				continue;
			n = readlinkat(dirfd(d), de->d_name, link, sizeof(link) - 1);
			if (n <= 0)
				continue;
			link[n] = 0;
			if (sscanf(link, "pipe:[%llu]", &ino) != 1)
				continue;
			snprintf(path, sizeof(path), "fdinfo/%s", de->d_name);
			if (read_file_at(q->ref.procfd, path, &info, NULL) < 0 ||
			    !(fl = strstr(info, "flags:")) ||
			    (strtoul(fl + 6, NULL, 8) & O_ACCMODE) == O_RDONLY)
				continue;
			if (grow_array((void **)&pipes.v, &pipes.cap, pipes.n + 1,
				       sizeof(*pipes.v)))
				return;
			pipes.v[pipes.n++] = (struct pipe_end){ino, q->pid};
		}
	}
}

/* Targets holding a write end of pipe ino. */
static void pipe_writers(struct watch *w, uint64_t ino, struct wthread *t, uint64_t now)
{
	if (!pipes.built || now - pipes.built > PIPE_TABLE_TTL_NS)
		pipe_table_build(w, now);
	for (size_t i = 0; i < pipes.n; i++)
		if (pipes.v[i].ino == ino)
			add_to(t, pipes.v[i].pid);
}

/* Whether target q holds lock l through one of its descriptors (fdinfo's "lock:" lines). */
static bool holds_lock(struct wproc *q, const struct osm_file_lock *l)
{
	_cleanup_closedir_ DIR *d = NULL;
	struct dirent *de;
	int dfd =
	    q->gone ? -1 : openat(q->ref.procfd, "fdinfo", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	size_t seen = 0;

	if (dfd < 0 || !(d = fdopendir(dfd))) {
		if (dfd >= 0)
			close(dfd);
		return false;
	}
	while ((de = readdir(d)) && seen++ < 65536) {
		_cleanup_free_ char *info = NULL;
		_cleanup_free_ struct osm_file_lock *v = NULL;
		size_t n = 0;
		if (de->d_name[0] == '.' || read_file_at(dirfd(d), de->d_name, &info, NULL) < 0 ||
		    !strstr(info, "lock:") || proc_fd_locks_parse(info, &v, &n) < 0)
			continue;
		for (size_t i = 0; i < n; i++)
			if (file_lock_same(&v[i], l))
				return true;
	}
	return false;
}

/* The holders of the lock pid waits behind, from /proc/locks (a "N: -> FLOCK ..." line waits
 * for the lock of id N): the targets whose descriptors have it (a flock belongs to an open file
 * description, shared by every process with a descriptor on it; the pid /proc/locks gives took
 * it and may have exited), else that pid. Returns how many were added to t. */
static size_t lock_holders(struct watch *w, pid_t pid, struct wthread *t)
{
	_cleanup_free_ char *text = NULL;
	_cleanup_free_ struct osm_file_lock *v = NULL;
	const struct osm_file_lock *wl = NULL;
	size_t n = 0, added = 0;

	if (read_file_at(AT_FDCWD, "/proc/locks", &text, NULL) < 0 ||
	    proc_locks_parse(text, &v, &n) < 0)
		return 0;
	for (size_t i = 0; i < n && !wl; i++)
		if (v[i].waiting && v[i].pid == pid)
			wl = &v[i];
	for (size_t i = 0; wl && i < n; i++) {
		bool found = false;
		if (v[i].waiting || v[i].id != wl->id)
			continue;
		for (size_t k = 0; k < w->n_procs; k++)
			if (w->procs[k]->pid != pid && holds_lock(w->procs[k], &v[i])) {
				add_to(t, w->procs[k]->pid);
				found = true;
				added++;
			}
		if (!found && v[i].pid > 0 && v[i].pid != pid) {
			add_to(t, v[i].pid);
			added++;
		}
	}
	return added;
}

/* What a still thread waits on (hkind, hto), read once per stillness. */
static void classify(struct watch *w, struct wproc *p, struct wthread *t, uint64_t now)
{
	char path[64], buf[256];
	unsigned long long nr, a[6];
	ssize_t n;
	int fd;

	t->hkind = HW_NONE;
	t->n_hto = 0;
	t->hto_thread = false;
	snprintf(path, sizeof(path), "task/%d/syscall", t->tid);
	fd = openat(p->ref.procfd, path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return;
	buf[n] = 0;
	if (sscanf(buf, "%llu %llx %llx %llx %llx %llx %llx", &nr, &a[0], &a[1], &a[2], &a[3],
		   &a[4], &a[5]) != 7)
		return; /* "running", or -1: not in a syscall */
	switch (nr) {
	case SYS_FUTEX: {
		unsigned op = (unsigned)a[1] & FUTEX_CMD_MASK;
		uint32_t val = (uint32_t)a[2], words[4];
		if (!read_words(p, a[0], words, 4))
			return;
		t->haddr = a[0];
		if (op == FUTEX_LOCK_PI || op == FUTEX_LOCK_PI2 ||
		    (op == FUTEX_WAIT && (val & FUTEX_WAITERS) && words[0] == val)) {
			pid_t owner = (pid_t)(words[0] & FUTEX_TID_MASK);
			if (is_thread_of(p, owner) && owner != t->tid) {
				t->hkind = HW_MUTEX;
				t->hto_thread = true;
				add_to(t, owner);
			}
		} else if (op == FUTEX_WAIT && val == 2 && words[0] == 2) {
			pid_t owner = (pid_t)words[2];
			if (is_thread_of(p, owner) && owner != t->tid) {
				t->hkind = HW_MUTEX;
				t->hto_thread = true;
				add_to(t, owner);
			}
		} else if (op == FUTEX_WAIT && val > 2 && val == words[0] &&
			   is_thread_of(p, (pid_t)val) && (pid_t)val != t->tid) {
			t->hkind = HW_JOIN;
			t->hto_thread = true;
			add_to(t, (pid_t)val);
		}
		return;
	}
	case SYS_WAIT4:
	case SYS_WAITID: {
		pid_t child = nr == SYS_WAIT4 ? (pid_t)(int)a[0] : a[0] == 1 ? (pid_t)a[1] : -1;
		t->hkind = HW_CHILD;
		for (size_t i = 0; i < w->n_procs; i++) {
			struct wproc *q = w->procs[i];
			if (q->ppid == p->pid && (child <= 0 || q->pid == child))
				add_to(t, q->pid);
		}
		return;
	}
	case SYS_READ:
	case SYS_READV:
	case SYS_PREAD64: {
		uint64_t ino = pipe_inode(p, t->tid, (int)a[0]);
		if (!ino)
			return;
		t->hkind = HW_PIPE;
		t->haddr = ino;
		pipe_writers(w, ino, t, now);
		return;
	}
	case SYS_FCNTL:
		if (a[1] != F_SETLKW_ && a[1] != F_OFD_SETLKW_)
			return;
		/* fall through */
	case SYS_FLOCK: {
		if (lock_holders(w, p->pid, t))
			t->hkind = HW_FLOCK;
		return;
	}
	default:
		return;
	}
}

struct node {
	struct wproc *p;
	struct wthread *t;
};

static bool still_enough(const struct wthread *t, uint64_t now, uint64_t hold)
{
	return t->still_since && now - t->still_since >= hold;
}

static bool proc_all_still(const struct wproc *p, uint64_t now, uint64_t hold)
{
	if (!p->n_thr)
		return false;
	for (size_t i = 0; i < p->n_thr; i++)
		if (!still_enough(&p->thr[i], now, hold))
			return false;
	return true;
}

/* The threads a still thread's wait continues to (see the file's comment). */
static size_t next_nodes(struct watch *w, const struct node *n, uint64_t now, uint64_t hold,
			 struct node *out, size_t max)
{
	size_t k = 0;

	if (n->t->hto_thread) {
		struct wthread *o = wproc_find_thread(n->p, n->t->hto[0]);
		if (o && still_enough(o, now, hold) && o->hkind > HW_NONE && k < max)
			out[k++] = (struct node){n->p, o};
		return k;
	}
	/* A file lock's holders share it: any of them can release it, so the wait continues
	 * only when every holder is still. */
	for (size_t i = 0; n->t->hkind == HW_FLOCK && i < n->t->n_hto; i++) {
		struct wproc *q = watch_find_proc(w, n->t->hto[i]);
		if (!q || q->gone || !proc_all_still(q, now, hold))
			return 0;
	}
	for (size_t i = 0; i < n->t->n_hto; i++) {
		struct wproc *q = watch_find_proc(w, n->t->hto[i]);
		if (!q || q->gone || !proc_all_still(q, now, hold))
			continue;
		for (size_t j = 0; j < q->n_thr && k < max; j++)
			if (q->thr[j].hkind > HW_NONE)
				out[k++] = (struct node){q, &q->thr[j]};
	}
	return k;
}

/* Depth-first search for a cycle through start; path holds the nodes so far. */
static bool find_cycle(struct watch *w, struct node *path, size_t depth, uint64_t now,
		       uint64_t hold, size_t *ret_len)
{
	struct node next[16];
	size_t n;

	if (depth >= MAX_CYCLE)
		return false;
	n = next_nodes(w, &path[depth - 1], now, hold, next, ARRAY_SIZE(next));
	for (size_t i = 0; i < n; i++) {
		bool seen = false;
		if (next[i].t == path[0].t) {
			*ret_len = depth;
			return true;
		}
		for (size_t j = 0; j < depth && !seen; j++)
			seen = path[j].t == next[i].t;
		if (seen)
			continue;
		path[depth] = next[i];
		if (find_cycle(w, path, depth + 1, now, hold, ret_len))
			return true;
	}
	return false;
}

static void describe_wait(const struct node *n, char *buf, size_t len)
{
	int off = snprintf(buf, len, "%s", kind_names[n->t->hkind]);
	if (n->t->hkind == HW_MUTEX || n->t->hkind == HW_JOIN)
		snprintf(buf + off, len - (size_t)off, " 0x%llx held by thread %d",
			 (unsigned long long)n->t->haddr, n->t->hto[0]);
	else if (n->t->n_hto)
		snprintf(buf + off, len - (size_t)off, " of pid %d%s", n->t->hto[0],
			 n->t->n_hto > 1 ? " and others" : "");
}

static bool poll(struct watch_cond *c, struct watch *w, uint64_t now, struct watch_fire *ret)
{
	struct node best = {0}, path[MAX_CYCLE];
	uint64_t best_still = 0;

	/* When still threads last ran; then what the long-still ones wait on. */
	for (size_t i = 0; i < w->n_procs; i++) {
		struct wproc *p = w->procs[i];
		for (size_t j = 0; !p->gone && j < p->n_thr; j++) {
			struct wthread *t = &p->thr[j];
			if (t->ran)
				continue;
			if (!t->still_since) {
				uint64_t es;
				struct proc_stat st;
				char sp[64];
				int64_t ago = -1;
				snprintf(sp, sizeof(sp), "task/%d/stat", t->tid);
				if (schedclock_read_exec_start(p->ref.procfd, t->tid, &es) == 0 &&
				    proc_read_stat(p->ref.procfd, sp, &st) == 0)
					ago = schedclock_ago_ns(&w->clock, es, st.processor, now);
				/* Unknown: counted from the previous tick, when it last ran. */
				t->still_since = ago >= 0 && (uint64_t)ago < now
						     ? now - (uint64_t)ago
						     : w->last_tick;
				if (!t->still_since)
					t->still_since = now;
			}
			if (still_enough(t, now, c->hold_ns) && t->hkind == HW_UNREAD)
				classify(w, p, t, now);
		}
	}
	/* A cycle first: it explains the blocked threads in it. */
	for (size_t i = 0; i < w->n_procs; i++) {
		struct wproc *p = w->procs[i];
		for (size_t j = 0; j < p->n_thr; j++) {
			struct wthread *t = &p->thr[j];
			size_t len = 0;
			if (!still_enough(t, now, c->hold_ns) || t->hkind <= HW_NONE)
				continue;
			path[0] = (struct node){p, t};
			if (find_cycle(w, path, 1, now, c->hold_ns, &len)) {
				uint64_t shortest = UINT64_MAX;
				int off = snprintf(ret->detail, sizeof(ret->detail),
						   "a wait cycle of %zu threads:", len);
				for (size_t k = 0; k < len; k++) {
					char wait[96];
					shortest = MIN(shortest, now - path[k].t->still_since);
					describe_wait(&path[k], wait, sizeof(wait));
					if (off < (int)sizeof(ret->detail))
						off += snprintf(
						    ret->detail + off,
						    sizeof(ret->detail) - (size_t)off,
						    " %sthread %d of pid %d (%s) waits on %s",
						    k ? "-> " : "", path[k].t->tid, path[k].p->pid,
						    path[k].p->comm, wait);
				}
				ret->value = ret->held_for_s = (double)shortest / 1e9;
				ret->pid = p->pid;
				ret->tid = t->tid;
				return true;
			}
			if ((t->hkind == HW_MUTEX || t->hkind == HW_FLOCK) &&
			    now - t->still_since > best_still) {
				best_still = now - t->still_since;
				best = path[0];
			}
		}
	}
	if (best.t) {
		char wait[96];
		describe_wait(&best, wait, sizeof(wait));
		snprintf(ret->detail, sizeof(ret->detail),
			 "thread %d of pid %d (%s) is blocked on %s and has not run for %.1f s",
			 best.t->tid, best.p->pid, best.p->comm, wait, (double)best_still / 1e9);
		ret->value = ret->held_for_s = (double)best_still / 1e9;
		ret->pid = best.p->pid;
		ret->tid = best.t->tid;
		return true;
	}
	return false;
}

static void done(struct watch_cond *c)
{
	(void)c;
	free(pipes.v);
	pipes.v = NULL;
	pipes.n = pipes.cap = 0;
	pipes.built = 0;
}

const struct watch_condition watch_cond_hang = {
    .name = "hang",
    .arg = "SECONDS",
    .help = "a wait cycle among the targets, or a thread blocked on a mutex or file lock "
	    "without running, for SECONDS (read from /proc, no freeze)",
    .records = "how long the threads named have not run, in seconds",
    .scope = COND_GLOBAL,
    .needs = NEED_STAT | NEED_THREADS,
    .parse = parse,
    .poll = poll,
    .done = done,
};
