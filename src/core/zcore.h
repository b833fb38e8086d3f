/* SPDX-License-Identifier: MIT */
/*
 * Compressed cores (core.PID.zst): the ELF core of writer.c, cut into chunks of the same size
 * (1 MiB by default; the last one shorter), each compressed as its own zstd frame (content size
 * and checksum in the frame), so that a reader can seek: byte X of the core is in chunk
 * X / chunk_size. The file ends with an index in a zstd skippable frame:
 *
 *   frame 0 .. frame n-1               zstd frames, chunk i holds core bytes [i*chunk, ...)
 *   u32 0x184D2A5E, u32 payload size   skippable frame header (zstd ignores its payload)
 *   n x { u64 offset; u32 csize;       where frame i starts in the file, its compressed size,
 *         u32 flags }                  ZCORE_CHUNK_ZERO: every byte of the chunk is zero
 *   u64 core size; u32 n; u32 chunk;   the trailer, the last 24 bytes of the file
 *   u32 version; u32 magic "OSMZ"
 *
 * Every chunk has a frame, zero chunks too (a few bytes each), so `zstd -d` gives the core back
 * byte for byte; readers skip zero chunks (holes in `osmosis core`'s output). A file whose
 * index is missing or damaged (a truncated file) is read by walking its frames from the start,
 * as far as they are whole: the reader says so (zcore_problem) and serves what is there.
 *
 * The reader trusts nothing: every frame's offset, sizes, content size and checksum are checked
 * before use; it holds the index (16 bytes per chunk) and two decompressed chunks, whatever the
 * size of the core.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/sink.h"

#define ZCORE_SUFFIX	    ".zst"
#define ZCORE_MAGIC	    0x5A4D534Fu /* "OSMZ" little endian */
#define ZCORE_VERSION	    1u
#define ZCORE_SKIPPABLE	    0x184D2A5Eu
#define ZCORE_CHUNK_ZERO    1u
#define ZCORE_DEFAULT_CHUNK (1u << 20)
#define ZCORE_MIN_CHUNK	    (64u << 10)
#define ZCORE_MAX_CHUNK	    (64u << 20)
#define ZCORE_MAX_SIZE	    (1ull << 48)
#define ZCORE_DEFAULT_LEVEL 1
#define ZCORE_TRAILER_BYTES 24
#define ZCORE_ENTRY_BYTES   16

/* ---- writing ---------------------------------------------------------------------------- */

struct zstd_sink;

/* A sink that compresses what it is given into out (which it writes through, in order).
 * level: zstd's (1-19; negative for faster); n_workers: threads compressing beside the caller
 * (they run at nice 10: the targets come first). Returns NULL when out of memory. */
struct zstd_sink *zstd_sink_new(struct core_sink *out, int level, unsigned n_workers);
struct core_sink *zstd_sink_base(struct zstd_sink *z);
/* Bytes held in its buffers (for osmosis's accounting). */
size_t zstd_sink_buffer_bytes(const struct zstd_sink *z);
/* Compressed bytes written so far. */
uint64_t zstd_sink_compressed(const struct zstd_sink *z);
void zstd_sink_free(struct zstd_sink *z);

/* ---- reading ---------------------------------------------------------------------------- */

struct zcore;

/* Open a compressed core on fd (borrowed: it must stay open while z is used). Returns 0 and *ret
 * (possibly with a problem: truncated, index damaged), or a negative errno when nothing of it
 * can be read; err says why either way (empty when all is well). Does not log. */
int zcore_open(int fd, struct zcore **ret, char *err, size_t errlen);
/* The size of the core it holds (what can be read of it, when truncated). */
uint64_t zcore_size(const struct zcore *z);
/* The size the core had when written (from the index; zcore_size when unknown). */
uint64_t zcore_full_size(const struct zcore *z);
/* NULL when the file is whole, else what is wrong with it. */
const char *zcore_problem(const struct zcore *z);
/* Read up to len bytes of the core at off; returns the bytes read (short at the end, or where a
 * frame is damaged). */
size_t zcore_pread(struct zcore *z, void *buf, size_t len, uint64_t off);
/* Whether [off, off+len) is known to be zeroes (in zero chunks) without reading it. */
bool zcore_is_zero(const struct zcore *z, uint64_t off, uint64_t len);
/* An image of the core for libelf's elf_memory(): a sparse mapping of zcore_size bytes in which
 * the headers, the notes, small segments and a window of each thread's stack above its stack
 * pointer are filled; the rest reads as zeroes and takes no memory (read it with zcore_pread).
 * Its filled bytes are bounded (ZCORE_IMAGE_BUDGET). The image belongs to z. Returns 0 or a
 * negative errno; err says why. */
#define ZCORE_IMAGE_BUDGET (192ull << 20)
int zcore_image(struct zcore *z, void **ret_image, size_t *ret_len, char *err, size_t errlen);
/* Give the image's memory back (after elf_end of the Elf over it). */
void zcore_release_image(struct zcore *z);
/* Write the plain core to out_fd (zero chunks and zero pages become holes; the size is set).
 * Returns 0 or a negative errno. */
int zcore_extract(struct zcore *z, int out_fd);
void zcore_close(struct zcore *z);

/* Whether a core file name is that of a compressed core. */
bool zcore_name(const char *name);
