/* SPDX-License-Identifier: MIT */
/*
 * Reading compressed cores (layout in zcore.h). A file from anywhere: the trailer, the index and
 * every frame are checked before use (offsets contiguous from 0 up to the index, sizes within
 * the compress bound of a chunk, content sizes exactly a chunk, checksums by zstd). When the
 * index cannot be used, the frames are walked from the start as far as they are whole, and the
 * core is served up to there, with the reason kept for the caller to report.
 */
#include <elf.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include "arch.h"
#include "base/util.h"
#include "core/zcore.h"

#define MAX_PHNUM	 (1u << 22)
#define MAX_NOTES	 (256u << 20)
#define MAX_STACKS	 100000
#define SMALL_SEGMENT	 (1u << 20)
#define SMALL_BUDGET	 (64ull << 20)
#define STACK_WINDOW	 (1u << 20)
#define STACK_WINDOW_MIN (64u << 10)
#define STACK_BELOW_SP	 512 /* the red zone and a little more */
#define IMAGE_PAGE	 4096u
#define FRAME_HEADER_MAX 18 /* the largest zstd frame header */

struct zent {
	uint64_t off;
	uint32_t csize, flags;
};

struct zcache {
	uint8_t *buf;
	size_t idx;
	bool valid;
};

struct zcore {
	int fd;
	uint64_t file_size, size, full_size;
	uint32_t chunk;
	struct zent *e;
	size_t n, cap;
	char problem[256];
	bool truncated; /* no index at the end: the file may hold less than was written */
	ZSTD_DCtx *d;
	uint8_t *cbuf;
	size_t cbuf_cap;
	struct zcache cache[2];
	unsigned lru;
	uint8_t *image;
	size_t image_len;
	uint64_t image_filled;
};

static uint32_t get32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

