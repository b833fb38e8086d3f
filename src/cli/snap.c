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
#include "cli/snap.h"
#include "core/writer.h"
#include "core/zcore.h"
#include "proc/process.h"
#include "freeze/freeze.h"
#include "freeze/guard.h"
#include "proc/locks.h"
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
    "      --max-memory SIZE   the most memory osmosis allocates for the snapshot (512M, 2G;\n"
    "                          default: the smaller of 1G and 10% of MemAvailable, within\n"
    "                          its cgroup's limit); pre-copy writes pages to the core file\n"
    "      --compress[=LEVEL]  write compressed cores, core.PID.zst (zstd, default level 1;\n"
    "                          osmosis show/analyze read them, osmosis core makes a plain one)\n"
    "  -m, --method METHOD     how memory is kept as it was at the freeze instant:\n"
    "                            copy     copied into a reserved buffer during the pause\n"
    "                            clone    a copy-on-write clone made inside the target\n"
    "                            precopy  copied while it runs, its writes tracked; the\n"
    "                                     pause copies only what changed\n"
    "                            auto     (default) chosen per process from its write rate\n"
    "      --max-pause SECONDS longest the targets may stay frozen (default 10); past it they\n"
    "                          are resumed and the snapshot fails\n"
    "      --sample SECONDS    CPU sampling interval before the freeze (default 0.25; 0: none)\n"
    "      --trigger JSON      record why the snapshot was taken (a JSON object) in the\n"
    "                          manifest's \"trigger\" (osmosis watch does)\n"
    "      --optional          PIDs that cannot be snapshotted or exit are recorded and\n"
    "                          passed over, as with --tree (osmosis watch of many PIDs)\n"
    "      --skip PID          never freeze PID, even when --all, --cgroup or --tree name it\n"
    "                          (repeatable)\n"
    "      --status-fd FD      when done, write \"ok\" or \"error ERRNO\" and a newline to FD\n"
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
	bool quiet, tree, all, state_only, analyze, optional;
	bool compress;
	int level;	     /* zstd's, with --compress */
	uint64_t max_memory; /* --max-memory, bytes; 0: the default */
	pid_t *pids;
	size_t n_pids;
	const char *trigger; /* --trigger: a JSON object's text */
	pid_t skip[64];	     /* --skip */
	size_t n_skip;
	int status_fd; /* --status-fd, or -1 */
};

/* "512M", "2G", "1.5GiB", "1048576": bytes. */
static int parse_size(const char *s, uint64_t *ret)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || v <= 0)
		return -EINVAL;
	switch (*end) {
	case 'k':
	case 'K':
		v *= 1024, end++;
		break;
	case 'm':
	case 'M':
		v *= 1024.0 * 1024, end++;
		break;
	case 'g':
	case 'G':
		v *= 1024.0 * 1024 * 1024, end++;
		break;
	case 't':
	case 'T':
		v *= 1024.0 * 1024 * 1024 * 1024, end++;
		break;
	}
	if (!strcmp(end, "iB") || !strcmp(end, "B"))
		end += strlen(end);
	if (*end || v > 1e18)
		return -EINVAL;
	*ret = (uint64_t)v;
	return 0;
}

/* The default budget: the smaller of 1 GiB and a tenth of MemAvailable, and never more than
 * osmosis's cgroup leaves it (v1 memory.limit_in_bytes or v2 memory.max). */
static uint64_t default_max_memory(void)
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

static int parse_args(int argc, char **argv, struct snap_opts *o)
{
	enum {
		OPT_MAX_PAUSE = 0x100,
		OPT_TREE,
		OPT_CGROUP,
		OPT_ALL,
		OPT_SAMPLE,
		OPT_ANALYZE,
		OPT_TRIGGER,
		OPT_SKIP,
		OPT_STATUS_FD,
		OPT_COMPRESS,
		OPT_MAX_MEMORY,
		OPT_OPTIONAL,
	};
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
	    {"trigger", required_argument, NULL, OPT_TRIGGER},
	    {"skip", required_argument, NULL, OPT_SKIP},
	    {"optional", no_argument, NULL, OPT_OPTIONAL},
	    {"status-fd", required_argument, NULL, OPT_STATUS_FD},
	    {"compress", optional_argument, NULL, OPT_COMPRESS},
	    {"max-memory", required_argument, NULL, OPT_MAX_MEMORY},
	    {"quiet", no_argument, NULL, 'q'},
	    {"verbose", no_argument, NULL, 'v'},
	    {"help", no_argument, NULL, 'h'},
	    {},
	};
	int c;

	o->method = "auto";
	o->status_fd = -1;
	o->level = ZCORE_DEFAULT_LEVEL;
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
			if (!capture_method_find(optarg))
				return log_error(EINVAL, "unknown method '%s' (use %s)", optarg,
						 capture_method_list());
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
			if (o->n_skip >= ARRAY_SIZE(o->skip) ||
			    parse_pid(optarg, &o->skip[o->n_skip]) < 0)
				return log_error(EINVAL, "--skip needs a process id, not '%s'",
						 optarg);
			o->n_skip++;
			break;
		case OPT_STATUS_FD: {
			uint64_t fd;
			if (parse_u64(optarg, 10, &fd) < 0 || fd < 3 || fd > 1000000 ||
			    fcntl((int)fd, F_GETFD) < 0)
				return log_error(EINVAL,
						 "--status-fd needs an open descriptor, not '%s'",
						 optarg);
			o->status_fd = (int)fd;
			break;
		}
		case OPT_MAX_MEMORY:
			if (parse_size(optarg, &o->max_memory) < 0 || o->max_memory < (64u << 20))
				return log_error(
				    EINVAL,
				    "--max-memory needs a size of at least 64M (as 512M, "
				    "2G), not '%s'",
				    optarg);
			break;
		case OPT_COMPRESS: {
			int64_t level = ZCORE_DEFAULT_LEVEL;
			if (optarg && (parse_i64(optarg, 10, &level) < 0 || level < -7 ||
				       level > 19 || level == 0))
				return log_error(
				    EINVAL,
				    "--compress takes a zstd level from -7 to 19 (not 0), "
				    "not '%s'",
				    optarg);
			o->compress = true;
			o->level = (int)level;
			break;
		}
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

