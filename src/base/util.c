/* SPDX-License-Identifier: MIT */
#include <string.h>

#include "base/util.h"

struct freeze_allocs freeze_allocs;

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
