/* SPDX-License-Identifier: MIT */
/*
 * Symbols and source lines shared by every process of one analysis.
 *
 * Twenty processes of one program map the same libc, and each process's own libdwfl session
 * (modules.c) would read libc's symbol table and, with debug symbols installed, open its debug
 * file, decompress its DWARF and parse its line tables again: most of an analysis's time went
 * there. So symbols and lines of a module that stands on a verified file of this machine are
 * asked of one entry per file instead:
 *
 *   - An entry is keyed by the module's build-id (from the core's memory) and its span. modules.c
 *     makes it only for a file it opened and whose build-id it found equal to the core's; the
 *     entry opens the file again the first time it is asked (modules_open_one(), the same
 *     checks: a regular file with that build-id, separate debug files only by build-id), in a
 *     libdwfl session of its own where the module lies where the first process had it.
 *   - An address is asked as rel = pc - the module's start in the asking process: the same file
 *     offset in every process, so the answer (symbol, offset, file, line) is the one the process's
 *     own session would give. Answers are kept per entry in a hash table, so an address found in
 *     many threads or processes is looked up once; their number is bounded by the frames read.
 *   - At most SYMCACHE_MAX_OPEN files are open at once (their symbol tables and DWARF are the
 *     memory that matters): the one asked longest ago is closed when another must open, and
 *     opened again if asked again. Answers survive closing.
 *   - A file that cannot be opened again (changed since) answers nothing: the process's own
 *     session is asked, as before this cache.
 */
#include <elfutils/libdwfl.h>
#include <stdlib.h>
#include <string.h>

#include "analyze/analysis.h"
#include "analyze/modules.h"
#include "analyze/symcache.h"
#include "base/util.h"

#define SYMCACHE_MAX_OPEN 8
#define BUILD_ID_MAX	  64

struct answer {
	uint64_t rel;
	bool used;
	char *function;
	uint64_t offset;
	char *file;
	int line;
};

struct symfile {
	struct symcache *sc;
	unsigned char build_id[BUILD_ID_MAX];
	size_t build_id_len;
	uint64_t span;
	char *path;
	uint64_t low, high, build_id_vaddr; /* where the cache's session places it */
	Dwfl *dwfl;			    /* open, or NULL */
	Dwfl_Module *mod;
	struct module_source *src;
	bool broken; /* could not be opened again: answers nothing */
	uint64_t last_use;
	struct answer *answers; /* open addressing, a power of two in size */
	size_t n_answers, cap_answers;
};

struct symcache {
	struct symfile **files;
	size_t n_files, cap_files;
	size_t n_open;
	uint64_t tick;
};

struct symcache *symcache_new(void)
{
	return calloc(1, sizeof(struct symcache));
}

static void close_file(struct symfile *sf)
{
	if (!sf->dwfl)
		return;
	dwfl_end(sf->dwfl);
	modules_source_free(sf->src);
	sf->dwfl = NULL;
	sf->mod = NULL;
	sf->src = NULL;
	sf->sc->n_open--;
}

void symcache_free(struct symcache *sc)
{
	if (!sc)
		return;
	for (size_t i = 0; i < sc->n_files; i++) {
		struct symfile *sf = sc->files[i];
		close_file(sf);
		for (size_t j = 0; j < sf->cap_answers; j++) {
			free(sf->answers[j].function);
			free(sf->answers[j].file);
		}
		free(sf->answers);
		free(sf->path);
		free(sf);
	}
	free(sc->files);
	free(sc);
}

