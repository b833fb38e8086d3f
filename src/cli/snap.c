/* SPDX-License-Identifier: MIT */
/*
 * osmosis snap: freeze the targets at one instant, keep their memory with a capture method,
 * resume them, then write one ELF core per process and manifest.json.
 *
 * Order of work, chosen so the freeze holds nothing that could be done outside it:
 *   choose and vet targets (pids, trees, a cgroup, all)             targets running
 *   first CPU sample, sampling interval, then process and system
 *   state (threads, descriptors, sockets, memory figures)           targets running
 *   create the snapshot directory; capture_prepare (choose each
 *   target's method, reserve and touch memory, pre-copy rounds)     targets running
 *   freeze (trees grow with children born meanwhile)
 *     -> capture_frozen (registers; copies, clones) -> thaw         targets stopped (the pause)
 *   capture_finish, write cores and manifest, rename into place;
 *   capture_release (clones ended)                                  targets running
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
#include "base/sched.h"
#include "base/timeutil.h"
#include "base/util.h"
#include "capture/capture.h"
#include "cli/cli.h"
#include "cli/snap.h"
#include "core/writer.h"
#include "freeze/freeze.h"
#include "freeze/guard.h"
#include "proc/procfs.h"
#include "snapshot/dir.h"
#include "snapshot/manifest.h"

#define DEFAULT_MAX_PAUSE_NS (10ull * 1000000000ull)
#define DEFAULT_SAMPLE_NS    (250ull * 1000000ull)
#define SUMMARY_MAX_LINES    40

static const char snap_usage[] =
    "Usage: osmosis snap [OPTIONS] PID...\n"
    "       osmosis snap [OPTIONS] --tree PID...\n"
    "       osmosis snap [OPTIONS] --cgroup PATH\n"
    "       osmosis snap [OPTIONS] --all\n"
    "\n"
    "Freeze every thread of the targets at one instant, keep their memory as it was, resume\n"
    "them, then write one ELF core per process (core.PID) and manifest.json, which also holds\n"
    "the state of the system: processes, threads and what each waits in, descriptors, sockets,\n"
    "memory and CPU. All targets are frozen together and resumed together.\n"
    "\n"
    "Targets:\n"
    "  PID...                  these processes (each must be snapshotted, or nothing is)\n"
    "      --tree              the PIDs and all their descendants, children born meanwhile too\n"
    "      --cgroup PATH       every process in a cgroup (v1 or v2; relative to /sys/fs/cgroup)\n"
    "      --all               every process but osmosis and kernel threads\n"
    "  With --tree, --cgroup and --all, a process that cannot be captured (traced by another\n"
    "  tracer, not permitted, exited, ran a new program, became a zombie) is recorded in the\n"
    "  manifest with the reason and the rest is captured; it never fails the snapshot.\n"
    "\n"
    "Options:\n"
    "  -o, --output DIR        directory to create (default ./osmosis-HOST-UTCDATE-TIME);\n"
    "                          an existing DIR is refused\n"
    "  -s, --state-only        the system state and every thread's registers, no memory and no\n"
    "                          cores: fast and small\n"
    "      --analyze           analyze the snapshot at once (as osmosis analyze DIR)\n"
    "  -m, --method METHOD     how memory is kept as it was at the freeze instant:\n"
    "                            copy     copied into a reserved buffer during the pause\n"
    "                            clone    a copy-on-write clone made inside the target\n"
    "                            precopy  copied while it runs, its writes tracked; the\n"
    "                                     pause copies only what changed\n"
    "                            auto     (default) chosen per process from its write rate\n"
    "      --max-pause SECONDS longest the targets may stay frozen (default 10); past it they\n"
    "                          are resumed and the snapshot fails\n"
    "      --sample SECONDS    CPU sampling interval before the freeze (default 0.25; 0: none)\n"
    "  -q, --quiet             print nothing on success\n"
    "  -v, --verbose           say more on stderr\n"
    "  -h, --help              show this help\n"
    "\n"
    "Exit status: 0 on success, 1 on failure (nothing is left under DIR), 2 on bad usage.\n"
    "See osmosis-snap(1); read a snapshot with osmosis show DIR.\n";

struct snap_opts {
	const char *output;
	const char *method;
	const char *cgroup;
	uint64_t max_pause_ns;
	uint64_t sample_ns;
	bool quiet, tree, all, state_only, analyze;
	pid_t *pids;
	size_t n_pids;
};

static int parse_args(int argc, char **argv, struct snap_opts *o)
{
	enum { OPT_MAX_PAUSE = 0x100, OPT_TREE, OPT_CGROUP, OPT_ALL, OPT_SAMPLE, OPT_ANALYZE };
	static const struct option longopts[] = {
	    {"output", required_argument, NULL, 'o'},
	    {"method", required_argument, NULL, 'm'},
	    {"max-pause", required_argument, NULL, OPT_MAX_PAUSE},
	    {"sample", required_argument, NULL, OPT_SAMPLE},
	    {"tree", no_argument, NULL, OPT_TREE},
	    {"cgroup", required_argument, NULL, OPT_CGROUP},
	    {"all", no_argument, NULL, OPT_ALL},
	    {"state-only", no_argument, NULL, 's'},
	    {"analyze", no_argument, NULL, OPT_ANALYZE},
	    {"quiet", no_argument, NULL, 'q'},
	    {"verbose", no_argument, NULL, 'v'},
	    {"help", no_argument, NULL, 'h'},
	    {},
	};
	int c;

	o->method = "auto";
	o->max_pause_ns = DEFAULT_MAX_PAUSE_NS;
	o->sample_ns = DEFAULT_SAMPLE_NS;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":o:m:sqvh", longopts, NULL)) != -1) {
		switch (c) {
		case 'o':
			o->output = optarg;
			break;
		case 'm':
			if (capture_method_parse(optarg) < 0)
				return log_error(EINVAL,
						 "unknown method '%s' (use auto, copy, clone or "
						 "precopy)",
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
		case OPT_SAMPLE:
			if (!strcmp(optarg, "0"))
				o->sample_ns = 0;
			else if (parse_duration_ns(optarg, &o->sample_ns) < 0 ||
				 o->sample_ns > 60ull * 1000000000ull)
				return log_error(EINVAL,
						 "--sample needs a number of seconds up to 60, not "
						 "'%s'",
						 optarg);
			break;
		case OPT_TREE:
			o->tree = true;
			break;
		case OPT_CGROUP:
			o->cgroup = optarg;
			break;
		case OPT_ALL:
			o->all = true;
			break;
		case 's':
			o->state_only = true;
			break;
		case OPT_ANALYZE:
			o->analyze = true;
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
	if ((o->all || o->cgroup) && optind < argc)
		return log_error(EINVAL, "PIDs cannot be combined with %s",
				 o->all ? "--all" : "--cgroup");
	if (o->all && o->cgroup)
		return log_error(EINVAL, "--all and --cgroup cannot be combined");
	if ((o->all || o->cgroup) && o->tree)
		return log_error(EINVAL, "--tree takes PIDs, not %s",
				 o->all ? "--all" : "--cgroup");
	if (!o->all && !o->cgroup && optind >= argc)
		return log_error(EINVAL, "no PID given (see osmosis snap --help)");
	o->pids = calloc(argc - optind + 1, sizeof(pid_t));
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

static void aside_tick(void *arg)
{
	sched_aside_check(arg);
}

static int write_core(struct snapdir *dir, struct osm_process *p, size_t page_size,
		      struct sched_aside *aside)
{
	struct outfile of;
	struct file_sink fs;
	int r;

	snprintf(p->core_name, sizeof(p->core_name), "core.%d", p->pid);
	r = outfile_open(dir->dirfd, p->core_name, &of);
	if (r < 0)
		return log_error(r, "cannot create %s/%s: %m", dir->final, p->core_name);
	file_sink_init(&fs, of.fd);
	fs.tick = aside_tick;
	fs.tick_arg = aside;
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

/* "shared: 1 object, 1.0 GiB, mapped by 23 processes, kept once (tracked writes: 3.1 MiB
 * copied in the pause)" */
