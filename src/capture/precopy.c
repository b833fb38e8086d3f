/* SPDX-License-Identifier: MIT */
/*
 * The pre-copy method: copy memory while the target runs, track what it writes meanwhile, and
 * copy only that during the freeze.
 *
 * Tracking is the kernel's: a userfaultfd with asynchronous write-protect (UFFD_FEATURE_WP_ASYNC,
 * with WP_UNPOPULATED so never-touched pages are tracked too) makes the first write to a
 * protected page simply unprotect it, and the PAGEMAP_SCAN ioctl on /proc/PID/pagemap lists the
 * pages written since they were protected and protects them again, in one call. A userfaultfd
 * acts on the memory of the process that created it, so the target creates it: userfaultfd() is
 * injected into one of its threads (src/inject), osmosis takes the descriptor with pidfd_getfd()
 * and closes the target's copy before registering anything, so the target's descriptor table is
 * as before and the only reference is osmosis's. Closing it (or osmosis dying) unregisters every
 * range and clears every protection: the kernel's userfaultfd release does exactly that.
 *
 * Rounds, before the freeze:
 *   register each tracked mapping (private, writable, mostly resident) and write-protect it;
 *   round 0 copies its present pages into the arena; round k copies the pages written during
 *   round k-1; rounds stop when the written set no longer shrinks, or is small.
 * Staged (capture.stage_dirfd set, what osmosis snap does): the rounds do not copy into memory
 * as large as the target, but through a small bounce buffer into the stage file, each page at its
 * place in the core (writer.c's placed layout): the target's size costs disk, not memory. The
 * freeze then copies only the written set into the arena (bounded by the budget), written over
 * the stage in place after the thaw.
 *
 * Inside the freeze: one scan per tracked mapping gives the pages written since the last round,
 * copied now; a page the target dropped with MADV_DONTNEED is reported as written too, and is
 * zeroed in the arena rather than read. Mappings that are new or changed
 * since the rounds, and those not tracked (shared, sparse, huge pages, read-only), are copied
 * whole as the copy method does.
 */
#include <errno.h>
#include <stddef.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "base/fault.h"
#include "base/fs.h"
#include "base/log.h"
#include "base/parse.h"
#include "base/timeutil.h"
#include "base/util.h"
#include "capture/capture.h"
#include "capture/uffd.h"
#include "inject/inject.h"
#include "proc/maps.h"

#define MAX_ROUNDS     8
#define SMALL_ENOUGH   (1u << 20) /* a written set this small ends the rounds */
#define SCAN_VEC       4096
#define WRITTEN_RETURN (PAGE_IS_WRITTEN | PAGE_IS_PRESENT | PAGE_IS_SWAPPED)
/* Unregistering holds the target's mmap lock for writing (every fault of the target waits):
 * 8 MiB is ~0.3 ms of work here. */
#define UNREGISTER_SLICE (8ull << 20)
/* Before the freeze every call that walks the target's page tables covers at most this much:
 * write-protecting 1 GiB in one call took 155 ms here, and on a kernel without preemption a
 * target thread woken on osmosis's CPU waits for the call to end. 16 MiB is ~0.3 ms. */
#define WALK_SLICE (16ull << 20)
/* These calls run at osmosis's own policy, never real-time (base/sched.h, holds in a row): the
 * slices bound how long a target waits for one of them on the CPU osmosis runs on. */

struct precopy_region {
	uint64_t start, end, pgoff, inode;
	uint32_t prot;
	uint64_t dump_len;
	size_t map_index;  /* in the target's pre_maps */
	uint8_t *dest;	   /* the arena's image of [start, start + dump_len), or NULL (staged) */
	uint64_t core_off; /* staged: where [start, start + dump_len) sits in the stage file */
	bool in_core;	   /* staged: the mapping was the same at the freeze (placed there) */
	bool lost;	   /* its registration is gone (region_lost): copied whole in the freeze */
};

/* A mapping registered but not protected, so that the freeze walks the tracked mappings around
 * it with one PAGEMAP_SCAN (see gap_kind). */
struct precopy_gap {
	uint64_t start, end;
};

/* The method's state for one target (t->method_priv). */
struct precopy_target {
	struct precopy_region *pc; /* the tracked mappings, in address order */
	size_t n_pc, cap_pc;
	struct precopy_gap *gap; /* the registered ones between them, in address order */
	size_t n_gap, cap_gap;
	/* The freeze's scans, made on a copy thread (precopy_frozen_scan) into room reserved by
	 * freeze_room: the regions returned, in address order; fz_ok when they are all there. */
	struct page_region *fz;
	size_t fz_n, fz_cap;
	bool fz_ok;
	uint64_t stage_next;   /* staged: the next free offset in the stage file */
	uint64_t last_written; /* bytes the last round found written */
	uint64_t written_now;  /* bytes written since, counted just before the freeze (freeze_room);
				  UINT64_MAX when the count failed */
	uint64_t copy_bps;     /* round 0's copy speed */
	uint64_t round_end_ns; /* when the last round ended (CLOCK_MONOTONIC) */
	uint64_t round_ns;     /* and how long it took */
};

/* t's pre-copy state, or NULL when t's method is not pre-copy. */
static struct precopy_target *pt_of(const struct target *t)
{
	return t->method == &capture_precopy ? t->method_priv : NULL;
}

/* Staged rounds send the stage file to the disk as they go, as the file sink does with cores
 * (sink.c): no gigabytes of dirty pages for the kernel to throttle the machine with. */
#define STAGE_FLUSH (16u << 20)

static bool tracked_kind(const struct osm_mapping *m)
{
	uint64_t resident = m->rss_bytes + m->swap_bytes;

	/* Read-only private mappings count too: a library's relocated part (RELRO, r--p, its
	 * pages written by the loader) is dumped whole, 1.3 MiB in each PostgreSQL backend, most
	 * of them a page or two; copying them in every freeze was 2 of the 3 copies per library
	 * there, 35 MiB per pause for 26 backends. Walked with the .data and .bss they touch (one
	 * PAGEMAP_SCAN for the three), they cost the freeze nothing more. Nothing writes them
	 * without making them writable first (mprotect keeps the registration: the write is
	 * tracked), or a debugger's write through /proc/PID/mem (a write fault too). A library's
	 * first mapping is dumped for its ELF header page only (elf_header_only): that page is
	 * tracked alone, the rest of the mapping only registered (precopy_track), and it is no
	 * longer one of the 44 pages a PostgreSQL backend copied in every freeze. */
	if (m->dump_len == 0 || m->shared || !(m->prot & PROT_READ))
		return false;
	if (m->vmflags & (VMF_HUGETLB | VMF_IO | VMF_PFNMAP | VMF_DONTDUMP))
		return false;
	/* Sparse mappings are copied in the freeze: tracking them would give the target page
	 * tables for every absent page (write protection marks them: a 256 MiB mapping of 3 MiB
	 * grew the target's page tables from 52 KiB to 556 KiB), and into the arena they would
	 * need room for pages that do not exist. */
	return resident * 2 >= m->dump_len || m->dump_len <= (1u << 20);
}

