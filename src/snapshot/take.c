/* SPDX-License-Identifier: MIT */
/*
 * snapshot_take: the stage sequence of one snapshot (take.h), with the order of work and its
 * reasons. The command line (cli/snap.c) only fills the options and prints the result.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "base/fault.h"
#include "base/fs.h"
#include "base/log.h"
#include "base/parse.h"
#include "base/sched.h"
#include "base/timeutil.h"
#include "base/util.h"
#include "capture/capture.h"
#include "core/writer.h"
#include "core/zcore.h"
#include "freeze/freeze.h"
#include "freeze/guard.h"
#include "proc/locks.h"
#include "proc/process.h"
#include "proc/procfs.h"
#include "snapshot/dir.h"
#include "snapshot/manifest.h"
#include "snapshot/state.h"
#include "snapshot/take.h"

/* Never more than osmosis's cgroup leaves it (v1 memory.limit_in_bytes or v2 memory.max). */
uint64_t snapshot_default_max_memory(void)
{
	_cleanup_free_ char *mem = NULL;
	uint64_t avail = UINT64_MAX, b = 1ull << 30;
	char *p;

	if (read_file_at(AT_FDCWD, "/proc/meminfo", &mem, NULL) == 0 &&
	    (p = strstr(mem, "MemAvailable:")))
		avail = strtoull(p + 13, NULL, 10) * 1024;
	b = MIN(b, avail / 10);
	b = MIN(b, proc_memory_available_to_self());
	return MAX(b, (uint64_t)(64u << 20));
}

