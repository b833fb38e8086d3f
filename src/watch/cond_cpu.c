/* SPDX-License-Identifier: MIT */
/* --cpu PCT[:SECONDS]: a process at PCT% of one CPU or more (all its threads together, from
 * /proc/PID/stat's utime and stime over each tick) for SECONDS. */
#include <stdio.h>

#include "watch/watch.h"

#define DEFAULT_HOLD_NS (10ull * 1000000000ull)

static int parse(struct watch_cond *c, const char *arg, char *err, size_t errlen)
{
	char t[32];
	int r = watch_parse_level_time(arg, 100000, DEFAULT_HOLD_NS, &c->threshold, &c->hold_ns,
				       err, errlen);
	if (r < 0)
		return r;
	c->unit = "%";
	watch_format_seconds(c->hold_ns, t, sizeof(t));
	snprintf(c->text, sizeof(c->text), "cpu >= %g%% for %s", c->threshold, t);
	return 0;
}

static double level(const struct watch_cond *c, const struct wproc *p)
{
	return p->cpu_pct;
}

const struct watch_condition watch_cond_cpu = {
    .name = "cpu",
    .arg = "PCT[:SECONDS]",
    .help = "a process at PCT% of one CPU or more for SECONDS (default 10)",
    .records = "the process's CPU use over the last second, % of one CPU",
    .scope = COND_PROCESS,
    .needs = NEED_STAT,
    .parse = parse,
    .process_level = level,
};