/*
 * A library is five mappings or so: its ELF header and constants (r--p), code (r-xp), more
 * constants, then the tracked relocated part, .data and .bss. Its code and constants are never
 * written, so they are not tracked; registered without any protection (nothing in them changes:
 * their page tables stay as they are), they let the freeze's PAGEMAP_SCAN, which needs every
 * mapping of its range registered (PM_SCAN_CHECK_WPASYNC), run across them: one call walks the
 * tracked parts of many libraries, where a call per library cost a PostgreSQL backend 48 calls
 * in the pause (3.5 us each here). What the scan returns for them is ignored.
 */
#define GAP_MAX (512u << 10)

static bool gap_kind(const struct osm_mapping *m)
{
	return m->path && m->path[0] == '/' && !m->shared && !tracked_kind(m) &&
	       !(m->vmflags & (VMF_HUGETLB | VMF_IO | VMF_PFNMAP)) && m->end - m->start <= GAP_MAX;
}

/* The index of the first of n records (each size bytes, a uint64_t start first, in address
 * order) that starts at or after start: a region's or a gap's. */
_Static_assert(offsetof(struct precopy_region, start) == 0, "start first");
_Static_assert(offsetof(struct precopy_gap, start) == 0, "start first");
static size_t first_from(const void *v, size_t n, size_t size, uint64_t start)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		uint64_t at;
		memcpy(&at, (const char *)v + mid * size, sizeof(at));
		if (at < start)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Whether m is a gap registered before the rounds, as it was then. */
static bool is_gap(const struct precopy_target *pt, const struct osm_mapping *m)
{
	size_t k = first_from(pt->gap, pt->n_gap, sizeof(*pt->gap), m->start);

	return k < pt->n_gap && pt->gap[k].start == m->start && pt->gap[k].end == m->end;
}

uint64_t precopy_arena_bytes(const struct target *t)
{
	struct precopy_target *pt = pt_of(t);
	uint64_t n = 0;
	size_t k = 0;

	/* Before tracking starts, what would be tracked; after, what is (regions are in map
	 * order). Staged, tracked mappings need no arena before the freeze. */
	for (size_t i = 0; i < t->n_pre_maps; i++) {
		const struct osm_mapping *m = &t->pre_maps[i];
		bool started = pt->n_pc || t->uffd >= 0;
		bool tracked = started ? k < pt->n_pc && pt->pc[k].map_index == i : tracked_kind(m);
		/* A lost one is copied whole in the freeze: into its image, or staged the arena. */
		if (started && tracked && pt->pc[k++].lost && capture_staged(t))
			tracked = false;
		n += tracked ? (capture_staged(t) ? 0 : m->dump_len) : capture_planned_size(m);
	}
	return n;
}

uint64_t precopy_untracked_bytes(const struct target *t)
{
	struct precopy_target *pt = pt_of(t);
	uint64_t n = 0;
	size_t k = 0;

	for (size_t i = 0; i < t->n_pre_maps; i++) {
		if (k < pt->n_pc && pt->pc[k].map_index == i && !pt->pc[k++].lost)
			continue;
		n += capture_planned_size(&t->pre_maps[i]);
	}
	return n;
}

/* One PAGEMAP_SCAN over [start, end), calling fn for each region returned. */
typedef int (*scan_fn)(struct capture *c, struct target *t, struct precopy_region *g,
		       const struct page_region *pr, void *ctx);

static int scan(struct capture *c, struct target *t, struct precopy_region *g, uint64_t flags,
		uint64_t inverted, uint64_t category_mask, uint64_t return_mask, scan_fn fn,
		void *ctx, uint64_t slice)
{
	static struct page_region vec[SCAN_VEC];
	uint64_t start = g->start, end = g->start + g->dump_len;

	while (start < end) {
		struct pm_scan_arg a = {.size = sizeof(a),
					.flags = flags | PM_SCAN_CHECK_WPASYNC,
					.start = start,
					.end = slice >= end - start ? end : start + slice,
					.vec = (uintptr_t)vec,
					.vec_len = SCAN_VEC,
					.category_inverted = inverted,
					.category_mask = category_mask,
					.return_mask = return_mask};
		int n = ioctl(t->pagemap_fd, PAGEMAP_SCAN, &a);
		if (n < 0)
			return -errno;
		for (int i = 0; i < n; i++) {
			int r = fn(c, t, g, &vec[i], ctx);
			if (r < 0)
				return r;
		}
		if (a.walk_end <= start)
			return -EIO;
		start = a.walk_end;
	}
	return 0;
}

/*
 * Tracked mappings that touch (a library's relocated part, .data and .bss) are walked with one
 * PAGEMAP_SCAN: a PostgreSQL backend has some 70 libraries, and each call costs a few
 * microseconds here, in the freeze 26 backends one after another. Each returned region goes to
 * the mappings it covers (one can run across two). Every mapping of a span is registered, so the
 * kernel's check of the whole range (PM_SCAN_CHECK_WPASYNC) still holds for each.
 */
#define SPAN_MAX 128
#define FZ_MAX	 (256u << 10) /* regions of the freeze's scans (6 MiB) */

struct span {
	struct precopy_region *g[SPAN_MAX];
	void *ctx[SPAN_MAX];
	size_t n;
	size_t dealt; /* regions given to fn so far */
	scan_fn fn;
	uint64_t flags, slice;
};

static int deal(struct capture *c, struct target *t, struct precopy_region *whole,
		const struct page_region *pr, void *ctx)
{
	struct span *s = ctx;

	(void)whole;
	for (size_t k = 0; k < s->n; k++) {
		struct precopy_region *g = s->g[k];
		struct page_region part = *pr;
		part.start = MAX(pr->start, g->start);
		part.end = MIN(pr->end, g->start + g->dump_len);
		if (part.start >= part.end)
			continue;
		s->dealt++;
		int r = s->fn(c, t, g, &part, s->ctx[k]);
		if (r < 0)
			return r;
	}
	return 0;
}

static bool span_touches(const struct span *s, const struct precopy_region *g)
{
	return s->g[s->n - 1]->start + s->g[s->n - 1]->dump_len == g->start;
}

static int span_flush(struct capture *c, struct target *t, struct span *s)
{
	if (s->n == 0)
		return 0;
	const struct precopy_region *last = s->g[s->n - 1];
	struct precopy_region whole = {.start = s->g[0]->start,
				       .dump_len = last->start + last->dump_len - s->g[0]->start};
	int r;

	s->dealt = 0;
	r = scan(c, t, &whole, s->flags, 0, PAGE_IS_WRITTEN, WRITTEN_RETURN, deal, s, s->slice);
	s->n = 0;
	return r;
}