static void default_output(char *buf, size_t len)
{
	char host[256] = "host";
	time_t now = time(NULL);
	struct tm tm;

	gethostname(host, sizeof(host) - 1);
	host[sizeof(host) - 1] = 0;
	for (char *c = host; *c; c++)
		if (*c == '/')
			*c = '_';
	gmtime_r(&now, &tm);
	snprintf(buf, len, "osmosis-%s-%04d%02d%02d-%02d%02d%02d", host, tm.tm_year + 1900,
		 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

static int fill_snapshot_header(struct osm_snapshot *s)
{
	struct utsname u;
	time_t now = time(NULL);
	struct tm tm;

	if (uname(&u) < 0)
		return -errno;
	s->host = strdup(u.nodename);
	if (asprintf(&s->kernel, "%s %s", u.release, u.version) < 0)
		s->kernel = NULL;
	{
		_cleanup_free_ char *boot = NULL;
		if (read_file_at(AT_FDCWD, "/proc/sys/kernel/random/boot_id", &boot, NULL) == 0) {
			boot[strcspn(boot, "\n")] = 0;
			s->boot_id = TAKE_PTR(boot);
		}
	}
	gmtime_r(&now, &tm);
	strftime(s->created, sizeof(s->created), "%Y-%m-%dT%H:%M:%SZ", &tm);
	return s->host && s->kernel ? 0 : -ENOMEM;
}

struct core_opts {
	bool compress;
	int level;
	unsigned n_workers;
	uint64_t *peak_buffers; /* raised to the sink's buffers */
};

/* Pre-copy's rounds wrote t's tracked mappings into a staging file: what the target wrote
 * since goes over it there, and the core reads those mappings from it. */
static int unplace(struct target *t, int *ret_rfd)
{
	struct osm_process *p = t->proc;
	char path[64];
	int rfd;

	/* The stage was opened for writing only: read it through a descriptor of its own. */
	snprintf(path, sizeof(path), "/proc/self/fd/%d", t->stage.fd);
	rfd = open(path, O_RDONLY | O_CLOEXEC);
	if (rfd < 0)
		return -errno;
	*ret_rfd = rfd;

	for (size_t i = 0; i < p->n_maps; i++) {
		struct osm_mapping *m = &p->maps[i];
		if (!m->core_off)
			continue;
		for (size_t k = 0; k < m->n_ext; k++) {
			const struct osm_extent *e = &m->ext[k];
			int r = e->data ? pwrite_all(t->stage.fd, e->data, e->len,
						     (off_t)(m->core_off + e->off))
					: -EINVAL;
			if (r < 0)
				return r;
		}
		m->n_ext = 0;
		int r = mapping_add_fd_extent(m, 0, m->dump_len, rfd, m->core_off);
		if (r < 0)
			return r;
		m->core_off = 0;
	}
	return 0;
}

static int write_core(struct snapdir *dir, struct target *t, size_t page_size,
		      const struct core_opts *co)
{
	struct osm_process *p = t->proc;
	struct outfile of;
	struct file_sink fs;
	struct zstd_sink *zs = NULL;
	_cleanup_close_ int stage_rfd = -1;
	int r;

	snprintf(p->core_name, sizeof(p->core_name), "core.%d%s", p->pid,
		 co->compress ? ZCORE_SUFFIX : "");
	if (t->stage.fd >= 0 && !co->compress) {
		/* The rounds wrote into this core's own file: the rest goes around and over. */
		of = t->stage;
		t->stage = (struct outfile){.fd = -1};
		r = 0;
	} else {
		r = t->stage.fd >= 0 ? unplace(t, &stage_rfd) : 0;
		if (r < 0)
			return log_error(r, "cannot write pre-copy's staging file of pid %d: %m",
					 p->pid);
		r = outfile_open(dir->dirfd, p->core_name, &of);
	}
	if (r < 0)
		return log_error(r, "cannot create %s/%s: %m", dir->final, p->core_name);
	file_sink_init(&fs, of.fd);
	if (co->compress) {
		zs = zstd_sink_new(&fs.base, co->level, co->n_workers);
		if (!zs) {
			outfile_abort(&of);
			return log_error(ENOMEM, "cannot start compressing %s/%s: out of memory",
					 dir->final, p->core_name);
		}
		*co->peak_buffers = MAX(*co->peak_buffers, (uint64_t)zstd_sink_buffer_bytes(zs));
		r = core_write(p, zstd_sink_base(zs), page_size);
		*co->peak_buffers = MAX(*co->peak_buffers, (uint64_t)zstd_sink_buffer_bytes(zs));
		zstd_sink_free(zs);
	} else {
		r = core_write(p, &fs.base, page_size);
	}
	outfile_abort(&t->stage); /* a staging file, read: removed */
	if (r == 0)
		r = guard_check();
	if (r < 0) {
		outfile_abort(&of);
		if (r == -EINTR || r == -ETIMEDOUT)
			return r;
		return log_error(r, "cannot write %s/%s: %m", dir->final, p->core_name);
	}
	r = outfile_commit(&of);
	if (r < 0)
		return log_error(r, "cannot write %s/%s: %m", dir->final, p->core_name);
	return 0;
}

static int write_manifest(struct snapdir *dir, const struct osm_snapshot *s)
{
	_cleanup_free_ char *json = manifest_to_json(s);
	struct outfile of;
	int r;

	if (!json)
		return log_error(ENOMEM, "out of memory");
	r = outfile_open(dir->dirfd, "manifest.json", &of);
	if (r < 0)
		return log_error(r, "cannot create %s/manifest.json: %m", dir->final);
	r = write_all(of.fd, json, strlen(json));
	if (r == 0)
		r = write_all(of.fd, "\n", 1);
	if (r < 0) {
		outfile_abort(&of);
		return log_error(r, "cannot write %s/manifest.json: %m", dir->final);
	}
	r = outfile_commit(&of);
	if (r < 0)
		return log_error(r, "cannot write %s/manifest.json: %m", dir->final);
	return 0;
}

/* The targets, chosen by the options. */
static int choose_targets(const struct snapshot_options *o, struct snap_state *st)
{
	_cleanup_free_ pid_t *pids = NULL;
	size_t n = 0;
	bool optional = o->tree || o->all || o->cgroup || o->optional;
	int r;

	if (o->all)
		r = targets_all(&pids, &n);
	else if (o->cgroup)
		r = targets_cgroup(o->cgroup, &pids, &n);
	else if (o->tree)
		r = targets_descendants(o->pids, o->n_pids, &pids, &n);
	else
		r = 0;
	if (r < 0)
		return r;
	if (!o->all && !o->cgroup && !o->tree) {
		pids = malloc(o->n_pids * sizeof(*pids));
		if (!pids)
			return log_error(ENOMEM, "out of memory");
		memcpy(pids, o->pids, o->n_pids * sizeof(*pids));
		n = o->n_pids;
	}
	if (o->tree) {
		/* The roots themselves must exist. */
		for (size_t i = 0; i < o->n_pids; i++)
			if (kill(o->pids[i], 0) < 0 && errno == ESRCH)
				return log_error(ESRCH, "no process with pid %d", o->pids[i]);
	}
	if (o->cgroup && n == 0)
		return log_error(ESRCH, "cgroup %s has no processes", o->cgroup);
	for (size_t i = 0; i < n; i++) {
		bool skip = false;
		for (size_t j = 0; j < o->n_skip; j++)
			skip |= pids[i] == o->skip[j];
		if (skip && optional)
			continue;
		r = snap_add_target(st, pids[i], optional);
		if (r < 0)
			return r;
	}
	return 0;
}

static bool is_zombie(const struct target *t)
{
	struct proc_stat ps;

	return t->ref.procfd >= 0 && proc_read_stat(t->ref.procfd, "stat", &ps) == 0 &&
	       ps.state == 'Z';
}

static size_t count_frozen(const struct target_set *set)
{
	size_t n = 0;
	for (size_t i = 0; i < set->n; i++)
		n += !set->v[i]->skipped && !set->v[i]->exited;
	return n;
}

int snapshot_take(const struct snapshot_options *o, struct snapshot_result *res)
{
	struct snap_state st = {0};
	struct osm_snapshot *s = NULL;
	struct capture cap = {0};
	struct freeze_session fs = {0};
	struct snapdir dir = {.dirfd = -1};
	char defdir[512];
	bool prepared = false, show_progress = o->progress;
	const char *output = o->output;
	struct sched_aside aside = {.stop_fd = -1};
	struct sched_freeze boost = {0};
	uint64_t t_start = now_ns();
	struct osm_timeline *tl;
	size_t ph;
	int r = -EIO;

	*res = (struct snapshot_result){0};
	if (guard_install() < 0) {
		r = log_error(errno, "cannot install signal handlers: %m");
		goto out;
	}
	guard_set_max_pause(o->max_pause_ns); /* also for threads held outside the freeze */
	s = calloc(1, sizeof(*s));
	if (!s) {
		r = log_error(ENOMEM, "out of memory");
		goto out;
	}
	tl = &s->timeline;
	timeline_init(tl);
	tl->t0_ns = t_start;
	st.snap = s;
	st.tree = o->tree;
	st.skip = o->skip;
	st.n_skip = o->n_skip;
	if (o->trigger && !(s->trigger_json = strdup(o->trigger))) {
		r = log_error(ENOMEM, "out of memory");
		goto out;
	}
	s->scope = o->all ? "all" : o->cgroup ? "cgroup" : o->tree ? "tree" : "pids";
	s->state_only = o->state_only;
	s->sample_ms = o->sample_ns / 1000000;
	if (o->cgroup) {
		s->scope_arg = strdup(o->cgroup);
	} else if (!o->all) {
		/* the PIDs given, as typed */
		size_t len = 0;
		s->scope_arg = calloc(o->n_pids * 12 + 1, 1);
		for (size_t i = 0; s->scope_arg && i < o->n_pids; i++)
			len +=
			    (size_t)sprintf(s->scope_arg + len, "%s%d", i ? " " : "", o->pids[i]);
	}

	/* Choose and vet every target before anything is created or frozen. */
	if ((r = choose_targets(o, &st)) < 0)
		goto out;
	if (count_frozen(&st.set) == 0) {
		r = log_error(ESRCH, "none of the %zu processes can be snapshotted", st.set.n);
		goto out;
	}
	if ((r = fault_point("vetted")) < 0)
		goto out;
	if (fill_snapshot_header(s) < 0) {
		r = log_error(ENOMEM, "cannot read the system's name");
		goto out;
	}

	/* CPU sampling interval, then the state read just before the freeze. */
	ph = timeline_begin(tl, "sample", 0);
	snap_sample_begin(&st);
	if (o->sample_ns) {
		struct timespec ts = {(time_t)(o->sample_ns / 1000000000ull),
				      (long)(o->sample_ns % 1000000000ull)};
		nanosleep(&ts, NULL);
		if ((r = guard_check()) < 0) {
			res->interrupted = true;
			goto out;
		}
	}
	timeline_end(tl, ph);
	ph = timeline_begin(tl, "state", 0);
	if ((r = snap_load_state(&st, show_progress)) < 0)
		goto out;
	/* File locks, system-wide: read before the pause, not inside it (best effort). */
	(void)proc_locks_load(s);
	timeline_end(tl, ph);

	if (!output) {
		default_output(defdir, sizeof(defdir));
		output = defdir;
	}
	if ((r = snapdir_create(output, &dir)) < 0)
		goto out;

	cap.requested = o->method;
	cap.set = &st.set;
	cap.tl = tl;
	cap.max_memory = o->max_memory ? MIN(o->max_memory, proc_memory_available_to_self())
				       : snapshot_default_max_memory();
	cap.max_memory_default = !o->max_memory;
	cap.stage_dirfd = o->state_only ? -1 : dir.dirfd;
	cap.stage_separate = o->compress;
	tl->max_memory = cap.max_memory;
	cap.snap = s;
	cap.state_only = o->state_only;
	cap.tree = o->tree;
	cap.page_size = (size_t)sysconf(_SC_PAGESIZE);
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	cap.n_workers = ncpu > 1 ? (unsigned)MIN(ncpu - 1, 7) : 0;
	s->method = capture_method_name(cap.requested);
	s->method_reason = o->state_only ? "state-only: no memory is captured"
			   : cap.requested == METHOD_AUTO
			       ? "chosen per process (each process's method_reason says why)"
			       : "requested with --method";
	prepared = true;
	r = capture_prepare(&cap);
	if (r == 0)
		r = fault_point("prepared");
	/* Last, so that nothing stands between it and the freeze: a shared object's mapping lost
	 * since its last round costs one more round here rather than a copy in the pause. */
	if (r == 0)
		r = capture_settle(&cap);
	if (r == 0)
		r = fault_point("settled");
	if (r < 0)
		goto fail;
	r = guard_check();
	if (r < 0)
		goto fail;

	/* The pause: from here to freeze_session_thaw(). */
	fs.set = &st.set;
	fs.grow = o->tree ? snap_grow_tree : NULL;
	fs.userdata = &st;
	r = guard_watchdog_arm(o->max_pause_ns);
	if (r < 0) {
		log_error(r, "cannot start the watchdog: %m");
		goto fail;
	}
	/* At normal priority (at least) from here to the thaw; aside only after it. */
	sched_freeze_raise(&boost);
	ph = timeline_begin(tl, "freeze", 0);
	/* From here to the thaw nothing allocates beyond the reservation: counted to be sure. */
	freeze_allocs_begin();
	r = freeze_session_freeze(&fs);
	timeline_end(tl, ph);
	timeline_pause_part(tl, PAUSE_STOP, now_ns() - fs.t_first_stop);
	if (r == 0)
		r = fault_point("frozen");
	if (r == 0)
		r = guard_check();
	ph = timeline_begin(tl, "copy", 0);
	if (r == 0)
		r = capture_frozen(&cap);
	timeline_end(tl, ph);
	if (r == 0)
		r = fault_point("captured");
	uint64_t t_resume = now_ns();
	ph = timeline_begin(tl, "resume", 0);
	freeze_session_thaw(&fs);
	tl->allocations_in_freeze = freeze_allocs_end();
	timeline_end(tl, ph);
	timeline_pause_part(tl, PAUSE_RESUME, fs.t_thawed - t_resume);
	sched_freeze_lower(&boost);
	guard_watchdog_disarm();
	s->pause_us = freeze_session_pause_us(&fs);
	timeline_set_pause(tl, fs.t_first_stop, fs.t_thawed);
	timeline_close_pause(tl);
	if (r == 0)
		r = freeze_session_check_survivors(&fs);
	if (r == 0)
		r = fault_point("thawed");
	if (r < 0)
		goto fail;
	if (count_frozen(&st.set) == 0) {
		r = log_error(ESRCH, "every target exited or could not be captured during the "
				     "snapshot");
		goto fail;
	}

	/* Members that joined during the freeze: their state now that they run again. */
	r = snap_load_joined(&st);
	if (r < 0)
		goto fail;
	r = capture_finish(&cap);
	if (r < 0)
		goto fail;
	/* Writing cores: the targets run again, and come first (base/sched.h). */
	struct core_opts co = {.compress = o->compress,
			       .level = o->level,
			       .n_workers = cap.n_workers,
			       .peak_buffers = &cap.peak_buffers};
	sched_step_aside(&aside, true);
	ph = timeline_begin(tl, "write-out", 0);
	for (size_t i = 0; i < st.set.n; i++) {
		struct target *t = st.set.v[i];
		if (t->exited) {
			t->proc->capture = CAPTURE_EXITED;
			if (!t->proc->capture_note)
				t->proc->capture_note =
				    strdup(is_zombie(t)
					       ? "became a zombie during the snapshot (its parent "
						 "has not reaped it)"
					       : "exited during the snapshot");
			continue;
		}
		if (t->skipped)
			continue;
		if (o->state_only) {
			t->proc->capture = CAPTURE_STATE;
			continue;
		}
		r = write_core(&dir, t, cap.page_size, &co);
		if (r == 0)
			r = fault_point("core-written");
		if (r < 0)
			goto fail;
		progress(show_progress, "writing cores", i + 1, st.set.n);
	}
	progress_end(show_progress);
	timeline_end(tl, ph);
	/* Clones ended and buffers given back before the manifest, so that the timeline holds it.
	 */
	tl->max_memory = capture_budget_limit(&cap); /* with the shared objects held besides */
	ph = timeline_begin(tl, "release", 0);
	capture_release(&cap);
	timeline_end(tl, ph);
	tl->peak_rss = timeline_self_peak_rss();
	tl->peak_buffers = cap.peak_buffers;
	s->total_ms = (now_ns() - t_start) / 1000000;
	snap_read_after_thaw(&st);
	/* The commit (manifest written, directory renamed into place) is recorded open: the
	 * manifest cannot hold its own end. */
	(void)timeline_begin(tl, "commit", 0);
	r = write_manifest(&dir, s);
	if (r == 0)
		r = fault_point("manifest-written");
	if (r < 0)
		goto fail;
	r = guard_check();
	if (r < 0)
		goto fail;
	/* Back before the directory takes its name: whoever sees it sees osmosis as it was. */
	sched_step_back(&aside);
	if ((r = snapdir_commit(&dir)) < 0)
		goto out;
	(void)fault_point("committed"); /* complete: only sleep= and sigkill make sense here */
	res->copied_bytes = cap.copied_bytes;
	res->copy_ns = cap.copy_ns;
	res->dir = strdup(output);
	res->snap = TAKE_PTR(s);
	r = res->dir ? 0 : log_error(ENOMEM, "out of memory");
	goto out;

fail:
	res->interrupted = r == -EINTR || r == -ETIMEDOUT;
out:
	/* Every path: targets resumed (idempotent), helpers stopped, partial files removed. */
	progress_end(show_progress && r != 0);
	freeze_session_thaw(&fs);
	freeze_allocs_end();
	sched_freeze_lower(&boost);
	guard_watchdog_disarm();
	sched_step_back(&aside);
	if (prepared)
		capture_release(&cap);
	if (r != 0)
		snapdir_abort(&dir);
	else {
		free(dir.final);
		dir.final = NULL;
	}
	snap_state_done(&st);
	snapshot_free(s);
	if (r != 0)
		snapshot_result_done(res);
	return r;
}

void snapshot_result_done(struct snapshot_result *r)
{
	snapshot_free(r->snap);
	r->snap = NULL;
	free(r->dir);
	r->dir = NULL;
}