static void aside_tick(void *arg)
{
	sched_aside_check(arg);
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
		      struct sched_aside *aside, const struct core_opts *co)
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
	fs.tick = aside_tick;
	fs.tick_arg = aside;
	if (co->compress) {
		zs = zstd_sink_new(&fs.base, co->level, co->n_workers);
		if (!zs) {
			outfile_abort(&of);
			return log_error(ENOMEM, "cannot start compressing %s/%s: out of memory",
					 dir->final, p->core_name);
		}
		zstd_sink_set_tick(zs, aside_tick, aside);
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
	char a[32], b[32], m[32];
	double secs = c->copy_ns / 1e9;

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
		       format_bytes(c->copied_bytes, b, sizeof(b)), c->copy_ns / 1e6);
		if (secs > 0 && c->copied_bytes > (1u << 20))
			printf(", %.2f GB/s", c->copied_bytes / secs / 1e9);
	}
	printf(")\n");
	/* A pause well beyond its copy: say where it went. */
	char parts[256];
	if (s->pause_us * 1000 > 2 * c->copy_ns &&
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

/* The targets, chosen by the options. */
static int choose_targets(const struct snap_opts *o, struct snap_state *st)
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
	struct sched_freeze boost = {0};
	uint64_t t_start = now_ns();
	struct osm_timeline *tl;
	size_t ph;
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
	guard_set_max_pause(o.max_pause_ns); /* also for threads held outside the freeze */
	s = calloc(1, sizeof(*s));
	if (!s) {
		log_error(ENOMEM, "out of memory");
		goto out;
	}
	tl = &s->timeline;
	timeline_init(tl);
	tl->t0_ns = t_start;
	st.snap = s;
	st.tree = o.tree;
	st.skip = o.skip;
	st.n_skip = o.n_skip;
	if (o.trigger && !(s->trigger_json = strdup(o.trigger))) {
		log_error(ENOMEM, "out of memory");
		goto out;
	}
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
	ph = timeline_begin(tl, "sample", 0);
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
	timeline_end(tl, ph);
	ph = timeline_begin(tl, "state", 0);
	if (snap_load_state(&st, show_progress) < 0)
		goto out;
	/* File locks, system-wide: read before the pause, not inside it (best effort). */
	(void)proc_locks_load(s);
	timeline_end(tl, ph);

	if (!o.output) {
		default_output(defdir, sizeof(defdir));
		o.output = defdir;
	}
	if ((r = snapdir_create(o.output, &dir)) < 0)
		goto out;

	cap.requested = capture_method_parse(o.method);
	cap.set = &st.set;
	cap.tl = tl;
	cap.max_memory = o.max_memory ? MIN(o.max_memory, proc_memory_available_to_self())
				      : default_max_memory();
	cap.stage_dirfd = o.state_only ? -1 : dir.dirfd;
	cap.stage_separate = o.compress;
	tl->max_memory = cap.max_memory;
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
	/* At normal priority (at least) from here to the thaw; aside only after it. */
	sched_freeze_raise(&boost);
	ph = timeline_begin(tl, "freeze", 0);
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
	struct core_opts co = {.compress = o.compress,
			       .level = o.level,
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
		if (o.state_only) {
			t->proc->capture = CAPTURE_STATE;
			continue;
		}
		r = write_core(&dir, t, cap.page_size, &aside, &co);
		sched_aside_check(&aside);
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
	if ((r = snapdir_commit(&dir)) < 0)
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
	sched_freeze_lower(&boost);
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
	if (o.status_fd >= 0) {
		char line[64];
		int len = ret == 0 ? snprintf(line, sizeof(line), "ok\n")
				   : snprintf(line, sizeof(line), "error %d\n", r < 0 ? -r : 0);
		(void)!write(o.status_fd, line, (size_t)len);
	}
	snap_state_done(&st);
	snapshot_free(s);
	free(o.pids);
	return ret;
}
