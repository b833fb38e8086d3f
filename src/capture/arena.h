/* SPDX-License-Identifier: MIT */
/*
 * The reserved buffer that memory is copied into during the freeze. It is mapped and every page
 * touched before the freeze (first touches are slow on a VM: docs/design/kernel-facts.md), so the
 * freeze spends its time copying only. Allocation inside the freeze is a pointer bump. Before
 * the freeze a further chunk is mapped when the reservation runs short (pre-copy's rounds);
 * inside it the arena is sealed: nothing is mapped beyond what was reserved (the promise never to
 * push the machine into reclaim during the pause), and a target that does not fit is rewound and
 * recorded as not captured (capture.c).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct arena_chunk {
	uint8_t *base;
	size_t size, used;
};

struct arena {
	struct arena_chunk *chunks;
	size_t n, cap;
	size_t page_size;
	size_t overflow_bytes; /* bytes served from chunks mapped beyond the reservation */
	size_t mapped;	       /* bytes mapped now, all chunks */
	bool sealed;	       /* inside the freeze: no chunk is added */
};

/* Where the arena stands, to give back what one target took (arena_rewind). */
#define ARENA_MARK_MAX 32
struct arena_mark {
	size_t n;
	size_t used[ARENA_MARK_MAX];
};

/* Map and touch size bytes. Returns 0 or a negative errno; does not log. */
int arena_reserve(struct arena *a, size_t size, size_t page_size);
/* Map and touch size more bytes (a further chunk). Returns 0 or a negative errno. */
int arena_reserve_more(struct arena *a, size_t size);
/* len bytes, page aligned, or NULL when out of memory (or, sealed, out of reservation). */
void *arena_alloc(struct arena *a, size_t len);
/* Bytes still free in the chunks (what a sealed arena can still give). */
size_t arena_free_bytes(const struct arena *a);
/* The most one allocation can take now (a run is never split across chunks). */
size_t arena_largest_free(const struct arena *a);
/* Remember the arena's state; rewind to it (allocations made since are given back). Returns
 * false when the arena has more chunks than a mark holds (then rewinding is not possible). */
bool arena_mark(const struct arena *a, struct arena_mark *m);
void arena_rewind(struct arena *a, const struct arena_mark *m);
void arena_release(struct arena *a);