struct written_ctx {
	uint64_t bytes;
	struct osm_mapping *m;	 /* in the freeze, staged: the extents of the written set */
	struct osm_mapping *map; /* in the freeze: the mapping */
	struct capture *c;
};

static int emit_region(struct capture *c, struct target *t, struct osm_mapping *m, uint64_t off,
		       uint64_t len, void *ctx)
{
	struct precopy_region *g = ctx;

	if (!g->dest)
		return capture_add_staged_job(c, t, m->start + off, len, g->core_off + off);
	return capture_add_job(c, t, m->start + off, len, g->dest + off);
}

/*
 * A tracked mapping's registration is gone when the target unmapped it and mapped the same range
 * again since (an allocator's buffer given back and taken again: CPython's mmap of a private
 * MiB, a loop's; a thread's stack): a walk that covers it is refused (EPERM, from
 * PM_SCAN_CHECK_WPASYNC). It is no longer tracked, and is copied whole in the freeze, as a new
 * mapping is. In the freeze itself (ctx is its written_ctx), that copy is planned now: into its
 * image, or staged into the arena.
 */
static int region_lost(struct capture *c, struct target *t, struct precopy_region *g, void *ctx,
		       bool frozen)
{
	struct written_ctx *w = ctx;

	log_debug("pid %d: %#llx-%#llx was unmapped and mapped again since it was registered: "
		  "copied whole in the freeze",
		  t->proc->pid, (unsigned long long)g->start, (unsigned long long)g->end);
	g->lost = true;
	if (!frozen)
		return 0;
	if (g->dest) {
		memset(g->dest, 0, g->dump_len);
		return capture_runs(c, t, w->map, t->pagemap_fd, emit_region, g);
	}
	w->map->core_off = 0;
	w->map->n_ext = 0;
	g->in_core = false;
	w->m = NULL;
	return capture_copy_mapping(c, t, w->map);
}

/*
 * Walks s; when the kernel refuses (a registration gone, or refused says the walk is not to be
 * tried), each mapping alone, and region_lost for the one refused. A walk that protects what it
 * finds (the rounds) can be walked again: what it gave is protected, and comes back only if
 * written again. One that does not (the freeze) only when nothing of it was given.
 */
static int span_flush_careful(struct capture *c, struct target *t, struct span *s, bool frozen,
			      bool refused)
{
	struct precopy_region *g[SPAN_MAX];
	void *ctx[SPAN_MAX];
	size_t n = s->n;
	int r;

	if (n == 0)
		return 0;
	memcpy(g, s->g, n * sizeof(*g));
	memcpy(ctx, s->ctx, n * sizeof(*ctx));
	if (!refused) {
		r = span_flush(c, t, s);
		if (r != -EPERM || (frozen && s->dealt))
			return r;
	}
	s->n = 0;
	if (n > 1 || refused)
		log_debug("pid %d: the walk of %#llx-%#llx was refused: its mappings one at a time",
			  t->proc->pid, (unsigned long long)g[0]->start,
			  (unsigned long long)(g[n - 1]->start + g[n - 1]->dump_len));
	for (size_t k = 0; k < n; k++) {
		struct span one = {.fn = s->fn, .flags = s->flags, .slice = s->slice, .n = 1};
		one.g[0] = g[k];
		one.ctx[0] = ctx[k];
		r = n == 1 && !refused ? -EPERM : span_flush(c, t, &one);
		if (r == -EPERM && !(frozen && one.dealt))
			r = region_lost(c, t, g[k], ctx[k], frozen);
		if (r < 0)
			return r;
	}
	return 0;
}

/* Each tracked mapping of t's written pages since the last round: fn for each run, the pages
 * protected again (a round). */
static int scan_rounds(struct capture *c, struct target *t, scan_fn fn, void *ctx)
{
	struct precopy_target *pt = pt_of(t);
	struct span s = {.fn = fn, .flags = PM_SCAN_WP_MATCHING, .slice = WALK_SLICE};

	for (size_t i = 0; i < pt->n_pc; i++) {
		struct precopy_region *g = &pt->pc[i];
		int r = 0;
		if (g->lost)
			continue;
		if (s.n && (s.n == SPAN_MAX || !span_touches(&s, g)))
			r = span_flush_careful(c, t, &s, false, false);
		if (r < 0)
			return r;
		s.g[s.n] = g;
		s.ctx[s.n++] = ctx;
	}
	return span_flush_careful(c, t, &s, false, false);
}

/* A page written since it was protected: copy it. A page written but neither present nor
 * swapped was dropped (MADV_DONTNEED: the kernel reports a zapped page as written): zero. */
static int queue_written(struct capture *c, struct target *t, struct precopy_region *g,
			 const struct page_region *pr, void *ctx)
{
	struct written_ctx *w = ctx;
	uint64_t len = pr->end - pr->start, off = pr->start - g->start;
	bool dropped = !(pr->categories & (PAGE_IS_PRESENT | PAGE_IS_SWAPPED));

	if (!(pr->categories & PAGE_IS_WRITTEN))
		return 0;
	w->bytes += len;
	if (w->m) {
		/* In the freeze, staged: into the arena (fresh pages are zeroes), written over the
		 * stage after the thaw. */
		uint8_t *dest = arena_alloc(&c->arena, len);
		if (!dest)
			return -ENOMEM;
		int r = mapping_add_extent(w->m, off, len, dest);
		return r < 0 || dropped ? r : capture_add_job(c, t, pr->start, len, dest);
	}
	if (!g->dest) {
		/* Staged rounds: a dropped page becomes a hole again. */
		if (dropped)
			return fallocate(t->stage.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
					 (off_t)(g->core_off + off), (off_t)len) < 0
				   ? -errno
				   : 0;
		return capture_add_staged_job(c, t, pr->start, len, g->core_off + off);
	}
	if (dropped) {
		memset(g->dest + off, 0, len);
		return 0;
	}
	return capture_add_job(c, t, pr->start, len, g->dest + off);
}

/* Staged jobs, a bounce buffer at a time: copied out of the target, then written at their
 * place in the stage file; each STAGE_FLUSH bytes sent to the disk, the batch before waited for
 * and dropped from the page cache. */
/* Bytes at their place in the stage; pages of zeroes stay holes (round 0: the file holds nothing
 * there yet) or become holes again (later rounds: it may hold older bytes). */
static int stage_write(int fd, const uint8_t *p, size_t len, uint64_t off, size_t page, bool first)
{
	size_t i = 0;

	while (i < len) {
		size_t run = i;
		bool zero = true;
		for (size_t k = 0; k < MIN(page, len - i) && zero; k += 8)
			zero = !*(const uint64_t *)(p + i + k);
		while (run < len) {
			size_t n = MIN(page, len - run);
			bool z = true;
			for (size_t k = 0; k + 8 <= n && z; k += 8)
				z = !*(const uint64_t *)(p + run + k);
			if (z != zero)
				break;
			run += n;
		}
		int r = 0;
		if (!zero)
			r = pwrite_all(fd, p + i, run - i, (off_t)(off + i));
		else if (!first && fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
					     (off_t)(off + i), (off_t)(run - i)) < 0)
			r = -errno;
		if (r < 0)
			return r;
		i = run;
	}
	return 0;
}

