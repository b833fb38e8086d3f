/* SPDX-License-Identifier: MIT */
/*
 * HotSpot JVMs as a runtime of the analysis (runtime.h), read by the JDK's own reader: the
 * Serviceability Agent's `jhsdb jstack --exe JAVA --core CORE`. osmosis does not decode the
 * JVM's structures itself: they change with every JDK release, and the JDK ships a reader that
 * knows its own version's. This is the one runtime that runs a program: read() starts jhsdb
 * (java_run.c: no shell, a clean environment, bounded in time and output, always reaped) on the
 * process's core, parses what it prints (java_jstack.c, untrusted text), and merges:
 *   - each Java thread's name onto the native thread whose tid is jhsdb's nid;
 *   - its Java frames (kind FRAME_JAVA) into the native stack, before the first native frame in
 *     anonymous executable memory (the JVM's code cache, where interpreted and compiled Java
 *     code runs), or after the native frames when there is none;
 *   - each step of a Java-level deadlock ("Found one Java-level deadlock") as a wait-graph edge
 *     (EDGE_MONITOR) from the waiting thread to the monitor's holder, so the deadlock pattern
 *     reports the cycle with the native threads, their frames and the monitors.
 * detect() needs only the snapshot (libjvm.so among the mapped files). Where jhsdb is missing,
 * fails or runs out of time, one line says so and the native analysis stands as it was.
 *
 * Which jhsdb: $OSMOSIS_JHSDB when set; else the JDK of the process's JVM (JAVA_HOME/bin/jhsdb
 * next to its libjvm.so, or next to its executable) when that file and its directory belong to
 * root and are writable by no one else (the snapshot may come from elsewhere: a path it names is
 * never run unless this machine's administrator put it there); else jhsdb on osmosis's PATH.
 * The Serviceability Agent reads only cores of its own JDK version; a mismatch is reported.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "analyze/runtime/java.h"
#include "analyze/runtime/runtime.h"
#include "base/fs.h"
#include "base/parse.h"
#include "base/util.h"
#include "core/zcore.h"

/* jhsdb takes 2-30 s on a JVM's core; $OSMOSIS_JHSDB_TIMEOUT changes the bound. */
#define JHSDB_TIMEOUT_S 60

struct java {
	char *libjvm; /* path of libjvm.so in the snapshot */
	bool no_jdk;  /* no jhsdb was found for it */
};

extern const struct runtime runtime_java;

/* --- detect -------------------------------------------------------------------------------- */

static bool is_libjvm(const char *path)
{
	const char *b = path ? strrchr(path, '/') : NULL;
	return b && !strcmp(b + 1, "libjvm.so");
}

static void free_state(void *state)
{
	struct java *j = state;
	if (!j)
		return;
	free(j->libjvm);
	free(j);
}

static int detect(struct aprocess *ap, void **ret_state, char *why, size_t len)
{
	const char *lib = NULL;
	struct java *j;

	(void)why;
	(void)len;
	for (size_t i = 0; i < ap->n_files && !lib; i++)
		if (is_libjvm(ap->files[i]))
			lib = ap->files[i];
	for (size_t i = 0; i < ap->n_modules && !lib; i++)
		if (is_libjvm(ap->modules[i].path))
			lib = ap->modules[i].path;
	if (!lib)
		return 0;
	j = calloc(1, sizeof(*j));
	if (!j || !(j->libjvm = strdup(lib))) {
		free(j);
		return -ENOMEM;
	}
	*ret_state = j;
	return 1;
}

/* --- which jhsdb ----------------------------------------------------------------------------- */

