/* SPDX-License-Identifier: MIT */
/*
 * The compressing sink (layout in zcore.h). The core's bytes are gathered into chunks; a batch of
 * chunks (one per thread) is compressed in parallel, each chunk its own frame, then the frames
 * are written to the output in order and indexed. A chunk wholly skipped (a hole of the core)
 * gets a frame compressed once for all, with no copying or compressing. The helper threads run
 * at nice 10: writing cores is work beside running targets (base/sched.h).
 *
 * Memory: (1 + workers) x (chunk + its compress bound) and the index, 16 bytes per chunk.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include <zstd.h>

#include "base/util.h"
#include "core/zcore.h"

struct zentry {
	uint64_t offset;
	uint32_t csize, flags;
};

struct zslot {
	uint8_t *in;
	size_t in_len;
	uint8_t *out;
	size_t out_len;
	bool zero;
	int err;
	ZSTD_CCtx *cctx;
};

struct zstd_sink {
	struct core_sink base;
	struct core_sink *out;
	int level;
	size_t chunk, out_cap;
	struct zslot *slots;
	unsigned n_slots, filled; /* slots of the batch filled; the current one is slots[filled] */
	size_t fill;		  /* bytes in the current slot */
	uint8_t *zero_frame;
	size_t zero_len;
	struct zentry *idx;
	size_t n_idx, cap_idx;
	uint64_t written; /* compressed bytes */
	int err;

	pthread_t *threads;
	unsigned n_threads;
	pthread_mutex_t lock;
	pthread_cond_t go, done;
	unsigned next, finished, batch, batch_n; /* next slot to take, slots done, the batch's
						   number and its slots (under lock) */
	bool quit;
};

static bool all_zero(const uint8_t *p, size_t len)
{
	const uint64_t *w = (const uint64_t *)p;
	size_t i;

	for (i = 0; i < len / 8; i++)
		if (w[i])
			return false;
	for (i *= 8; i < len; i++)
		if (p[i])
			return false;
	return true;
}

static void compress_slot(struct zstd_sink *z, struct zslot *s)
{
	size_t n;

	s->err = 0;
	s->zero = all_zero(s->in, s->in_len);
	if (s->zero && s->in_len == z->chunk) {
		s->out_len = 0; /* the shared zero frame */
		return;
	}
	n = ZSTD_compress2(s->cctx, s->out, z->out_cap, s->in, s->in_len);
	if (ZSTD_isError(n)) {
		s->err = -EIO;
		return;
	}
	s->out_len = n;
}

static void *worker(void *arg)
{
	struct zstd_sink *z = arg;
	unsigned seen = 0;

	/* Nice 10 at the normal policy: a thread made after osmosis stepped aside inherits
	 * SCHED_IDLE, and stayed there even when the writing thread, starved, came back (a 256 MiB
	 * core took 34-48 s to compress on a busy machine, 1 s of it on a CPU). Leaving SCHED_IDLE
	 * needs CAP_SYS_NICE or an RLIMIT_NICE that allows nice 10 (sched(7)); without, it stays.
	 */
	if (sched_getscheduler(0) == SCHED_IDLE) {
		struct sched_param sp = {0};
		sched_setscheduler(0, SCHED_OTHER, &sp);
	}
	setpriority(PRIO_PROCESS, (id_t)gettid(), 10);
	pthread_mutex_lock(&z->lock);
	for (;;) {
		while (!z->quit && (z->batch == seen || z->next >= z->batch_n))
			pthread_cond_wait(&z->go, &z->lock);
		if (z->quit)
			break;
		seen = z->batch;
		while (z->next < z->batch_n) {
			struct zslot *s = &z->slots[z->next++];
			pthread_mutex_unlock(&z->lock);
			compress_slot(z, s);
			pthread_mutex_lock(&z->lock);
			z->finished++;
			pthread_cond_broadcast(&z->done);
		}
	}
	pthread_mutex_unlock(&z->lock);
	return NULL;
}

static int add_entry(struct zstd_sink *z, uint32_t csize, uint32_t flags)
{
	if (grow_array((void **)&z->idx, &z->cap_idx, z->n_idx + 1, sizeof(*z->idx)))
		return -ENOMEM;
	z->idx[z->n_idx++] = (struct zentry){.offset = z->written, .csize = csize, .flags = flags};
	return 0;
}

