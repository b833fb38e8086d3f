/* SPDX-License-Identifier: MIT */
/* --fds N | PCT%: a process with N open descriptors or more (entries of /proc/PID/fd), or with
 * PCT% of its RLIMIT_NOFILE soft limit in use. */
#include <stdint.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "base/parse.h"
#include "watch/watch.h"

static int parse(struct watch_cond *c, const char *arg, char *err, size_t errlen)
{
	uint64_t n;
	size_t len = strlen(arg);

	if (len && arg[len - 1] == '%') {
		int r = watch_parse_size_or_pct(arg, &c->threshold, &c->pct, err, errlen);
		if (r < 0)
			return r;
		c->unit = "%";
		snprintf(c->text, sizeof(c->text), "descriptors >= %g%% of RLIMIT_NOFILE",
			 c->threshold);
		return 0;
	}
	if (parse_u64(arg, 10, &n) < 0 || n == 0 || n > 1u << 30) {
		snprintf(err, errlen, "needs a descriptor count from 1 or a share (80%%), not '%s'",
			 arg);
		return -EINVAL;
	}
	c->threshold = (double)n;
	c->unit = "descriptors";
	c->needs &= ~(unsigned)NEED_NOFILE; /* the limit is read only for a share */
	snprintf(c->text, sizeof(c->text), "descriptors >= %llu", (unsigned long long)n);
	return 0;
}

static double level(const struct watch_cond *c, const struct wproc *p)
{
	if (p->fds == UINT64_MAX)
		return -1;
	if (!c->pct)
		return (double)p->fds;
	if (p->nofile == UINT64_MAX || p->nofile == 0)
		return -1;
	return 100.0 * (double)p->fds / (double)p->nofile;
}

const struct watch_condition watch_cond_fds = {
    .name = "fds",
    .arg = "N|PCT%",
    .help = "N open descriptors or more, or PCT% of RLIMIT_NOFILE",
    .records = "the number of descriptors, or % of the soft RLIMIT_NOFILE",
    .scope = COND_PROCESS,
    .needs = NEED_STAT | NEED_FDS | NEED_NOFILE,
    .parse = parse,
    .process_level = level,
};
