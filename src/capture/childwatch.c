/* SPDX-License-Identifier: MIT */
/*
 * The children of members, watched to their exits while the shared objects' rounds run
 * (childwatch.h). The thread seizes each member's every thread with the options that attach
 * whatever they fork, vfork or clone (the kernel attaches it before it runs) and stop each
 * attached task at its exit and after an exec. Stops and what is done:
 *   - exit of a task with its own memory (forked): the callback marks what it touched; then on;
 *   - exec of such a task: its old memory is gone unseen, counted unknown; the task is let go;
 *   - fork, vfork, clone: the new task noted (a thread or a vfork child shares its parent's
 *     memory, whose mappings are tracked), then on;
 *   - a signal: passed on (PTRACE_CONT with it); job control: PTRACE_LISTEN, the task stays
 *     stopped as it would untraced; the first stop of an attached task: on.
 * To stop, the thread interrupts every task and lets each go at its next stop (a signal it was
 * stopped for is delivered, a stopped task stays stopped). The freeze seizes them after.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/fs.h"
#include "base/log.h"
#include "base/timeutil.h"
#include "base/util.h"
#include "capture/childwatch.h"
#include "proc/procfs.h"

#define WATCH_OPTIONS                                                                              \
	(PTRACE_O_TRACEFORK | PTRACE_O_TRACEVFORK | PTRACE_O_TRACECLONE | PTRACE_O_TRACEEXEC |     \
	 PTRACE_O_TRACEEXIT)
#define SEIZE_PASSES	 5 /* listings of a member's threads until none is new */
#define LET_GO_NS	 (2000ull * 1000 * 1000) /* for every task to stop once, at the end */
#define RELEASED_WAIT_NS (200ull * 1000 * 1000)

struct task {
	pid_t tid, tgid;
	pid_t parent; /* the process that forked it (its tgid) */
	pid_t member; /* the member it descends from, or is a thread of */
	bool of_member;
	bool own_memory; /* a forked process: its memory is its own */
	bool gone, let_go;
	bool recorded; /* its exit accounted for (or counted unknown) */
};

struct record {
	pid_t pid, parent;
	uint64_t faults;
	bool taken;
};

struct member {
	pid_t pid;
	bool held;
	unsigned unknown; /* under lock */
};

struct child_watch {
	pthread_t thread;
	bool started;
	pid_t thread_tid;
	child_exit_fn fn;
	void *arg;
	atomic_bool stop;
	bool letting_go; /* the thread's own */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool ready; /* under lock */
	struct member *members;
	size_t n_members;
	/* Changed by the thread under lock (read by the others under it): */
	struct task *tasks;
	size_t n_tasks, cap_tasks;
	struct record *recs;
	size_t n_recs, cap_recs;
};

static int wake_signal(void)
{
	return SIGRTMIN + 2;
}

static void on_wake(int sig)
{
	(void)sig;
}

static struct member *find_member(const struct child_watch *w, pid_t pid)
{
	for (size_t i = 0; i < w->n_members; i++)
		if (w->members[i].pid == pid)
			return &w->members[i];
	return NULL;
}

static struct task *find_task(struct child_watch *w, pid_t tid)
{
	for (size_t i = 0; i < w->n_tasks; i++)
		if (w->tasks[i].tid == tid)
			return &w->tasks[i];
	return NULL;
}

static struct task *add_task(struct child_watch *w, pid_t tid)
{
	struct task *t = find_task(w, tid);

	if (t)
		return t;
	if (grow_array((void **)&w->tasks, &w->cap_tasks, w->n_tasks + 1, sizeof(*w->tasks)) < 0)
		return NULL;
	t = &w->tasks[w->n_tasks++];
	*t = (struct task){.tid = tid, .tgid = tid};
	return t;
}

/* A task gone: its slot reused (the table stays as small as what is alive). */
static void drop_task(struct child_watch *w, struct task *t)
{
	*t = w->tasks[--w->n_tasks];
}

/* Under lock. */
static void count_unknown(struct child_watch *w, pid_t member)
{
	struct member *m = find_member(w, member);
	if (m)
		m->unknown++;
}

/* An exit accounted for: pid's faults as its parent will count them when it reaps it. */
static void record_exit(struct child_watch *w, const struct task *t)
{
	char path[48];
	struct proc_stat st;
	uint64_t faults = UINT64_MAX;

	snprintf(path, sizeof(path), "/proc/%d/stat", t->tgid);
	if (proc_read_stat(AT_FDCWD, path, &st) == 0)
		faults = st.faults + st.cfaults;
	for (size_t i = 0; i < w->n_tasks; i++)
		if (w->tasks[i].tgid == t->tgid)
			w->tasks[i].recorded = true;
	for (size_t i = 0; i < w->n_recs; i++)
		if (w->recs[i].pid == t->tgid) {
			w->recs[i].faults = faults; /* a later thread's exit: the latest count */
			return;
		}
	if (grow_array((void **)&w->recs, &w->cap_recs, w->n_recs + 1, sizeof(*w->recs)) < 0) {
		count_unknown(w, t->member);
		return;
	}
	w->recs[w->n_recs++] = (struct record){t->tgid, t->parent, faults, false};
}

