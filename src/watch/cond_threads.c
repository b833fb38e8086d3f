/* SPDX-License-Identifier: MIT */
/* --threads N: a process with N threads or more (stat's num_threads). */
#include <errno.h>
#include <stdio.h>

#include "base/parse.h"
#include "watch/watch.h"

static int parse(struct watch_cond *c, const char *arg, char *err, size_t errlen)
{
	uint64_t n;
	if (parse_u64(arg, 10, &n) < 0 || n == 0 || n > 10000000) {
		snprintf(err, errlen, "needs a thread count from 1, not '%s'", arg);
		return -EINVAL;
	}
	c->threshold = (double)n;
	c->unit = "threads";
	snprintf(c->text, sizeof(c->text), "threads >= %llu", (unsigned long long)n);
	return 0;
}

static double level(const struct watch_cond *c, const struct wproc *p)
{
	return (double)p->threads;
}

const struct watch_condition watch_cond_threads = {
    .name = "threads",
    .arg = "N",
    .help = "a process with N threads or more",
    .records = "the number of threads",
    .scope = COND_PROCESS,
    .needs = NEED_STAT,
    .parse = parse,
    .process_level = level,
};
