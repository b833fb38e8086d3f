/* SPDX-License-Identifier: MIT */
/*
 * Diagnostics on stderr, one line each, prefixed "osmosis: ". Results go to stdout; these never do.
 * log_error() returns -abs(err) so callers can write `return log_error(r, "...")`: each error is
 * logged once, where the most context is known.
 */
#pragma once

#include "base/util.h"

extern int log_verbosity; /* 0 quiet, 1 normal, 2 verbose (-v) */

void log_msg(const char *fmt, ...) _printf_(1, 2);
int log_error(int err, const char *fmt, ...) _printf_(2, 3);
void log_warn(const char *fmt, ...) _printf_(1, 2);
void log_debug(const char *fmt, ...) _printf_(1, 2);