static bool pread_full(int fd, void *buf, size_t len, uint64_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = pread(fd, (char *)buf + done, len - done, (off_t)(off + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		done += (size_t)n;
	}
	return true;
}

/* The buffer for compressed frames, large enough for cap bytes. */
static bool ensure_cbuf(struct zcore *z, size_t cap)
{
	if (z->cbuf_cap >= cap)
		return true;
	uint8_t *p = realloc(z->cbuf, cap);
	if (!p)
		return false;
	z->cbuf = p;
	z->cbuf_cap = cap;
	return true;
}

static bool chunk_ok(uint64_t chunk)
{
	return chunk >= ZCORE_MIN_CHUNK && chunk <= ZCORE_MAX_CHUNK && !(chunk & (chunk - 1));
}

static uint64_t chunk_len(const struct zcore *z, size_t i)
{
	uint64_t start = (uint64_t)i * z->chunk;
	return MIN((uint64_t)z->chunk, z->size - start);
}

/* The index at the end of the file; false (and why in z->problem) when it cannot be used. */
static bool read_index(struct zcore *z)
{
	uint8_t t[ZCORE_TRAILER_BYTES], hdr[8];
	uint64_t size, payload, start, expect = 0;
	uint32_t n, chunk;
	_cleanup_free_ uint8_t *raw = NULL;

	if (z->file_size < 8 + ZCORE_TRAILER_BYTES ||
	    !pread_full(z->fd, t, sizeof(t), z->file_size - sizeof(t)) ||
	    get32(t + 20) != ZCORE_MAGIC) {
		snprintf(z->problem, sizeof(z->problem),
			 "no index at its end (truncated?): read as far as its frames are whole");
		z->truncated = true;
		return false;
	}
	size = get64(t);
	n = get32(t + 8);
	chunk = get32(t + 12);
	if (get32(t + 16) != ZCORE_VERSION || !chunk_ok(chunk) || size > ZCORE_MAX_SIZE ||
	    (uint64_t)n != (size + chunk - 1) / chunk ||
	    (uint64_t)n * ZCORE_ENTRY_BYTES > z->file_size - 8 - ZCORE_TRAILER_BYTES) {
		snprintf(z->problem, sizeof(z->problem),
			 "its index trailer is damaged (version, chunk size or count)");
		return false;
	}
	payload = (uint64_t)n * ZCORE_ENTRY_BYTES + ZCORE_TRAILER_BYTES;
	start = z->file_size - 8 - payload;
	if (!pread_full(z->fd, hdr, 8, start) || get32(hdr) != ZCORE_SKIPPABLE ||
	    get32(hdr + 4) != payload) {
		snprintf(z->problem, sizeof(z->problem), "its index frame header is damaged");
		return false;
	}
	raw = malloc(n ? (size_t)n * ZCORE_ENTRY_BYTES : 1);
	z->e = calloc(n ? n : 1, sizeof(*z->e));
	if (!raw || !z->e ||
	    (n && !pread_full(z->fd, raw, (size_t)n * ZCORE_ENTRY_BYTES, start + 8))) {
		snprintf(z->problem, sizeof(z->problem), "its index cannot be read");
		return false;
	}
	z->chunk = chunk;
	size_t bound = ZSTD_compressBound(chunk);
	for (uint32_t i = 0; i < n; i++) {
		const uint8_t *p = raw + (size_t)i * ZCORE_ENTRY_BYTES;
		struct zent e = {.off = get64(p), .csize = get32(p + 8), .flags = get32(p + 12)};
		if (e.off != expect || e.csize == 0 || e.csize > bound ||
		    (e.flags & ~ZCORE_CHUNK_ZERO) || e.csize > start - expect) {
			snprintf(z->problem, sizeof(z->problem),
				 "its index is damaged at frame %u (offset %llu, %u bytes)", i,
				 (unsigned long long)e.off, e.csize);
			return false;
		}
		z->e[i] = e;
		expect += e.csize;
	}
	if (expect != start) {
		snprintf(z->problem, sizeof(z->problem),
			 "its index does not account for %llu bytes before it",
			 (unsigned long long)(start - expect));
		return false;
	}
	z->n = n;
	z->size = z->full_size = size;
	z->problem[0] = 0;
	return true;
}

/* No usable index: walk the frames from the start as far as they are whole. */
static int scan_frames(struct zcore *z)
{
	uint64_t off = 0, size = 0;
	bool last = false;

	free(z->e);
	z->e = NULL;
	z->n = z->cap = 0;
	z->chunk = 0;
	while (off < z->file_size && !last) {
		size_t want = (size_t)MIN((uint64_t)FRAME_HEADER_MAX, z->file_size - off);
		unsigned long long content;
		size_t csize;

		if (!ensure_cbuf(z, FRAME_HEADER_MAX) || !pread_full(z->fd, z->cbuf, want, off))
			break;
		if (want >= 4 && get32(z->cbuf) == ZCORE_SKIPPABLE)
			break; /* the index: what follows is not the core */
		content = ZSTD_getFrameContentSize(z->cbuf, want);
		if (content == ZSTD_CONTENTSIZE_UNKNOWN || content == ZSTD_CONTENTSIZE_ERROR ||
		    content == 0)
			break;
		if (z->chunk == 0)
			z->chunk = chunk_ok(content) ? (uint32_t)content : ZCORE_DEFAULT_CHUNK;
		if (content > z->chunk)
			break;
		last = content < z->chunk;
		want = (size_t)MIN((uint64_t)ZSTD_compressBound(z->chunk), z->file_size - off);
		if (!ensure_cbuf(z, ZSTD_compressBound(z->chunk)))
			return -ENOMEM;
		if (!pread_full(z->fd, z->cbuf, want, off))
			break;
		csize = ZSTD_findFrameCompressedSize(z->cbuf, want);
		if (ZSTD_isError(csize) || csize == 0 || csize > want)
			break; /* cut short */
		if (grow_array((void **)&z->e, &z->cap, z->n + 1, sizeof(*z->e)))
			return -ENOMEM;
		z->e[z->n++] = (struct zent){.off = off, .csize = (uint32_t)csize};
		off += csize;
		size += content;
	}
	if (z->chunk == 0)
		z->chunk = ZCORE_DEFAULT_CHUNK;
	z->size = size;
	if (!z->full_size)
		z->full_size = size;
	if (z->n == 0)
		return -EBADMSG;
	size_t l = strlen(z->problem);
	snprintf(z->problem + l, sizeof(z->problem) - l, "; %llu bytes of the core in %zu frames",
		 (unsigned long long)size, z->n);
	return 0;
}

int zcore_open(int fd, struct zcore **ret, char *err, size_t errlen)
{
	struct zcore *z = calloc(1, sizeof(*z));
	struct stat st;
	int r;

	err[0] = 0;
	if (!z)
		return -ENOMEM;
	z->fd = fd;
	z->d = ZSTD_createDCtx();
	if (!z->d) {
		zcore_close(z);
		return -ENOMEM;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "not a regular file");
		zcore_close(z);
		return -EINVAL;
	}
	z->file_size = (uint64_t)st.st_size;
	if (!read_index(z)) {
		r = scan_frames(z);
		if (r < 0) {
			snprintf(err, errlen, "not a compressed core: %s", z->problem);
			zcore_close(z);
			return r == -ENOMEM ? r : -EBADMSG;
		}
	}
	/* Frames are at most the compress bound of a chunk. */
	if (!ensure_cbuf(z, ZSTD_compressBound(z->chunk))) {
		zcore_close(z);
		return -ENOMEM;
	}
	for (int i = 0; i < 2; i++) {
		z->cache[i].buf = malloc(z->chunk);
		if (!z->cache[i].buf) {
			zcore_close(z);
			return -ENOMEM;
		}
	}
	snprintf(err, errlen, "%s", z->problem);
	*ret = z;
	return 0;
}

