/* SPDX-License-Identifier: MIT */
/*
 * Small helpers every module may use: cleanup attributes, ownership transfer, array sizes, checked
 * arithmetic. Depends on nothing but libc.
 */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <dirent.h>

#define ARRAY_SIZE(a)	 (sizeof(a) / sizeof((a)[0]))
#define MIN(a, b)	 ((a) < (b) ? (a) : (b))
#define MAX(a, b)	 ((a) > (b) ? (a) : (b))
#define ALIGN_UP(x, a)	 (((x) + ((a)-1)) & ~((__typeof__(x))(a)-1))
#define ALIGN_DOWN(x, a) ((x) & ~((__typeof__(x))(a)-1))

#define _cleanup_(f)   __attribute__((cleanup(f)))
#define _unused_       __attribute__((unused))
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define _noreturn_     __attribute__((noreturn))

/* Hand ownership of a pointer or descriptor to the caller: returns the value, leaves the variable
 * empty so its cleanup does nothing. */
#define TAKE_PTR(p)                                                                                \
	({                                                                                         \
		__typeof__(p) _tp = (p);                                                           \
		(p) = NULL;                                                                        \
		_tp;                                                                               \
	})
#define TAKE_FD(fd)                                                                                \
	({                                                                                         \
		int _tf = (fd);                                                                    \
		(fd) = -1;                                                                         \
		_tf;                                                                               \
	})

static inline void freep(void *p)
{
	free(*(void **)p);
}
static inline void closep(int *fd)
{
	if (*fd >= 0) {
		int saved = errno;
		close(*fd);
		errno = saved;
	}
}
static inline void fclosep(FILE **f)
{
	if (*f)
		fclose(*f);
}
static inline void closedirp(DIR **d)
{
	if (*d)
		closedir(*d);
}
#define _cleanup_free_	   _cleanup_(freep)
#define _cleanup_close_	   _cleanup_(closep)
#define _cleanup_fclose_   _cleanup_(fclosep)
#define _cleanup_closedir_ _cleanup_(closedirp)

/* Allocation that cannot fail silently: osmosis treats out-of-memory outside the freeze as fatal to
 * the current command, reported by the caller. These return NULL like malloc. */
static inline void *xcalloc(size_t n, size_t size)
{
	return calloc(n ? n : 1, size ? size : 1);
}

/* Grow *arr (of *cap elements of elem size) so that it holds at least need elements.
 * Returns 0 or -ENOMEM; on failure *arr is unchanged. An allocation made while the freeze is on
 * is counted (freeze_allocs). */
int grow_array(void **arr, size_t *cap, size_t need, size_t elem);

/*
 * The promise that nothing inside the pause allocates beyond what was reserved before it,
 * made checkable: while `on` (set by the snapshot from the first thread stopped to the last
 * resumed), allocations are counted, and the count goes into the manifest
 * (timeline.allocations_in_freeze). In a build with AddressSanitizer (the test suite's) the
 * allocator's hook counts every allocation of the process, the C library's own included
 * (util.c); elsewhere the helpers that allocate as they go (grow_array, read_file_at) count
 * theirs, so that the suite proves the code path and a release build keeps a cheap witness.
 */
#if defined(__SANITIZE_ADDRESS__)
#define OSM_ALLOC_HOOK 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define OSM_ALLOC_HOOK 1
#endif
#endif
struct freeze_allocs {
	bool on;
	uint64_t count;
};
extern struct freeze_allocs freeze_allocs;
static inline void freeze_allocs_begin(void)
{
	__atomic_store_n(&freeze_allocs.count, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&freeze_allocs.on, true, __ATOMIC_SEQ_CST);
}
/* Ends the count (idempotent) and returns it. */
static inline uint64_t freeze_allocs_end(void)
{
	__atomic_store_n(&freeze_allocs.on, false, __ATOMIC_SEQ_CST);
	return __atomic_load_n(&freeze_allocs.count, __ATOMIC_RELAXED);
}
static inline void freeze_allocs_note(void)
{
#ifndef OSM_ALLOC_HOOK
	if (freeze_allocs.on)
		freeze_allocs.count++;
#endif
}

static inline bool add_overflows_u64(uint64_t a, uint64_t b, uint64_t *ret)
{
	return __builtin_add_overflow(a, b, ret);
}