static void print_shared(const struct osm_snapshot *s)
{
	uint64_t size = 0, tracked_pause = 0, whole_pause = 0;
	size_t n_whole = 0, n_procs = 0;
	char a[32], b[32], c[32];

	if (!s->n_shared)
		return;
	for (size_t i = 0; i < s->n_procs; i++) {
		const struct osm_process *p = s->procs[i];
		for (size_t j = 0; j < p->n_maps; j++)
			if (p->maps[j].shared_object) {
				n_procs++;
				break;
			}
	}
	for (size_t i = 0; i < s->n_shared; i++) {
		const struct osm_shared_object *o = &s->shared[i];
		size += o->size;
		if (!strcmp(o->kept, "tracked")) {
			tracked_pause += o->copied_in_pause;
		} else {
			n_whole++;
			whole_pause += o->copied_in_pause;
		}
	}
	printf("shared: %zu object%s, %s, mapped by %zu process%s, kept once (", s->n_shared,
	       s->n_shared == 1 ? "" : "s", format_bytes(size, a, sizeof(a)), n_procs,
	       n_procs == 1 ? "" : "es");
	if (n_whole < s->n_shared)
		printf("tracked writes: %s copied in the pause",
		       format_bytes(tracked_pause, b, sizeof(b)));
	if (n_whole)
		printf("%s%zu copied whole in the pause: %s", n_whole < s->n_shared ? "; " : "",
		       n_whole, format_bytes(whole_pause, c, sizeof(c)));
	printf(")\n");
}

