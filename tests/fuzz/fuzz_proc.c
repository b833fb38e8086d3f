/* SPDX-License-Identifier: MIT */
/* libFuzzer harness for the /proc readers that take text from the kernel: maps/smaps, stat and
 * status. They must never crash, hang or read out of bounds, whatever the input. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proc/maps.h"
#include "proc/procfs.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct osm_mapping *m;
	struct proc_stat st;
	struct proc_ids ids;
	char *s;
	size_t n;

	if (maps_parse((const char *)data, size, &m, &n) == 0) {
		for (size_t i = 0; i < n; i++)
			maps_plan_dump(&m[i], (unsigned)size, 4096);
		maps_free(m, n);
	}
	s = malloc(size + 1);
	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = 0;
	(void)proc_parse_stat(s, &st);
	(void)proc_parse_status_ids(s, &ids);
	free(s);
	return 0;
}