static int emit(struct zstd_sink *z, const void *frame, size_t len, uint32_t flags)
{
	int r = add_entry(z, (uint32_t)len, flags);

	if (r == 0)
		r = z->out->write(z->out, frame, len);
	if (r == 0)
		z->written += len;
	return r;
}

/* Compress the filled slots (the current one too if partly filled), write them in order. */
static int flush_batch(struct zstd_sink *z)
{
	unsigned n = z->filled + (z->fill ? 1 : 0);
	int r = 0;

	if (z->fill)
		z->slots[z->filled].in_len = z->fill;
	if (n == 0)
		return 0;
	pthread_mutex_lock(&z->lock);
	z->batch_n = n;
	z->next = 0;
	z->finished = 0;
	z->batch++;
	pthread_cond_broadcast(&z->go);
	while (z->next < z->batch_n) {
		struct zslot *s = &z->slots[z->next++];
		pthread_mutex_unlock(&z->lock);
		compress_slot(z, s);
		pthread_mutex_lock(&z->lock);
		z->finished++;
	}
	while (z->finished < n)
		pthread_cond_wait(&z->done, &z->lock);
	pthread_mutex_unlock(&z->lock);
	for (unsigned i = 0; i < n && r == 0; i++) {
		struct zslot *s = &z->slots[i];
		if (s->err)
			r = s->err;
		else if (s->out_len == 0)
			r = emit(z, z->zero_frame, z->zero_len, ZCORE_CHUNK_ZERO);
		else
			r = emit(z, s->out, s->out_len, s->zero ? ZCORE_CHUNK_ZERO : 0);
	}
	z->filled = 0;
	z->fill = 0;
	return r;
}

/* The current slot is full: move to the next, compressing the batch when all are full. */
static int slot_full(struct zstd_sink *z)
{
	z->slots[z->filled].in_len = z->chunk;
	z->fill = 0;
	if (++z->filled == z->n_slots)
		return flush_batch(z);
	return 0;
}

static int zs_write(struct core_sink *s, const void *buf, size_t len)
{
	struct zstd_sink *z = (struct zstd_sink *)s;
	const uint8_t *p = buf;

	if (z->err)
		return z->err;
	while (len) {
		size_t n = MIN(len, z->chunk - z->fill);
		memcpy(z->slots[z->filled].in + z->fill, p, n);
		z->fill += n;
		p += n;
		len -= n;
		s->pos += n;
		if (z->fill == z->chunk && (z->err = slot_full(z)) < 0)
			return z->err;
	}
	return 0;
}

static int zs_skip(struct core_sink *s, uint64_t len)
{
	struct zstd_sink *z = (struct zstd_sink *)s;

	if (z->err)
		return z->err;
	while (len) {
		if (z->fill == 0 && len >= z->chunk) {
			/* A whole chunk of hole: the batch so far first, then the zero frame. */
			if ((z->err = flush_batch(z)) < 0 ||
			    (z->err = emit(z, z->zero_frame, z->zero_len, ZCORE_CHUNK_ZERO)) < 0)
				return z->err;
			len -= z->chunk;
			s->pos += z->chunk;
			continue;
		}
		size_t n = (size_t)MIN(len, (uint64_t)(z->chunk - z->fill));
		memset(z->slots[z->filled].in + z->fill, 0, n);
		z->fill += n;
		len -= n;
		s->pos += n;
		if (z->fill == z->chunk && (z->err = slot_full(z)) < 0)
			return z->err;
	}
	return 0;
}

static void put32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4); /* little endian: the only byte order osmosis runs on (arch.h) */
}

static void put64(uint8_t *p, uint64_t v)
{
	memcpy(p, &v, 8);
}

static int zs_finish(struct core_sink *s)
{
	struct zstd_sink *z = (struct zstd_sink *)s;
	_cleanup_free_ uint8_t *tail = NULL;
	size_t payload, len;
	int r;

	if (z->err)
		return z->err;
	r = flush_batch(z);
	if (r < 0)
		return z->err = r;
	if (z->n_idx > UINT32_MAX)
		return z->err = -EFBIG;
	payload = z->n_idx * ZCORE_ENTRY_BYTES + ZCORE_TRAILER_BYTES;
	len = 8 + payload;
	tail = malloc(len);
	if (!tail)
		return z->err = -ENOMEM;
	put32(tail, ZCORE_SKIPPABLE);
	put32(tail + 4, (uint32_t)payload);
	for (size_t i = 0; i < z->n_idx; i++) {
		uint8_t *e = tail + 8 + i * ZCORE_ENTRY_BYTES;
		put64(e, z->idx[i].offset);
		put32(e + 8, z->idx[i].csize);
		put32(e + 12, z->idx[i].flags);
	}
	uint8_t *t = tail + 8 + z->n_idx * ZCORE_ENTRY_BYTES;
	put64(t, s->pos);
	put32(t + 8, (uint32_t)z->n_idx);
	put32(t + 12, (uint32_t)z->chunk);
	put32(t + 16, ZCORE_VERSION);
	put32(t + 20, ZCORE_MAGIC);
	r = z->out->write(z->out, tail, len);
	if (r == 0)
		r = z->out->finish(z->out);
	if (r == 0)
		z->written += len;
	return z->err = r;
}

