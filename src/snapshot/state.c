/* SPDX-License-Identifier: MIT */
/*
 * osmosis snap, before the freeze: vetting targets and reading the state that cannot usefully be
 * read inside the freeze (descriptor tables, sockets, memory figures, limits, kernel stacks,
 * system counters), and the CPU sample whose interval ends just before the freeze, so a spinning
 * thread can be told from an idle one. Also the tree's growth callback, which runs inside it and
 * only opens and vets the new members: their state is read after the thaw (snap_load_joined).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "arch.h"
#include "base/fs.h"
#include "base/log.h"
#include "base/timeutil.h"
#include "base/util.h"
#include "snapshot/state.h"
#include "proc/fds.h"
#include "proc/process.h"
#include "proc/procfs.h"

void progress(bool enabled, const char *what, size_t n, size_t total)
{
	if (!enabled)
		return;
	fprintf(stderr, "\rosmosis: %s %zu/%zu\033[K", what, n, total);
	fflush(stderr);
}

void progress_end(bool enabled)
{
	if (!enabled)
		return;
	fprintf(stderr, "\r\033[K");
	fflush(stderr);
}

/* The pid tracing pid (TracerPid in /proc/PID/status), 0 for none, and its name. */
static pid_t tracer_of(int procfd, char *comm, size_t comm_len)
{
	_cleanup_free_ char *status = NULL, *name = NULL;
	const char *line;
	char path[64];
	long tracer;

	if (read_file_at(procfd, "status", &status, NULL) < 0)
		return 0;
	line = strstr(status, "\nTracerPid:");
	if (!line)
		return 0;
	tracer = strtol(line + 11, NULL, 10);
	if (tracer <= 0 || tracer == getpid())
		return 0;
	snprintf(path, sizeof(path), "/proc/%ld/comm", tracer);
	snprintf(comm, comm_len, "?");
	if (read_file_at(AT_FDCWD, path, &name, NULL) == 0) {
		name[strcspn(name, "\n")] = 0;
		snprintf(comm, comm_len, "%s", name);
	}
	return (pid_t)tracer;
}

/* Mark t skipped with a reason; its identity is read as far as /proc allows. */
static int skip(struct target *t, int err, const char *fmt, ...) _printf_(3, 4);
static int skip(struct target *t, int err, const char *fmt, ...)
{
	va_list ap;
	char *note = NULL;

	va_start(ap, fmt);
	if (vasprintf(&note, fmt, ap) < 0)
		note = NULL;
	va_end(ap);
	t->skipped = true;
	t->proc->capture = CAPTURE_SKIPPED;
	free(t->proc->capture_note);
	t->proc->capture_note = note;
	if (t->ref.procfd >= 0)
		proc_load_identity(&t->ref, t->proc);
	(void)err;
	return 0;
}

