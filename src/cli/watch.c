/* SPDX-License-Identifier: MIT */
/*
 * osmosis watch: watch processes from /proc and take a snapshot when a condition holds.
 *
 * The loop, once per tick: refresh the targets (a cgroup's or a tree's members are found anew),
 * read what the conditions need (src/watch/sample.c), evaluate them (evaluate.c) and, when one
 * fires and the cooldown is over, take a snapshot. The watcher itself never stops a target:
 * a snapshot is taken by a child process running `osmosis snap` (/proc/self/exe, so the same
 * binary), which freezes and resumes the targets by its own guarantees; a crash in it cannot
 * take the watcher down. SIGTERM and SIGINT during a snapshot are passed on to the child (which
 * resumes its targets and removes its partial directory) and the watcher exits when it has.
 * The trigger goes into the snapshot's manifest (snap --trigger), and the child says on a pipe
 * whether it succeeded and why not (snap --status-fd): a full disk ends the watch with an
 * error; any other failure is reported and the watch goes on.
 *
 * Snapshots go to BASE/<UTC time>-<condition>/. Beyond --keep snapshots or --max-disk bytes
 * under BASE, the oldest of them are removed, never the one just taken, never anything else.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <json-c/json.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/fs.h"
#include "base/log.h"
#include "base/parse.h"
#include "base/timeutil.h"
#include "base/util.h"
#include "cli/cli.h"
#include "cli/snap_opts.h"
#include "snapshot/manifest.h"
#include "watch/watch.h"

#define MAX_PIDS	   1024
#define MAX_FAILURES	   5
#define CALIBRATE_EVERY_NS (60ull * 1000000000ull)

extern volatile sig_atomic_t watch_usr1_pending;
static volatile sig_atomic_t stop_signal;

struct watch_opts {
	pid_t pids[MAX_PIDS];
	size_t n_pids;
	bool tree, analyze, quiet, dry_run;
	struct snapshot_options snap; /* how each snapshot is taken (cli/snap_opts.h) */
	const char *cgroup;
	const char *base;
	uint64_t count; /* 0: no limit */
	uint64_t cooldown_ns;
	uint64_t keep; /* 0: no limit */
	uint64_t max_disk;
	uint64_t interval_ns; /* 0: chosen from the conditions */
	uint64_t check_interval_ns, check_timeout_ns;
	bool on_signal;
};

static void usage(FILE *f)
{
	fprintf(f, "Usage: osmosis watch [--tree | --cgroup PATH] PID... [-o BASE] [-n COUNT]\n"
		   "                     [--cooldown SECONDS] [--keep K] [--max-disk SIZE]\n"
		   "                     [--analyze] CONDITION...\n"
		   "\n"
		   "Watch processes from /proc, without stopping them, and take a snapshot (as\n"
		   "osmosis snap) when a condition holds. Any condition that holds fires.\n"
		   "\n"
		   "Conditions:\n");
	for (size_t i = 0; i < watch_condition_count; i++) {
		const struct watch_condition *d = watch_condition_registry[i];
		char opt[64];
		snprintf(opt, sizeof(opt), "--%s%s%s", d->name, d->arg ? " " : "",
			 d->arg ? d->arg : "");
		fprintf(f, "  %-28s %s\n", opt, d->help);
	}
	fprintf(
	    f,
	    "\n"
	    "Targets:\n"
	    "  PID...                       these processes; the watch ends when all are gone\n"
	    "      --tree                   the PIDs and their descendants, found anew each tick\n"
	    "      --cgroup PATH            the members of a cgroup and those below it, found\n"
	    "                               anew each tick (a restarted service is watched\n"
	    "                               again); / is the whole machine\n"
	    "Options:\n"
	    "  -o, --output BASE            where snapshots go (default ./osmosis-watch-HOST),\n"
	    "                               each in BASE/UTCTIME-CONDITION/\n"
	    "  -n, --count COUNT            end after COUNT snapshots (default 1; 0: no limit)\n"
	    "      --cooldown SECONDS       no snapshot sooner than this after one (default 10)\n"
	    "      --keep K                 keep the newest K snapshots under BASE\n"
	    "      --max-disk SIZE          keep the snapshots under BASE within SIZE\n"
	    "      --analyze                analyze each snapshot (analysis.json, report.txt)\n"
	    "                               and diff it with the one before (diff.json, diff.txt)\n"
	    "      --state-only             snapshots without memory (snap --state-only)\n"
	    "      --method, --max-memory, --compress, --max-pause, --sample\n"
	    "                               how each snapshot is taken: as osmosis snap's\n"
	    "      --dry-run                print what would fire, take no snapshot\n"
	    "      --interval SECONDS       how often /proc is read (default: from the\n"
	    "                               conditions' times, 0.1 to 1 s)\n"
	    "  -q, --quiet                  print nothing but errors\n"
	    "  -v, --verbose                say more on stderr\n"
	    "  -h, --help                   show this help\n"
	    "\n"
	    "Each snapshot's manifest.json records its trigger: {condition, value, threshold,\n"
	    "unit, held_for_s, pid, tid, detail}. Exit status: 0 after COUNT snapshots, when the\n"
	    "targets are gone, or on SIGTERM/SIGINT between snapshots; 1 on an error (a full\n"
	    "disk); 2 on bad usage; 128+N when signal N interrupted a snapshot. See\n"
	    "osmosis-watch(1).\n");
}

