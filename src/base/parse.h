/* SPDX-License-Identifier: MIT */
/* Strict number parsing: the whole string must be a number in range; no atoi. Returns 0 or -EINVAL
 * / -ERANGE; *ret is written only on success. Does not log. */
#pragma once

#include <stdint.h>
#include <sys/types.h>

int parse_u64(const char *s, int base, uint64_t *ret);
int parse_i64(const char *s, int base, int64_t *ret);
int parse_pid(const char *s, pid_t *ret);
/* "10", "0.5", "250ms", "2s": a duration, returned in nanoseconds; must be > 0. */
int parse_duration_ns(const char *s, uint64_t *ret);
/* Human-readable duration ("340 ms", "5.2 s", "4 min 07 s", "2 h 01 min", "3 d 04 h") into buf;
 * a negative ms reads "an unknown time". */
const char *format_duration_ms(int64_t ms, char *buf, size_t len);
/* Human-readable byte count ("12.3 MiB") into buf. */
const char *format_bytes(uint64_t n, char *buf, size_t len);
