/* SPDX-License-Identifier: MIT */
/*
 * Deciding at each tick whether a condition fires. Process and thread conditions are levels:
 * a level at or above the threshold starts the condition's clock (since[]), a level below (or
 * unknown) stops it, and the condition fires when the clock has run for its time. Global
 * conditions decide for themselves (their poll()). The first condition that fires, in the order
 * given on the command line, is the snapshot's trigger.
 */
#include <stdio.h>
#include <string.h>

#include "base/parse.h"
#include "watch/watch.h"

static bool level_holds(struct watch_cond *c, uint64_t *since, double level, uint64_t now)
{
	if (level < 0 || level < c->threshold) {
		*since = 0;
		return false;
	}
	if (!*since)
		*since = now;
	return now - *since >= c->hold_ns;
}

static void describe_level(const struct watch_cond *c, double v, char *buf, size_t len)
{
	char b[32];
	if (!strcmp(c->unit, "bytes"))
		snprintf(buf, len, "%s resident", format_bytes((uint64_t)v, b, sizeof(b)));
	else if (!strcmp(c->unit, "%"))
		snprintf(buf, len, "%.1f%%", v);
	else
		snprintf(buf, len, "%.0f %s", v, c->unit);
}

bool watch_evaluate(struct watch *w, uint64_t now, struct watch_fire *ret)
{
	for (size_t k = 0; k < w->n_conds; k++) {
		struct watch_cond *c = &w->conds[k];

		memset(ret, 0, sizeof(*ret));
		ret->cond = c;
		ret->threshold = c->threshold;
		if (c->d->scope == COND_GLOBAL) {
			if (c->d->poll(c, w, now, ret))
				return true;
			continue;
		}
		for (size_t i = 0; i < w->n_procs; i++) {
			struct wproc *p = w->procs[i];
			char v[64];
			if (p->gone)
				continue;
			if (c->d->scope == COND_PROCESS) {
				double level = c->d->process_level(c, p);
				if (!level_holds(c, &p->since[c->index], level, now))
					continue;
				describe_level(c, level, v, sizeof(v));
				ret->value = level;
				ret->held_for_s = (double)(now - p->since[c->index]) / 1e9;
				ret->pid = p->pid;
				snprintf(ret->detail, sizeof(ret->detail), "pid %d (%s) at %s%s",
					 p->pid, p->comm, v, c->hold_ns ? " for " : "");
				if (c->hold_ns)
					snprintf(ret->detail + strlen(ret->detail),
						 sizeof(ret->detail) - strlen(ret->detail),
						 "%.1f s", ret->held_for_s);
				return true;
			}
			for (size_t j = 0; j < p->n_thr; j++) {
				struct wthread *t = &p->thr[j];
				double level = c->d->thread_level(c, p, t);
				if (!level_holds(c, &t->since[c->index], level, now))
					continue;
				describe_level(c, level, v, sizeof(v));
				ret->value = level;
				ret->held_for_s = (double)(now - t->since[c->index]) / 1e9;
				ret->pid = p->pid;
				ret->tid = t->tid;
				snprintf(ret->detail, sizeof(ret->detail),
					 "thread %d of pid %d (%s) at %s for %.1f s", t->tid,
					 p->pid, p->comm, v, ret->held_for_s);
				return true;
			}
		}
	}
	return false;
}

void watch_reset_conditions(struct watch *w)
{
	for (size_t i = 0; i < w->n_procs; i++) {
		struct wproc *p = w->procs[i];
		memset(p->since, 0, sizeof(p->since));
		for (size_t j = 0; j < p->n_thr; j++)
			memset(p->thr[j].since, 0, sizeof(p->thr[j].since));
	}
	for (size_t k = 0; k < w->n_conds; k++)
		if (w->conds[k].d->reset)
			w->conds[k].d->reset(&w->conds[k], w);
}