uint64_t zcore_size(const struct zcore *z)
{
	return z->size;
}

uint64_t zcore_full_size(const struct zcore *z)
{
	return z->full_size;
}

const char *zcore_problem(const struct zcore *z)
{
	return z->problem[0] ? z->problem : NULL;
}

/* Chunk i decompressed (cached), or NULL when its frame is damaged. */
static const uint8_t *load_chunk(struct zcore *z, size_t i)
{
	uint64_t len = chunk_len(z, i);
	struct zcache *c;
	size_t n;

	for (int k = 0; k < 2; k++)
		if (z->cache[k].valid && z->cache[k].idx == i) {
			z->lru = (unsigned)!k;
			return z->cache[k].buf;
		}
	c = &z->cache[z->lru];
	z->lru = !z->lru;
	c->valid = false;
	if (z->e[i].csize > z->cbuf_cap || !pread_full(z->fd, z->cbuf, z->e[i].csize, z->e[i].off))
		return NULL;
	if (ZSTD_getFrameContentSize(z->cbuf, z->e[i].csize) != len)
		return NULL;
	n = ZSTD_decompressDCtx(z->d, c->buf, z->chunk, z->cbuf, z->e[i].csize);
	if (ZSTD_isError(n) || n != len)
		return NULL;
	c->idx = i;
	c->valid = true;
	return c->buf;
}

size_t zcore_pread(struct zcore *z, void *buf, size_t len, uint64_t off)
{
	size_t done = 0;

	while (done < len && off + done < z->size) {
		uint64_t at = off + done;
		size_t i = (size_t)(at / z->chunk), in = (size_t)(at % z->chunk);
		size_t n = (size_t)MIN((uint64_t)(len - done), chunk_len(z, i) - in);

		if (i >= z->n)
			break;
		if (z->e[i].flags & ZCORE_CHUNK_ZERO) {
			memset((char *)buf + done, 0, n);
		} else {
			const uint8_t *p = load_chunk(z, i);
			if (!p)
				break;
			memcpy((char *)buf + done, p + in, n);
		}
		done += n;
	}
	return done;
}

bool zcore_is_zero(const struct zcore *z, uint64_t off, uint64_t len)
{
	if (len == 0)
		return true;
	if (off >= z->size || len > z->size - off)
		return false;
	for (uint64_t i = off / z->chunk; i <= (off + len - 1) / z->chunk; i++)
		if (i >= z->n || !(z->e[i].flags & ZCORE_CHUNK_ZERO))
			return false;
	return true;
}

/* ---- the image for libelf --------------------------------------------------------------- */

/* Fill [off, off+len) of the image from the core, within budget. */
static bool fill(struct zcore *z, uint64_t off, uint64_t len, uint64_t *budget)
{
	if (off >= z->image_len)
		return false;
	len = MIN(len, z->image_len - off);
	if (len > *budget)
		return false;
	*budget -= len;
	if (zcore_is_zero(z, off, len))
		return true;
	z->image_filled += len;
	return zcore_pread(z, z->image + off, (size_t)len, off) == len;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return (x > y) - (x < y);
}

