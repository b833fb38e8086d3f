/* SPDX-License-Identifier: MIT */
/*
 * ELF notes, both ways.
 *
 * Writing: a note segment built in memory, each note a header, its name and its description,
 * each padded to 4 bytes (the layout the kernel and gdb write in 64-bit cores).
 *
 * Reading: a core may come from anywhere, so the readers are pure functions over a buffer the
 * caller owns (the note segment copied out of the core), and every size is checked against the
 * definition a reader copies from: a note's header against sizeof(Elf64_Nhdr), NT_PRSTATUS
 * against offsetof/sizeof of struct elf_prstatus, NT_FILE against its count, NT_AUXV against
 * whole (type, value) pairs. No reader looks past the description it was given; none allocates
 * except note_file_parse, whose entries point into the description. The layouts are in
 * docs/design/kernel-facts.md.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct note_sink {
	uint8_t *buf;
	size_t len, cap;
	int err; /* first error (-ENOMEM, -EOVERFLOW); further adds are ignored */
};

void note_add(struct note_sink *ns, const char *name, uint32_t type, const void *desc,
	      size_t descsz);
void note_sink_done(struct note_sink *ns);

/* One note of a segment, pointing into the caller's buffer. */
struct note {
	uint32_t type;
	const char *name; /* namesz bytes, not necessarily NUL-terminated */
	size_t namesz;
	const uint8_t *desc;
	size_t descsz;
	size_t offset; /* of its header in the segment */
};

/* Walks the notes of buf[0..len). */
struct note_iter {
	const uint8_t *buf;
	size_t len, off;
	const char *bad; /* why the walk stopped early, NULL at a clean end */
};

void note_iter_init(struct note_iter *it, const void *buf, size_t len);
/* The next note in *ret; false at the end of the segment or at a note that does not fit (then
 * it->bad says why and it->off is where). */
bool note_next(struct note_iter *it, struct note *ret);
/* The note's name is exactly s (namesz counts the NUL, as the kernel writes it). */
bool note_name_is(const struct note *n, const char *s);

/* NT_PRSTATUS: the thread id (pr_pid) and the general registers (pr_reg, elf_gregset_t) into
 * regs, of which nregs fit. Returns 0, or -EBADMSG when the description is shorter than
 * pr_reg's end. */
int note_read_prstatus(const struct note *n, pid_t *ret_tid, uint64_t *regs, size_t nregs);

/* NT_AUXV: the value of the first entry of type in *ret. Returns true when found. */
bool note_auxv_get(const struct note *n, uint64_t type, uint64_t *ret);

/* NT_FILE: a mapped file, from the note's table. */
struct note_file_entry {
	uint64_t start, end; /* the mapping */
	uint64_t offset;     /* in bytes (the note holds it in pages) */
	const char *name;    /* into the description, NUL-terminated within it */
	size_t name_len;
};

/* Parse NT_FILE into a malloc'ed array (free() it) of entries that point into n's description.
 * Entries whose name runs off the end are left out. Returns 0, -EBADMSG for a header or count
 * that does not fit, or -ENOMEM. */
#define NOTE_FILE_MAX_ENTRIES (4u << 20)
int note_file_parse(const struct note *n, struct note_file_entry **ret, size_t *ret_n);
