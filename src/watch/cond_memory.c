/* SPDX-License-Identifier: MIT */
/* --memory SIZE | PCT%: a process's resident memory (stat's rss) at SIZE or more, or its memory
 * cgroup's use at PCT% of the cgroup's limit (memory.max in v2, memory.limit_in_bytes in v1) or
 * more. A cgroup without a limit never reaches a share. */
#include <stdint.h>
#include <stdio.h>

#include "base/parse.h"
#include "watch/watch.h"

static int parse(struct watch_cond *c, const char *arg, char *err, size_t errlen)
{
	char b[32];
	int r = watch_parse_size_or_pct(arg, &c->threshold, &c->pct, err, errlen);
	if (r < 0)
		return r;
	c->unit = c->pct ? "%" : "bytes";
	if (!c->pct)
		c->needs &= ~(unsigned)NEED_CGROUP_MEM; /* the cgroup is read only for a share */
	if (c->pct)
		snprintf(c->text, sizeof(c->text), "cgroup memory >= %g%% of its limit",
			 c->threshold);
	else
		snprintf(c->text, sizeof(c->text), "resident memory >= %s",
			 format_bytes((uint64_t)c->threshold, b, sizeof(b)));
	return 0;
}

static double level(const struct watch_cond *c, const struct wproc *p)
{
	if (!c->pct)
		return (double)p->rss;
	if (p->cg_max == UINT64_MAX || p->cg_max == 0)
		return -1;
	return 100.0 * (double)p->cg_current / (double)p->cg_max;
}

const struct watch_condition watch_cond_memory = {
    .name = "memory",
    .arg = "SIZE|PCT%",
    .help = "resident memory at SIZE (K, M, G), or its cgroup at PCT% of its limit",
    .records = "resident bytes, or the cgroup's use in % of its limit",
    .scope = COND_PROCESS,
    .needs = NEED_STAT | NEED_CGROUP_MEM,
    .parse = parse,
    .process_level = level,
};