int snap_add_target(struct snap_state *st, pid_t pid, bool optional)
{
	struct target *t = target_set_add(&st->set, st->snap, pid);
	struct osm_process *p;
	struct proc_stat ps;
	int r;

	if (!t)
		return log_error(ENOMEM, "out of memory");
	t->optional = optional;
	p = t->proc;
	p->capture = CAPTURE_MEMORY;
	if (pid == getpid())
		return optional ? skip(t, EINVAL, "osmosis itself")
				: log_error(EINVAL, "pid %d is osmosis itself", pid);
	r = pidref_open(pid, &t->ref);
	if (r == -ESRCH) {
		if (!optional)
			return log_error(r, "no process with pid %d", pid);
		t->exited = true;
		p->capture = CAPTURE_EXITED;
		p->capture_note = strdup("exited before the snapshot");
		return 0;
	}
	if (r < 0)
		return optional ? skip(t, r, "cannot open: %s", strerror(-r))
				: log_error(r, "cannot open pid %d: %m", pid);
	r = proc_read_stat(t->ref.procfd, "stat", &ps);
	if (r < 0)
		return optional ? skip(t, r, "cannot read /proc/%d/stat", pid)
				: log_error(r,
					    r == -ESRCH ? "no process with pid %d"
							: "cannot read /proc/%d/stat: %m",
					    pid);
	if (ps.flags & PF_KTHREAD_FLAG)
		return optional
			   ? skip(t, EINVAL, "kernel thread")
			   : log_error(EINVAL,
				       "pid %d (%s) is a kernel thread: it has no user memory to "
				       "snapshot",
				       pid, ps.comm);
	p->state = ps.state; /* a skipped zombie is still known as one (zombie-processes) */
	if (ps.state == 'Z' || ps.state == 'X')
		return optional ? skip(t, ESRCH,
				       "zombie: exited, waiting for its parent %d to "
				       "reap it",
				       ps.ppid)
				: log_error(ESRCH,
					    "pid %d (%s) is a zombie: it has exited and holds no "
					    "memory",
					    pid, ps.comm);
	r = proc_load_identity(&t->ref, p);
	if (r < 0)
		return optional ? skip(t, r, "cannot read: %s", strerror(-r))
				: log_error(r,
					    r == -ESRCH ? "no process with pid %d"
							: "cannot read pid %d: %m",
					    pid);
	if (geteuid() != 0) {
		if (!p->dumpable)
			return optional
				   ? skip(t, EPERM, "not dumpable; only root may snapshot it")
				   : log_error(EPERM,
					       "pid %d (%s) is not dumpable (it runs a setuid or "
					       "setgid program, or called "
					       "prctl(PR_SET_DUMPABLE, 0)); only root may "
					       "snapshot it",
					       pid, p->comm);
		if (p->uid != getuid() || p->euid != getuid())
			return optional ? skip(t, EPERM,
					       "belongs to uid %u; only that user or root may "
					       "snapshot it",
					       (unsigned)p->euid)
					: log_error(EPERM,
						    "pid %d (%s) belongs to uid %u; only that user "
						    "or root may snapshot it",
						    pid, p->comm, (unsigned)p->euid);
	}
	/* A thread has one tracer: a process strace or gdb holds cannot be frozen. */
	char tcomm[OSM_COMM_LEN + 1];
	pid_t tracer = tracer_of(t->ref.procfd, tcomm, sizeof(tcomm));
	if (tracer)
		return optional
			   ? skip(t, EBUSY, "traced by pid %d (%s)", tracer, tcomm)
			   : log_error(EBUSY,
				       "pid %d (%s) is traced by pid %d (%s); a process has one "
				       "tracer: stop it first",
				       pid, p->comm, tracer, tcomm);
	/* Opening /proc/PID/mem asks the kernel the question ptrace will (PTRACE_MODE_ATTACH):
	 * it answers for Yama, LSMs and capabilities before anything is frozen. */
	r = pidref_open_mem(&t->ref);
	if (r == -EACCES || r == -EPERM)
		return optional
			   ? skip(t, EPERM, "the kernel refuses tracing it")
			   : log_error(EPERM,
				       "not permitted to trace pid %d (%s): the kernel refused "
				       "access (ptrace restrictions such as Yama ptrace_scope "
				       "or a security module)",
				       pid, p->comm);
	if (r < 0)
		return optional ? skip(t, r, "cannot open its memory: %s", strerror(-r))
				: log_error(r, "cannot open the memory of pid %d (%s): %m", pid,
					    p->comm);
	const char *no = arch_process_refusal(t->ref.procfd);
	if (no)
		return optional ? skip(t, EPROTONOSUPPORT, "%s", no)
				: log_error(EPROTONOSUPPORT, "pid %d (%s) is %s", pid, p->comm, no);
	return 0;
}

void snap_sample_begin(struct snap_state *st)
{
	st->sample_t0 = now_ns();
	system_sample_cpus(&st->cpus_before);
	st->thread_ticks = calloc(st->set.n ? st->set.n : 1, sizeof(*st->thread_ticks));
	if (!st->thread_ticks)
		return;
	st->n_thread_ticks = st->set.n;
	for (size_t i = 0; i < st->set.n; i++) {
		struct target *t = st->set.v[i];
		if (t->exited || t->ref.procfd < 0)
			continue;
		st->thread_ticks[i].t0 = now_ns();
		proc_thread_ticks(t->ref.procfd, &st->thread_ticks[i].tids,
				  &st->thread_ticks[i].ticks, &st->thread_ticks[i].switches,
				  &st->thread_ticks[i].n);
		if (st->thread_ticks[i].n)
			proc_thread_demand(t->ref.procfd, st->thread_ticks[i].tids,
					   st->thread_ticks[i].n, &st->thread_ticks[i].sched);
	}
	(void)proc_sample_all_cpu(&st->all_cpu);
}

static struct sock_table *sockets_for(struct snap_state *st, struct target *t)
{
	struct stat ns;

	if (fstatat(t->ref.procfd, "ns/net", &ns, 0) < 0)
		return NULL;
	for (size_t i = 0; i < st->n_socks; i++)
		if (st->socks[i].netns == ns.st_ino)
			return &st->socks[i];
	if (grow_array((void **)&st->socks, &st->cap_socks, st->n_socks + 1, sizeof(*st->socks)))
		return NULL;
	struct sock_table *tab = &st->socks[st->n_socks++];
	memset(tab, 0, sizeof(*tab));
	if (sock_table_load(tab, t->ref.procfd, ns.st_ino, ns.st_ino == st->own_netns) < 0)
		log_debug("pid %d: cannot read its sockets", t->proc->pid);
	return tab;
}

