/* SPDX-License-Identifier: MIT */
/*
 * osmosis analyze DIR: read a snapshot (manifest and cores, never the live system), unwind every
 * thread, decode every wait, build the wait graph, run the pattern catalogue and report the
 * findings, most severe first, then the stack trace collection.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "analyze/analysis.h"
#include "analyze/runtime/runtime.h"
#include "base/log.h"
#include "base/util.h"
#include "cli/cli.h"
#include "patterns/pattern.h"
#include "report/report.h"

static const char analyze_usage[] =
    "Usage: osmosis analyze [--json] [--pattern ID,...] [--threshold NAME=VALUE] [--thread TID]\n"
    "                       [--no-runtime ID,...] [--no-java] DIR\n"
    "\n"
    "Analyze a snapshot: every thread's stack, every lock and wait decoded, the wait graph\n"
    "across threads and processes, and the pattern catalogue (osmosis patterns lists it).\n"
    "Findings come most severe first, each with its evidence and what to do; then every\n"
    "thread's stack, identical stacks grouped.\n"
    "\n"
    "  -p, --pattern ID,...       run only these patterns (repeatable)\n"
    "  -t, --threshold NAME=VALUE change a pattern's threshold (see osmosis patterns)\n"
    "  -T, --thread TID,...       report these threads whenever they are blocked\n"
    "      --no-runtime ID,...    do not read these language runtimes (cpython, java): their\n"
    "                             processes are analyzed natively\n"
    "      --no-java              the same as --no-runtime=java: do not run the JDK's jhsdb\n"
    "      --json                 the report as JSON (docs/analysis-json.md)\n"
    "  -h, --help                 show this help\n";

static bool threshold_known(const char *name)
{
	for (size_t i = 0; i < pattern_count; i++)
		for (size_t j = 0; j < pattern_registry[i]->n_thresholds; j++)
			if (!strcmp(pattern_registry[i]->thresholds[j].name, name))
				return true;
	return false;
}

struct analyze_opts {
	bool json;
	const struct pattern *only[64];
	size_t n_only;
	struct threshold_value th[64];
	size_t n_th;
	pid_t focus[64];
	size_t n_focus;
};

static int add_threads(struct analyze_opts *o, const char *list)
{
	_cleanup_free_ char *copy = strdup(list);
	char *save = NULL, *end;

	if (!copy)
		return log_error(ENOMEM, "out of memory");
	for (char *s = strtok_r(copy, ",", &save); s; s = strtok_r(NULL, ",", &save)) {
		long v;
		errno = 0;
		v = strtol(s, &end, 10);
		if (errno || end == s || *end || v <= 0 || v > INT32_MAX)
			return log_error(EINVAL, "--thread needs thread ids, not '%s'", s);
		if (o->n_focus < ARRAY_SIZE(o->focus))
			o->focus[o->n_focus++] = (pid_t)v;
	}
	return 0;
}

static int no_runtimes(const char *list)
{
	_cleanup_free_ char *copy = strdup(list);
	char *save = NULL;

	if (!copy)
		return log_error(ENOMEM, "out of memory");
	for (char *id = strtok_r(copy, ",", &save); id; id = strtok_r(NULL, ",", &save))
		if (runtime_disable(id) < 0)
			return log_error(EINVAL, "no runtime '%s' (osmosis patterns lists them)",
					 id);
	return 0;
}

static int add_patterns(struct analyze_opts *o, const char *list)
{
	_cleanup_free_ char *copy = strdup(list);
	char *save = NULL;

	if (!copy)
		return log_error(ENOMEM, "out of memory");
	for (char *id = strtok_r(copy, ",", &save); id; id = strtok_r(NULL, ",", &save)) {
		const struct pattern *p = pattern_find(id);
		if (!p)
			return log_error(EINVAL, "no pattern '%s' (osmosis patterns lists them)",
					 id);
		if (o->n_only < ARRAY_SIZE(o->only))
			o->only[o->n_only++] = p;
	}
	return 0;
}

static int add_threshold(struct analyze_opts *o, char *arg)
{
	char *eq = strchr(arg, '='), *end;
	double v;

	if (!eq)
		return log_error(EINVAL, "--threshold wants NAME=VALUE, not '%s'", arg);
	*eq = 0;
	if (!threshold_known(arg))
		return log_error(EINVAL, "no threshold '%s' (osmosis patterns lists them)", arg);
	errno = 0;
	v = strtod(eq + 1, &end);
	if (errno || end == eq + 1 || *end || v != v)
		return log_error(EINVAL, "threshold %s needs a number, not '%s'", arg, eq + 1);
	if (o->n_th < ARRAY_SIZE(o->th))
		o->th[o->n_th++] = (struct threshold_value){.name = arg, .value = v};
	return 0;
}

static const pid_t *analyze_focus;
static size_t analyze_n_focus;

int analyze_dir(const char *dir, bool json, const struct pattern *const *only, size_t n_only,
		const struct threshold_value *th, size_t n_th)
{
	struct analysis a = {0};
	struct findings fs = {0};
	char err[512];
	int r;

	r = analysis_load(dir, &a, err, sizeof(err));
	if (r < 0) {
		log_error(r, "%s: %s", dir, err);
		analysis_done(&a);
		return 1;
	}
	a.thresholds = calloc(n_th + 1, sizeof(*a.thresholds));
	if (a.thresholds && n_th) {
		memcpy(a.thresholds, th, n_th * sizeof(*th));
		a.n_thresholds = n_th;
	}
	if (analyze_n_focus && (a.focus = calloc(analyze_n_focus, sizeof(pid_t)))) {
		memcpy(a.focus, analyze_focus, analyze_n_focus * sizeof(pid_t));
		a.n_focus = analyze_n_focus;
	}
	for (size_t i = 0; i < pattern_count; i++) {
		bool run = !n_only;
		for (size_t j = 0; j < n_only; j++)
			run |= only[j] == pattern_registry[i];
		if (run)
			pattern_registry[i]->match(&a, pattern_registry[i], &fs);
	}
	findings_finish(&fs);
	if (json)
		r = report_json(stdout, &a, &fs);
	else
		report_text(stdout, &a, &fs, isatty(STDOUT_FILENO) && !getenv("NO_COLOR"));
	fflush(stdout);
	findings_done(&fs);
	analysis_done(&a);
	return r < 0 ? 1 : 0;
}

int cmd_analyze(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"json", no_argument, NULL, 'j'},
	    {"pattern", required_argument, NULL, 'p'},
	    {"threshold", required_argument, NULL, 't'},
	    {"thread", required_argument, NULL, 'T'},
	    {"no-runtime", required_argument, NULL, 'R'},
	    {"no-java", no_argument, NULL, 'J'},
	    {"help", no_argument, NULL, 'h'},
	    {},
	};
	struct analyze_opts o = {0};
	int c;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":p:t:T:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'j':
			o.json = true;
			break;
		case 'p':
			if (add_patterns(&o, optarg) < 0)
				return EXIT_USAGE;
			break;
		case 't':
			if (add_threshold(&o, optarg) < 0)
				return EXIT_USAGE;
			break;
		case 'T':
			if (add_threads(&o, optarg) < 0)
				return EXIT_USAGE;
			break;
		case 'R':
			if (no_runtimes(optarg) < 0)
				return EXIT_USAGE;
			break;
		case 'J':
			runtime_disable("java");
			break;
		case 'h':
			fputs(analyze_usage, stdout);
			return 0;
		case ':':
			log_error(EINVAL,
				  "option '%s' needs an argument (see osmosis analyze --help)",
				  argv[optind - 1]);
			return EXIT_USAGE;
		default:
			log_error(EINVAL, "unknown option '%s' (see osmosis analyze --help)",
				  argv[optind - 1]);
			return EXIT_USAGE;
		}
	}
	if (optind != argc - 1) {
		log_error(EINVAL, "give one snapshot directory (see osmosis analyze --help)");
		return EXIT_USAGE;
	}
	analyze_focus = o.focus;
	analyze_n_focus = o.n_focus;
	return analyze_dir(argv[optind], o.json, o.only, o.n_only, o.th, o.n_th);
}
