/* SPDX-License-Identifier: MIT */
/* Building an ELF note segment in memory: each note is a header, its name and its description,
 * each padded to 4 bytes (the layout the kernel and gdb write in 64-bit cores). */
#pragma once

#include <stddef.h>
#include <stdint.h>

struct note_sink {
	uint8_t *buf;
	size_t len, cap;
	int err; /* first error (-ENOMEM, -EOVERFLOW); further adds are ignored */
};

void note_add(struct note_sink *ns, const char *name, uint32_t type, const void *desc,
	      size_t descsz);
void note_sink_done(struct note_sink *ns);