static int run_staged(struct capture *c, struct target *t, bool first)
{
	uint64_t lo = UINT64_MAX, hi = 0, plo = 0, phi = 0, since = 0;
	size_t i = 0;
	int r = 0;

	while (i < c->n_jobs && r == 0) {
		size_t used = 0, j;
		for (j = i; j < c->n_jobs && used + c->jobs[j].len <= c->bounce_len; j++) {
			c->jobs[j].dest = c->bounce + used;
			used += c->jobs[j].len;
		}
		r = copier_run(c->copier, c->jobs + i, j - i);
		for (size_t k = i; k < j && r == 0; k++) {
			struct copy_job *jb = &c->jobs[k];
			r = stage_write(t->stage.fd, jb->dest, jb->len, jb->file_off, c->page_size,
					first);
			lo = MIN(lo, jb->file_off);
			hi = MAX(hi, jb->file_off + jb->len);
		}
		since += used;
		if (r == 0 && since >= STAGE_FLUSH) {
			sync_file_range(t->stage.fd, (off_t)lo, (off_t)(hi - lo),
					SYNC_FILE_RANGE_WRITE);
			if (phi > plo) {
				sync_file_range(t->stage.fd, (off_t)plo, (off_t)(phi - plo),
						SYNC_FILE_RANGE_WAIT_BEFORE |
						    SYNC_FILE_RANGE_WRITE |
						    SYNC_FILE_RANGE_WAIT_AFTER);
				/* A separate stage (compressed cores) is read back right after
				 * the thaw: dropped here it came back from the disk (a 1 GiB core:
				 * 22 s of write-out instead of a few on a busy machine). Clean
				 * pages cost the page cache, not osmosis. */
				if (!c->stage_separate)
					posix_fadvise(t->stage.fd, (off_t)plo, (off_t)(phi - plo),
						      POSIX_FADV_DONTNEED);
			}
			plo = lo, phi = hi, since = 0;
			lo = UINT64_MAX, hi = 0;
		}
		i = j;
	}
	c->n_jobs = 0;
	return r;
}

static int run_jobs(struct capture *c, struct target *t, bool first)
{
	if (capture_staged(t) && c->bounce)
		return run_staged(c, t, first);
	int r = copier_run(c->copier, c->jobs, c->n_jobs);
	c->n_jobs = 0;
	return r;
}

/*
 * Whether m begins with the ELF magic, as the kernel wants of a page it dumps for the ELF header
 * only (capture.c drops such a page from the core otherwise). Read before tracking: a staged
 * mapping's page is then only in the stage file, where capture.c does not look, and nothing
 * changes it unseen afterwards (a write is tracked, and makes it looked at again).
 */
static bool elf_magic(const struct target *t, const struct osm_mapping *m)
{
	static const char elf[4] = {0x7f, 'E', 'L', 'F'};
	char magic[4];
	struct iovec local = {.iov_base = magic, .iov_len = sizeof(magic)};
	struct iovec remote = {.iov_base = (void *)(uintptr_t)m->start, .iov_len = sizeof(magic)};

	return process_vm_readv(t->proc->pid, &local, 1, &remote, 1, 0) == sizeof(magic) &&
	       !memcmp(magic, elf, sizeof(elf));
}

int precopy_track(struct capture *c, struct target *t)
{
	struct precopy_target *pt = pt_of(t);
	int r;

	r = tracker_open(t);
	if (r < 0)
		return r;
	/* Register and protect every tracked mapping. */
	for (size_t i = 0; i < t->n_pre_maps; i++) {
		struct osm_mapping *m = &t->pre_maps[i];
		struct uffdio_register reg = {
		    .range = {.start = m->start, .len = m->end - m->start},
		    .mode = UFFDIO_REGISTER_MODE_WP};
		struct uffdio_writeprotect wp = {.range = reg.range,
						 .mode = UFFDIO_WRITEPROTECT_MODE_WP};

		if (!tracked_kind(m) || (m->elf_header_only && !elf_magic(t, m))) {
			/* Registered only (gap_kind); refused, it ends the freeze's walks there */
			if (!gap_kind(m) || ioctl(t->uffd, UFFDIO_REGISTER, &reg) < 0)
				continue;
			if (grow_array((void **)&pt->gap, &pt->cap_gap, pt->n_gap + 1,
				       sizeof(*pt->gap)))
				return -ENOMEM;
			pt->gap[pt->n_gap++] =
			    (struct precopy_gap){.start = m->start, .end = m->end};
			continue;
		}
		if (ioctl(t->uffd, UFFDIO_REGISTER, &reg) < 0) {
			log_debug("pid %d: %#llx-%#llx not tracked: %m", t->proc->pid,
				  (unsigned long long)m->start, (unsigned long long)m->end);
			continue;
		}
		/* What is dumped: all of it, or an ELF header page. */
		uint64_t end = m->start + ALIGN_UP(m->dump_len, (uint64_t)c->page_size);
		for (uint64_t a = m->start; a < end; a += WALK_SLICE) {
			wp.range =
			    (struct uffdio_range){.start = a, .len = MIN(WALK_SLICE, end - a)};
			if (ioctl(t->uffd, UFFDIO_WRITEPROTECT, &wp) < 0)
				return -errno;
		}
		if (grow_array((void **)&pt->pc, &pt->cap_pc, pt->n_pc + 1, sizeof(*pt->pc)))
			return -ENOMEM;
		pt->pc[pt->n_pc++] = (struct precopy_region){.start = m->start,
							     .end = m->end,
							     .pgoff = m->pgoff,
							     .inode = m->inode,
							     .prot = m->prot,
							     .dump_len = m->dump_len,
							     .map_index = i};
	}
	return fault_point("tracking");
}

uint64_t precopy_tracked_bytes(const struct target *t)
{
	struct precopy_target *pt = pt_of(t);
	uint64_t n = 0;
	for (size_t i = 0; i < pt->n_pc; i++)
		n += pt->pc[i].lost ? 0 : pt->pc[i].dump_len;
	return n;
}

static int rounds(struct capture *c, struct target *t, uint64_t *ret_freeze_bytes,
		  uint64_t *ret_copy_bps);

int precopy_rounds(struct capture *c, struct target *t, uint64_t *ret_freeze_bytes,
		   uint64_t *ret_copy_bps)
{
	int r;

	r = rounds(c, t, ret_freeze_bytes, ret_copy_bps);
	return r ? r : fault_point("precopied");
}

