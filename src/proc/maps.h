/* SPDX-License-Identifier: MIT */
/*
 * /proc/PID/maps and smaps: the parser, and the rule that decides how much of each mapping a core
 * holds. The rule follows the kernel's own core dump (fs/coredump.c, vma_dump_size()) so that an
 * osmosis core holds what the kernel's core of the same process would, and honours
 * /proc/PID/coredump_filter and MADV_DONTDUMP ("dd" in smaps VmFlags).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "snapshot/model.h"

/* VmFlags that the dump rule needs, parsed from smaps. */
#define VMF_DONTDUMP   (1u << 0) /* dd */
#define VMF_IO	       (1u << 1) /* io */
#define VMF_HUGETLB    (1u << 2) /* ht */
#define VMF_PFNMAP     (1u << 3) /* pf */
#define VMF_DONTCOPY   (1u << 4) /* dc: MADV_DONTFORK */
#define VMF_WIPEONFORK (1u << 5) /* wf */
#define VMF_MAYWRITE   (1u << 6) /* mw: may be made writable (the file was opened for writing) */
#define VMF_KNOWN      (1u << 7) /* a VmFlags line was read (smaps): the bits above are known */

/* coredump_filter bits (Documentation/filesystems/proc.rst) */
#define MMF_DUMP_ANON_PRIVATE	 (1u << 0)
#define MMF_DUMP_ANON_SHARED	 (1u << 1)
#define MMF_DUMP_MAPPED_PRIVATE	 (1u << 2)
#define MMF_DUMP_MAPPED_SHARED	 (1u << 3)
#define MMF_DUMP_ELF_HEADERS	 (1u << 4)
#define MMF_DUMP_HUGETLB_PRIVATE (1u << 5)
#define MMF_DUMP_HUGETLB_SHARED	 (1u << 6)
#define MMF_DUMP_DEFAULT	 0x33u

/* Parse one header line "start-end perms offset maj:min inode [path]" into m (path malloc'ed).
 * Returns 0 or -EINVAL. */
int maps_parse_line(const char *line, size_t len, struct osm_mapping *m);

/* Parse a whole maps or smaps text. With smaps, the per-mapping keys Rss, Anonymous, Swap and
 * VmFlags are read too. *ret is malloc'ed (free each with mapping_done()). Returns 0 or a negative
 * errno; -EINVAL names no position, callers say which file. */
int maps_parse(const char *text, size_t len, struct osm_mapping **ret, size_t *ret_n);

/* Decide dump_len, elf_header_only and trim_absent for one mapping. */
void maps_plan_dump(struct osm_mapping *m, unsigned filter, uint64_t page_size);

/* Copy the smaps-only facts (vmflags, rss/anon/swap) from an earlier parse onto a fresh maps
 * parse, matching mappings by range, protection, offset and inode. Returns the number of mappings
 * in cur that found no match (they need a fresh smaps read). */
size_t maps_carry_smaps(struct osm_mapping *cur, size_t n_cur, const struct osm_mapping *old,
			size_t n_old);

void maps_free(struct osm_mapping *maps, size_t n);
