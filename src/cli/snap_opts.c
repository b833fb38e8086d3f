/* SPDX-License-Identifier: MIT */
/* The options of how a snapshot is taken, for osmosis snap and osmosis watch (snap_opts.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/parse.h"
#include "base/util.h"
#include "capture/method.h"
#include "cli/snap_opts.h"
#include "core/zcore.h"

#define DEFAULT_MAX_PAUSE_NS (10ull * 1000000000ull)
#define DEFAULT_SAMPLE_NS    (250ull * 1000000ull)

const struct option snap_longopts[] = {
    {"method", required_argument, NULL, SNAP_OPT_METHOD},
    {"state-only", no_argument, NULL, SNAP_OPT_STATE_ONLY},
    {"max-pause", required_argument, NULL, SNAP_OPT_MAX_PAUSE},
    {"sample", required_argument, NULL, SNAP_OPT_SAMPLE},
    {"max-memory", required_argument, NULL, SNAP_OPT_MAX_MEMORY},
    {"compress", optional_argument, NULL, SNAP_OPT_COMPRESS},
};
const size_t snap_longopts_count = ARRAY_SIZE(snap_longopts);

void snap_options_help(FILE *out)
{
	fputs(
	    "  -s, --state-only        the system state and every thread's registers, no memory "
	    "and no\n"
	    "                          cores: fast and small\n"
	    "      --max-memory SIZE   the most memory osmosis allocates for the snapshot (512M, "
	    "2G;\n"
	    "                          default: the smaller of 1G and 10% of MemAvailable, within\n"
	    "                          its cgroup's limit, plus the shared objects kept once, up "
	    "to\n"
	    "                          half of what is available); pre-copy writes pages to the\n"
	    "                          core file\n"
	    "      --compress[=LEVEL]  write compressed cores, core.PID.zst (zstd, default level "
	    "1;\n"
	    "                          osmosis show/analyze read them, osmosis core makes a plain "
	    "one)\n"
	    "  -m, --method METHOD     how memory is kept as it was at the freeze instant:\n",
	    out);
	/* auto last, as the default */
	for (size_t i = 0; i < capture_method_count; i++)
		if (capture_methods[i]->id != METHOD_AUTO)
			fprintf(out, "                            %-8s %s\n",
				capture_method_name(capture_methods[i]->id),
				capture_methods[i]->help);
	fprintf(out, "                            %-8s %s\n", "auto", capture_auto.help);
	fputs("      --max-pause SECONDS longest the targets may stay frozen (default 10); past it "
	      "they\n"
	      "                          are resumed and the snapshot fails\n"
	      "      --sample SECONDS    CPU sampling interval before the freeze (default 0.25; 0: "
	      "none)\n",
	      out);
}

void snap_options_init(struct snapshot_options *o)
{
	*o = (struct snapshot_options){
	    .method = METHOD_AUTO,
	    .level = ZCORE_DEFAULT_LEVEL,
	    .max_pause_ns = DEFAULT_MAX_PAUSE_NS,
	    .sample_ns = DEFAULT_SAMPLE_NS,
	};
}

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

int snap_option(struct snapshot_options *o, int c, const char *arg)
{
	switch (c) {
	case SNAP_OPT_METHOD: {
		const struct capture_ops *m = capture_method_find(arg);
		if (!m)
			return log_error(EINVAL, "unknown method '%s' (use %s)", arg,
					 capture_method_list());
		o->method = m->id;
		return 1;
	}
	case SNAP_OPT_STATE_ONLY:
		o->state_only = true;
		return 1;
	case SNAP_OPT_MAX_PAUSE:
		if (parse_duration_ns(arg, &o->max_pause_ns) < 0)
			return log_error(EINVAL,
					 "--max-pause needs a positive number of seconds, not '%s'",
					 arg);
		return 1;
	case SNAP_OPT_SAMPLE:
		if (!strcmp(arg, "0"))
			o->sample_ns = 0;
		else if (parse_duration_ns(arg, &o->sample_ns) < 0 ||
			 o->sample_ns > 60ull * 1000000000ull)
			return log_error(
			    EINVAL, "--sample needs a number of seconds up to 60, not '%s'", arg);
		return 1;
	case SNAP_OPT_MAX_MEMORY:
		if (parse_size(arg, &o->max_memory) < 0 || o->max_memory < (64u << 20))
			return log_error(EINVAL,
					 "--max-memory needs a size of at least 64M (as 512M, 2G), "
					 "not '%s'",
					 arg);
		return 1;
	case SNAP_OPT_COMPRESS: {
		int64_t level = ZCORE_DEFAULT_LEVEL;
		if (arg &&
		    (parse_i64(arg, 10, &level) < 0 || level < -7 || level > 19 || level == 0))
			return log_error(
			    EINVAL, "--compress takes a zstd level from -7 to 19 (not 0), not '%s'",
			    arg);
		o->compress = true;
		o->level = (int)level;
		return 1;
	}
	}
	return 0;
}

void snap_options_argv(const struct snapshot_options *o, char **argv, size_t *argc,
		       struct snap_argv_buf *buf)
{
	struct snapshot_options d;

	snap_options_init(&d);
	if (o->state_only)
		argv[(*argc)++] = "--state-only";
	if (o->method != d.method) {
		argv[(*argc)++] = "--method";
		argv[(*argc)++] = (char *)capture_method_name(o->method);
	}
	if (o->max_pause_ns != d.max_pause_ns) {
		snprintf(buf->s[0], sizeof(buf->s[0]), "%.9g", (double)o->max_pause_ns / 1e9);
		argv[(*argc)++] = "--max-pause";
		argv[(*argc)++] = buf->s[0];
	}
	if (o->sample_ns != d.sample_ns) {
		snprintf(buf->s[1], sizeof(buf->s[1]), "%.9g", (double)o->sample_ns / 1e9);
		argv[(*argc)++] = "--sample";
		argv[(*argc)++] = buf->s[1];
	}
	if (o->max_memory) {
		snprintf(buf->s[2], sizeof(buf->s[2]), "%llu", (unsigned long long)o->max_memory);
		argv[(*argc)++] = "--max-memory";
		argv[(*argc)++] = buf->s[2];
	}
	if (o->compress) {
		snprintf(buf->s[3], sizeof(buf->s[3]), "--compress=%d", o->level);
		argv[(*argc)++] = buf->s[3];
	}
}
