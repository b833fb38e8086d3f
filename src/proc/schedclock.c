/* SPDX-License-Identifier: MIT */
/*
 * The scheduler clock calibration (schedclock.h says why one is needed). Parsing is split from
 * reading so that it can be fuzzed on plain strings.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/fs.h"
#include "base/timeutil.h"
#include "base/util.h"
#include "proc/schedclock.h"

int schedclock_parse_exec_start(const char *text, uint64_t *ret_ns)
{
	const char *p = text ? strstr(text, "se.exec_start") : NULL;
	uint64_t ms = 0, frac = 0;
	int digits = 0;

	if (!p || !(p = strchr(p, ':')))
		return -EINVAL;
	p++;
	while (*p == ' ' || *p == '\t')
		p++;
	if (*p < '0' || *p > '9')
		return -EINVAL;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (ms > UINT64_MAX / 10000000ull)
			return -ERANGE;
		ms = ms * 10 + (uint64_t)(*p - '0');
	}
	if (*p == '.')
		for (p++; *p >= '0' && *p <= '9'; p++)
			if (digits < 6) {
				frac = frac * 10 + (uint64_t)(*p - '0');
				digits++;
			}
	while (digits++ < 6)
		frac *= 10;
	*ret_ns = ms * 1000000ull + frac;
	return 0;
}

int schedclock_read_exec_start(int procfd, pid_t tid, uint64_t *ret_ns)
{
	_cleanup_free_ char *text = NULL;
	char path[64];
	int r;

	if (tid > 0)
		snprintf(path, sizeof(path), "task/%d/sched", tid);
	else
		snprintf(path, sizeof(path), "/proc/thread-self/sched");
	r = read_file_at(procfd, path, &text, NULL);
	if (r < 0)
		return r;
	return schedclock_parse_exec_start(text, ret_ns);
}

/* Our own exec_start right after waking up on the CPU we are pinned to, and the monotonic time
 * read just before it: the pair gives that CPU's offset. */
static int measure_here(int64_t *ret_offset)
{
	struct timespec tiny = {0, 1000};
	uint64_t es, before;
	int r;

	nanosleep(&tiny, NULL);
	/* The wake-up just set our exec_start to this CPU's task clock; the monotonic time is
	 * read right after it, so the offset is late by the microsecond or so between the two. */
	before = now_ns();
	r = schedclock_read_exec_start(AT_FDCWD, -1, &es);
	if (r < 0)
		return r;
	*ret_offset = (int64_t)before - (int64_t)es;
	return 0;
}

int schedclock_calibrate(struct schedclock *c)
{
	cpu_set_t saved, one;
	long n = sysconf(_SC_NPROCESSORS_CONF);
	int ok = 0, r = 0;
	int64_t lo = INT64_MAX, hi = INT64_MIN;

	if (n < 1)
		n = 1;
	if (n > SCHEDCLOCK_MAX_CPUS)
		n = SCHEDCLOCK_MAX_CPUS;
	if (!c->offset_ns) {
		c->offset_ns = calloc((size_t)n, sizeof(*c->offset_ns));
		c->known = calloc((size_t)n, sizeof(*c->known));
		if (!c->offset_ns || !c->known) {
			schedclock_done(c);
			return -ENOMEM;
		}
		c->n_cpus = (int)n;
	}
	if (sched_getaffinity(0, sizeof(saved), &saved) < 0)
		return -errno;
	for (int cpu = 0; cpu < c->n_cpus && cpu < CPU_SETSIZE; cpu++) {
		int64_t off;
		CPU_ZERO(&one);
		CPU_SET(cpu, &one);
		c->known[cpu] = false;
		if (sched_setaffinity(0, sizeof(one), &one) < 0)
			continue; /* offline, or outside our cpuset */
		r = measure_here(&off);
		if (r < 0)
			break;
		c->offset_ns[cpu] = off;
		c->known[cpu] = true;
		lo = MIN(lo, off);
		hi = MAX(hi, off);
		ok++;
	}
	sched_setaffinity(0, sizeof(saved), &saved);
	if (!ok) {
		/* Pinning refused everywhere (a cpuset): one reading, for every CPU. */
		int64_t off;
		r = measure_here(&off);
		if (r < 0)
			return r;
		for (int cpu = 0; cpu < c->n_cpus; cpu++) {
			c->offset_ns[cpu] = off;
			c->known[cpu] = true;
		}
		lo = hi = off;
	}
	c->spread_ns = hi - lo;
	c->calibrated_ns = now_ns();
	return 0;
}

void schedclock_done(struct schedclock *c)
{
	free(c->offset_ns);
	free(c->known);
	c->offset_ns = NULL;
	c->known = NULL;
	c->n_cpus = 0;
}

const struct schedclock *schedclock_default(void)
{
	static struct schedclock c;
	static int state; /* 0 not tried, 1 ready, -1 unavailable */

	if (!state)
		state = schedclock_calibrate(&c) == 0 ? 1 : -1;
	return state > 0 ? &c : NULL;
}

int64_t schedclock_ago_ns(const struct schedclock *c, uint64_t exec_start_ns, int cpu, uint64_t now)
{
	int64_t last;

	/* 0: no time recorded (the scheduler resets it, on a migration for one), not "ran at
	 * boot": the machine's uptime ago. */
	if (!c || !exec_start_ns || cpu < 0 || cpu >= c->n_cpus || !c->known[cpu])
		return -1;
	last = (int64_t)exec_start_ns + c->offset_ns[cpu];
	return (int64_t)now > last ? (int64_t)now - last : 0;
}
