/* SPDX-License-Identifier: MIT */
/*
 * osmosis snap: freeze the targets at one instant, keep their memory with a capture method,
 * resume them, then write one ELF core per process and manifest.json.
 *
 * Order of work, chosen so the freeze holds nothing that could be done outside it:
 *   validate targets (existence, kernel threads, permission)      targets running
 *   load identity and threads, create the snapshot directory       targets running
 *   capture->prepare: plan and reserve memory, start helpers       targets running
 *   freeze  ->  capture->frozen  ->  thaw                          targets stopped (the pause)
 *   capture->finish, write cores and manifest, rename into place   targets running
 */
#include <errno.h>
#include <getopt.h>
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
#include "base/timeutil.h"
#include "base/util.h"
#include "capture/capture.h"
#include "cli/cli.h"
#include "core/writer.h"
#include "freeze/freeze.h"
#include "freeze/guard.h"
#include "proc/procfs.h"
#include "proc/process.h"
#include "snapshot/dir.h"
#include "snapshot/manifest.h"

#define DEFAULT_MAX_PAUSE_NS (10ull * 1000000000ull)

static const char snap_usage[] =
    "Usage: osmosis snap [OPTIONS] PID...\n"
    "\n"
    "Freeze every thread of the given processes at one instant, keep their memory as it was,\n"
    "resume them, then write one ELF core per process (core.PID) and manifest.json into a new\n"
    "directory. Several PIDs are frozen together and resumed together.\n"
    "\n"
    "Options:\n"
    "  -o, --output DIR        directory to create (default ./osmosis-HOST-UTCDATE-TIME);\n"
    "                          an existing DIR is refused\n"
    "  -m, --method METHOD     capture method: copy, or auto (default; chooses copy today)\n"
    "      --max-pause SECONDS longest the targets may stay frozen (default 10); past it they\n"
    "                          are resumed and the snapshot fails\n"
    "  -q, --quiet             print nothing on success\n"
    "  -v, --verbose           say more on stderr\n"
    "  -h, --help              show this help\n"
    "\n"
    "Exit status: 0 on success, 1 on failure (nothing is left under DIR), 2 on bad usage.\n"
    "See osmosis-snap(1).\n";

struct snap_opts {
	const char *output;
	const char *method;
	uint64_t max_pause_ns;
	bool quiet;
	pid_t *pids;
	size_t n_pids;
};

static int parse_args(int argc, char **argv, struct snap_opts *o)
{
	enum { OPT_MAX_PAUSE = 0x100 };
	static const struct option longopts[] = {
	    {"output", required_argument, NULL, 'o'},
	    {"method", required_argument, NULL, 'm'},
	    {"max-pause", required_argument, NULL, OPT_MAX_PAUSE},
	    {"quiet", no_argument, NULL, 'q'},
	    {"verbose", no_argument, NULL, 'v'},
	    {"help", no_argument, NULL, 'h'},
	    {},
	};
	int c;

	o->method = "auto";
	o->max_pause_ns = DEFAULT_MAX_PAUSE_NS;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+:o:m:qvh", longopts, NULL)) != -1) {
		switch (c) {
		case 'o':
			o->output = optarg;
			break;
		case 'm':
			if (!capture_method(optarg))
				return log_error(EINVAL, "unknown method '%s' (use copy or auto)",
						 optarg);
			o->method = optarg;
			break;
		case OPT_MAX_PAUSE:
			if (parse_duration_ns(optarg, &o->max_pause_ns) < 0)
				return log_error(EINVAL,
						 "--max-pause needs a positive number of seconds, "
						 "not '%s'",
						 optarg);
			break;
		case 'q':
			o->quiet = true;
			log_verbosity = 0;
			break;
		case 'v':
			log_verbosity = 2;
			break;
		case 'h':
			fputs(snap_usage, stdout);
			exit(0); /* only from argument parsing: nothing is held yet */
		case ':':
			return log_error(EINVAL,
					 "option '%s' needs an argument (see osmosis snap --help)",
					 argv[optind - 1]);
		case '?':
		default:
			if (optopt)
				return log_error(EINVAL,
						 "unknown option '-%c' (see osmosis snap --help)",
						 optopt);
			return log_error(EINVAL, "unknown option '%s' (see osmosis snap --help)",
					 argv[optind - 1]);
		}
	}
	if (optind >= argc)
		return log_error(EINVAL, "no PID given (see osmosis snap --help)");
	o->pids = calloc(argc - optind, sizeof(pid_t));
	if (!o->pids)
		return log_error(ENOMEM, "out of memory");
	for (int i = optind; i < argc; i++) {
		pid_t pid;
		bool dup = false;

		if (parse_pid(argv[i], &pid) < 0)
			return log_error(EINVAL, "'%s' is not a process id", argv[i]);
		for (size_t j = 0; j < o->n_pids; j++)
			dup |= o->pids[j] == pid;
		if (!dup)
			o->pids[o->n_pids++] = pid;
	}
	return 0;
}

