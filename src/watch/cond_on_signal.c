/* SPDX-License-Identifier: MIT */
/* --on-signal: SIGUSR1 sent to osmosis watch takes a snapshot at once (cooldown aside). The
 * signal handler only sets a flag; the watch loop, woken by the signal, polls it here. */
#include <signal.h>
#include <stdio.h>

#include "watch/watch.h"

volatile sig_atomic_t watch_usr1_pending;

static int parse(struct watch_cond *c, const char *arg, char *err, size_t errlen)
{
	c->threshold = SIGUSR1;
	c->unit = "signal";
	snprintf(c->text, sizeof(c->text), "SIGUSR1");
	return 0;
}

static bool poll(struct watch_cond *c, struct watch *w, uint64_t now, struct watch_fire *ret)
{
	if (!watch_usr1_pending)
		return false;
	watch_usr1_pending = 0;
	ret->value = SIGUSR1;
	snprintf(ret->detail, sizeof(ret->detail), "SIGUSR1 received");
	return true;
}

const struct watch_condition watch_cond_on_signal = {
    .name = "on-signal",
    .arg = NULL,
    .help = "SIGUSR1 sent to osmosis watch takes a snapshot at once",
    .records = "the signal's number (10)",
    .scope = COND_GLOBAL,
    .parse = parse,
    .poll = poll,
};