static int rounds(struct capture *c, struct target *t, uint64_t *ret_freeze_bytes,
		  uint64_t *ret_copy_bps)
{
	struct precopy_target *pt = pt_of(t);
	uint64_t written = UINT64_MAX, prev, t0, copied = 0;
	int r;

	/* Round 0: everything present now. Pages written meanwhile show up in round 1. */
	c->n_jobs = 0;
	for (size_t i = 0; i < pt->n_pc; i++) {
		struct precopy_region *g = &pt->pc[i];
		if (capture_staged(t) && c->bounce) {
			g->core_off = pt->stage_next;
			pt->stage_next += ALIGN_UP(g->dump_len, (uint64_t)c->page_size);
		} else if (!(g->dest = arena_alloc(&c->arena, g->dump_len))) {
			return -ENOMEM;
		}
		r = capture_runs(c, t, &t->pre_maps[g->map_index], t->pagemap_fd, emit_region, g);
		if (r < 0)
			return r;
	}
	for (size_t i = 0; i < c->n_jobs; i++)
		copied += c->jobs[i].len;
	t0 = now_ns();
	r = run_jobs(c, t, true);
	if (r < 0)
		return r;
	*ret_copy_bps = copied * 1000000000ull / MAX(now_ns() - t0, (uint64_t)1);
	log_debug("pid %d: pre-copy round 0: %llu bytes at %.2f GB/s", t->proc->pid,
		  (unsigned long long)copied, (double)*ret_copy_bps / 1e9);

	for (int round = 1; round <= MAX_ROUNDS; round++) {
		struct written_ctx w = {0};
		t0 = now_ns();
		prev = written;
		r = scan_rounds(c, t, queue_written, &w);
		if (r < 0)
			return r;
		written = w.bytes;
		r = run_jobs(c, t, false);
		if (r < 0)
			return r;
		pt->round_end_ns = now_ns();
		pt->round_ns = pt->round_end_ns - t0;
		log_debug("pid %d: pre-copy round %d: %llu bytes written since the last, copied in "
			  "%.1f ms",
			  t->proc->pid, round, (unsigned long long)written,
			  (double)(now_ns() - t0) / 1e6);
		/* Stop when small, or when it no longer shrinks by a fifth. */
		if (written <= SMALL_ENOUGH || written * 5 > prev * 4)
			break;
	}
	*ret_freeze_bytes = written;
	return 0;
}

/* Inside the freeze, for one tracked mapping: its image is the arena's, with the pages written
 * since the last round copied (or zeroed, if dropped) now, when its span is walked. */
static int frozen_image(struct precopy_region *g, struct osm_mapping *m, struct written_ctx *w)
{
	*w = (struct written_ctx){.map = m};
	if (g->dest) {
		int r = mapping_add_extent(m, 0, g->dump_len, g->dest);
		if (r < 0)
			return r;
	} else {
		/* Staged: the bytes are in the stage file; only what was written since goes in
		 * the arena. */
		m->core_off = g->core_off;
		g->in_core = true;
		w->m = m;
	}
	return 0;
}

static int frozen_region(struct span *s, struct precopy_region *g, struct osm_mapping *m,
			 struct written_ctx *w)
{
	int r = frozen_image(g, m, w);

	if (r < 0)
		return r;
	s->g[s->n] = g;
	s->ctx[s->n++] = w;
	return 0;
}

/* In the freeze, a span whose mappings need not touch: between them only gaps (registered, see
 * gap_kind) or no mapping at all. A gap no longer registered (its mapping replaced by one alike
 * since) makes the kernel refuse the walk: then each mapping is walked alone. */
static int span_flush_loose(struct capture *c, struct target *t, struct span *s, bool refused)
{
	return span_flush_careful(c, t, s, true, refused);
}

/* The region tracked for m, if m is still the mapping it was (regions are in address order). */
static struct precopy_region *find_region(const struct target *t, const struct osm_mapping *m)
{
	struct precopy_target *pt = pt_of(t);
	size_t lo = first_from(pt->pc, pt->n_pc, sizeof(*pt->pc), m->start);

	if (lo == pt->n_pc)
		return NULL;
	struct precopy_region *g = &pt->pc[lo];
	if (!g->lost && g->start == m->start && g->end == m->end && g->pgoff == m->pgoff &&
	    g->inode == m->inode && g->prot == m->prot && g->dump_len == m->dump_len)
		return g;
	return NULL;
}

/* A large mapping dumped for its first page only (the ELF header of a data library,
 * libicudata's 30 MiB) ends a walk: going on would walk it whole. */
static bool long_tail(const struct precopy_region *g)
{
	return g->end - g->start > g->dump_len + GAP_MAX;
}

/*
 * Whether one walk can run from tracked region a on to b: b is tracked still, and every
 * mapping between them (before the freeze) a gap. The freeze's layout may differ; a mapping
 * made since, unregistered, makes the kernel refuse the walk.
 */
static bool walk_joins(const struct target *t, const struct precopy_target *pt,
		       const struct precopy_region *a, const struct precopy_region *b)
{
	if (b->lost || long_tail(a))
		return false;
	for (size_t j = a->map_index + 1; j < b->map_index; j++)
		if (!is_gap(pt, &t->pre_maps[j]))
			return false;
	return true;
}

/* The written pages of [start, end) into t's reserved regions; -ENOSPC when they do not fit. */
static int walk_into(const struct target *t, struct precopy_target *pt, uint64_t start,
		     uint64_t end)
{
	while (start < end) {
		if (pt->fz_n == pt->fz_cap)
			return -ENOSPC;
		struct pm_scan_arg a = {.size = sizeof(a),
					.flags = PM_SCAN_CHECK_WPASYNC,
					.start = start,
					.end = end,
					.vec = (uintptr_t)(pt->fz + pt->fz_n),
					.vec_len = pt->fz_cap - pt->fz_n,
					.category_mask = PAGE_IS_WRITTEN,
					.return_mask = WRITTEN_RETURN};
		int n = ioctl(t->pagemap_fd, PAGEMAP_SCAN, &a);
		if (n < 0)
			return -errno;
		pt->fz_n += (size_t)n;
		if (a.walk_end <= start)
			return -EIO;
		start = a.walk_end;
	}
	return 0;
}

/*
 * Inside the freeze, on a copy thread, every target at once: the walks of t's tracked mappings
 * (the 0.1 ms a PostgreSQL backend's take, 26 of them one after another on the freezing thread
 * before). Only the kernel's answers are kept, in room freeze_room reserved; precopy_frozen
 * gives them out. A walk refused (a registration gone), or more than the room: precopy_frozen
 * walks on its own thread, as before.
 */
static void precopy_frozen_scan(struct capture *c, struct target *t)
{
	struct precopy_target *pt = pt_of(t);

	(void)c;
	if (!pt || !pt->fz || t->uffd < 0 || t->pagemap_fd < 0)
		return;
	pt->fz_ok = false;
	pt->fz_n = 0;
	for (size_t i = 0; i < pt->n_pc;) {
		size_t last = i;
		if (pt->pc[i].lost) {
			i++;
			continue;
		}
		while (last + 1 < pt->n_pc && last + 1 - i < SPAN_MAX &&
		       walk_joins(t, pt, &pt->pc[last], &pt->pc[last + 1]))
			last++;
		if (walk_into(t, pt, pt->pc[i].start, pt->pc[last].start + pt->pc[last].dump_len) <
		    0)
			return;
		i = last + 1;
	}
	pt->fz_ok = true;
}

