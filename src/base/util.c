/* SPDX-License-Identifier: MIT */
#include <string.h>

#include "base/util.h"

struct freeze_allocs freeze_allocs;

#ifdef OSM_ALLOC_HOOK
/* The sanitizer's allocator calls this on every allocation, from any thread (util.h). */
int __sanitizer_install_malloc_and_free_hooks(void (*malloc_hook)(const volatile void *, size_t),
					      void (*free_hook)(const volatile void *));

static void count_allocation(const volatile void *p, size_t size)
{
	(void)p;
	(void)size;
	if (__atomic_load_n(&freeze_allocs.on, __ATOMIC_RELAXED))
		__atomic_add_fetch(&freeze_allocs.count, 1, __ATOMIC_RELAXED);
}

static void count_nothing(const volatile void *p)
{
	(void)p;
}

__attribute__((constructor)) static void install_allocation_count(void)
{
	/* both hooks or none: the sanitizer refuses a NULL one */
	if (!__sanitizer_install_malloc_and_free_hooks(count_allocation, count_nothing))
		abort();
}
#endif

int grow_array(void **arr, size_t *cap, size_t need, size_t elem)
{
	size_t n;
	void *p;

	if (need <= *cap)
		return 0;
	n = *cap ? *cap : 8;
	while (n < need) {
		if (__builtin_mul_overflow(n, 2, &n))
			return -ENOMEM;
	}
	if (__builtin_mul_overflow(n, elem, &(size_t){0}))
		return -ENOMEM;
	freeze_allocs_note();
	p = realloc(*arr, n * elem);
	if (!p)
		return -ENOMEM;
	memset((char *)p + *cap * elem, 0, (n - *cap) * elem);
	*arr = p;
	*cap = n;
	return 0;
}