/* The conditions as the man page lists them (docs/osmosis-watch.1 is checked against it). */
static void list_conditions(void)
{
	for (size_t i = 0; i < watch_condition_count; i++) {
		const struct watch_condition *d = watch_condition_registry[i];
		printf("--%s%s%s\t%s\tvalue: %s\n", d->name, d->arg ? " " : "",
		       d->arg ? d->arg : "", d->help, d->records);
	}
}

static int add_condition(struct watch *w, const struct watch_condition *d, const char *arg,
			 const struct watch_opts *o)
{
	struct watch_cond *c;
	char err[200] = "";

	for (size_t i = 0; i < w->n_conds; i++)
		if (w->conds[i].d == d)
			return log_error(EINVAL, "--%s is given twice", d->name);
	if (w->n_conds >= WATCH_MAX_CONDS)
		return log_error(EINVAL, "too many conditions");
	c = &w->conds[w->n_conds];
	memset(c, 0, sizeof(*c));
	c->d = d;
	c->index = (int)w->n_conds;
	c->every_ns = o->check_interval_ns;
	c->timeout_ns = o->check_timeout_ns;
	c->needs = d->needs;
	if (d->parse(c, arg ? arg : "", err, sizeof(err)) < 0)
		return log_error(EINVAL, "--%s %s", d->name, err);
	w->n_conds++;
	w->needs |= c->needs;
	return 0;
}