/* Every thread of the member seized, listing again until no new one shows. */
static void seize_member(struct child_watch *w, struct member *m)
{
	bool refused = false, any = false;

	for (int pass = 0; pass < SEIZE_PASSES; pass++) {
		char path[32];
		unsigned added = 0;

		snprintf(path, sizeof(path), "/proc/%d/task", m->pid);
		DIR *d = opendir(path);
		if (!d)
			return;
		for (struct dirent *de; (de = readdir(d));) {
			pid_t tid = (pid_t)atoi(de->d_name);
			if (tid <= 0 || find_task(w, tid))
				continue;
			if (ptrace(PTRACE_SEIZE, tid, 0, WATCH_OPTIONS) < 0) {
				if (errno != ESRCH)
					refused = true; /* traced by someone else */
				continue;
			}
			struct task *t = add_task(w, tid);
			if (!t) {
				refused = true;
				continue;
			}
			*t = (struct task){.tid = tid,
					   .tgid = m->pid,
					   .parent = 0,
					   .member = m->pid,
					   .of_member = true};
			added++;
			any = true;
		}
		closedir(d);
		if (!added)
			break;
	}
	m->held = any && !refused;
}

static void go_on(struct child_watch *w, struct task *t, int sig)
{
	if (w->letting_go) {
		if (ptrace(PTRACE_DETACH, t->tid, 0, sig) == 0 || errno == ESRCH)
			t->let_go = true;
	} else if (ptrace(PTRACE_CONT, t->tid, 0, sig) < 0 && errno == ESRCH) {
		t->gone = true;
	}
}

/* The task a fork, vfork or clone of t made. */
static void new_task(struct child_watch *w, struct task *t, int event)
{
	unsigned long msg = 0;
	char path[64];

	if (ptrace(PTRACE_GETEVENTMSG, t->tid, 0, &msg) < 0 || msg == 0)
		return;
	pid_t tid = (pid_t)msg;
	pid_t member = t->member, tgid = t->tgid;
	bool of_member = t->of_member, own = t->own_memory;
	struct task *c = add_task(w, tid); /* t may move */
	if (!c) {
		count_unknown(w, member);
		return;
	}
	c->member = member;
	snprintf(path, sizeof(path), "/proc/%d/task/%d", tgid, tid);
	if (event == PTRACE_EVENT_CLONE && access(path, F_OK) == 0) {
		/* A thread: the same process, the same memory. */
		c->tgid = tgid;
		c->of_member = of_member;
		c->own_memory = own;
		c->parent = 0;
	} else {
		c->tgid = tid;
		c->of_member = false;
		c->parent = tgid;
		/* A vfork child borrows its parent's memory (tracked) until it execs or exits. A
		 * clone outside the thread group may share it too: counted as its own (its exit
		 * then marks what the shared memory holds, more than needed, never less). */
		c->own_memory = event != PTRACE_EVENT_VFORK;
	}
}

/* A stop of a task not known yet: attached by a fork whose event is not read yet. */
static struct task *stranger(struct child_watch *w, pid_t tid)
{
	char path[48];
	struct proc_stat st;

	snprintf(path, sizeof(path), "/proc/%d/stat", tid);
	struct task *c = add_task(w, tid);
	if (!c)
		return NULL;
	/* Its parent's event tells the rest; until then it is a forked child of its parent. */
	if (proc_read_stat(AT_FDCWD, path, &st) == 0)
		for (size_t i = 0; i < w->n_tasks; i++)
			if (w->tasks[i].tgid == st.ppid && w->tasks[i].tid != tid) {
				c->member = w->tasks[i].member;
				c->parent = st.ppid;
				c->own_memory = true;
				break;
			}
	return c;
}

