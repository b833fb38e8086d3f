/* SPDX-License-Identifier: MIT */
/* The watch conditions, in the order osmosis watch --help lists them, and the parsers they
 * share. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/parse.h"
#include "watch/watch.h"

extern const struct watch_condition watch_cond_cpu, watch_cond_thread_cpu, watch_cond_memory,
    watch_cond_threads, watch_cond_fds, watch_cond_hang, watch_cond_check, watch_cond_every,
    watch_cond_on_signal;

const struct watch_condition *const watch_condition_registry[] = {
    &watch_cond_cpu,	 &watch_cond_thread_cpu, &watch_cond_memory,
    &watch_cond_threads, &watch_cond_fds,	 &watch_cond_hang,
    &watch_cond_check,	 &watch_cond_every,	 &watch_cond_on_signal,
};
const size_t watch_condition_count =
    sizeof(watch_condition_registry) / sizeof(watch_condition_registry[0]);

const struct watch_condition *watch_condition_find(const char *name)
{
	for (size_t i = 0; i < watch_condition_count; i++)
		if (!strcmp(watch_condition_registry[i]->name, name))
			return watch_condition_registry[i];
	return NULL;
}

static int parse_number(const char *s, double *ret)
{
	char *end;
	double v;

	if (!s || !*s || *s == '-' || *s == '+' || *s == ' ')
		return -EINVAL;
	errno = 0;
	v = strtod(s, &end);
	if (errno || *end || !isfinite(v) || v < 0)
		return -EINVAL;
	*ret = v;
	return 0;
}

int watch_parse_level_time(const char *arg, double max, uint64_t def_ns, double *ret_level,
			   uint64_t *ret_ns, char *err, size_t errlen)
{
	char buf[64];
	const char *colon = strchr(arg, ':');
	double level;
	uint64_t ns = def_ns;

	if (strlen(arg) >= sizeof(buf))
		goto bad;
	snprintf(buf, sizeof(buf), "%.*s", colon ? (int)(colon - arg) : (int)strlen(arg), arg);
	if (buf[0] && buf[strlen(buf) - 1] == '%')
		buf[strlen(buf) - 1] = 0;
	if (parse_number(buf, &level) < 0 || level <= 0 || level > max)
		goto bad;
	if (colon && parse_duration_ns(colon + 1, &ns) < 0)
		goto bad;
	*ret_level = level;
	*ret_ns = ns;
	return 0;
bad:
	snprintf(err, errlen, "needs PCT[:SECONDS] with 0 < PCT <= %g, not '%s'", max, arg);
	return -EINVAL;
}

int watch_parse_size_or_pct(const char *arg, double *ret, bool *ret_pct, char *err, size_t errlen)
{
	char buf[64], *end;
	double v, mult = 1;
	size_t len = strlen(arg);

	if (len == 0 || len >= sizeof(buf))
		goto bad;
	memcpy(buf, arg, len + 1);
	if (buf[len - 1] == '%') {
		buf[len - 1] = 0;
		if (parse_number(buf, &v) < 0 || v <= 0 || v > 100)
			goto bad;
		*ret = v;
		*ret_pct = true;
		return 0;
	}
	errno = 0;
	if (buf[0] < '0' || buf[0] > '9')
		goto bad;
	v = strtod(buf, &end);
	if (errno || !isfinite(v) || v <= 0)
		goto bad;
	if (*end) {
		switch (*end == 'k' ? 'K' : *end) {
		case 'K':
			mult = 1024.0;
			break;
		case 'M':
			mult = 1024.0 * 1024;
			break;
		case 'G':
			mult = 1024.0 * 1024 * 1024;
			break;
		case 'T':
			mult = 1024.0 * 1024 * 1024 * 1024;
			break;
		case 'B':
			mult = 1;
			end--; /* "B" alone */
			break;
		default:
			goto bad;
		}
		end++;
		if (*end == 'i')
			end++;
		if (*end == 'B')
			end++;
		if (*end)
			goto bad;
	}
	*ret = v * mult;
	*ret_pct = false;
	return 0;
bad:
	snprintf(err, errlen, "needs a size (4096, 512K, 200M, 2G) or a share (80%%), not '%s'",
		 arg);
	return -EINVAL;
}

void watch_format_seconds(uint64_t ns, char *buf, size_t len)
{
	double s = (double)ns / 1e9;
	if (s == (double)(uint64_t)s)
		snprintf(buf, len, "%llu s", (unsigned long long)s);
	else
		snprintf(buf, len, "%.3g s", s);
}