static int parse_args(int argc, char **argv, struct watch_opts *o, struct watch *w)
{
	enum {
		OPT_TREE = 0x100,
		OPT_CGROUP,
		OPT_COOLDOWN,
		OPT_KEEP,
		OPT_MAX_DISK,
		OPT_ANALYZE,
		OPT_INTERVAL,
		OPT_CHECK_INTERVAL,
		OPT_CHECK_TIMEOUT,
		OPT_LIST,
		OPT_DRY_RUN,
		OPT_COND = 0x200,
	};
	struct option longopts[64] = {
	    {"tree", no_argument, NULL, OPT_TREE},
	    {"cgroup", required_argument, NULL, OPT_CGROUP},
	    {"output", required_argument, NULL, 'o'},
	    {"count", required_argument, NULL, 'n'},
	    {"cooldown", required_argument, NULL, OPT_COOLDOWN},
	    {"keep", required_argument, NULL, OPT_KEEP},
	    {"max-disk", required_argument, NULL, OPT_MAX_DISK},
	    {"analyze", no_argument, NULL, OPT_ANALYZE},
	    {"interval", required_argument, NULL, OPT_INTERVAL},
	    {"check-interval", required_argument, NULL, OPT_CHECK_INTERVAL},
	    {"check-timeout", required_argument, NULL, OPT_CHECK_TIMEOUT},
	    {"list-conditions", no_argument, NULL, OPT_LIST},
	    {"dry-run", no_argument, NULL, OPT_DRY_RUN},
	    {"quiet", no_argument, NULL, 'q'},
	    {"verbose", no_argument, NULL, 'v'},
	    {"help", no_argument, NULL, 'h'},
	};
	size_t n_fixed = 16;
	struct {
		const struct watch_condition *d;
		const char *arg;
	} given[WATCH_MAX_CONDS];
	size_t n_given = 0;
	int c;

	memcpy(longopts + n_fixed, snap_longopts, snap_longopts_count * sizeof(*longopts));
	n_fixed += snap_longopts_count;
	snap_options_init(&o->snap);
	for (size_t i = 0; i < watch_condition_count; i++)
		longopts[n_fixed + i] = (struct option){
		    watch_condition_registry[i]->name,
		    watch_condition_registry[i]->arg ? required_argument : no_argument, NULL,
		    OPT_COND + (int)i};
	o->count = 1;
	o->cooldown_ns = 10ull * 1000000000ull;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":o:n:qvh", longopts, NULL)) != -1) {
		uint64_t v;
		double d;
		bool pct;
		char err[160];

		int sr = snap_option(&o->snap, c, optarg);
		if (sr < 0)
			return sr;
		if (sr > 0)
			continue;
		switch (c) {
		case OPT_TREE:
			o->tree = true;
			break;
		case OPT_CGROUP:
			o->cgroup = optarg;
			break;
		case 'o':
			o->base = optarg;
			break;
		case 'n':
			if (parse_u64(optarg, 10, &o->count) < 0)
				return log_error(EINVAL, "--count needs a number, not '%s'",
						 optarg);
			break;
		case OPT_COOLDOWN:
			if (!strcmp(optarg, "0"))
				o->cooldown_ns = 0;
			else if (parse_duration_ns(optarg, &o->cooldown_ns) < 0)
				return log_error(EINVAL, "--cooldown needs seconds, not '%s'",
						 optarg);
			break;
		case OPT_KEEP:
			if (parse_u64(optarg, 10, &o->keep) < 0 || o->keep == 0)
				return log_error(EINVAL, "--keep needs a count from 1, not '%s'",
						 optarg);
			break;
		case OPT_MAX_DISK:
			if (watch_parse_size_or_pct(optarg, &d, &pct, err, sizeof(err)) < 0 || pct)
				return log_error(
				    EINVAL, "--max-disk needs a size (500M, 2G), not '%s'", optarg);
			o->max_disk = (uint64_t)d;
			break;
		case OPT_ANALYZE:
			o->analyze = true;
			break;
		case OPT_INTERVAL:
			if (parse_duration_ns(optarg, &o->interval_ns) < 0 ||
			    o->interval_ns < 10000000ull || o->interval_ns > 60000000000ull)
				return log_error(EINVAL,
						 "--interval needs 0.01 to 60 seconds, not '%s'",
						 optarg);
			break;
		case OPT_CHECK_INTERVAL:
		case OPT_CHECK_TIMEOUT:
			if (parse_duration_ns(optarg, &v) < 0)
				return log_error(EINVAL, "--%s needs seconds, not '%s'",
						 c == OPT_CHECK_INTERVAL ? "check-interval"
									 : "check-timeout",
						 optarg);
			if (c == OPT_CHECK_INTERVAL)
				o->check_interval_ns = v;
			else
				o->check_timeout_ns = v;
			break;
		case OPT_DRY_RUN:
			o->dry_run = true;
			break;
		case OPT_LIST:
			list_conditions();
			exit(0); /* only from argument parsing: nothing is held yet */
		case 'q':
			o->quiet = true;
			log_verbosity = 0;
			break;
		case 'v':
			log_verbosity = 2;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		case ':':
			return log_error(EINVAL,
					 "option '%s' needs an argument (see osmosis watch --help)",
					 argv[optind - 1]);
		default:
			if (c >= OPT_COND && c < OPT_COND + (int)watch_condition_count) {
				if (n_given >= ARRAY_SIZE(given))
					return log_error(EINVAL, "too many conditions");
				given[n_given].d = watch_condition_registry[c - OPT_COND];
				given[n_given++].arg = optarg;
				break;
			}
			if (optopt)
				return log_error(EINVAL,
						 "unknown option '-%c' (see osmosis watch --help)",
						 optopt);
			return log_error(EINVAL, "unknown option '%s' (see osmosis watch --help)",
					 argv[optind - 1]);
		}
	}
	/* Conditions after the options they read (--check-interval may follow --check). */
	for (size_t i = 0; i < n_given; i++) {
		int r = add_condition(w, given[i].d, given[i].arg, o);
		if (r < 0)
			return r;
		o->on_signal |= given[i].d == watch_condition_find("on-signal");
	}
	if (!w->n_conds)
		return log_error(EINVAL, "no condition given (see osmosis watch --help)");
	if (o->cgroup && (optind < argc || o->tree))
		return log_error(EINVAL, "--cgroup takes no PIDs and no --tree");
	if (!o->cgroup && optind >= argc)
		return log_error(EINVAL, "no PID given (see osmosis watch --help)");
	for (int i = optind; i < argc; i++) {
		pid_t pid;
		if (parse_pid(argv[i], &pid) < 0)
			return log_error(EINVAL, "'%s' is not a process id", argv[i]);
		if (o->n_pids >= MAX_PIDS)
			return log_error(EINVAL, "at most %d PIDs", MAX_PIDS);
		o->pids[o->n_pids++] = pid;
	}
	return 0;
}

static void on_stop(int sig)
{
	stop_signal = sig;
}

static void on_usr1(int sig)
{
	(void)sig;
	watch_usr1_pending = 1;
}

static void on_chld(int sig)
{
	(void)sig;
}

/* Signals are blocked but while waiting (ppoll), so none is lost between checks. */
static int install_signals(sigset_t *ret_wait_mask, bool on_signal)
{
	struct sigaction sa = {0};
	sigset_t block;

	sigemptyset(&sa.sa_mask);
	sa.sa_handler = on_stop;
	if (sigaction(SIGTERM, &sa, NULL) < 0 || sigaction(SIGINT, &sa, NULL) < 0)
		return -errno;
	sa.sa_handler = on_signal ? on_usr1 : SIG_IGN;
	sigaction(SIGUSR1, &sa, NULL);
	sa.sa_handler = on_chld;
	sa.sa_flags = SA_NOCLDSTOP;
	sigaction(SIGCHLD, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGUSR1);
	sigaddset(&block, SIGCHLD);
	if (sigprocmask(SIG_BLOCK, &block, ret_wait_mask) < 0)
		return -errno;
	sigdelset(ret_wait_mask, SIGTERM);
	sigdelset(ret_wait_mask, SIGINT);
	sigdelset(ret_wait_mask, SIGUSR1);
	sigdelset(ret_wait_mask, SIGCHLD);
	return 0;
}