static void handle(struct child_watch *w, pid_t tid, int status)
{
	struct task *t = find_task(w, tid);

	if (WIFEXITED(status) || WIFSIGNALED(status)) {
		/* Gone without its exit stop (a SIGKILL'd task still stops there on 6.18, see
		 * docs/design/kernel-facts.md; not on every kernel): what it wrote is unknown. */
		if (t && t->tid == t->tgid && t->own_memory && !t->of_member && !t->recorded)
			count_unknown(w, t->member);
		if (t)
			drop_task(w, t);
		return;
	}
	if (!WIFSTOPPED(status))
		return;
	if (!t && !(t = stranger(w, tid))) {
		ptrace(PTRACE_DETACH, tid, 0, 0);
		return;
	}
	int event = status >> 16, sig = WSTOPSIG(status);
	switch (event) {
	case PTRACE_EVENT_FORK:
	case PTRACE_EVENT_VFORK:
	case PTRACE_EVENT_CLONE: {
		new_task(w, t, event);
		t = find_task(w, tid);
		if (t)
			go_on(w, t, 0);
		return;
	}
	case PTRACE_EVENT_EXEC:
		if (t->of_member) {
			go_on(w, t, 0); /* its mappings went with it: the rounds see that */
			return;
		}
		if (t->own_memory && !t->recorded)
			count_unknown(w, t->member); /* what it wrote went with its old memory */
		/* It maps none of the objects now: let go. */
		if (ptrace(PTRACE_DETACH, t->tid, 0, 0) == 0 || errno == ESRCH)
			drop_task(w, t);
		return;
	case PTRACE_EVENT_EXIT:
		if (!t->of_member && t->own_memory) {
			pid_t member = t->member;
			/* The callback reads the task's memory: the others need not wait. */
			pthread_mutex_unlock(&w->lock);
			int r = member ? w->fn(w->arg, tid, member) : -ESRCH;
			pthread_mutex_lock(&w->lock);
			t = find_task(w, tid);
			if (!t)
				return;
			if (r < 0) {
				count_unknown(w, t->member);
				t->recorded = true; /* counted once */
			} else {
				record_exit(w, t);
			}
		}
		go_on(w, t, 0);
		return;
	case PTRACE_EVENT_STOP:
		if (sig == SIGSTOP || sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU) {
			/* Job control: stopped as it would be untraced. */
			if (w->letting_go)
				go_on(w, t, 0);
			else
				ptrace(PTRACE_LISTEN, t->tid, 0, 0);
			return;
		}
		go_on(w, t, 0); /* its first stop, or an interrupt */
		return;
	case 0:
		go_on(w, t, sig); /* a signal, delivered as it would be */
		return;
	default:
		go_on(w, t, 0);
		return;
	}
}

/* Every task interrupted and let go at its next stop. */
static void let_go(struct child_watch *w)
{
	uint64_t deadline = now_ns() + LET_GO_NS;

	w->letting_go = true;
	for (size_t i = 0; i < w->n_tasks; i++)
		if (ptrace(PTRACE_INTERRUPT, w->tasks[i].tid, 0, 0) < 0 && errno == ESRCH)
			w->tasks[i].gone = true;
	for (;;) {
		size_t held = 0;
		pthread_mutex_lock(&w->lock);
		for (size_t i = 0; i < w->n_tasks;) {
			if (w->tasks[i].let_go || w->tasks[i].gone) {
				drop_task(w, &w->tasks[i]);
				continue;
			}
			held++;
			i++;
		}
		pthread_mutex_unlock(&w->lock);
		if (!held)
			return;
		int status;
		pid_t tid = waitpid(-1, &status, __WALL | __WNOTHREAD | WNOHANG);
		if (tid > 0) {
			pthread_mutex_lock(&w->lock);
			handle(w, tid, status);
			pthread_mutex_unlock(&w->lock);
		} else if (tid == 0 || errno == EINTR) {
			if (now_ns() > deadline)
				return; /* the thread's exit lets the rest go */
			struct timespec ts = {0, 50 * 1000};
			nanosleep(&ts, NULL);
		} else {
			return; /* ECHILD: none left */
		}
	}
}

static void *watch_main(void *arg)
{
	struct child_watch *w = arg;
	sigset_t wake;

	sigemptyset(&wake);
	sigaddset(&wake, wake_signal());
	pthread_sigmask(SIG_UNBLOCK, &wake, NULL);
	w->thread_tid = gettid();
	for (size_t i = 0; i < w->n_members; i++)
		seize_member(w, &w->members[i]);
	pthread_mutex_lock(&w->lock);
	w->ready = true;
	pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->lock);

	while (!atomic_load(&w->stop)) {
		int status;
		pid_t tid = waitpid(-1, &status, __WALL | __WNOTHREAD);
		if (tid > 0) {
			pthread_mutex_lock(&w->lock);
			handle(w, tid, status);
			pthread_mutex_unlock(&w->lock);
		} else if (errno == ECHILD) {
			/* Nothing traced any more: wait to be told to stop. */
			sigset_t none;
			sigemptyset(&none);
			if (!atomic_load(&w->stop))
				sigsuspend(&none);
		}
	}
	let_go(w);
	return NULL;
}