struct core_sink *zstd_sink_base(struct zstd_sink *z)
{
	return &z->base;
}

size_t zstd_sink_buffer_bytes(const struct zstd_sink *z)
{
	return z ? z->n_slots * (z->chunk + z->out_cap) + z->cap_idx * sizeof(*z->idx) : 0;
}

uint64_t zstd_sink_compressed(const struct zstd_sink *z)
{
	return z->written;
}

struct zstd_sink *zstd_sink_new(struct core_sink *out, int level, unsigned n_workers)
{
	struct zstd_sink *z = calloc(1, sizeof(*z));
	uint8_t *zeros = NULL;
	size_t n;

	if (!z)
		return NULL;
	z->base = (struct core_sink){.write = zs_write, .skip = zs_skip, .finish = zs_finish};
	z->out = out;
	z->level = level;
	z->chunk = ZCORE_DEFAULT_CHUNK;
	z->out_cap = ZSTD_compressBound(z->chunk);
	z->n_slots = 1 + MIN(n_workers, 7u);
	pthread_mutex_init(&z->lock, NULL);
	pthread_cond_init(&z->go, NULL);
	pthread_cond_init(&z->done, NULL);
	z->slots = calloc(z->n_slots, sizeof(*z->slots));
	if (!z->slots)
		goto fail;
	for (unsigned i = 0; i < z->n_slots; i++) {
		struct zslot *s = &z->slots[i];
		s->in = malloc(z->chunk);
		s->out = malloc(z->out_cap);
		s->cctx = ZSTD_createCCtx();
		if (!s->in || !s->out || !s->cctx)
			goto fail;
		ZSTD_CCtx_setParameter(s->cctx, ZSTD_c_compressionLevel, level);
		ZSTD_CCtx_setParameter(s->cctx, ZSTD_c_checksumFlag, 1);
		ZSTD_CCtx_setParameter(s->cctx, ZSTD_c_contentSizeFlag, 1);
	}
	zeros = calloc(1, z->chunk);
	z->zero_frame = malloc(z->out_cap);
	if (!zeros || !z->zero_frame)
		goto fail;
	n = ZSTD_compress2(z->slots[0].cctx, z->zero_frame, z->out_cap, zeros, z->chunk);
	free(zeros);
	zeros = NULL;
	if (ZSTD_isError(n))
		goto fail;
	z->zero_len = n;
	z->threads = calloc(z->n_slots, sizeof(*z->threads));
	if (!z->threads)
		goto fail;
	for (unsigned i = 0; i + 1 < z->n_slots; i++) {
		if (pthread_create(&z->threads[i], NULL, worker, z))
			break; /* fewer helpers: the caller compresses what they do not */
		z->n_threads++;
	}
	return z;
fail:
	free(zeros);
	zstd_sink_free(z);
	return NULL;
}

void zstd_sink_free(struct zstd_sink *z)
{
	if (!z)
		return;
	pthread_mutex_lock(&z->lock);
	z->quit = true;
	pthread_cond_broadcast(&z->go);
	pthread_mutex_unlock(&z->lock);
	for (unsigned i = 0; i < z->n_threads; i++)
		pthread_join(z->threads[i], NULL);
	free(z->threads);
	for (unsigned i = 0; z->slots && i < z->n_slots; i++) {
		free(z->slots[i].in);
		free(z->slots[i].out);
		ZSTD_freeCCtx(z->slots[i].cctx);
	}
	free(z->slots);
	free(z->zero_frame);
	free(z->idx);
	pthread_mutex_destroy(&z->lock);
	pthread_cond_destroy(&z->go);
	pthread_cond_destroy(&z->done);
	free(z);
}