static int copy_untracked(struct capture *c, struct target *t, struct osm_mapping *m)
{
	if (capture_planned_size(m))
		log_debug("pid %d: %#llx-%#llx %s: %llu bytes copied whole in the freeze",
			  t->proc->pid, (unsigned long long)m->start, (unsigned long long)m->end,
			  m->path ? m->path : "", (unsigned long long)capture_planned_size(m));
	return capture_copy_mapping(c, t, m);
}

/* Inside the freeze, with precopy_frozen_scan's answers: each tracked mapping's image and its
 * written pages, each untracked one copied whole. */
static int frozen_from_scans(struct capture *c, struct target *t)
{
	struct precopy_target *pt = pt_of(t);
	struct osm_process *p = t->proc;
	size_t cur = 0;
	int r;

	for (size_t i = 0; i < p->n_maps; i++) {
		struct osm_mapping *m = &p->maps[i];
		struct precopy_region *g;
		struct written_ctx w;

		if (m->shared_object)
			continue; /* kept once for all its mappers (shared.c) */
		g = find_region(t, m);
		if (!g) {
			r = copy_untracked(c, t, m);
			if (r < 0)
				return r;
			continue;
		}
		r = frozen_image(g, m, &w);
		if (r < 0)
			return r;
		uint64_t end = g->start + g->dump_len;
		while (cur < pt->fz_n && pt->fz[cur].end <= g->start)
			cur++;
		for (size_t k = cur; k < pt->fz_n && pt->fz[k].start < end; k++) {
			struct page_region part = pt->fz[k];
			part.start = MAX(part.start, g->start);
			part.end = MIN(part.end, end);
			if (part.start < part.end && (r = queue_written(c, t, g, &part, &w)) < 0)
				return r;
		}
	}
	return 0;
}

/* Inside the freeze, on the freezing thread: the walks themselves, when precopy_frozen_scan
 * could not make them. */
static int frozen_walking(struct capture *c, struct target *t, bool refused)
{
	struct precopy_target *pt = pt_of(t);
	struct osm_process *p = t->proc;
	struct written_ctx w[SPAN_MAX];
	struct span s = {.fn = queue_written, .slice = UINT64_MAX};
	int r = 0;

	/* One walk for the tracked mappings from one mapping that is neither tracked nor a gap to
	 * the next (or SPAN_MAX of them): then the contexts are free again. */
	for (size_t i = 0; i < p->n_maps && r >= 0; i++) {
		struct osm_mapping *m = &p->maps[i];
		struct precopy_region *g;

		if (m->shared_object) {
			/* Kept once for all its mappers (shared.c); its written pages would fill
			 * the walk. */
			r = span_flush_loose(c, t, &s, refused);
			continue;
		}
		g = find_region(t, m);
		if (!g && !is_gap(pt, m))
			r = span_flush_loose(c, t, &s, refused);
		if (r < 0)
			break;
		if (!g) {
			r = copy_untracked(c, t, m);
			if (r < 0)
				return r;
			continue;
		}
		if (s.n == SPAN_MAX)
			r = span_flush_loose(c, t, &s, refused);
		if (r >= 0)
			r = frozen_region(&s, g, m, &w[s.n]);
		if (r >= 0 && long_tail(g))
			r = span_flush_loose(c, t, &s, refused);
	}
	if (r >= 0)
		r = span_flush_loose(c, t, &s, refused);
	return r;
}

int precopy_frozen(struct capture *c, struct target *t)
{
	struct precopy_target *pt = pt_of(t);
	/* fail: as if the kernel refused the walks across the gaps */
	bool refused = fault_point("gap-scan") < 0;
	int r = pt->fz_ok && !refused ? frozen_from_scans(c, t) : frozen_walking(c, t, refused);

	pt->fz_ok = false;
	if ((r == -ENOBUFS || r == -ENOMEM) && c->arena.sealed)
		return r; /* past the reservation: the caller records it */
	if (r < 0)
		return log_error(r, "cannot scan the written pages of pid %d: %m", t->proc->pid);
	return 0;
}

void precopy_finish(struct target *t)
{
	struct precopy_target *pt = pt_of(t);
	for (size_t i = 0; i < pt->n_pc && capture_staged(t); i++)
		if (!pt->pc[i].in_core && !pt->pc[i].dest)
			fallocate(t->stage.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				  (off_t)pt->pc[i].core_off, (off_t)pt->pc[i].dump_len);
}

void precopy_abandon(struct target *t)
{
	struct precopy_target *pt = pt_of(t);
	for (size_t i = 0; pt && i < pt->n_pc; i++)
		if (pt->pc[i].dest)
			madvise(pt->pc[i].dest, pt->pc[i].dump_len, MADV_DONTNEED);
	precopy_stop(t);
	outfile_abort(&t->stage); /* what the rounds wrote goes too */
	if (pt)
		pt->stage_next = 0;
}

void precopy_stop(struct target *t)
{
	struct precopy_target *pt = pt_of(t);
	/* Unregistering clears the protection of every page while holding the target's mmap lock
	 * for writing (~35 ms per GiB here): in slices, so that a thread of the target faulting
	 * meanwhile waits for one slice, not for all. Closing then releases what is left (and is
	 * all that happens when osmosis dies: the kernel's release does the same at once). */
	if (t->uffd >= 0) {
		uint64_t t0 = now_ns();
		for (size_t i = 0; pt && i < pt->n_pc; i++) {
			for (uint64_t a = pt->pc[i].start; a < pt->pc[i].end;
			     a += UNREGISTER_SLICE) {
				struct uffdio_range rg = {
				    .start = a, .len = MIN(UNREGISTER_SLICE, pt->pc[i].end - a)};
				if (ioctl(t->uffd, UFFDIO_UNREGISTER, &rg) < 0)
					break; /* the layout changed: the release will do it */
			}
		}
		for (size_t i = 0; pt && i < pt->n_gap; i++) {
			struct uffdio_range rg = {.start = pt->gap[i].start,
						  .len = pt->gap[i].end - pt->gap[i].start};
			if (ioctl(t->uffd, UFFDIO_UNREGISTER, &rg) < 0)
				break;
		}
		tracker_close(t);
		log_debug("pid %d: write tracking removed in %.2f ms", t->proc->pid,
			  (double)(now_ns() - t0) / 1e6);
	}
	if (pt) {
		free(pt->pc);
		pt->pc = NULL;
		pt->n_pc = pt->cap_pc = 0;
		free(pt->gap);
		pt->gap = NULL;
		pt->n_gap = pt->cap_gap = 0;
		free(pt->fz);
		pt->fz = NULL;
		pt->fz_n = pt->fz_cap = 0;
		pt->fz_ok = false;
	}
}

