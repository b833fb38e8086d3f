/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"

int log_verbosity = 1;

static void vlog(const char *prefix, const char *fmt, va_list ap)
{
	char buf[2048];
	int n;

	/* Format into one buffer and write it with one call, so lines from several threads never
	 * mix. */
	n = snprintf(buf, sizeof(buf), "osmosis: %s", prefix);
	if (n < 0 || (size_t)n >= sizeof(buf))
		return;
	vsnprintf(buf + n, sizeof(buf) - n, fmt, ap);
	n = strlen(buf);
	if ((size_t)n < sizeof(buf) - 1)
		buf[n++] = '\n';
	else
		buf[sizeof(buf) - 2] = '\n', n = sizeof(buf) - 1;
	(void)!write(STDERR_FILENO, buf, n);
}

void log_msg(const char *fmt, ...)
{
	va_list ap;
	if (log_verbosity < 1)
		return;
	va_start(ap, fmt);
	vlog("", fmt, ap);
	va_end(ap);
}

int log_error(int err, const char *fmt, ...)
{
	va_list ap;
	errno = err < 0 ? -err : err; /* so that %m names this error */
	va_start(ap, fmt);
	vlog("error: ", fmt, ap);
	va_end(ap);
	return err < 0 ? err : -(err ? err : EINVAL);
}

void log_warn(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vlog("warning: ", fmt, ap);
	va_end(ap);
}

void log_debug(const char *fmt, ...)
{
	va_list ap;
	if (log_verbosity < 2)
		return;
	va_start(ap, fmt);
	vlog("", fmt, ap);
	va_end(ap);
}