/* Open and vet one target. Logs the reason it cannot be snapshotted. */
static int open_target(pid_t pid, struct pidref *ref, struct osm_process *p)
{
	struct proc_stat st;
	int r;

	if (pid == getpid())
		return log_error(EINVAL, "pid %d is osmosis itself", pid);
	r = pidref_open(pid, ref);
	if (r == -ESRCH)
		return log_error(r, "no process with pid %d", pid);
	if (r < 0)
		return log_error(r, "cannot open pid %d: %m", pid);
	r = proc_read_stat(ref->procfd, "stat", &st);
	if (r == -ESRCH)
		return log_error(r, "no process with pid %d", pid);
	if (r < 0)
		return log_error(r, "cannot read /proc/%d/stat: %m", pid);
	if (st.flags & PF_KTHREAD_FLAG)
		return log_error(EINVAL,
				 "pid %d (%s) is a kernel thread: it has no user memory to "
				 "snapshot",
				 pid, st.comm);
	if (st.state == 'Z' || st.state == 'X')
		return log_error(ESRCH,
				 "pid %d (%s) is a zombie: it has exited and holds no "
				 "memory",
				 pid, st.comm);
	r = proc_load_identity(ref, p);
	if (r < 0)
		return log_error(
		    r, r == -ESRCH ? "no process with pid %d" : "cannot read pid %d: %m", pid);
	if (geteuid() != 0) {
		if (!p->dumpable)
			return log_error(EPERM,
					 "pid %d (%s) is not dumpable (it runs a setuid or setgid "
					 "program, or called prctl(PR_SET_DUMPABLE, 0)); only root "
					 "may snapshot it",
					 pid, p->comm);
		if (p->uid != getuid() || p->euid != getuid())
			return log_error(
			    EPERM,
			    "pid %d (%s) belongs to uid %u; only that user or root may "
			    "snapshot it",
			    pid, p->comm, (unsigned)p->euid);
	}
	/* Opening /proc/PID/mem asks the kernel the same question ptrace will (PTRACE_MODE_ATTACH):
	 * it answers for Yama, LSMs and capabilities before anything is frozen. */
	r = pidref_open_mem(ref);
	if (r == -EACCES || r == -EPERM)
		return log_error(
		    EPERM,
		    "not permitted to trace pid %d (%s): the kernel refused access "
		    "(ptrace restrictions such as Yama ptrace_scope or a security module)",
		    pid, p->comm);
	if (r < 0)
		return log_error(r, "cannot open the memory of pid %d (%s): %m", pid, p->comm);
	r = proc_load_threads(ref, p);
	if (r < 0)
		return log_error(
		    r, r == -ESRCH ? "no process with pid %d" : "cannot read pid %d: %m", pid);
	return 0;
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
	gmtime_r(&now, &tm);
	strftime(s->created, sizeof(s->created), "%Y-%m-%dT%H:%M:%SZ", &tm);
	return s->host && s->kernel ? 0 : -ENOMEM;
}