static bool executable_file(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

/* A path the snapshot suggested: run it only if this machine's root put it there. */
static bool trusted_file(const char *path)
{
	char dir[PATH_MAX], *slash;
	struct stat st, ds;

	if (snprintf(dir, sizeof(dir), "%s", path) >= (int)sizeof(dir) ||
	    !(slash = strrchr(dir, '/')))
		return false;
	*slash = 0;
	if (stat(path, &st) < 0 || stat(dir[0] ? dir : "/", &ds) < 0)
		return false;
	return S_ISREG(st.st_mode) && st.st_uid == 0 && !(st.st_mode & (S_IWGRP | S_IWOTH)) &&
	       ds.st_uid == 0 && !(ds.st_mode & (S_IWGRP | S_IWOTH)) && access(path, X_OK) == 0;
}

/* dirname of path cut by up more components, + "/" + tail, into buf. */
static bool sibling(const char *path, int up, const char *tail, char *buf, size_t len)
{
	char tmp[PATH_MAX];
	if (!path || snprintf(tmp, sizeof(tmp), "%s", path) >= (int)sizeof(tmp))
		return false;
	for (int i = 0; i <= up; i++) {
		char *s = strrchr(tmp, '/');
		if (!s)
			return false;
		*s = 0;
	}
	return snprintf(buf, len, "%s/%s", tmp, tail) < (int)len;
}

static bool find_jhsdb(const struct aprocess *ap, const struct java *j, char *buf, size_t len)
{
	const char *env = getenv("OSMOSIS_JHSDB"), *path = getenv("PATH");

	if (env && *env)
		return snprintf(buf, len, "%s", env) < (int)len && executable_file(buf);
	/* JAVA_HOME/lib/server/libjvm.so -> JAVA_HOME/bin/jhsdb; JAVA_HOME/bin/java -> the same */
	if (sibling(j->libjvm, 2, "bin/jhsdb", buf, len) && trusted_file(buf))
		return true;
	if (sibling(ap->p->exe, 0, "jhsdb", buf, len) && trusted_file(buf))
		return true;
	for (const char *p = path; p && *p;) {
		const char *e = strchr(p, ':');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		if (n && snprintf(buf, len, "%.*s/jhsdb", (int)n, p) < (int)len && buf[0] == '/' &&
		    executable_file(buf))
			return true;
		p = e ? e + 1 : NULL;
	}
	return false;
}

/* --- running it ------------------------------------------------------------------------------ */

/* The last non-empty line of text, cleaned to printable ASCII, into buf. */
static void last_line(const char *text, char *buf, size_t len)
{
	size_t n = strlen(text), e, s, k = 0;

	while (n && (text[n - 1] == '\n' || text[n - 1] == '\r' || text[n - 1] == ' '))
		n--;
	e = n;
	s = e;
	while (s && text[s - 1] != '\n')
		s--;
	while (s < e && (text[s] == ' ' || text[s] == '\t'))
		s++;
	for (; s < e && k + 1 < len; s++)
		buf[k++] = text[s] >= 0x20 && text[s] < 0x7f ? text[s] : '?';
	if (len)
		buf[k] = 0;
}

static int timeout_ms(void)
{
	const char *s = getenv("OSMOSIS_JHSDB_TIMEOUT");
	uint64_t ns;
	if (s && parse_duration_ns(s, &ns) == 0 && ns >= 1000000 && ns <= 3600ull * 1000000000)
		return (int)(ns / 1000000);
	return JHSDB_TIMEOUT_S * 1000;
}

/* The core as a plain file for jhsdb: the snapshot's own, or a compressed one written out to an
 * unnamed temporary file (gone when closed). Returns a descriptor to close, or a negative errno
 * with the reason in why. */
static int plain_core(struct aprocess *ap, char *why, size_t len)
{
	const char *tmp = getenv("TMPDIR");
	int fd, r;

	if (!ap->zcore) {
		if (ap->core_fd < 0) {
			snprintf(why, len, "its core is not open");
			return -EBADF;
		}
		fd = fcntl(ap->core_fd, F_DUPFD_CLOEXEC, 3);
		if (fd < 0)
			snprintf(why, len, "cannot duplicate the core's descriptor: %s",
				 strerror(errno));
		return fd < 0 ? -errno : fd;
	}
	if (!tmp || tmp[0] != '/')
		tmp = "/tmp";
	fd = open(tmp, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd < 0) {
		r = -errno;
		snprintf(why, len, "cannot make a temporary file in %s for the plain core: %s", tmp,
			 strerror(-r));
		return r;
	}
	r = zcore_extract(ap->zcore, fd);
	if (r < 0 && r != -EBADMSG) {
		snprintf(why, len, "cannot write the plain core to %s: %s", tmp, strerror(-r));
		close(fd);
		return r;
	}
	return fd;
}

/* --- merging ------------------------------------------------------------------------------- */

static struct athread *thread_by_tid(struct aprocess *ap, pid_t tid)
{
	for (size_t i = 0; tid > 0 && i < ap->n_threads; i++)
		if (ap->threads[i].t->tid == tid)
			return &ap->threads[i];
	return NULL;
}

static bool in_code_cache(const struct frame *f)
{
	return f->kind == FRAME_NATIVE && f->module &&
	       !strcmp(f->module, "[anonymous executable memory]");
}

static int java_frame(const struct jframe *jf, struct frame *f)
{
	memset(f, 0, sizeof(*f));
	f->kind = FRAME_JAVA;
	f->function = strdup(jf->method ? jf->method : "?");
	f->line = jf->line;
	return f->function ? 0 : -ENOMEM;
}

static void merge_frames(struct athread *t, const struct jthread *jt)
{
	size_t n = t->n_frames + jt->n_frames, k = 0, at = t->n_frames;
	struct frame *out;

	if (!jt->n_frames)
		return;
	out = calloc(n, sizeof(*out));
	if (!out)
		return;
	for (size_t i = 0; i < t->n_frames; i++)
		if (in_code_cache(&t->frames[i])) {
			at = i;
			break;
		}
	for (size_t i = 0; i < at; i++)
		out[k++] = t->frames[i];
	for (size_t i = 0; i < jt->n_frames; i++)
		if (java_frame(&jt->frames[i], &out[k]) == 0)
			k++;
	for (size_t i = at; i < t->n_frames; i++)
		out[k++] = t->frames[i];
	free(t->frames);
	t->frames = out;
	t->n_frames = k;
}

/* The Java thread of a deadlock step's waiter: the one so named, or among several so named the
 * one BLOCKED; NULL when it cannot be told. */
static const struct jthread *step_waiter(const struct jstack *st, const char *name)
{
	const struct jthread *c[8], *blocked = NULL;
	size_t n = jstack_find_named(st, name, c, ARRAY_SIZE(c)), nb = 0;

	if (n == 1)
		return c[0];
	for (size_t i = 0; i < MIN(n, ARRAY_SIZE(c)); i++)
		if (!strncmp(c[i]->state, "BLOCKED", 7)) {
			blocked = c[i];
			nb++;
		}
	return n <= ARRAY_SIZE(c) && nb == 1 ? blocked : NULL;
}

/* The holder: a waiter of the same deadlock (every holder in a cycle waits too), else the one
 * so named, else among those so named the one whose frames hold the object. */
static const struct jthread *step_holder(const struct jstack *st, const struct jdeadlock *d,
					 const struct jthread *const *waiters,
					 const struct jstep *s)
{
	const struct jthread *c[8], *holding = NULL;
	size_t n, nh = 0;

	for (size_t i = 0; i < d->n; i++)
		if (waiters[i] && d->steps[i].waiter && s->holder &&
		    !strcmp(d->steps[i].waiter, s->holder))
			return waiters[i];
	n = jstack_find_named(st, s->holder, c, ARRAY_SIZE(c));
	if (n == 1)
		return c[0];
	for (size_t i = 0; s->object && i < MIN(n, ARRAY_SIZE(c)); i++)
		if (jthread_locked(c[i], s->object)) {
			holding = c[i];
			nh++;
		}
	return n <= ARRAY_SIZE(c) && nh == 1 ? holding : NULL;
}

static void monitor_text(const struct jstep *s, char *buf, size_t len)
{
	if (s->object)
		snprintf(buf, len, "<0x%016llx> (a %s)", (unsigned long long)s->object,
			 s->cls[0] ? s->cls : "?");
	else
		snprintf(buf, len, "%s", s->what[0] ? s->what : "a lock");
}

static void add_deadlocks(struct analysis *a, struct aprocess *ap, const struct jstack *st)
{
	for (size_t i = 0; i < st->n_deadlocks; i++) {
		const struct jdeadlock *d = &st->deadlocks[i];
		const struct jthread *w[JSTACK_MAX_DEADLOCK_LEN] = {0};
		struct athread *from[JSTACK_MAX_DEADLOCK_LEN] = {0},
			       *to[JSTACK_MAX_DEADLOCK_LEN] = {0};
		bool all = d->n > 0;

		for (size_t j = 0; j < d->n; j++)
			w[j] = step_waiter(st, d->steps[j].waiter);
		for (size_t j = 0; j < d->n; j++) {
			const struct jthread *h = step_holder(st, d, w, &d->steps[j]);
			from[j] = w[j] ? thread_by_tid(ap, w[j]->nid) : NULL;
			to[j] = h ? thread_by_tid(ap, h->nid) : NULL;
			all = all && from[j] && to[j];
		}
		if (!all) {
			analysis_problem(
			    a,
			    "pid %d: jhsdb reports a Java-level deadlock of %zu threads "
			    "(\"%s\" first) that could not be matched to native threads "
			    "by their names and nids; see jhsdb jstack's output",
			    ap->p->pid, d->n,
			    d->n && d->steps[0].waiter ? d->steps[0].waiter : "?");
			continue;
		}
		for (size_t j = 0; j < d->n; j++) {
			char mon[240], text[320];
			struct edge *e;
			monitor_text(&d->steps[j], mon, sizeof(mon));
			snprintf(text, sizeof(text), "%s%s, held by \"%s\"",
				 d->steps[j].object ? "the Java monitor of " : "", mon,
				 d->steps[j].holder);
			e = graph_add_wait(from[j], EDGE_MONITOR, WAIT_THIS_ONE, text);
			if (e)
				edge_add_waker(e, to[j], to[j]->proc, -1, "holds the monitor");
			/* The monitor explains the wait, not the JVM's condition variable under it
			 * (shown where the thread is named as another's waker, and in the stacks).
			 */
			snprintf(from[j]->wait.text, sizeof(from[j]->wait.text),
				 "waits to enter %s%s",
				 d->steps[j].object ? "the Java monitor of " : "", mon);
		}
	}
	if (st->announced_deadlocks > 0 && (size_t)st->announced_deadlocks != st->n_deadlocks)
		analysis_problem(a,
				 "pid %d: jhsdb announced %d Java-level deadlocks, %zu were read",
				 ap->p->pid, st->announced_deadlocks, st->n_deadlocks);
}

static void merge(struct analysis *a, struct aprocess *ap, const struct jstack *st)
{
	size_t matched = 0;

	for (size_t i = 0; i < st->n_threads; i++) {
		const struct jthread *jt = &st->threads[i];
		struct athread *t = thread_by_tid(ap, jt->nid);
		if (!t)
			continue;
		matched++;
		t->runtime_thread = true;
		if (jt->name && !t->runtime_name)
			t->runtime_name = strdup(jt->name);
		if (jt->n_frames) {
			if (jt->frames[0].line > 0)
				snprintf(t->runtime_where, sizeof(t->runtime_where), "%s line %d",
					 jt->frames[0].method, jt->frames[0].line);
			else
				snprintf(t->runtime_where, sizeof(t->runtime_where), "%s",
					 jt->frames[0].method);
		}
	}
	if (st->n_threads && !matched) {
		analysis_problem(a,
				 "pid %d: none of the %zu Java threads jhsdb listed names a thread "
				 "of the process by its nid; Java frames are not shown",
				 ap->p->pid, st->n_threads);
		return;
	}
	add_deadlocks(a, ap, st);
	for (size_t i = 0; i < st->n_threads; i++) {
		struct athread *t = thread_by_tid(ap, st->threads[i].nid);
		if (t)
			merge_frames(t, &st->threads[i]);
	}
}

/* --- read ---------------------------------------------------------------------------------- */

static bool jdk_missing_said(const struct analysis *a, const struct aprocess *ap)
{
	for (const struct aprocess *p = a->procs; p < ap; p++)
		if (p->runtime == &runtime_java && p->runtime_state &&
		    ((const struct java *)p->runtime_state)->no_jdk)
			return true;
	return false;
}

static void read_process(struct analysis *a, struct aprocess *ap, void *state)
{
	struct java *j = state;
	char jhsdb[PATH_MAX], why[200] = "", err[1024] = "", last[200];
	_cleanup_free_ char *out = NULL;
	_cleanup_close_ int core = -1, exe = -1;
	const char *kind = NULL;
	struct jstack st = {0};
	size_t len = 0;
	bool truncated = false;
	int status = 0, r, tmo = timeout_ms();

	free(ap->runtime_version);
	ap->runtime_version = strdup("JVM");
	if (!ap->has_core)
		return;
	if (!find_jhsdb(ap, j, jhsdb, sizeof(jhsdb))) {
		j->no_jdk = true;
		if (!jdk_missing_said(a, ap))
			analysis_note(a,
				      "pid %d is a JVM: Java thread names, frames and Java-level "
				      "deadlocks need a JDK's jhsdb (Debian: apt install "
				      "openjdk-17-jdk-headless, the JVM's own version); its native "
				      "stacks are analyzed",
				      ap->p->pid);
		return;
	}
	exe = ap->p->exe ? open_regular_file(AT_FDCWD, ap->p->exe, 0, &kind) : -ENOENT;
	if (exe < 0) {
		analysis_problem(
		    a,
		    "pid %d: JVM: its executable %s is %s on this machine; jhsdb needs it "
		    "for Java frames; its native stacks are analyzed",
		    ap->p->pid, ap->p->exe ? ap->p->exe : "(not recorded)",
		    kind ? kind : "not readable");
		return;
	}
	core = plain_core(ap, why, sizeof(why));
	if (core < 0) {
		analysis_problem(a, "pid %d: JVM: %s; Java frames are not shown", ap->p->pid, why);
		return;
	}
	{
		char *argv[] = {jhsdb,	  "-J-XX:-UsePerfData", "jstack", "--exe", ap->p->exe,
				"--core", "/proc/self/fd/3",	NULL};
		char *envp[] = {"PATH=/usr/bin:/bin", "LANG=C.UTF-8", "LC_ALL=C.UTF-8", NULL};
		r = run_bounded(jhsdb, argv, envp, &core, 1, tmo, JSTACK_MAX_OUTPUT, &out, &len,
				&truncated, err, sizeof(err), &status);
	}
	if (r == -ETIME) {
		analysis_problem(
		    a,
		    "pid %d: JVM: %s jstack did not finish within %d s and was killed; "
		    "Java frames are not shown (OSMOSIS_JHSDB_TIMEOUT gives it longer); "
		    "its native stacks are analyzed",
		    ap->p->pid, jhsdb, tmo / 1000);
		return;
	}
	if (r < 0) {
		analysis_problem(a,
				 "pid %d: JVM: cannot run %s: %s; its native stacks are analyzed",
				 ap->p->pid, jhsdb, strerror(-r));
		return;
	}
	if (jstack_parse(out, len, &st) < 0) {
		analysis_problem(a, "pid %d: JVM: out of memory reading jhsdb's output",
				 ap->p->pid);
		goto done;
	}
	if (st.vm_version[0]) {
		char v[128];
		snprintf(v, sizeof(v), "JVM %s", st.vm_version);
		free(ap->runtime_version);
		ap->runtime_version = strdup(v);
	}
	if (!st.attached || !st.n_threads) {
		last_line(err[0] ? err : out, last, sizeof(last));
		if (WIFEXITED(status))
			snprintf(why, sizeof(why), "exit status %d", WEXITSTATUS(status));
		else
			snprintf(why, sizeof(why), "signal %d",
				 WIFSIGNALED(status) ? WTERMSIG(status) : 0);
		analysis_problem(a,
				 "pid %d: JVM: %s jstack could not read the core (%s%s%s); Java "
				 "frames are not shown (jhsdb reads only cores of its own JDK "
				 "version); its native stacks are analyzed",
				 ap->p->pid, jhsdb, why, last[0] ? ": " : "", last);
		goto done;
	}
	if (truncated || st.truncated)
		analysis_problem(a,
				 "pid %d: JVM: jhsdb's output exceeded osmosis's limits; what "
				 "fit is shown",
				 ap->p->pid);
	merge(a, ap, &st);
done:
	jstack_done(&st);
}

const struct runtime runtime_java = {
    .id = "java",
    .title = "Java (HotSpot)",
    .description = "Java thread names, Java frames (method, line) merged into each thread's "
		   "native stack, and Java-level deadlocks (synchronized monitors taken in "
		   "opposite order) as wait-graph edges between the native threads, read by the "
		   "JDK's own `jhsdb jstack --exe JAVA --core CORE`, bounded in time.",
    .needs = "cores (the JVM's memory: heap, metaspace, the CDS archive, the code cache), the "
	     "JVM's executable on this machine, and a JDK's jhsdb of the same version "
	     "(docs/java.md)",
    .versions = "HotSpot JDK 9 and later (jhsdb's output format); tested with OpenJDK 17",
    .detect = detect,
    .read = read_process,
    .free_state = free_state,
};