struct child_watch *child_watch_start(const pid_t *members, size_t n, child_exit_fn fn, void *arg)
{
	struct child_watch *w = calloc(1, sizeof(*w));
	struct sigaction sa = {.sa_handler = on_wake}; /* no SA_RESTART: waitpid returns */
	sigset_t all, old;
	bool held = false;

	if (!w || !n || !(w->members = calloc(n, sizeof(*w->members)))) {
		free(w);
		return NULL;
	}
	for (size_t i = 0; i < n; i++)
		w->members[i].pid = members[i];
	w->n_members = n;
	w->fn = fn;
	w->arg = arg;
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->cond, NULL);
	sigemptyset(&sa.sa_mask);
	if (sigaction(wake_signal(), &sa, NULL) < 0)
		goto fail;
	/* Started with every signal blocked (signals to osmosis reach the freezing thread); it
	 * takes its wake signal only. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	int r = pthread_create(&w->thread, NULL, watch_main, w);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r)
		goto fail;
	w->started = true;
	pthread_mutex_lock(&w->lock);
	while (!w->ready)
		pthread_cond_wait(&w->cond, &w->lock);
	pthread_mutex_unlock(&w->lock);
	for (size_t i = 0; i < n; i++)
		held |= w->members[i].held;
	if (held)
		return w;
	child_watch_stop(w);
fail:
	child_watch_free(w);
	return NULL;
}

bool child_watch_holds(const struct child_watch *w, pid_t member)
{
	const struct member *m = w ? find_member(w, member) : NULL;
	return m && m->held;
}

bool child_watch_accounted(struct child_watch *w, pid_t pid, uint64_t *faults)
{
	bool found = false;

	if (!w)
		return false;
	pthread_mutex_lock(&w->lock);
	for (size_t i = 0; i < w->n_recs && !found; i++)
		if (w->recs[i].pid == pid) {
			found = true;
			if (faults)
				*faults = w->recs[i].faults;
		}
	pthread_mutex_unlock(&w->lock);
	return found;
}

int child_watch_take_children(struct child_watch *w, pid_t member, struct watched_child **v,
			      size_t *n, size_t *cap)
{
	int r = 0;

	if (!w)
		return 0;
	pthread_mutex_lock(&w->lock);
	for (size_t i = 0; i < w->n_recs; i++) {
		struct record *rec = &w->recs[i];
		if (rec->taken || rec->parent != member)
			continue;
		r = grow_array((void **)v, cap, *n + 1, sizeof(**v));
		if (r < 0)
			break;
		(*v)[(*n)++] = (struct watched_child){rec->pid, rec->faults, false};
		rec->taken = true;
	}
	pthread_mutex_unlock(&w->lock);
	return r;
}

unsigned child_watch_take_unknown(struct child_watch *w, pid_t member)
{
	unsigned n = 0;

	if (!w)
		return 0;
	pthread_mutex_lock(&w->lock);
	struct member *m = find_member(w, member);
	if (m) {
		n = m->unknown;
		m->unknown = 0;
	}
	pthread_mutex_unlock(&w->lock);
	return n;
}

/* Whether tid is still traced by the watch's thread (after the thread ended, the kernel lets
 * its tasks go as it exits, which may be after the join returns). */
static bool still_traced(pid_t tid, pid_t tracer)
{
	_cleanup_free_ char *text = NULL;
	char path[48];

	snprintf(path, sizeof(path), "/proc/%d/status", tid);
	if (read_file_at(AT_FDCWD, path, &text, NULL) < 0)
		return false;
	const char *p = strstr(text, "\nTracerPid:");
	return p && atoi(p + 11) == tracer;
}

void child_watch_stop(struct child_watch *w)
{
	if (!w || !w->started)
		return;
	atomic_store(&w->stop, true);
	for (;;) {
		struct timespec ts;
		pthread_kill(w->thread, wake_signal());
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 5 * 1000 * 1000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		if (pthread_timedjoin_np(w->thread, NULL, &ts) == 0)
			break;
	}
	w->started = false;
	/* Tasks the thread could not let go in time: the kernel does as it exits. */
	uint64_t deadline = now_ns() + RELEASED_WAIT_NS;
	for (size_t i = 0; i < w->n_tasks; i++)
		while (still_traced(w->tasks[i].tid, w->thread_tid) && now_ns() < deadline) {
			struct timespec ts = {0, 100 * 1000};
			nanosleep(&ts, NULL);
		}
	w->n_tasks = 0;
}

void child_watch_free(struct child_watch *w)
{
	if (!w)
		return;
	child_watch_stop(w);
	pthread_mutex_destroy(&w->lock);
	pthread_cond_destroy(&w->cond);
	free(w->members);
	free(w->tasks);
	free(w->recs);
	free(w);
}