/* Threads, details and descriptors of one target. An optional target that went away or cannot
 * be read is recorded, not fatal. */
static int load_target(struct snap_state *st, struct target *t, size_t idx, uint64_t interval)
{
	int r;

	r = proc_load_threads(&t->ref, t->proc);
	if (r == -ESRCH || (r < 0 && !pidref_alive(&t->ref))) {
		t->exited = true;
		t->proc->capture = CAPTURE_EXITED;
		if (!t->proc->capture_note)
			t->proc->capture_note = strdup("exited before the freeze");
		return t->optional ? 0 : log_error(ESRCH, "pid %d exited", t->proc->pid);
	}
	if (r < 0)
		return t->optional
			   ? skip(t, -r, "cannot read its threads: %s", strerror(-r))
			   : log_error(r, "cannot read the threads of pid %d: %m", t->proc->pid);
	/* The interval is this target's own, from its first read to now: the targets are read one
	 * after another, and on a busy machine the last is read well after the first (a thread
	 * seemed to use 171% of a CPU when the interval was taken once for all). */
	if (interval)
		interval = now_ns() - (idx < st->n_thread_ticks && st->thread_ticks[idx].t0
					   ? st->thread_ticks[idx].t0
					   : st->sample_t0);
	if (idx < st->n_thread_ticks && st->thread_ticks[idx].n)
		proc_apply_cpu_sample(t->proc, st->thread_ticks[idx].tids,
				      st->thread_ticks[idx].ticks, st->thread_ticks[idx].switches,
				      st->thread_ticks[idx].n, interval);
	if (idx < st->n_thread_ticks && st->thread_ticks[idx].n)
		proc_apply_demand_sample(t->ref.procfd, t->proc, st->thread_ticks[idx].tids,
					 st->thread_ticks[idx].sched, st->thread_ticks[idx].n,
					 interval);
	proc_load_details(&t->ref, t->proc);
	r = proc_load_fds(&t->ref, t->proc, sockets_for(st, t));
	if (r < 0)
		return log_error(r, "out of memory");
	return 0;
}

int snap_load_state(struct snap_state *st, bool show_progress)
{
	struct stat ns;
	uint64_t interval = st->snap->sample_ms ? now_ns() - st->sample_t0 : 0;
	int r;

	if (stat("/proc/self/ns/net", &ns) == 0)
		st->own_netns = ns.st_ino;
	for (size_t i = 0; i < st->set.n; i++) {
		struct target *t = st->set.v[i];

		if (t->exited || t->ref.procfd < 0)
			continue;
		if (t->skipped) {
			/* Recorded with what /proc shows without ptrace. */
			proc_load_threads(&t->ref, t->proc);
			proc_load_details(&t->ref, t->proc);
			if (proc_load_fds(&t->ref, t->proc, sockets_for(st, t)) < 0)
				return log_error(ENOMEM, "out of memory");
			continue;
		}
		r = load_target(st, t, i, interval);
		if (r < 0)
			return r;
		if (i % 16 == 0)
			progress(show_progress, "reading process state", i + 1, st->set.n);
	}
	progress_end(show_progress);
	r = system_load(&st->snap->sys, st->snap->sample_ms ? &st->cpus_before : NULL);
	if (r < 0)
		return log_error(r, "cannot read the system state: %m");
	/* The machine's top CPU consumers over the interval, in the snapshot or not. */
	if (st->snap->sample_ms)
		(void)proc_top_consumers(&st->all_cpu, interval, 10, &st->snap->sys);
	if (st->tree) {
		/* The tree grows inside the freeze (snap_grow_tree): room for the machine's
		 * processes twice over, and for the set's doubling, now. */
		const pid_t *all;
		size_t n_all;
		r = targets_descendants_in(&st->tree_scratch, NULL, 0, &all, &n_all);
		if (r < 0)
			return r;
		if (targets_scratch_reserve(&st->tree_scratch,
					    st->tree_scratch.cap_all * 2 + 1024) ||
		    grow_array((void **)&st->tree_roots, &st->cap_tree_roots, st->set.n * 2 + 64,
			       sizeof(*st->tree_roots)))
			return log_error(ENOMEM, "out of memory");
	}
	return 0;
}

/*
 * Inside the freeze: only what seizing needs (the pid opened and vetted). Its threads, details,
 * descriptors and sockets are read after the thaw (snap_load_joined): none of it is worth
 * lengthening the pause for.
 */