static int write_core(struct snapdir *dir, struct osm_process *p, size_t page_size)
{
	struct outfile of;
	struct file_sink fs;
	int r;

	snprintf(p->core_name, sizeof(p->core_name), "core.%d", p->pid);
	r = outfile_open(dir->dirfd, p->core_name, &of);
	if (r < 0)
		return log_error(r, "cannot create %s/%s: %m", dir->final, p->core_name);
	file_sink_init(&fs, of.fd);
	r = core_write(p, &fs.base, page_size);
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

static void print_summary(const struct osm_snapshot *s, const struct capture *c, const char *dir)
{
	char a[32], b[32];
	double secs = c->copy_ns / 1e9;

	printf("snapshot %s\n", dir);
	printf("%8s  %-16s %8s %12s\n", "PID", "NAME", "THREADS", "CAPTURED");
	for (size_t i = 0; i < s->n_procs; i++) {
		const struct osm_process *p = s->procs[i];
		printf("%8d  %-16s %8zu %12s\n", p->pid, p->comm, process_captured_threads(p),
		       format_bytes(p->captured_bytes, a, sizeof(a)));
	}
	printf("pause: %.3f ms, %zu process%s frozen together (method %s: %s copied in %.3f ms",
	       s->pause_us / 1000.0, s->n_procs, s->n_procs == 1 ? "" : "es", s->method,
	       format_bytes(c->copied_bytes, b, sizeof(b)), c->copy_ns / 1e6);
	if (secs > 0 && c->copied_bytes > (1u << 20))
		printf(", %.2f GB/s", c->copied_bytes / secs / 1e9);
	printf(")\n");
}

static int report_interrupt(int r)
{
	if (r == -EINTR) {
		int sig = guard_signal();
		log_error(EINTR,
			  "interrupted by %s; the targets were resumed and no snapshot was "
			  "written",
			  sig ? sigabbrev_np(sig) ? sigabbrev_np(sig) : "a signal" : "a signal");
		return 128 + (sig ? sig : SIGINT);
	}
	if (r == -ETIMEDOUT) {
		log_error(ETIMEDOUT, "the targets stayed frozen longer than --max-pause allows; "
				     "they were resumed and no snapshot was written");
	}
	return 1;
}

int cmd_snap(int argc, char **argv)
{
	struct snap_opts o = {0};
	struct osm_snapshot *s = NULL;
	struct pidref *refs = NULL;
	struct freeze_target *ft = NULL;
	struct capture_target *ct = NULL;
	struct capture cap = {0};
	struct freeze_session fs = {0};
	struct snapdir dir = {.dirfd = -1};
	char defdir[512];
	bool prepared = false;
	int r, ret = 1;

	r = parse_args(argc, argv, &o);
	if (r < 0) {
		free(o.pids);
		return EXIT_USAGE;
	}
	if (guard_install() < 0) {
		log_error(errno, "cannot install signal handlers: %m");
		goto out;
	}

	s = calloc(1, sizeof(*s));
	refs = calloc(o.n_pids, sizeof(*refs));
	ft = calloc(o.n_pids, sizeof(*ft));
	ct = calloc(o.n_pids, sizeof(*ct));
	if (!s || !refs || !ft || !ct || !(s->procs = calloc(o.n_pids, sizeof(*s->procs)))) {
		log_error(ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < o.n_pids; i++)
		refs[i] = PIDREF_NULL;

	/* Vet every target before anything is created or frozen. */
	for (size_t i = 0; i < o.n_pids; i++) {
		struct osm_process *p = calloc(1, sizeof(*p));
		if (!p) {
			log_error(ENOMEM, "out of memory");
			goto out;
		}
		s->procs[s->n_procs++] = p;
		if (open_target(o.pids[i], &refs[i], p) < 0)
			goto out;
		ft[i] = (struct freeze_target){.ref = &refs[i], .proc = p};
		ct[i] = (struct capture_target){.ref = &refs[i], .proc = p, .pagemap_fd = -1};
	}
	if (fault_point("vetted") < 0)
		goto out;
	if (fill_snapshot_header(s) < 0) {
		log_error(ENOMEM, "cannot read the system's name");
		goto out;
	}
	if (!o.output) {
		default_output(defdir, sizeof(defdir));
		o.output = defdir;
	}
	if (snapdir_create(o.output, &dir) < 0)
		goto out;

	cap.ops = capture_method(o.method);
	cap.targets = ct;
	cap.n_targets = o.n_pids;
	cap.page_size = (size_t)sysconf(_SC_PAGESIZE);
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	cap.n_workers = ncpu > 1 ? (unsigned)MIN(ncpu - 1, 7) : 0;
	s->method = cap.ops->name;
	s->method_reason = !strcmp(o.method, "auto")
			       ? "auto: copy is the only method this build implements"
			       : "requested with --method";
	prepared = true;
	r = cap.ops->prepare(&cap);
	if (r == 0)
		r = fault_point("prepared");
	if (r < 0)
		goto fail;
	r = guard_check();
	if (r < 0)
		goto fail;

	/* The pause: from here to freeze_session_thaw(). */
	fs.targets = ft;
	fs.n_targets = o.n_pids;
	r = guard_watchdog_arm(o.max_pause_ns);
	if (r < 0) {
		log_error(r, "cannot start the watchdog: %m");
		goto fail;
	}
	r = freeze_session_freeze(&fs);
	if (r == 0)
		r = fault_point("frozen");
	if (r == 0)
		r = guard_check();
	if (r == 0)
		r = cap.ops->frozen(&cap);
	if (r == 0)
		r = fault_point("captured");
	freeze_session_thaw(&fs);
	guard_watchdog_disarm();
	s->pause_us = freeze_session_pause_us(&fs);
	if (r == 0)
		r = freeze_session_check_survivors(&fs);
	if (r == 0)
		r = fault_point("thawed");
	if (r < 0)
		goto fail;

	r = cap.ops->finish(&cap);
	if (r < 0)
		goto fail;
	for (size_t i = 0; i < s->n_procs; i++) {
		r = write_core(&dir, s->procs[i], cap.page_size);
		if (r == 0)
			r = fault_point("core-written");
		if (r < 0)
			goto fail;
	}
	r = write_manifest(&dir, s);
	if (r == 0)
		r = fault_point("manifest-written");
	if (r < 0)
		goto fail;
	r = guard_check();
	if (r < 0)
		goto fail;
	if (snapdir_commit(&dir) < 0)
		goto out;
	if (!o.quiet)
		print_summary(s, &cap, o.output);
	ret = 0;
	goto out;

fail:
	ret = report_interrupt(r);
out:
	/* Every path: targets resumed (idempotent), helpers stopped, partial files removed. */
	freeze_session_thaw(&fs);
	guard_watchdog_disarm();
	if (prepared && cap.ops)
		cap.ops->release(&cap);
	if (ret != 0)
		snapdir_abort(&dir);
	else {
		free(dir.final);
		dir.final = NULL;
	}
	for (size_t i = 0; refs && i < o.n_pids; i++)
		pidref_done(&refs[i]);
	free(refs);
	free(ft);
	free(ct);
	snapshot_free(s);
	free(o.pids);
	return ret;
}
