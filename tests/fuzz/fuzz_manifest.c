/* SPDX-License-Identifier: MIT */
/* libFuzzer harness for the manifest reader: any bytes, from any machine, must be refused with a
 * reason or read into a model that can be written back and freed, never crash or hang. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "snapshot/describe.h"
#include "snapshot/manifest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct osm_snapshot *s = NULL;
	char err[256], what[512];

	if (manifest_parse((const char *)data, size, &s, err, sizeof(err)) == 0) {
		free(manifest_to_json(s));
		for (size_t i = 0; i < s->n_procs; i++)
			for (size_t j = 0; j < s->procs[i]->n_threads; j++)
				describe_wait(s->procs[i], s->procs[i]->threads[j], what,
					      sizeof(what));
		snapshot_free(s);
	}
	return 0;
}