int snap_grow_tree(struct freeze_session *s, bool *ret_added)
{
	struct snap_state *st = s->userdata;
	const pid_t *all = NULL;
	size_t n_roots = 0, n_all = 0;
	int r;

	*ret_added = false;
	/* In the room reserved before the freeze (it grows only with the set). */
	if (grow_array((void **)&st->tree_roots, &st->cap_tree_roots, st->set.n + 1,
		       sizeof(*st->tree_roots)))
		return log_error(ENOMEM, "out of memory");
	for (size_t i = 0; i < st->set.n; i++)
		if (!st->set.v[i]->exited)
			st->tree_roots[n_roots++] = st->set.v[i]->proc->pid;
	r = targets_descendants_in(&st->tree_scratch, st->tree_roots, n_roots, &all, &n_all);
	if (r < 0)
		return r;
	for (size_t i = 0; i < n_all; i++) {
		bool skip = false;
		for (size_t j = 0; j < st->n_skip; j++)
			skip |= all[i] == st->skip[j];
		if (skip || target_set_find(&st->set, all[i]))
			continue;
		/* A child born before its parent stopped: it joins the snapshot now. */
		r = snap_add_target(st, all[i], true);
		if (r < 0)
			return r;
		st->set.v[st->set.n - 1]->joined = true;
		*ret_added = true;
	}
	return 0;
}

/* How long the threads met asleep in the freeze are given, all together, to go back to sleep. */
#define RESLEEP_NS (200ull * 1000000)

/*
 * Each thread's context switches once the thaw is over. A thread the freeze met waiting in a
 * call was woken by its stop; it runs again to go back into its wait, and that is one more
 * switch. Read before it has (on a busy machine it waits for a CPU first), the count is one short
 * of what the next snapshot reads, and osmosis diff would take a deadlocked thread for one that
 * progressed. So such a thread is read once it is asleep again, or when RESLEEP_NS have passed
 * for the whole set (a thread that really woke up stays runnable).
 */
void snap_read_after_thaw(struct snap_state *st)
{
	uint64_t deadline = now_ns() + RESLEEP_NS;

	for (size_t i = 0; i < st->set.n; i++) {
		struct target *t = st->set.v[i];
		if (t->exited || t->skipped || t->ref.procfd < 0)
			continue;
		for (size_t j = 0; j < t->proc->n_threads; j++) {
			struct osm_thread *th = t->proc->threads[j];
			_cleanup_free_ char *status = NULL;
			struct proc_stat ps;
			char path[64];
			if (th->gone)
				continue;
			snprintf(path, sizeof(path), "task/%d/stat", th->tid);
			while (th->syscall_nr >= 0 && now_ns() < deadline &&
			       proc_read_stat(t->ref.procfd, path, &ps) == 0 &&
			       (ps.state == 'R' || ps.state == 't'))
				usleep(500);
			snprintf(path, sizeof(path), "task/%d/status", th->tid);
			if (read_file_at(t->ref.procfd, path, &status, NULL) < 0)
				continue;
			th->switches_after_thaw =
			    (int64_t)(proc_status_kb(status, "voluntary_ctxt_switches") / 1024 +
				      proc_status_kb(status, "nonvoluntary_ctxt_switches") / 1024);
		}
	}
}

int snap_load_joined(struct snap_state *st)
{
	for (size_t i = 0; i < st->set.n; i++) {
		struct target *t = st->set.v[i];
		int r;

		if (!t->joined || t->exited || t->ref.procfd < 0)
			continue;
		if (t->skipped) {
			proc_load_threads(&t->ref, t->proc);
			proc_load_details(&t->ref, t->proc);
			if (proc_load_fds(&t->ref, t->proc, sockets_for(st, t)) < 0)
				return log_error(ENOMEM, "out of memory");
			continue;
		}
		/* Threads born after the thaw are listed but were never frozen: not in the
		 * snapshot. */
		r = load_target(st, t, SIZE_MAX, 0);
		if (r < 0)
			return r;
		for (size_t j = 0; j < t->proc->n_threads; j++)
			if (!t->proc->threads[j]->captured)
				t->proc->threads[j]->gone = true;
	}
	return 0;
}

void snap_state_done(struct snap_state *st)
{
	for (size_t i = 0; i < st->n_socks; i++)
		sock_table_done(&st->socks[i]);
	free(st->socks);
	for (size_t i = 0; i < st->n_thread_ticks; i++) {
		free(st->thread_ticks[i].tids);
		free(st->thread_ticks[i].ticks);
		free(st->thread_ticks[i].switches);
		free(st->thread_ticks[i].sched);
	}
	free(st->thread_ticks);
	cpu_sample_done(&st->cpus_before);
	proc_cpu_sample_done(&st->all_cpu);
	targets_scratch_done(&st->tree_scratch);
	free(st->tree_roots);
	target_set_done(&st->set);
}
