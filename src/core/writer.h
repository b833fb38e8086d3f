/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdint.h>

#include "core/sink.h"
#include "snapshot/model.h"

/* Write p as an ELF core through out. Threads that are not held (gone) are left out; pages of
 * zeroes become holes. Returns 0 or a negative errno (the sink's, or -ENOMEM); does not log. */
int core_write(const struct osm_process *p, struct core_sink *out, uint64_t page_size);

/* The NT_FILE, NT_PRPSINFO and per-thread notes, exposed for tests. */
int core_build_notes(const struct osm_process *p, uint64_t page_size, struct note_sink *ns);
