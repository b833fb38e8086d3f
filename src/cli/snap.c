/* SPDX-License-Identifier: MIT */
/*
 * osmosis snap: the options, snapshot_take (snapshot/take.c: the stage sequence, from choosing
 * the targets to renaming the directory into place), and the summary.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <json-c/json.h>
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
#include "cli/snap_opts.h"
#include "snapshot/take.h"
#include "snapshot/state.h"
#include "core/writer.h"
#include "core/zcore.h"
#include "proc/process.h"
#include "freeze/freeze.h"
#include "freeze/guard.h"
#include "proc/locks.h"
#include "proc/procfs.h"
#include "snapshot/dir.h"
#include "snapshot/manifest.h"

#define SUMMARY_MAX_LINES 40

static void usage(void)
{
	fputs(
	    "Usage: osmosis snap [OPTIONS] PID...\n"
	    "       osmosis snap [OPTIONS] --tree PID...\n"
	    "       osmosis snap [OPTIONS] --cgroup PATH\n"
	    "       osmosis snap [OPTIONS] --all\n"
	    "\n"
	    "Freeze every thread of the targets at one instant, keep their memory as it was, "
	    "resume\n"
	    "them, then write one ELF core per process (core.PID) and manifest.json, which also "
	    "holds\n"
	    "the state of the system: processes, threads and what each waits in, descriptors, "
	    "sockets,\n"
	    "memory and CPU. All targets are frozen together and resumed together.\n"
	    "\n"
	    "Targets:\n"
	    "  PID...                  these processes (each must be snapshotted, or nothing is)\n"
	    "      --tree              the PIDs and all their descendants, children born meanwhile "
	    "too\n"
	    "      --cgroup PATH       every process in a cgroup (v1 or v2; relative to "
	    "/sys/fs/cgroup)\n"
	    "      --all               every process but osmosis and kernel threads\n"
	    "  With --tree, --cgroup and --all, a process that cannot be captured (traced by "
	    "another\n"
	    "  tracer, not permitted, exited, ran a new program, became a zombie) is recorded in "
	    "the\n"
	    "  manifest with the reason and the rest is captured; it never fails the snapshot.\n"
	    "\n"
	    "Options:\n"
	    "  -o, --output DIR        directory to create (default ./osmosis-HOST-UTCDATE-TIME);\n"
	    "                          an existing DIR is refused\n"
	    "      --analyze           analyze the snapshot at once (as osmosis analyze DIR)\n",
	    stdout);
	snap_options_help(stdout);
	fputs(
	    "      --trigger JSON      record why the snapshot was taken (a JSON object) in the\n"
	    "                          manifest's \"trigger\" (osmosis watch does)\n"
	    "      --optional          PIDs that cannot be snapshotted or exit are recorded and\n"
	    "                          passed over, as with --tree (osmosis watch of many PIDs)\n"
	    "      --skip PID          never freeze PID, even when --all, --cgroup or --tree name "
	    "it\n"
	    "                          (repeatable)\n"
	    "      --status-fd FD      when done, write \"ok\" or \"error ERRNO\" and a newline to "
	    "FD\n"
	    "  -q, --quiet             print nothing on success\n"
	    "  -v, --verbose           say more on stderr\n"
	    "  -h, --help              show this help\n"
	    "\n"
	    "Exit status: 0 on success, 1 on failure (nothing is left under DIR), 2 on bad usage.\n"
	    "See osmosis-snap(1); read a snapshot with osmosis show DIR.\n",
	    stdout);
}

/* What osmosis snap adds to the snapshot's options. */
struct snap_opts {
	struct snapshot_options take;
	bool quiet, analyze;
	pid_t *pids;
	pid_t skip[64]; /* --skip */
	int status_fd;	/* --status-fd, or -1 */
};

