/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/fs.h"
#include "base/util.h"
#include "core/sink.h"
#include "freeze/guard.h"

/* A core is written out as it goes, not left to the final fsync: each 16 MiB is sent to the
 * disk, and the 16 MiB before it is waited for and dropped from the page cache. Gigabytes of dirty
 * pages would otherwise make the kernel throttle every process writing files, the snapshotted
 * service among them, and evict the service's cached files; and the final fsync would write
 * them all in one burst of kernel work. Errors surface at that fsync. */
#define FLUSH_CHUNK (16u << 20)

/* Written in pieces of at most this: a signal to osmosis is seen between two. */
#define WRITE_PIECE (1u << 20)

static void file_flush(struct file_sink *fs)
{
	uint64_t pos = fs->base.pos;

	if (pos - fs->flushed < FLUSH_CHUNK)
		return;
	sync_file_range(fs->fd, (off_t)fs->flushed, (off_t)(pos - fs->flushed),
			SYNC_FILE_RANGE_WRITE);
	if (fs->flushed > fs->dropped) {
		off_t off = (off_t)fs->dropped, len = (off_t)(fs->flushed - fs->dropped);
		sync_file_range(fs->fd, off, len,
				SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
				    SYNC_FILE_RANGE_WAIT_AFTER);
		posix_fadvise(fs->fd, off, len, POSIX_FADV_DONTNEED);
		fs->dropped = fs->flushed;
	}
	fs->flushed = pos;
}

static int file_write(struct core_sink *s, const void *buf, size_t len)
{
	struct file_sink *fs = (struct file_sink *)s;
	const uint8_t *p = buf;

	while (len > 0) {
		size_t n = MIN(len, (size_t)WRITE_PIECE);
		/* A signal to osmosis ends a core at the next piece (a large core takes many
		 * seconds; osmosis answers within one). */
		int r = guard_check();

		if (r == 0)
			r = pwrite_all(fs->fd, p, n, (off_t)s->pos);
		if (r < 0)
			return r;
		s->pos += n;
		p += n;
		len -= n;
		file_flush(fs);
	}
	return 0;
}

static int file_pwrite(struct core_sink *s, const void *buf, size_t len, uint64_t off)
{
	return pwrite_all(((struct file_sink *)s)->fd, buf, len, (off_t)off);
}

static int file_skip(struct core_sink *s, uint64_t len)
{
	s->pos += len;
	return 0;
}

static int file_finish(struct core_sink *s)
{
	struct file_sink *fs = (struct file_sink *)s;

	/* A trailing hole exists only once the size is set. */
	if (ftruncate(fs->fd, (off_t)s->pos) < 0)
		return -errno;
	return 0;
}

void file_sink_init(struct file_sink *fs, int fd)
{
	*fs = (struct file_sink){
	    .base = {.write = file_write,
		     .skip = file_skip,
		     .finish = file_finish,
		     .pwrite = file_pwrite},
	    .fd = fd,
	};
}

static int mem_reserve(struct mem_sink *ms, uint64_t end)
{
	if (end > ms->limit)
		return -EFBIG;
	return grow_array((void **)&ms->buf, &ms->cap, (size_t)end, 1);
}

static int mem_write(struct core_sink *s, const void *buf, size_t len)
{
	struct mem_sink *ms = (struct mem_sink *)s;
	int r = mem_reserve(ms, s->pos + len);

	if (r < 0)
		return r;
	memcpy(ms->buf + s->pos, buf, len);
	s->pos += len;
	return 0;
}

static int mem_skip(struct core_sink *s, uint64_t len)
{
	struct mem_sink *ms = (struct mem_sink *)s;
	int r = mem_reserve(ms, s->pos + len);

	if (r < 0)
		return r;
	s->pos += len; /* grow_array zero-fills */
	return 0;
}

static int mem_finish(struct core_sink *s)
{
	return mem_reserve((struct mem_sink *)s, s->pos);
}

void mem_sink_init(struct mem_sink *ms, size_t limit)
{
	*ms = (struct mem_sink){
	    .base = {.write = mem_write, .skip = mem_skip, .finish = mem_finish},
	    .limit = limit,
	};
}

void mem_sink_done(struct mem_sink *ms)
{
	free(ms->buf);
	ms->buf = NULL;
	ms->cap = 0;
}