static void print_summary(const struct osm_snapshot *s, const struct capture *c, const char *dir)
{
	size_t frozen = 0, skipped = 0, exited = 0, shown = 0;
	char a[32], b[32];
	double secs = c->copy_ns / 1e9;

	printf("snapshot %s\n", dir);
	printf("%8s  %-16s %8s %-8s %12s\n", "PID", "NAME", "THREADS", "METHOD", "CAPTURED");
	for (size_t i = 0; i < s->n_procs; i++) {
		const struct osm_process *p = s->procs[i];
		bool is_frozen = !strcmp(p->capture, "memory") || !strcmp(p->capture, "state");

		frozen += is_frozen;
		skipped += !strcmp(p->capture, "skipped");
		exited += !strcmp(p->capture, "exited");
		if (shown >= SUMMARY_MAX_LINES)
			continue;
		shown++;
		if (is_frozen)
			printf("%8d  %-16s %8zu %-8s %12s\n", p->pid, p->comm,
			       process_captured_threads(p), p->method ? p->method : "-",
			       s->state_only ? "state"
					     : format_bytes(p->captured_bytes, a, sizeof(a)));
		else
			printf("%8d  %-16s %8s %-8s %12s  %s\n", p->pid, p->comm, "-", "-",
			       p->capture, p->capture_note ? p->capture_note : "");
	}
	if (shown < s->n_procs)
		printf("     ... %zu more (osmosis show %s lists them all)\n", s->n_procs - shown,
		       dir);
	if (skipped || exited)
		printf("%zu captured, %zu not captured (see manifest): %zu skipped, %zu exited "
		       "during the snapshot\n",
		       frozen, skipped + exited, skipped, exited);
	printf("pause: %.3f ms, %zu process%s frozen together (--method %s", s->pause_us / 1000.0,
	       frozen, frozen == 1 ? "" : "es", s->state_only ? "state-only" : s->method);
	if (!s->state_only) {
		printf("; %s copied in the pause in %.3f ms",
		       format_bytes(c->copied_bytes, b, sizeof(b)), c->copy_ns / 1e6);
		if (secs > 0 && c->copied_bytes > (1u << 20))
			printf(", %.2f GB/s", c->copied_bytes / secs / 1e9);
	}
	printf(")\n");
	print_shared(s);
}

static int report_interrupt(int r)
{
	if (r == -EINTR) {
		int sig = guard_signal();
		const char *name = sig ? sigabbrev_np(sig) : NULL;
		log_error(EINTR,
			  "interrupted by SIG%s; the targets were resumed and no snapshot was "
			  "written",
			  name ? name : "NAL");
		return 128 + (sig ? sig : SIGINT);
	}
	if (r == -ETIMEDOUT)
		log_error(ETIMEDOUT, "the targets stayed frozen longer than --max-pause allows; "
				     "they were resumed and no snapshot was written");
	return 1;
}