/* The stack pointers of the NT_PRSTATUS notes in [p, p+len) (filled in the image). */
static size_t stack_pointers(const uint8_t *p, uint64_t len, uint64_t *sps, size_t max)
{
	uint64_t off = 0;
	size_t n = 0;

	while (off + sizeof(Elf64_Nhdr) <= len && n < max) {
		Elf64_Nhdr nh;
		memcpy(&nh, p + off, sizeof(nh));
		uint64_t name = ALIGN_UP((uint64_t)nh.n_namesz, 4),
			 desc = ALIGN_UP((uint64_t)nh.n_descsz, 4);
		uint64_t d = off + sizeof(nh) + name;
		if (name > len || desc > len || d > len || desc > len - d)
			break;
		if (nh.n_type == NT_PRSTATUS &&
		    nh.n_descsz >= ARCH_PRSTATUS_REG_OFFSET + ARCH_GREGS_COUNT * 8)
			memcpy(&sps[n++], p + d + ARCH_PRSTATUS_REG_OFFSET + ARCH_GREGS_SP * 8, 8);
		off = d + desc;
	}
	return n;
}

int zcore_image(struct zcore *z, void **ret_image, size_t *ret_len, char *err, size_t errlen)
{
	Elf64_Ehdr eh;
	_cleanup_free_ Elf64_Phdr *ph = NULL;
	_cleanup_free_ uint64_t *sps = NULL;
	uint64_t phnum, budget = ZCORE_IMAGE_BUDGET, small = SMALL_BUDGET;
	size_t n_sps = 0;

	err[0] = 0;
	if (z->image) {
		*ret_image = z->image;
		*ret_len = z->image_len;
		return 0;
	}
	if (z->size < sizeof(eh) || z->size > SIZE_MAX) {
		snprintf(err, errlen, "too short to hold an ELF header");
		return -EBADMSG;
	}
	if (zcore_pread(z, &eh, sizeof(eh), 0) != sizeof(eh) ||
	    memcmp(eh.e_ident, ELFMAG, SELFMAG) || eh.e_ident[EI_CLASS] != ELFCLASS64 ||
	    eh.e_type != ET_CORE || eh.e_phentsize != sizeof(Elf64_Phdr)) {
		snprintf(err, errlen, "does not hold a 64-bit ELF core");
		return -EBADMSG;
	}
	phnum = eh.e_phnum;
	if (phnum == PN_XNUM) {
		Elf64_Shdr sh;
		if (eh.e_shoff > z->size - MIN(z->size, sizeof(sh)) ||
		    zcore_pread(z, &sh, sizeof(sh), eh.e_shoff) != sizeof(sh)) {
			snprintf(err, errlen,
				 "its section header 0 (program header count) is missing");
			return -EBADMSG;
		}
		phnum = sh.sh_info;
	}
	if (phnum > MAX_PHNUM || eh.e_phoff > z->size ||
	    phnum * sizeof(Elf64_Phdr) > z->size - eh.e_phoff) {
		snprintf(err, errlen, "its program headers lie beyond its end");
		return -EBADMSG;
	}
	ph = malloc(phnum ? phnum * sizeof(*ph) : 1);
	sps = calloc(MAX_STACKS, sizeof(*sps));
	if (!ph || !sps)
		return -ENOMEM;
	if (zcore_pread(z, ph, phnum * sizeof(*ph), eh.e_phoff) != phnum * sizeof(*ph)) {
		snprintf(err, errlen, "its program headers cannot be read");
		return -EIO;
	}
	z->image_len = (size_t)z->size;
	z->image = mmap(NULL, z->image_len, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (z->image == MAP_FAILED) {
		z->image = NULL;
		return -errno;
	}
	/* Headers (the real program header count included), then notes: always. */
	fill(z, 0, sizeof(eh), &budget);
	fill(z, eh.e_phoff, phnum * sizeof(*ph), &budget);
	if (eh.e_phnum == PN_XNUM)
		fill(z, eh.e_shoff, sizeof(Elf64_Shdr), &budget);
	for (uint64_t i = 0; i < phnum; i++) {
		if (ph[i].p_type != PT_NOTE || ph[i].p_filesz > MAX_NOTES ||
		    ph[i].p_offset > z->size || ph[i].p_filesz > z->size - ph[i].p_offset)
			continue;
		if (fill(z, ph[i].p_offset, ph[i].p_filesz, &budget))
			n_sps += stack_pointers(z->image + ph[i].p_offset, ph[i].p_filesz,
						sps + n_sps, MAX_STACKS - n_sps);
	}
	/* Small segments whole (ELF headers of files, small data): libdwfl finds modules there. */
	for (uint64_t i = 0; i < phnum; i++)
		if (ph[i].p_type == PT_LOAD && ph[i].p_filesz && ph[i].p_filesz <= SMALL_SEGMENT &&
		    ph[i].p_filesz <= small) {
			uint64_t before = budget;
			fill(z, ph[i].p_offset, ph[i].p_filesz, &budget);
			small -= MIN(small, before - budget);
		}
	/* A window of each thread's stack, from just below its stack pointer up. */
	qsort(sps, n_sps, sizeof(*sps), cmp_u64);
	uint64_t window = n_sps ? ALIGN_DOWN(budget / n_sps, IMAGE_PAGE) : 0;
	window = MAX(MIN(window, (uint64_t)STACK_WINDOW), (uint64_t)STACK_WINDOW_MIN);
	for (size_t k = 0; k < n_sps; k++) {
		uint64_t sp = sps[k];
		for (uint64_t i = 0; i < phnum; i++) {
			const Elf64_Phdr *p = &ph[i];
			if (p->p_type != PT_LOAD || sp < p->p_vaddr ||
			    sp - p->p_vaddr >= p->p_filesz)
				continue;
			uint64_t lo = ALIGN_DOWN(
			    MAX(sp - MIN(sp, (uint64_t)STACK_BELOW_SP), p->p_vaddr), IMAGE_PAGE);
			lo = MAX(lo, p->p_vaddr);
			uint64_t hi = MIN(p->p_vaddr + p->p_filesz, sp + window);
			if (hi > lo)
				fill(z, p->p_offset + (lo - p->p_vaddr), hi - lo, &budget);
			break;
		}
	}
	*ret_image = z->image;
	*ret_len = z->image_len;
	return 0;
}

/* ---- the plain core --------------------------------------------------------------------- */

static int write_data(int fd, const uint8_t *p, size_t len, uint64_t off)
{
	/* Zero pages stay holes. */
	for (size_t i = 0; i < len; i += IMAGE_PAGE) {
		size_t n = MIN((size_t)IMAGE_PAGE, len - i);
		bool zero = true;
		for (size_t k = 0; k < n && zero; k++)
			zero = !p[i + k];
		if (zero)
			continue;
		for (size_t done = 0; done < n;) {
			ssize_t w = pwrite(fd, p + i + done, n - done, (off_t)(off + i + done));
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0)
				return w < 0 ? -errno : -EIO;
			done += (size_t)w;
		}
	}
	return 0;
}

