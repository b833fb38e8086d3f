/* SPDX-License-Identifier: MIT */
/*
 * The reserved buffer that memory is copied into during the freeze. It is mapped and every page
 * touched before the freeze (first touches are slow on a VM: FACTS.md), so the freeze spends its
 * time copying only. Allocation inside the freeze is a pointer bump; if the target grew between
 * planning and freezing, a further chunk is mapped (slower, but correct).
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
	size_t overflow_bytes; /* bytes served from chunks mapped during the freeze */
	size_t mapped;	       /* bytes mapped now, all chunks */
};

/* Map and touch size bytes. Returns 0 or a negative errno; does not log. */
int arena_reserve(struct arena *a, size_t size, size_t page_size);
/* Map and touch size more bytes (a further chunk). Returns 0 or a negative errno. */
int arena_reserve_more(struct arena *a, size_t size);
/* len bytes, page aligned, or NULL when out of memory. */
void *arena_alloc(struct arena *a, size_t len);
void arena_release(struct arena *a);