static void wait_for(uint64_t ns, const sigset_t *mask)
{
	struct timespec ts = {(time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull)};
	ppoll(NULL, 0, &ts, mask);
}

/* ------------------------------------------------------------------------------------------ */
/* Children: osmosis snap, analyze, diff */

struct child_result {
	int status;   /* waitpid status */
	int sent_sig; /* the signal passed on, or 0 */
};

/* Run /proc/self/exe with argv, stdout to out_fd (or inherited when < 0), the status pipe's
 * write end as fd 3 when status_fd >= 0; wait, passing SIGTERM/SIGINT on. */
static int run_self(char **argv, int out_fd, int status_fd, const sigset_t *wait_mask,
		    struct child_result *ret)
{
	pid_t pid;

	ret->sent_sig = 0;
	fflush(stdout);
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		sigset_t none;
		struct sigaction dfl = {0};
		dfl.sa_handler = SIG_DFL;
		sigaction(SIGTERM, &dfl, NULL);
		sigaction(SIGINT, &dfl, NULL);
		sigaction(SIGUSR1, &dfl, NULL);
		sigaction(SIGCHLD, &dfl, NULL);
		sigaction(SIGPIPE, &dfl, NULL);
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		if (out_fd >= 0)
			dup2(out_fd, STDOUT_FILENO);
		if (status_fd >= 0) {
			if (status_fd != 3)
				dup2(status_fd, 3);
			else
				fcntl(3, F_SETFD, 0);
		}
		execv("/proc/self/exe", argv);
		_exit(127);
	}
	for (;;) {
		int status;
		pid_t r = waitpid(pid, &status, WNOHANG);
		if (r == pid) {
			ret->status = status;
			return 0;
		}
		if (r < 0 && errno != EINTR)
			return -errno;
		if (stop_signal && !ret->sent_sig) {
			ret->sent_sig = stop_signal;
			kill(pid, stop_signal);
		}
		wait_for(200000000ull, wait_mask);
	}
}

/* ------------------------------------------------------------------------------------------ */
/* The snapshot directories under BASE */

static bool is_snapshot_name(const char *n)
{
	/* 20261201T083012Z-cpu */
	for (int i = 0; i < 8; i++)
		if (n[i] < '0' || n[i] > '9')
			return false;
	if (n[8] != 'T')
		return false;
	for (int i = 9; i < 15; i++)
		if (n[i] < '0' || n[i] > '9')
			return false;
	return n[15] == 'Z' && n[16] == '-' && n[17];
}

struct snapentry {
	char name[256];
	uint64_t bytes;
};

static int cmp_entry(const void *a, const void *b)
{
	return strcmp(((const struct snapentry *)a)->name, ((const struct snapentry *)b)->name);
}

static uint64_t dir_bytes(int basefd, const char *name)
{
	_cleanup_closedir_ DIR *d = NULL;
	struct dirent *de;
	uint64_t sum = 0;
	int fd = openat(basefd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

	if (fd < 0 || !(d = fdopendir(fd))) {
		if (fd >= 0)
			close(fd);
		return 0;
	}
	while ((de = readdir(d))) {
		struct stat st;
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		    S_ISREG(st.st_mode))
			sum += (uint64_t)st.st_blocks * 512;
	}
	return sum;
}