int zcore_extract(struct zcore *z, int out_fd)
{
	uint64_t done = 0;
	int r;

	for (size_t i = 0; i < z->n; i++) {
		uint64_t len = chunk_len(z, i);
		if (!(z->e[i].flags & ZCORE_CHUNK_ZERO)) {
			const uint8_t *p = load_chunk(z, i);
			if (!p)
				break;
			r = write_data(out_fd, p, (size_t)len, done);
			if (r < 0)
				return r;
		}
		done += len;
	}
	if (ftruncate(out_fd, (off_t)done) < 0)
		return -errno;
	return done == z->size && !z->truncated ? 0 : -EBADMSG;
}

void zcore_release_image(struct zcore *z)
{
	if (z && z->image)
		munmap(z->image, z->image_len);
	if (z)
		z->image = NULL;
}

void zcore_close(struct zcore *z)
{
	if (!z)
		return;
	zcore_release_image(z);
	for (int i = 0; i < 2; i++)
		free(z->cache[i].buf);
	free(z->cbuf);
	free(z->e);
	ZSTD_freeDCtx(z->d);
	free(z);
}

bool zcore_name(const char *name)
{
	size_t l = strlen(name), s = strlen(ZCORE_SUFFIX);
	return l > s && !strcmp(name + l - s, ZCORE_SUFFIX);
}
