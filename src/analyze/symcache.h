/* SPDX-License-Identifier: MIT */
/*
 * Symbols and source lines of module files, shared by every process of one analysis. Internal to
 * analyze/: modules.c names the files (symcache_file), unwind.c asks (symcache_lookup).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct symcache;
struct symfile;

/* What a module-relative address stands for; the strings belong to the cache. */
struct sym_answer {
	const char *function; /* demangled; NULL when no symbol covers it */
	uint64_t offset;      /* from the symbol's start */
	const char *file;     /* NULL without a source line */
	int line;
};

/* An empty cache, or NULL without memory (then every lookup is the process's own). */
struct symcache *symcache_new(void);

/* Close every file and free every answer. NULL-safe. */
void symcache_free(struct symcache *sc);

/* The entry for the file of this build-id mapped over a span of high - low bytes, made the first
 * time (nothing is opened until an address is looked up). path is a regular file whose build-id
 * the caller checked against the core's (modules.c); low, high and build_id_vaddr are where that
 * process had it, and where the cache's own libdwfl places it. Returns NULL when sc is NULL,
 * the build-id is empty, or memory runs out. */
struct symfile *symcache_file(struct symcache *sc, const unsigned char *build_id, size_t len,
			      const char *path, uint64_t low, uint64_t high,
			      uint64_t build_id_vaddr);

/* The symbol and line of the address rel bytes past the module's start, from the cache or from
 * the file (opened once per analysis by modules_open_one(), which checks its build-id again).
 * Returns false when the file cannot be used (the caller asks its own libdwfl then). */
bool symcache_lookup(struct symfile *sf, uint64_t rel, struct sym_answer *ret);
