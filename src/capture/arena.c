/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "base/util.h"
#include "capture/arena.h"
#include "freeze/guard.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

#define OVERFLOW_CHUNK (64u << 20)
/* Populating is first-touch work (about 2.7 ms per MiB on this VM): one call over a buffer of
 * gigabytes is seconds in the kernel, and a kernel without preemption keeps a target thread
 * woken on that CPU waiting. Slices keep each call short. */
#define POPULATE_SLICE (1u << 20)

static int add_chunk(struct arena *a, size_t size, bool touch)
{
	uint8_t *p;

	if (grow_array((void **)&a->chunks, &a->cap, a->n + 1, sizeof(*a->chunks)))
		return -ENOMEM;
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
		 -1, 0);
	if (p == MAP_FAILED)
		return -errno;
	/* Huge pages make the copy cheaper (fewer faults and TLB misses); best effort. */
	madvise(p, size, MADV_HUGEPAGE);
	/* A signal to osmosis is answered between slices. */
	for (size_t off = 0; touch && off < size; off += POPULATE_SLICE) {
		size_t len = MIN((size_t)POPULATE_SLICE, size - off);
		int g = guard_check();
		if (g < 0) {
			munmap(p, size);
			return g;
		}
		if (madvise(p + off, len, MADV_POPULATE_WRITE) < 0)
			for (size_t k = 0; k < len; k += a->page_size)
				p[off + k] = 0;
	}
	a->chunks[a->n++] = (struct arena_chunk){.base = p, .size = size};
	a->mapped += size;
	return 0;
}

int arena_reserve(struct arena *a, size_t size, size_t page_size)
{
	a->page_size = page_size;
	if (size == 0)
		return 0;
	return add_chunk(a, ALIGN_UP(size, page_size), true);
}

int arena_reserve_more(struct arena *a, size_t size)
{
	if (size == 0)
		return 0;
	if (a->sealed)
		return -ENOMEM; /* inside the freeze: nothing beyond the reservation */
	return add_chunk(a, ALIGN_UP(size, a->page_size), true);
}

void *arena_alloc(struct arena *a, size_t len)
{
	len = ALIGN_UP(len, a->page_size);
	for (size_t i = 0; i < a->n; i++) {
		struct arena_chunk *c = &a->chunks[i];
		if (c->size - c->used >= len) {
			void *p = c->base + c->used;
			c->used += len;
			return p;
		}
	}
	if (a->sealed || add_chunk(a, MAX(len, (size_t)OVERFLOW_CHUNK), false) < 0)
		return NULL;
	a->overflow_bytes += len;
	a->chunks[a->n - 1].used = len;
	return a->chunks[a->n - 1].base;
}

size_t arena_free_bytes(const struct arena *a)
{
	size_t n = 0;

	for (size_t i = 0; i < a->n; i++)
		n += a->chunks[i].size - a->chunks[i].used;
	return n;
}

size_t arena_largest_free(const struct arena *a)
{
	size_t n = 0;

	for (size_t i = 0; i < a->n; i++)
		n = MAX(n, a->chunks[i].size - a->chunks[i].used);
	return n;
}

bool arena_mark(const struct arena *a, struct arena_mark *m)
{
	if (a->n > ARENA_MARK_MAX)
		return false;
	m->n = a->n;
	for (size_t i = 0; i < a->n; i++)
		m->used[i] = a->chunks[i].used;
	return true;
}

void arena_rewind(struct arena *a, const struct arena_mark *m)
{
	for (size_t i = 0; i < m->n && i < a->n; i++)
		a->chunks[i].used = m->used[i];
}

void arena_release(struct arena *a)
{
	for (size_t i = 0; i < a->n; i++)
		munmap(a->chunks[i].base, a->chunks[i].size);
	free(a->chunks);
	memset(a, 0, sizeof(*a));
}