/* Our snapshot directories under BASE, oldest first. */
static int list_snapshots(int basefd, struct snapentry **ret, size_t *ret_n)
{
	_cleanup_closedir_ DIR *d = NULL;
	struct snapentry *v = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	int fd = dup(basefd);

	if (fd < 0 || !(d = fdopendir(fd))) {
		if (fd >= 0)
			close(fd);
		return -errno;
	}
	rewinddir(d);
	while ((de = readdir(d))) {
		struct stat st;
		if (!is_snapshot_name(de->d_name) || strlen(de->d_name) >= sizeof(v->name))
			continue;
		if (fstatat(basefd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		    !S_ISDIR(st.st_mode))
			continue;
		if (grow_array((void **)&v, &cap, n + 1, sizeof(*v))) {
			free(v);
			return -ENOMEM;
		}
		snprintf(v[n].name, sizeof(v[n].name), "%s", de->d_name);
		v[n].bytes = dir_bytes(basefd, de->d_name);
		n++;
	}
	if (n)
		qsort(v, n, sizeof(*v), cmp_entry);
	*ret = v;
	*ret_n = n;
	return 0;
}

/* Remove one snapshot directory: its regular files, then itself. Nothing else is touched. */
static int remove_snapshot(int basefd, const char *name)
{
	_cleanup_closedir_ DIR *d = NULL;
	struct dirent *de;
	int fd = openat(basefd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

	if (fd < 0 || !(d = fdopendir(fd))) {
		if (fd >= 0)
			close(fd);
		return -errno;
	}
	while ((de = readdir(d))) {
		struct stat st;
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		    S_ISREG(st.st_mode))
			unlinkat(dirfd(d), de->d_name, 0);
	}
	return unlinkat(basefd, name, AT_REMOVEDIR) < 0 ? -errno : 0;
}

static void enforce_retention(int basefd, const char *base, const struct watch_opts *o,
			      const char *newest)
{
	_cleanup_free_ struct snapentry *v = NULL;
	size_t n = 0;
	uint64_t total = 0;

	if (!o->keep && !o->max_disk)
		return;
	if (list_snapshots(basefd, &v, &n) < 0)
		return;
	for (size_t i = 0; i < n; i++)
		total += v[i].bytes;
	for (size_t i = 0; i < n; i++) {
		size_t left = n - i;
		bool over = (o->keep && left > o->keep) || (o->max_disk && total > o->max_disk);
		char b[32];
		if (!over || !strcmp(v[i].name, newest))
			break;
		if (remove_snapshot(basefd, v[i].name) == 0) {
			total -= v[i].bytes;
			if (!o->quiet)
				printf("removed %s/%s (%s): beyond %s\n", base, v[i].name,
				       format_bytes(v[i].bytes, b, sizeof(b)),
				       o->keep && left > o->keep ? "--keep" : "--max-disk");
		} else {
			log_warn("cannot remove %s/%s: %s", base, v[i].name, strerror(errno));
			break;
		}
	}
	if (o->max_disk && total > o->max_disk)
		log_warn("the newest snapshot alone is larger than --max-disk allows; it is kept");
}

/* ------------------------------------------------------------------------------------------ */
/* Taking one snapshot */

static char *trigger_json(const struct watch_fire *f)
{
	json_object *o = json_object_new_object();
	char *out;

	json_object_object_add(o, "condition", json_object_new_string(f->cond->d->name));
	json_object_object_add(o, "value", json_object_new_double(f->value));
	json_object_object_add(o, "threshold", json_object_new_double(f->threshold));
	json_object_object_add(o, "unit", json_object_new_string(f->cond->unit));
	json_object_object_add(o, "held_for_s", json_object_new_double(f->held_for_s));
	json_object_object_add(o, "pid", f->pid ? json_object_new_int(f->pid) : NULL);
	json_object_object_add(o, "tid", f->tid ? json_object_new_int(f->tid) : NULL);
	json_object_object_add(o, "detail", json_object_new_string(f->detail));
	{
		/* when it fired, on the clock of /proc/uptime and of the manifest's uptime_s */
		struct timespec bt;
		clock_gettime(CLOCK_BOOTTIME, &bt);
		json_object_object_add(
		    o, "fired_uptime_s",
		    json_object_new_double((double)bt.tv_sec + (double)bt.tv_nsec / 1e9));
	}
	out = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	json_object_put(o);
	return out;
}

/* Write `osmosis ARGS` output into dirfd/name (temporary name, then renamed). */
/* One line about DIR's analysis.json: how many findings of each severity and the first one's
 * pattern ("1 error (deadlock)"), or NULL when it cannot be read (bounded: a snapshot is data). */
static void print_analyzed(int dfd, const char *path)
{
	_cleanup_free_ char *buf = NULL;
	size_t len;
	struct stat st;
	json_object *root = NULL, *f, *v;
	size_t n[3] = {0};
	const char *first = NULL;

	if (fstatat(dfd, "analysis.json", &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
	    st.st_size < (64 << 20) && read_file_at(dfd, "analysis.json", &buf, &len) == 0)
		root = json_tokener_parse(buf);
	if (!root || !json_object_object_get_ex(root, "findings", &f) ||
	    !json_object_is_type(f, json_type_array)) {
		printf("  analysis failed: see %s/report.txt\n", path);
		json_object_put(root);
		return;
	}
	for (size_t i = 0; i < json_object_array_length(f); i++) {
		json_object *x = json_object_array_get_idx(f, i);
		const char *sev = json_object_object_get_ex(x, "severity", &v) &&
					  json_object_is_type(v, json_type_string)
				      ? json_object_get_string(v)
				      : "";
		n[!strcmp(sev, "error") ? 0 : !strcmp(sev, "warning") ? 1 : 2]++;
		if (!first && json_object_object_get_ex(x, "pattern", &v) &&
		    json_object_is_type(v, json_type_string))
			first = json_object_get_string(v);
	}
	printf("  analyzed: %zu error%s, %zu warning%s, %zu note%s%s%s%s, report %s/report.txt\n",
	       n[0], n[0] == 1 ? "" : "s", n[1], n[1] == 1 ? "" : "s", n[2], n[2] == 1 ? "" : "s",
	       first ? " (top: " : "", first ? first : "", first ? ")" : "", path);
	json_object_put(root);
}

static void run_into(int dirfd, const char *name, char **argv, const sigset_t *mask)
{
	struct outfile of;
	struct child_result cr;

	if (outfile_open(dirfd, name, &of) < 0)
		return;
	if (run_self(argv, of.fd, -1, mask, &cr) < 0 || !WIFEXITED(cr.status) ||
	    WEXITSTATUS(cr.status) > 1) {
		outfile_abort(&of);
		log_warn("could not write %s", name);
		return;
	}
	if (outfile_commit(&of) < 0)
		log_warn("could not write %s", name);
}

struct watch_run {
	struct watch w;
	struct watch_opts o;
	struct watch_targets targets;
	char base[4096];
	int basefd;
	sigset_t wait_mask;
	char prev[4096]; /* the previous snapshot, for --analyze's diff */
	uint64_t taken, failures;
};

/* Returns 0 (taken or failed without consequence), 1 to stop with an error, or 128+N when
 * signal N interrupted it. */
static int take_snapshot(struct watch_run *run, const struct watch_fire *f)
{
	struct watch *w = &run->w;
	_cleanup_free_ char *trig = trigger_json(f);
	char name[256], path[4400], stamp[32], skip[16], statusfd_arg[8] = "3", line[64] = "";
	char *argv[MAX_PIDS + 32 + SNAP_ARGV_MAX];
	size_t argc = 0;
	int pfd[2];
	struct child_result cr;
	time_t now = time(NULL);
	struct tm tm;
	int r, err = 0;

	gmtime_r(&now, &tm);
	strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm);
	snprintf(name, sizeof(name), "%s-%s", stamp, f->cond->d->name);
	for (int i = 2; faccessat(run->basefd, name, F_OK, AT_SYMLINK_NOFOLLOW) == 0 && i < 100;
	     i++)
		snprintf(name, sizeof(name), "%s-%s-%d", stamp, f->cond->d->name, i);
	snprintf(path, sizeof(path), "%s/%s", run->base, name);
	snprintf(skip, sizeof(skip), "%d", w->self);

	argv[argc++] = "osmosis";
	argv[argc++] = "snap";
	argv[argc++] = "-q";
	argv[argc++] = "-o";
	argv[argc++] = path;
	argv[argc++] = "--trigger";
	argv[argc++] = trig;
	argv[argc++] = "--status-fd";
	argv[argc++] = statusfd_arg;
	argv[argc++] = "--skip";
	argv[argc++] = skip;
	struct snap_argv_buf sbuf;
	snap_options_argv(&run->o.snap, argv, &argc, &sbuf);
	if (!run->o.tree && (run->o.cgroup || run->o.n_pids > 1))
		argv[argc++] = "--optional"; /* one untraceable process of many skips, not fails */
	char pidbuf[MAX_PIDS][12];
	{
		size_t k = 0;
		if (run->o.tree)
			argv[argc++] = "--tree";
		/* the roots still alive with --tree; the live targets otherwise */
		for (size_t i = 0; i < w->n_procs && k < MAX_PIDS; i++) {
			struct wproc *p = w->procs[i];
			bool root = !run->o.tree;
			for (size_t j = 0; !root && j < run->o.n_pids; j++)
				root = run->o.pids[j] == p->pid;
			if (p->gone || !root)
				continue;
			snprintf(pidbuf[k], sizeof(pidbuf[k]), "%d", p->pid);
			argv[argc++] = pidbuf[k++];
		}
		for (size_t i = 0; !k && i < w->n_procs && i < MAX_PIDS; i++)
			if (!w->procs[i]->gone) {
				snprintf(pidbuf[k], sizeof(pidbuf[k]), "%d", w->procs[i]->pid);
				argv[argc++] = pidbuf[k++];
			}
		if (!k)
			return 0; /* every target went away meanwhile */
	}
	argv[argc] = NULL;

	if (pipe2(pfd, O_CLOEXEC) < 0)
		return log_error(errno, "cannot make a pipe: %m"), 1;
	/* The write end becomes the child's fd 3 (run_self moves it there). */
	r = run_self(argv, -1, pfd[1], &run->wait_mask, &cr);
	close(pfd[1]);
	if (r == 0) {
		ssize_t n = read(pfd[0], line, sizeof(line) - 1);
		line[n > 0 ? n : 0] = 0;
	}
	close(pfd[0]);
	if (r < 0)
		return log_error(r, "cannot run osmosis snap: %m"), 1;
	if (cr.sent_sig) {
		log_error(EINTR, "interrupted by SIG%s during a snapshot; the targets were resumed",
			  sigabbrev_np(cr.sent_sig) ? sigabbrev_np(cr.sent_sig) : "?");
		return 128 + cr.sent_sig;
	}
	if (!strncmp(line, "ok", 2)) {
		_cleanup_close_ int dfd =
		    openat(run->basefd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		struct osm_snapshot *s = NULL;
		char e[200], b[32];
		run->taken++;
		run->failures = 0;
		if (dfd >= 0 && manifest_load(dfd, &s, e, sizeof(e)) == 0) {
			if (!run->o.quiet)
				printf("snapshot %s: %s: %s; pause %.1f ms, %zu process%s, %s\n",
				       path, f->cond->text, f->detail, (double)s->pause_us / 1000.0,
				       s->n_procs, s->n_procs == 1 ? "" : "es",
				       format_bytes(dir_bytes(run->basefd, name), b, sizeof(b)));
			snapshot_free(s);
		} else if (!run->o.quiet) {
			printf("snapshot %s: %s: %s\n", path, f->cond->text, f->detail);
		}
		fflush(stdout);
		if (run->o.analyze && dfd >= 0) {
			char *a1[] = {"osmosis", "analyze", "--json", path, NULL};
			char *a2[] = {"osmosis", "analyze", path, NULL};
			run_into(dfd, "analysis.json", a1, &run->wait_mask);
			run_into(dfd, "report.txt", a2, &run->wait_mask);
			if (!run->o.quiet) {
				print_analyzed(dfd, path);
				fflush(stdout);
			}
			if (run->prev[0] && faccessat(AT_FDCWD, run->prev, F_OK, 0) == 0) {
				char *d1[] = {"osmosis", "diff", "--json", run->prev, path, NULL};
				char *d2[] = {"osmosis", "diff", run->prev, path, NULL};
				run_into(dfd, "diff.json", d1, &run->wait_mask);
				run_into(dfd, "diff.txt", d2, &run->wait_mask);
			}
		}
		snprintf(run->prev, sizeof(run->prev), "%s", path);
		enforce_retention(run->basefd, run->base, &run->o, name);
		return stop_signal ? 0 : 0;
	}
	if (sscanf(line, "error %d", &err) == 1 && (err == ENOSPC || err == EDQUOT)) {
		log_error(err,
			  "the disk under %s is full (%s): the watch stops; %llu snapshot%s taken, "
			  "nothing removed beyond --keep/--max-disk",
			  run->base, strerror(err), (unsigned long long)run->taken,
			  run->taken == 1 ? "" : "s");
		return 1;
	}
	run->failures++;
	log_warn("the snapshot for %s (%s) failed (%s); watching on", f->cond->d->name, f->detail,
		 err ? strerror(err) : "see above");
	if (run->failures >= MAX_FAILURES) {
		log_error(EIO, "%d snapshots in a row failed: the watch stops", MAX_FAILURES);
		return 1;
	}
	return 0;
}

/* ------------------------------------------------------------------------------------------ */

static uint64_t choose_tick(const struct watch *w, const struct watch_opts *o)
{
	uint64_t tick = 1000000000ull;

	if (o->interval_ns)
		return o->interval_ns;
	for (size_t i = 0; i < w->n_conds; i++) {
		const struct watch_cond *c = &w->conds[i];
		uint64_t t = c->hold_ns ? c->hold_ns / 4 : 1000000000ull;
		if (c->every_ns && c->d->scope == COND_GLOBAL)
			t = MIN(t, c->every_ns / 2);
		tick = MIN(tick, MAX(t, 100000000ull));
	}
	return tick;
}

static int open_base(struct watch_run *run)
{
	if (run->o.base)
		snprintf(run->base, sizeof(run->base), "%s", run->o.base);
	else {
		char host[256] = "host";
		gethostname(host, sizeof(host) - 1);
		host[sizeof(host) - 1] = 0;
		for (char *c = host; *c; c++)
			if (*c == '/')
				*c = '_';
		snprintf(run->base, sizeof(run->base), "osmosis-watch-%s", host);
	}
	if (mkdir(run->base, 0700) < 0 && errno != EEXIST)
		return log_error(errno, "cannot create %s: %m", run->base);
	run->basefd = open(run->base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (run->basefd < 0)
		return log_error(errno, "cannot use %s: %m", run->base);
	return 0;
}

static void print_start(const struct watch_run *run)
{
	const struct watch *w = &run->w;
	char conds[1024] = "", t[32];
	size_t off = 0;

	for (size_t i = 0; i < w->n_conds && off < sizeof(conds); i++)
		off += (size_t)snprintf(conds + off, sizeof(conds) - off, "%s%s", i ? "; " : "",
					w->conds[i].text);
	watch_format_seconds(w->tick_ns, t, sizeof(t));
	if (run->o.cgroup)
		printf("watching cgroup %s (%zu process%s now)", run->o.cgroup, w->n_procs,
		       w->n_procs == 1 ? "" : "es");
	else {
		printf("watching %zu process%s%s (", w->n_procs, w->n_procs == 1 ? "" : "es",
		       run->o.tree ? " in the trees of" : "");
		for (size_t i = 0; i < w->n_procs && i < 8; i++)
			printf("%s%d %s", i ? ", " : "", w->procs[i]->pid, w->procs[i]->comm);
		printf("%s)", w->n_procs > 8 ? ", ..." : "");
	}
	printf(" for: %s; every %s; snapshots to %s", conds, t, run->base);
	if (run->o.count)
		printf(", at most %llu", (unsigned long long)run->o.count);
	printf("\n");
	fflush(stdout);
}

int cmd_watch(int argc, char **argv)
{
	struct watch_run *run = calloc(1, sizeof(*run));
	struct watch *w;
	uint64_t last_snapshot = 0, next_calibration;
	int ret = 1, r;
	bool first = true;

	if (!run)
		return log_error(ENOMEM, "out of memory"), 1;
	run->basefd = -1;
	w = &run->w;
	if (parse_args(argc, argv, &run->o, w) < 0) {
		watch_done(w);
		free(run);
		return EXIT_USAGE;
	}
	w->self = getpid();
	w->page_size = sysconf(_SC_PAGESIZE);
	w->hz = sysconf(_SC_CLK_TCK);
	w->tick_ns = choose_tick(w, &run->o);
	run->targets = (struct watch_targets){.pids = run->o.pids,
					      .n_pids = run->o.n_pids,
					      .tree = run->o.tree,
					      .cgroup = run->o.cgroup};
	if (install_signals(&run->wait_mask, run->o.on_signal) < 0) {
		log_error(errno, "cannot install signal handlers: %m");
		goto out;
	}
	if (schedclock_calibrate(&w->clock) < 0 && (w->needs & NEED_THREADS))
		log_warn("no scheduler clock (/proc/PID/sched): --hang counts from its first look");
	next_calibration = now_ns() + CALIBRATE_EVERY_NS;
	if (!run->o.cgroup) {
		/* One missing PID of many is gone already (many PIDs: the machine's); all missing
		 * is a mistake. */
		size_t missing = 0;
		for (size_t i = 0; i < run->o.n_pids; i++)
			if (kill(run->o.pids[i], 0) < 0 && errno == ESRCH) {
				missing++;
				if (run->o.n_pids == 1)
					break;
				log_warn("no process with pid %d", run->o.pids[i]);
			}
		if (missing == run->o.n_pids) {
			log_error(ESRCH,
				  run->o.n_pids == 1 ? "no process with pid %d"
						     : "none of the PIDs is a process (%d...)",
				  run->o.pids[0]);
			goto out;
		}
	}
	r = watch_refresh_targets(w, &run->targets);
	if (r < 0)
		goto out;
	if (open_base(run) < 0)
		goto out;
	w->started = now_ns();
	if (!run->o.quiet)
		print_start(run);

	for (;;) {
		uint64_t now = now_ns(), t0 = now;
		struct watch_fire fire;

		if (stop_signal) {
			if (!run->o.quiet)
				printf("stopped by SIG%s after %llu snapshot%s\n",
				       sigabbrev_np(stop_signal) ? sigabbrev_np(stop_signal) : "?",
				       (unsigned long long)run->taken, run->taken == 1 ? "" : "s");
			ret = 0;
			break;
		}
		if (!first) {
			r = watch_refresh_targets(w, &run->targets);
			if (r < 0) {
				if (!run->o.quiet)
					printf("the cgroup is gone after %llu snapshot%s\n",
					       (unsigned long long)run->taken,
					       run->taken == 1 ? "" : "s");
				ret = 0;
				break;
			}
			if (r == 0 && !run->o.cgroup) {
				if (!run->o.quiet)
					printf("every target is gone after %llu snapshot%s\n",
					       (unsigned long long)run->taken,
					       run->taken == 1 ? "" : "s");
				ret = 0;
				break;
			}
		}
		first = false;
		if ((w->needs & NEED_THREADS) && now >= next_calibration) {
			schedclock_calibrate(&w->clock);
			next_calibration = now + CALIBRATE_EVERY_NS;
		}
		watch_sample(w, now);
		if (watch_evaluate(w, now, &fire) &&
		    (!last_snapshot || now - last_snapshot >= run->o.cooldown_ns)) {
			if (run->o.dry_run) {
				if (!run->o.quiet)
					printf("would snapshot: %s: %s\n", fire.cond->text,
					       fire.detail);
				fflush(stdout);
				last_snapshot = now_ns();
				watch_reset_conditions(w);
				continue;
			}
			r = take_snapshot(run, &fire);
			last_snapshot = now_ns();
			watch_reset_conditions(w);
			if (r != 0) {
				ret = r;
				break;
			}
			if (run->o.count && run->taken >= run->o.count) {
				ret = 0;
				break;
			}
			continue;
		}
		now = now_ns();
		if (now - t0 < w->tick_ns)
			wait_for(w->tick_ns - (now - t0), &run->wait_mask);
	}
out:
	watch_done(w);
	if (run->basefd >= 0)
		close(run->basefd);
	free(run);
	return ret;
}