/* ------------------------------------------------------------------------------------------ */
/* The method's hooks (method.h) */

int precopy_begin(struct capture *c, struct target *t)
{
	size_t ph = timeline_begin(c->tl, "register", t->proc->pid);
	int r = precopy_track(c, t);

	timeline_end(c->tl, ph);
	if (r < 0)
		precopy_stop(t);
	return r;
}

int precopy_open_stage(struct capture *c, struct target *t)
{
	struct precopy_target *pt = pt_of(t);
	char name[64];
	int r;

	if (c->stage_dirfd < 0)
		return 0;
	snprintf(name, sizeof(name), c->stage_separate ? ".stage.%d" : "core.%d", t->proc->pid);
	r = outfile_open(c->stage_dirfd, name, &t->stage);
	if (r < 0)
		return log_error(r, "cannot create the core file of pid %d: %m", t->proc->pid);
	pt->stage_next = c->page_size; /* the first page holds the ELF header */
	return 0;
}

static int precopy_choose(struct capture *c, struct target *t)
{
	const char *why;
	bool ok;
	int r;

	r = capture_injectable(c, t, &ok);
	if (r < 0 || !ok)
		return r; /* copied, with the reason */
	if (!tracker_supported(&why))
		return log_error(EOPNOTSUPP, "--method precopy: %s; use --method clone", why);
	capture_set_method(t, &capture_precopy, "requested with --method precopy");
	r = precopy_begin(c, t);
	if (r == -EAGAIN) {
		/* No thread could take the injection after all (stopped meanwhile). */
		t->no_inject = true;
		capture_set_method(t, &capture_copy,
				   "precopy: no thread can run an injected syscall now, so copied");
		return 0;
	}
	if (r == -EINTR || r == -ETIMEDOUT)
		return r;
	if (r < 0) {
		if (!t->optional || capture_target_ended(t))
			return t->optional ? -ESRCH
					   : log_error(r, "cannot track the writes of pid %d: %s",
						       t->proc->pid, strerror(-r));
		/* One member of a set: it alone goes another way. */
		capture_set_method(t, &capture_clone,
				   "--method precopy: write tracking could not start (%s), so a "
				   "clone",
				   strerror(-r));
		return 0;
	}
	return precopy_open_stage(c, t);
}

static uint64_t precopy_arena(const struct capture *c, const struct target *t)
{
	(void)c;
	return precopy_arena_bytes(t);
}

/* The rounds; then the room the freeze needs for what is written meanwhile; under auto, a
 * target whose written set stayed large goes to a clone (auto.c, its review). -ESRCH: t ended
 * (logged unless optional: the engine records it). */
static int precopy_run_rounds(struct capture *c, struct target *t)
{
	const char *req = capture_method_name(c->requested);
	bool is_auto = c->requested == METHOD_AUTO;
	uint64_t freeze_bytes = 0, bps = 0;
	char a[32], b[32];
	int r;

	size_t ph = timeline_begin(c->tl, "rounds", t->proc->pid);
	r = precopy_rounds(c, t, &freeze_bytes, &bps);
	timeline_end(c->tl, ph);
	capture_note_buffers(c);
	if (r == -EINTR || r == -ETIMEDOUT)
		return r;
	if (r < 0 && capture_target_ended(t))
		return t->optional
			   ? -ESRCH
			   : log_error(ESRCH, "pid %d exited during pre-copy", t->proc->pid);
	if (r < 0 && !is_auto && !t->optional)
		return log_error(r, "pre-copy of pid %d failed: %s", t->proc->pid, strerror(-r));
	if (r < 0) {
		/* This target alone goes another way; the others keep theirs. */
		capture_set_method(t, &capture_clone, "%s: pre-copy failed (%s), so a clone", req,
				   strerror(-r));
		return 0;
	}
	/* What auto's review judges by, and the freeze's copy jobs are sized from. */
	pt_of(t)->last_written = freeze_bytes;
	/* Staged: the freeze copies the written set into the arena; it must fit the budget (twice
	 * the last round's, for what the target writes meanwhile). What the arena has free in
	 * one chunk already (the reservation's slack) serves: the freeze checks again
	 * (fit_the_freeze), with what was written by then. */
	uint64_t need = capture_staged(t) ? freeze_bytes * 2 + (8u << 20) : 0;
	uint64_t left = capture_budget_left(c);
	if (need <= arena_largest_free(&c->arena))
		need = 0;
	if (need > left && is_auto) {
		capture_set_method(t, &capture_clone,
				   "auto: pre-copy's last round found %s written, more than the %s "
				   "the memory budget leaves to copy in the freeze, so a clone",
				   format_bytes(freeze_bytes, a, sizeof(a)),
				   format_bytes(left, b, sizeof(b)));
		return 0;
	}
	if (need > left)
		return log_error(ENOMEM,
				 "pid %d writes %s between pre-copy's rounds, more than the %s the "
				 "memory budget leaves to copy in the freeze; use --method clone, "
				 "or a larger --max-memory",
				 t->proc->pid, format_bytes(freeze_bytes, a, sizeof(a)),
				 format_bytes(left, b, sizeof(b)));
	if (need &&
	    (r = arena_reserve_more(&c->arena, MIN(need, MAX(left, (uint64_t)(8u << 20))))) < 0)
		return log_error(r, "cannot reserve memory for the pages pid %d writes: %m",
				 t->proc->pid);
	capture_note_buffers(c);
	pt_of(t)->copy_bps = bps;
	return 0;
}

bool precopy_last_round(const struct target *t, uint64_t *ret_written, uint64_t *ret_copy_bps)
{
	const struct precopy_target *pt = pt_of(t);

	if (!pt)
		return false;
	*ret_written = pt->last_written;
	*ret_copy_bps = pt->copy_bps;
	return true;
}

/* Mappings with no region (new, changed, or not tracked) are copied whole in the freeze; staged,
 * the written set goes to the arena too. */
static bool precopy_whole(const struct target *t, const struct osm_mapping *m)
{
	return !find_region(t, m);
}

/* Staged, the pages written since the last round go to the arena in the freeze: counted just
 * before (freeze_room's scan, which protects nothing), with the last round's as a margin for what
 * is written until the freeze. A target's last round may be seconds old by now: the other targets'
 * rounds ran since (a 256 MiB writer's rounds ended with little written; by the freeze it had
 * written all of it, and did not fit). One that wrote more since than twice its last round, and 8
 * MiB, is writing faster than its rounds saw: counted as if it wrote all it has tracked. */
