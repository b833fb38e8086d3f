/* SPDX-License-Identifier: MIT */
/* --every SECONDS: a snapshot every SECONDS, the first SECONDS after the watch starts. */
#include <errno.h>
#include <stdio.h>

#include "base/parse.h"
#include "watch/watch.h"

static int parse(struct watch_cond *c, const char *arg, char *err, size_t errlen)
{
	char t[32];
	if (parse_duration_ns(arg, &c->every_ns) < 0) {
		snprintf(err, errlen, "needs a number of seconds, not '%s'", arg);
		return -EINVAL;
	}
	c->threshold = (double)c->every_ns / 1e9;
	c->unit = "s";
	watch_format_seconds(c->every_ns, t, sizeof(t));
	snprintf(c->text, sizeof(c->text), "every %s", t);
	return 0;
}

static bool poll(struct watch_cond *c, struct watch *w, uint64_t now, struct watch_fire *ret)
{
	if (!c->next_ns)
		c->next_ns = now + c->every_ns;
	if (now < c->next_ns)
		return false;
	ret->value = ret->held_for_s = (double)(now - (c->next_ns - c->every_ns)) / 1e9;
	snprintf(ret->detail, sizeof(ret->detail), "%.1f s since the last periodic snapshot",
		 ret->value);
	return true;
}

static void reset(struct watch_cond *c, struct watch *w)
{
	(void)w;
	c->next_ns = 0; /* counted from now: the poll after the snapshot sets it */
}

const struct watch_condition watch_cond_every = {
    .name = "every",
    .arg = "SECONDS",
    .help = "periodically, every SECONDS",
    .records = "seconds since the watch started or the last snapshot",
    .scope = COND_GLOBAL,
    .parse = parse,
    .poll = poll,
    .reset = reset,
};