struct symfile *symcache_file(struct symcache *sc, const unsigned char *build_id, size_t len,
			      const char *path, uint64_t low, uint64_t high,
			      uint64_t build_id_vaddr)
{
	struct symfile *sf;

	if (!sc || !len || len > BUILD_ID_MAX || high <= low)
		return NULL;
	for (size_t i = 0; i < sc->n_files; i++) {
		sf = sc->files[i];
		if (sf->build_id_len == len && !memcmp(sf->build_id, build_id, len) &&
		    sf->span == high - low)
			return sf;
	}
	if (grow_array((void **)&sc->files, &sc->cap_files, sc->n_files + 1, sizeof(*sc->files)) ||
	    !(sf = calloc(1, sizeof(*sf))))
		return NULL;
	if (!(sf->path = strdup(path))) {
		free(sf);
		return NULL;
	}
	sf->sc = sc;
	memcpy(sf->build_id, build_id, len);
	sf->build_id_len = len;
	sf->span = high - low;
	sf->low = low;
	sf->high = high;
	sf->build_id_vaddr = build_id_vaddr;
	sc->files[sc->n_files++] = sf;
	return sf;
}

static bool open_file(struct symfile *sf)
{
	struct symcache *sc = sf->sc;

	if (sf->dwfl)
		return true;
	if (sf->broken)
		return false;
	if (sc->n_open >= SYMCACHE_MAX_OPEN) {
		struct symfile *oldest = NULL;
		for (size_t i = 0; i < sc->n_files; i++)
			if (sc->files[i]->dwfl &&
			    (!oldest || sc->files[i]->last_use < oldest->last_use))
				oldest = sc->files[i];
		if (oldest)
			close_file(oldest);
	}
	sf->dwfl = modules_open_one(sf->path, sf->build_id, sf->build_id_len, sf->low, sf->high,
				    sf->build_id_vaddr, &sf->mod, &sf->src);
	if (!sf->dwfl) {
		sf->broken = true;
		return false;
	}
	sc->n_open++;
	return true;
}

static size_t slot_of(uint64_t rel, size_t cap)
{
	uint64_t h = rel * 0x9e3779b97f4a7c15ull;
	return (size_t)(h >> 32) & (cap - 1);
}

static struct answer *find_slot(struct symfile *sf, uint64_t rel)
{
	size_t i = slot_of(rel, sf->cap_answers);

	while (sf->answers[i].used && sf->answers[i].rel != rel)
		i = (i + 1) & (sf->cap_answers - 1);
	return &sf->answers[i];
}

/* Room for one more answer: the table doubles at half full. */
static bool make_room(struct symfile *sf)
{
	struct answer *old = sf->answers;
	size_t old_cap = sf->cap_answers, cap = old_cap ? 2 * old_cap : 64;

	if (2 * (sf->n_answers + 1) <= old_cap)
		return true;
	sf->answers = calloc(cap, sizeof(*sf->answers));
	if (!sf->answers) {
		sf->answers = old;
		return false;
	}
	sf->cap_answers = cap;
	for (size_t i = 0; i < old_cap; i++)
		if (old[i].used)
			*find_slot(sf, old[i].rel) = old[i];
	free(old);
	return true;
}

bool symcache_lookup(struct symfile *sf, uint64_t rel, struct sym_answer *ret)
{
	struct answer *a;
	uint64_t addr;
	GElf_Off off = 0;
	GElf_Sym sym;
	const char *name;
	Dwfl_Line *line;

	if (!sf || rel >= sf->span)
		return false;
	if (sf->cap_answers && (a = find_slot(sf, rel))->used)
		goto found;
	if (!make_room(sf) || !open_file(sf))
		return false;
	sf->last_use = ++sf->sc->tick;
	addr = sf->low + rel;
	a = find_slot(sf, rel);
	*a = (struct answer){.rel = rel, .used = true};
	name = dwfl_module_addrinfo(sf->mod, addr, &off, &sym, NULL, NULL, NULL);
	if (name) {
		a->function = demangle(name);
		a->offset = off;
	}
	line = dwfl_module_getsrc(sf->mod, addr);
	if (line) {
		int lineno = 0;
		const char *file = dwfl_lineinfo(line, NULL, &lineno, NULL, NULL, NULL);
		if (file && (a->file = strdup(file)))
			a->line = lineno;
	}
	sf->n_answers++;
found:
	ret->function = a->function;
	ret->offset = a->offset;
	ret->file = a->file;
	ret->line = a->line;
	return true;
}