static uint64_t precopy_freeze_bytes(const struct capture *c, const struct target *t,
				     uint64_t *ret_bounded)
{
	struct precopy_target *pt = pt_of(t);
	uint64_t written = 0, tracked = precopy_tracked_bytes(t);

	*ret_bounded = 0;
	if (!pt || !capture_staged(t))
		return capture_ready_whole_bytes(t, precopy_whole);
	(void)c;
	/* counted by freeze_room, just before: all of it when it could not tell */
	written = pt->written_now == UINT64_MAX ? tracked : pt->written_now;
	/* Writing faster than in the rounds (a loaded machine delays the freeze): all it tracks
	 * may be written by then. Never more than that: a page is copied once. */
	if (written > 2 * pt->last_written + (8u << 20))
		written = tracked;
	*ret_bounded = MIN(written + pt->last_written, tracked);
	return capture_ready_whole_bytes(t, precopy_whole) + *ret_bounded;
}

struct written_count {
	uint64_t bytes;
	size_t runs;
};

static int count_written(struct capture *c, struct target *t, struct precopy_region *g,
			 const struct page_region *pr, void *ctx)
{
	struct written_count *wc = ctx;
	(void)c, (void)t, (void)g;
	if (pr->categories & PAGE_IS_WRITTEN) {
		wc->bytes += pr->end - pr->start;
		wc->runs++;
	}
	return 0;
}

/*
 * Staged, each run of pages written since the last round is an extent of its mapping in the
 * freeze, and the extents' array does not grow there (the pause allocates nothing): a writer of
 * scattered pages has as many runs as pages. The ready layout's mappings get room now for four
 * times the runs written so far, and some, never more than the mapping has pages.
 */
static int precopy_freeze_room(struct capture *c, struct target *t)
{
	struct precopy_target *pt = pt_of(t);

	if (!pt)
		return 0;
	/* Room for the freeze's scans: what the last round found, twice over, and a few regions
	 * per mapping (what a walk returns for the gaps it crosses). More, and frozen scans on
	 * the freezing thread as before. */
	size_t fz =
	    MIN((size_t)(2 * pt->last_written / c->page_size) + 4 * (pt->n_pc + pt->n_gap) + 1024,
		(size_t)FZ_MAX);
	pt->fz_ok = false;
	/* grow_array zeroes what it adds: touched now, not in the pause */
	if (grow_array((void **)&pt->fz, &pt->fz_cap, fz, sizeof(*pt->fz)) < 0)
		return -ENOMEM;
	if (!capture_staged(t))
		return 0;
	pt->written_now = 0;
	for (size_t i = 0; i < pt->n_pc; i++) {
		struct precopy_region *g = &pt->pc[i];
		struct written_count rc = {0};
		struct osm_mapping *m = NULL;
		int r;

		if (g->lost)
			continue;
		r = scan(c, t, g, 0, 0, PAGE_IS_WRITTEN, WRITTEN_RETURN, count_written, &rc,
			 WALK_SLICE);
		if (r == -EPERM) {
			region_lost(c, t, g, NULL, false);
			continue;
		}
		if (r < 0) {
			pt->written_now = UINT64_MAX;
			continue;
		}
		if (pt->written_now != UINT64_MAX)
			pt->written_now += rc.bytes;
		for (size_t k = 0; k < t->n_ready_maps && !m; k++)
			if (t->ready_maps[k].start == g->start)
				m = &t->ready_maps[k];
		if (!m)
			continue;
		size_t pages = (size_t)(g->dump_len / c->page_size) + 1;
		size_t want = m->n_ext + MIN(pages, 4 * rc.runs + 16);
		if (grow_array((void **)&m->ext, &m->cap_ext, want, sizeof(*m->ext)) < 0)
			return -ENOMEM;
	}
	return 0;
}

/* Written runs in the freeze: about what the last round found, and as much again. */
static size_t precopy_freeze_jobs(const struct capture *c, const struct target *t)
{
	const struct precopy_target *pt = pt_of(t);

	return pt ? (size_t)(2 * pt->last_written / c->page_size) + 2 * pt->n_pc + 64 : 0;
}

/*
 * A target's last round may be long past by the freeze: in a set the others' rounds and the
 * shared objects' ran since (a PostgreSQL backend's, 0.3-1.7 s before the freeze of 26), and
 * what it wrote meanwhile would be copied in the pause. One more round now, when the time since
 * the last is more than twice what a round takes: a target that rewrites its memory as fast as a
 * round copies it gains nothing from one, and gets none. The room the freeze needs for what is
 * written after it is counted again after every target's last round (capture.c, last_rounds).
 */
static int precopy_one_more_round(struct capture *c, struct target *t)
{
	struct precopy_target *pt = pt_of(t);
	struct written_ctx w = {0};
	uint64_t t0 = now_ns();
	int r;

	if (!pt || !pt->round_end_ns || t->uffd < 0 ||
	    t0 - pt->round_end_ns <= 2 * pt->round_ns + 1000000)
		return 0;
	c->n_jobs = 0;
	r = scan_rounds(c, t, queue_written, &w);
	if (r < 0)
		return r;
	r = run_jobs(c, t, false);
	if (r < 0)
		return r;
	log_debug("pid %d: pre-copy's last round, %.0f ms after the one before: %llu bytes "
		  "written since, copied in %.1f ms",
		  t->proc->pid, (double)(t0 - pt->round_end_ns) / 1e6, (unsigned long long)w.bytes,
		  (double)(now_ns() - t0) / 1e6);
	pt->round_end_ns = now_ns();
	pt->round_ns = pt->round_end_ns - t0;
	return 1;
}

static int precopy_keep(struct capture *c, struct target *t)
{
	struct precopy_target *pt = pt_of(t);
	bool walked = pt && pt->fz_ok;
	uint64_t t0 = now_ns();
	int r = precopy_frozen(c, t);

	timeline_pause_part(c->tl, PAUSE_WRITTEN, now_ns() - t0);
	log_debug("pid %d: written pages found in %.2f ms%s", t->proc->pid,
		  (double)(now_ns() - t0) / 1e6, walked ? " (walked on a copy thread before)" : "");
	return r;
}

/* Right after the thaw: the tracking goes first, so that the target's writes are free again. */
static void precopy_thawed(struct capture *c, struct target *t)
{
	precopy_finish(t);
	if (t->uffd >= 0) {
		size_t ph = timeline_begin(c->tl, "unregister", t->proc->pid);
		precopy_stop(t);
		timeline_end(c->tl, ph);
	}
}

const struct capture_ops capture_precopy = {
    .id = METHOD_PRECOPY,
    .help = "copied while it runs, its writes tracked; the pause copies the rest",
    .priv_size = sizeof(struct precopy_target),
    .choose = precopy_choose,
    .arena_bytes = precopy_arena,
    .rounds = precopy_run_rounds,
    .freeze_jobs = precopy_freeze_jobs,
    .freeze_room = precopy_freeze_room,
    .freeze_bytes = precopy_freeze_bytes,
    .last_round = precopy_one_more_round,
    .frozen_scan = precopy_frozen_scan,
    .frozen = precopy_keep,
    .thawed = precopy_thawed,
    .abandon = precopy_abandon,
    .release = precopy_stop,
};
