/* SPDX-License-Identifier: MIT */
/*
 * Where a core goes: a file (sparse: skipped ranges become holes) or memory (for tests and
 * fuzzing). The writer only appends and skips; the sink tracks the position.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

struct core_sink {
	int (*write)(struct core_sink *s, const void *buf, size_t len);
	int (*skip)(struct core_sink *s, uint64_t len);
	int (*finish)(struct core_sink *s);
	/* Write at an offset already passed or skipped (placed segments); NULL when the sink only
	 * appends (memory, compressed). */
	int (*pwrite)(struct core_sink *s, const void *buf, size_t len, uint64_t off);
	uint64_t pos;
};

struct file_sink {
	struct core_sink base;
	int fd;
	uint64_t flushed, dropped; /* sent to the disk up to; waited for and dropped up to */
};

struct mem_sink {
	struct core_sink base;
	uint8_t *buf;
	size_t cap;
	size_t limit; /* refuse to grow past this many bytes (-EFBIG) */
};

void file_sink_init(struct file_sink *fs, int fd);
void mem_sink_init(struct mem_sink *ms, size_t limit);
void mem_sink_done(struct mem_sink *ms);
