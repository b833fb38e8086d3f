/* SPDX-License-Identifier: MIT */
/* --thread-cpu PCT[:SECONDS]: one thread at PCT% of one CPU or more for SECONDS, from its
 * task/TID/schedstat run time (nanoseconds) over each tick. */
#include <stdio.h>

#include "watch/watch.h"

#define DEFAULT_HOLD_NS (10ull * 1000000000ull)

static int parse(struct watch_cond *c, const char *arg, char *err, size_t errlen)
{
	char t[32];
	int r = watch_parse_level_time(arg, 100, DEFAULT_HOLD_NS, &c->threshold, &c->hold_ns, err,
				       errlen);
	if (r < 0)
		return r;
	c->unit = "%";
	watch_format_seconds(c->hold_ns, t, sizeof(t));
	snprintf(c->text, sizeof(c->text), "thread-cpu >= %g%% for %s", c->threshold, t);
	return 0;
}

static double level(const struct watch_cond *c, const struct wproc *p, const struct wthread *t)
{
	return t->cpu_pct;
}

const struct watch_condition watch_cond_thread_cpu = {
    .name = "thread-cpu",
    .arg = "PCT[:SECONDS]",
    .help = "one thread at PCT% of one CPU or more for SECONDS (default 10)",
    .records = "the thread's CPU use over the last second, % of one CPU",
    .scope = COND_THREAD,
    .needs = NEED_STAT | NEED_THREADS,
    .parse = parse,
    .thread_level = level,
};