static int parse_args(int argc, char **argv, struct snap_opts *so)
{
	enum {
		OPT_TREE = 0x100,
		OPT_CGROUP,
		OPT_ALL,
		OPT_ANALYZE,
		OPT_TRIGGER,
		OPT_SKIP,
		OPT_STATUS_FD,
		OPT_OPTIONAL,
	};
	static const struct option own[] = {
	    {"output", required_argument, NULL, 'o'},
	    {"tree", no_argument, NULL, OPT_TREE},
	    {"cgroup", required_argument, NULL, OPT_CGROUP},
	    {"all", no_argument, NULL, OPT_ALL},
	    {"analyze", no_argument, NULL, OPT_ANALYZE},
	    {"trigger", required_argument, NULL, OPT_TRIGGER},
	    {"skip", required_argument, NULL, OPT_SKIP},
	    {"optional", no_argument, NULL, OPT_OPTIONAL},
	    {"status-fd", required_argument, NULL, OPT_STATUS_FD},
	    {"quiet", no_argument, NULL, 'q'},
	    {"verbose", no_argument, NULL, 'v'},
	    {"help", no_argument, NULL, 'h'},
	};
	struct option longopts[ARRAY_SIZE(own) + 16] = {0};
	struct snapshot_options *o = &so->take;
	size_t n_skip = 0, n_pids = 0;
	int c;

	memcpy(longopts, own, sizeof(own));
	memcpy(longopts + ARRAY_SIZE(own), snap_longopts, snap_longopts_count * sizeof(*longopts));
	snap_options_init(o);
	so->status_fd = -1;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":o:m:sqvh", longopts, NULL)) != -1) {
		int r = snap_option(o, c, optarg);
		if (r < 0)
			return r;
		if (r > 0)
			continue;
		switch (c) {
		case 'o':
			o->output = optarg;
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
		case OPT_ANALYZE:
			so->analyze = true;
			break;
		case OPT_TRIGGER: {
			json_object *j = json_tokener_parse(optarg);
			bool ok = j && json_object_is_type(j, json_type_object);
			json_object_put(j);
			if (!ok || strlen(optarg) > 16384)
				return log_error(EINVAL, "--trigger needs a JSON object, not '%s'",
						 optarg);
			o->trigger = optarg;
			break;
		}
		case OPT_OPTIONAL:
			o->optional = true;
			break;
		case OPT_SKIP:
			if (n_skip >= ARRAY_SIZE(so->skip) ||
			    parse_pid(optarg, &so->skip[n_skip]) < 0)
				return log_error(EINVAL, "--skip needs a process id, not '%s'",
						 optarg);
			n_skip++;
			break;
		case OPT_STATUS_FD: {
			uint64_t fd;
			if (parse_u64(optarg, 10, &fd) < 0 || fd < 3 || fd > 1000000 ||
			    fcntl((int)fd, F_GETFD) < 0)
				return log_error(EINVAL,
						 "--status-fd needs an open descriptor, not '%s'",
						 optarg);
			so->status_fd = (int)fd;
			break;
		}
		case 'q':
			so->quiet = true;
			log_verbosity = 0;
			break;
		case 'v':
			log_verbosity = 2;
			break;
		case 'h':
			usage();
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
	o->skip = so->skip;
	o->n_skip = n_skip;
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
	so->pids = calloc(argc - optind + 1, sizeof(pid_t));
	if (!so->pids)
		return log_error(ENOMEM, "out of memory");
	for (int i = optind; i < argc; i++) {
		pid_t pid;
		bool dup = false;

		if (parse_pid(argv[i], &pid) < 0)
			return log_error(EINVAL, "'%s' is not a process id", argv[i]);
		for (size_t j = 0; j < n_pids; j++)
			dup |= so->pids[j] == pid;
		if (!dup)
			so->pids[n_pids++] = pid;
	}
	o->pids = so->pids;
	o->n_pids = n_pids;
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

static void print_summary(const struct snapshot_result *res)
{
	size_t frozen = 0, skipped = 0, exited = 0, shown = 0;
	const struct osm_snapshot *s = res->snap;
	const char *dir = res->dir;
	char a[32], b[32], m[32];
	double secs = res->copy_ns / 1e9;

	printf("snapshot %s\n", dir);
	printf("%8s  %-16s %8s %-8s %12s\n", "PID", "NAME", "THREADS", "METHOD", "CAPTURED");
	for (size_t i = 0; i < s->n_procs; i++) {
		const struct osm_process *p = s->procs[i];
		bool is_frozen = capture_state_frozen(p->capture);

		frozen += is_frozen;
		skipped += p->capture == CAPTURE_SKIPPED;
		exited += p->capture == CAPTURE_EXITED;
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
			       capture_state_name(p->capture),
			       p->capture_note ? p->capture_note : "");
	}
	if (shown < s->n_procs)
		printf("     ... %zu more (osmosis show %s lists them all)\n", s->n_procs - shown,
		       dir);
	if (skipped || exited)
		printf("%zu captured, %zu not captured (see manifest): %zu skipped, %zu exited "
		       "before or during the snapshot\n",
		       frozen, skipped + exited, skipped, exited);
	printf("pause: %.3f ms, %zu process%s frozen together (--method %s", s->pause_us / 1000.0,
	       frozen, frozen == 1 ? "" : "es", s->state_only ? "state-only" : s->method);
	if (!s->state_only) {
		printf("; %s copied in the pause in %.3f ms",
		       format_bytes(res->copied_bytes, b, sizeof(b)), res->copy_ns / 1e6);
		if (secs > 0 && res->copied_bytes > (1u << 20))
			printf(", %.2f GB/s", res->copied_bytes / secs / 1e9);
	}
	printf(")\n");
	/* A pause well beyond its copy: say where it went. */
	char parts[256];
	if (s->pause_us * 1000 > 2 * res->copy_ns &&
	    timeline_format_pause(&s->timeline, parts, sizeof(parts)))
		printf("pause %.0f ms: %s\n", s->pause_us / 1000.0, parts);
	printf("peak memory of osmosis: %s resident, %s in its buffers (budget %s)\n",
	       format_bytes(s->timeline.peak_rss, a, sizeof(a)),
	       format_bytes(s->timeline.peak_buffers, b, sizeof(b)),
	       format_bytes(s->timeline.max_memory, m, sizeof(m)));
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

int cmd_snap(int argc, char **argv)
{
	struct snap_opts so = {0};
	struct snapshot_result res;
	int r, ret;

	r = parse_args(argc, argv, &so);
	if (r < 0) {
		free(so.pids);
		return EXIT_USAGE;
	}
	so.take.progress = !so.quiet && isatty(STDERR_FILENO);
	r = snapshot_take(&so.take, &res);
	ret = r == 0 ? 0 : res.interrupted ? report_interrupt(r) : 1;
	if (r == 0 && !so.quiet)
		print_summary(&res);
	if (r == 0 && so.analyze) {
		/* The targets run again; the analysis reads only the directory just written. */
		fflush(stdout);
		if (!so.quiet)
			printf("\n");
		ret = analyze_dir(res.dir, false, NULL, 0, NULL, 0);
	}
	if (so.status_fd >= 0) {
		char line[64];
		int len = r == 0 ? snprintf(line, sizeof(line), "ok\n")
				 : snprintf(line, sizeof(line), "error %d\n", -r);
		(void)!write(so.status_fd, line, (size_t)len);
	}
	snapshot_result_done(&res);
	free(so.pids);
	return ret;
}