/* The targets, chosen by the options. */
static int choose_targets(const struct snap_opts *o, struct snap_state *st)
{
	_cleanup_free_ pid_t *pids = NULL;
	size_t n = 0;
	bool optional = o->tree || o->all || o->cgroup;
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

int cmd_snap(int argc, char **argv)
{
	struct snap_opts o = {0};
	struct snap_state st = {0};
	struct osm_snapshot *s = NULL;
	struct capture cap = {0};
	struct freeze_session fs = {0};
	struct snapdir dir = {.dirfd = -1};
	char defdir[512];
	bool prepared = false, show_progress;
	struct sched_aside aside = {0};
	uint64_t t_start = now_ns();
	int r, ret = 1;

	r = parse_args(argc, argv, &o);
	if (r < 0) {
		free(o.pids);
		return EXIT_USAGE;
	}
	show_progress = !o.quiet && isatty(STDERR_FILENO);
	if (guard_install() < 0) {
		log_error(errno, "cannot install signal handlers: %m");
		goto out;
	}
	s = calloc(1, sizeof(*s));
	if (!s) {
		log_error(ENOMEM, "out of memory");
		goto out;
	}
	st.snap = s;
	st.tree = o.tree;
	s->scope = o.all ? "all" : o.cgroup ? "cgroup" : o.tree ? "tree" : "pids";
	s->state_only = o.state_only;
	s->sample_ms = o.sample_ns / 1000000;
	if (o.cgroup) {
		s->scope_arg = strdup(o.cgroup);
	} else if (!o.all) {
		/* the PIDs given, as typed */
		size_t len = 0;
		s->scope_arg = calloc(o.n_pids * 12 + 1, 1);
		for (size_t i = 0; s->scope_arg && i < o.n_pids; i++)
			len += (size_t)sprintf(s->scope_arg + len, "%s%d", i ? " " : "", o.pids[i]);
	}

	/* Choose and vet every target before anything is created or frozen. */
	if (choose_targets(&o, &st) < 0)
		goto out;
	if (count_frozen(&st.set) == 0) {
		log_error(ESRCH, "none of the %zu processes can be snapshotted", st.set.n);
		goto out;
	}
	if (fault_point("vetted") < 0)
		goto out;
	if (fill_snapshot_header(s) < 0) {
		log_error(ENOMEM, "cannot read the system's name");
		goto out;
	}

	/* CPU sampling interval, then the state read just before the freeze. */
	snap_sample_begin(&st);
	if (o.sample_ns) {
		struct timespec ts = {(time_t)(o.sample_ns / 1000000000ull),
				      (long)(o.sample_ns % 1000000000ull)};
		nanosleep(&ts, NULL);
		if (guard_check() < 0) {
			ret = report_interrupt(guard_check());
			goto out;
		}
	}
	if (snap_load_state(&st, show_progress) < 0)
		goto out;

	if (!o.output) {
		default_output(defdir, sizeof(defdir));
		o.output = defdir;
	}
	if (snapdir_create(o.output, &dir) < 0)
		goto out;

	cap.requested = (enum capture_method)capture_method_parse(o.method);
	cap.set = &st.set;
	cap.snap = s;
	cap.state_only = o.state_only;
	cap.page_size = (size_t)sysconf(_SC_PAGESIZE);
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	cap.n_workers = ncpu > 1 ? (unsigned)MIN(ncpu - 1, 7) : 0;
	s->method = capture_method_name(cap.requested);
	s->method_reason = o.state_only ? "state-only: no memory is captured"
			   : cap.requested == METHOD_AUTO
			       ? "chosen per process (each process's method_reason says why)"
			       : "requested with --method";
	prepared = true;
	r = capture_prepare(&cap);
	if (r == 0)
		r = fault_point("prepared");
	if (r < 0)
		goto fail;
	r = guard_check();
	if (r < 0)
		goto fail;

	/* The pause: from here to freeze_session_thaw(). */
	fs.set = &st.set;
	fs.grow = o.tree ? snap_grow_tree : NULL;
	fs.userdata = &st;
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
		r = capture_frozen(&cap);
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
	if (count_frozen(&st.set) == 0) {
		r = log_error(ESRCH, "every target exited during the snapshot");
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
	sched_step_aside(&aside, true);
	for (size_t i = 0; i < st.set.n; i++) {
		struct target *t = st.set.v[i];
		if (t->exited) {
			t->proc->capture = "exited";
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
		if (o.state_only) {
			t->proc->capture = "state";
			continue;
		}
		r = write_core(&dir, t->proc, cap.page_size, &aside);
		sched_aside_check(&aside);
		if (r == 0)
			r = fault_point("core-written");
		if (r < 0)
			goto fail;
		progress(show_progress, "writing cores", i + 1, st.set.n);
	}
	progress_end(show_progress);
	s->total_ms = (now_ns() - t_start) / 1000000;
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
	sched_step_back(&aside);
	(void)fault_point("committed"); /* complete: only sleep= and sigkill make sense here */
	if (!o.quiet)
		print_summary(s, &cap, o.output);
	ret = 0;
	if (o.analyze) {
		/* The targets run again; the analysis reads only the directory just written. */
		fflush(stdout);
		if (!o.quiet)
			printf("\n");
		ret = analyze_dir(o.output, false, NULL, 0, NULL, 0);
	}
	goto out;

fail:
	ret = report_interrupt(r);
out:
	/* Every path: targets resumed (idempotent), helpers stopped, partial files removed. */
	progress_end(show_progress && ret != 0);
	freeze_session_thaw(&fs);
	guard_watchdog_disarm();
	sched_step_back(&aside);
	if (prepared)
		capture_release(&cap);
	if (ret != 0)
		snapdir_abort(&dir);
	else {
		free(dir.final);
		dir.final = NULL;
	}
	snap_state_done(&st);
	snapshot_free(s);
	free(o.pids);
	return ret;
}
