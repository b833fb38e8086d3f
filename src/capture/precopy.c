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
 * Inside the freeze: one scan per tracked mapping gives the pages written since the last round,
 * copied now; a page the target dropped with MADV_DONTNEED is reported as written too, and is
 * zeroed in the arena rather than read. Mappings that are new or changed
 * since the rounds, and those not tracked (shared, sparse, huge pages, read-only), are copied
 * whole as the copy method does.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "base/fault.h"
#include "base/log.h"
#include "base/timeutil.h"
#include "base/util.h"
#include "capture/capture.h"
#include "capture/uffd.h"
#include "inject/inject.h"
#include "proc/maps.h"

#define MAX_ROUNDS	 8
#define SMALL_ENOUGH	 (1u << 20) /* a written set this small ends the rounds */
#define SCAN_VEC	 4096
#define WRITTEN_RETURN	 (PAGE_IS_WRITTEN | PAGE_IS_PRESENT | PAGE_IS_SWAPPED)
#define UNREGISTER_SLICE (16ull << 20)

struct precopy_region {
	uint64_t start, end, pgoff, inode;
	uint32_t prot;
	uint64_t dump_len;
	size_t map_index; /* in the target's pre_maps */
	uint8_t *dest;	  /* the arena's image of [start, start + dump_len) */
};

static bool tracked_kind(const struct osm_mapping *m)
{
	uint64_t resident = m->rss_bytes + m->swap_bytes;

	if (m->dump_len == 0 || m->shared || !(m->prot & PROT_WRITE) || m->elf_header_only)
		return false;
	if (m->vmflags & (VMF_HUGETLB | VMF_IO | VMF_PFNMAP | VMF_DONTDUMP))
		return false;
	/* Sparse mappings would need arena for pages that do not exist: copy them in the freeze. */
	return resident * 2 >= m->dump_len || m->dump_len <= (1u << 20);
}

bool precopy_supported(const char **why)
{
	static int probed = -1;
	static const char *reason;

	if (probed < 0) {
		struct uffdio_api api = {.api = UFFD_API,
					 .features =
					     UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED};
		int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | UFFD_USER_MODE_ONLY);
		probed = 0;
		if (fd < 0) {
			reason = "this kernel has no userfaultfd";
		} else if (ioctl(fd, UFFDIO_API, &api) < 0) {
			reason =
			    "this kernel lacks asynchronous userfaultfd write-protect (Linux 6.7)";
		} else {
			struct page_region r;
			struct pm_scan_arg a = {.size = sizeof(a),
						.start = (uintptr_t)&r & ~4095ul,
						.end = ((uintptr_t)&r & ~4095ul) + 4096,
						.vec = (uintptr_t)&r,
						.vec_len = 1,
						.return_mask = PAGE_IS_PRESENT};
			int pm = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
			if (pm < 0 || ioctl(pm, PAGEMAP_SCAN, &a) < 0)
				reason = "this kernel lacks the PAGEMAP_SCAN ioctl (Linux 6.7)";
			else
				probed = 1;
			if (pm >= 0)
				close(pm);
		}
		if (fd >= 0)
			close(fd);
	}
	if (why)
		*why = reason;
	return probed == 1;
}

uint64_t precopy_arena_bytes(const struct target *t)
{
	uint64_t n = 0;

	for (size_t i = 0; i < t->n_pre_maps; i++) {
		const struct osm_mapping *m = &t->pre_maps[i];
		n += tracked_kind(m) ? m->dump_len : capture_planned_size(m);
	}
	return n;
}

/* Create the userfaultfd inside the target and take it. */
static int take_uffd(struct target *t)
{
	struct osm_process *p = t->proc;
	int r = -ESRCH;

	for (size_t i = 0; i < p->n_threads && r != 0; i++) {
		struct osm_thread *th = p->threads[i];
		uint64_t args[6] = {O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY};
		struct inject in;
		int64_t fd = -1, closed;

		if (th->gone || inject_thread_filtered(t->ref.procfd, th->tid) ||
		    inject_seize(th->tid) < 0)
			continue;
		r = inject_begin(&in, th->tid, t->ref.memfd, p->auxv, p->auxv_len);
		if (r == 0)
			r = inject_syscall(&in, SYS_userfaultfd, args, &fd);
		if (r == 0 && fd < 0)
			r = (int)fd;
		if (r == 0) {
			t->uffd = (int)syscall(SYS_pidfd_getfd, t->ref.pidfd, (int)fd, 0);
			if (t->uffd < 0)
				r = -errno;
			args[0] = (uint64_t)fd;
			if (inject_syscall(&in, SYS_close, args, &closed) < 0 || closed < 0) {
				/* The target keeps a descriptor it did not have: do not use ours.
				 */
				r = r ? r : -EIO;
			}
		}
		inject_end(&in);
		inject_release(th->tid, in.lost_signal);
	}
	if (r < 0 && t->uffd >= 0) {
		close(t->uffd);
		t->uffd = -1;
	}
	return r;
}

/* One PAGEMAP_SCAN over [start, end), calling fn for each region returned. */
typedef int (*scan_fn)(struct capture *c, struct target *t, struct precopy_region *g,
		       const struct page_region *pr, void *ctx);

static int scan(struct capture *c, struct target *t, struct precopy_region *g, uint64_t flags,
		uint64_t inverted, uint64_t category_mask, uint64_t return_mask, scan_fn fn,
		void *ctx)
{
	static struct page_region vec[SCAN_VEC];
	uint64_t start = g->start, end = g->start + g->dump_len;

	while (start < end) {
		struct pm_scan_arg a = {.size = sizeof(a),
					.flags = flags | PM_SCAN_CHECK_WPASYNC,
					.start = start,
					.end = end,
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

/* A page written since it was protected: copy it. A page written but neither present nor
 * swapped was dropped (MADV_DONTNEED: the kernel reports a zapped page as written): zero. */
static int queue_written(struct capture *c, struct target *t, struct precopy_region *g,
			 const struct page_region *pr, void *ctx)
{
	uint64_t *bytes = ctx, len = pr->end - pr->start;
	uint8_t *dest = g->dest + (pr->start - g->start);

	if (!(pr->categories & PAGE_IS_WRITTEN))
		return 0;
	*bytes += len;
	if (!(pr->categories & (PAGE_IS_PRESENT | PAGE_IS_SWAPPED))) {
		memset(dest, 0, len);
		return 0;
	}
	return capture_add_job(c, t, pr->start, len, dest);
}

static int emit_region(struct capture *c, struct target *t, struct osm_mapping *m, uint64_t off,
		       uint64_t len, void *ctx)
{
	struct precopy_region *g = ctx;

	return capture_add_job(c, t, m->start + off, len, g->dest + off);
}

static int run_jobs(struct capture *c)
{
	int r = copier_run(c->copier, c->jobs, c->n_jobs);
	c->n_jobs = 0;
	return r;
}

int precopy_open_tracker(struct target *t)
{
	struct uffdio_api api = {.api = UFFD_API,
				 .features = UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED};
	int r;

	if (t->uffd >= 0)
		return 0;
	if (t->pagemap_fd < 0 || t->ref.memfd < 0 || t->ref.pidfd < 0)
		return -EACCES;
	r = take_uffd(t);
	if (r < 0)
		return r;
	r = fault_point("uffd-taken");
	if (r < 0)
		return r;
	if (ioctl(t->uffd, UFFDIO_API, &api) < 0)
		return -errno;
	return 0;
}

int precopy_track(struct capture *c, struct target *t)
{
	int r;

	(void)c;
	r = precopy_open_tracker(t);
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

		if (!tracked_kind(m))
			continue;
		if (ioctl(t->uffd, UFFDIO_REGISTER, &reg) < 0) {
			log_debug("pid %d: %#llx-%#llx not tracked: %m", t->proc->pid,
				  (unsigned long long)m->start, (unsigned long long)m->end);
			continue;
		}
		if (ioctl(t->uffd, UFFDIO_WRITEPROTECT, &wp) < 0)
			return -errno;
		if (grow_array((void **)&t->pc, &t->cap_pc, t->n_pc + 1, sizeof(*t->pc)))
			return -ENOMEM;
		t->pc[t->n_pc++] = (struct precopy_region){.start = m->start,
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
	uint64_t n = 0;
	for (size_t i = 0; i < t->n_pc; i++)
		n += t->pc[i].dump_len;
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
	uint64_t written = UINT64_MAX, prev, t0, copied = 0;
	int r;

	/* Round 0: everything present now. Pages written meanwhile show up in round 1. */
	c->n_jobs = 0;
	for (size_t i = 0; i < t->n_pc; i++) {
		struct precopy_region *g = &t->pc[i];
		g->dest = arena_alloc(&c->arena, g->dump_len);
		if (!g->dest)
			return -ENOMEM;
		r = capture_runs(c, t, &t->pre_maps[g->map_index], t->pagemap_fd, emit_region, g);
		if (r < 0)
			return r;
	}
	for (size_t i = 0; i < c->n_jobs; i++)
		copied += c->jobs[i].len;
	t0 = now_ns();
	r = run_jobs(c);
	if (r < 0)
		return r;
	*ret_copy_bps = copied * 1000000000ull / MAX(now_ns() - t0, (uint64_t)1);
	log_debug("pid %d: pre-copy round 0: %llu bytes at %.2f GB/s", t->proc->pid,
		  (unsigned long long)copied, (double)*ret_copy_bps / 1e9);

	for (int round = 1; round <= MAX_ROUNDS; round++) {
		t0 = now_ns();
		prev = written;
		written = 0;
		for (size_t i = 0; i < t->n_pc; i++) {
			r = scan(c, t, &t->pc[i], PM_SCAN_WP_MATCHING, 0, PAGE_IS_WRITTEN,
				 WRITTEN_RETURN, queue_written, &written);
			if (r < 0)
				return r;
		}
		r = run_jobs(c);
		if (r < 0)
			return r;
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
 * since the last round copied (or zeroed, if dropped) now. */
static int frozen_region(struct capture *c, struct target *t, struct precopy_region *g,
			 struct osm_mapping *m)
{
	uint64_t written = 0;
	int r = mapping_add_extent(m, 0, g->dump_len, g->dest);

	if (r == 0)
		r = scan(c, t, g, 0, 0, PAGE_IS_WRITTEN, WRITTEN_RETURN, queue_written, &written);
	return r;
}

/* The region tracked for m, if m is still the mapping it was (regions are in address order). */
static struct precopy_region *find_region(struct target *t, const struct osm_mapping *m)
{
	size_t lo = 0, hi = t->n_pc;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (t->pc[mid].start < m->start)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == t->n_pc)
		return NULL;
	struct precopy_region *g = &t->pc[lo];
	if (g->start == m->start && g->end == m->end && g->pgoff == m->pgoff &&
	    g->inode == m->inode && g->prot == m->prot && g->dump_len == m->dump_len)
		return g;
	return NULL;
}

int precopy_frozen(struct capture *c, struct target *t)
{
	struct osm_process *p = t->proc;
	int r;

	for (size_t i = 0; i < p->n_maps; i++) {
		struct osm_mapping *m = &p->maps[i];
		struct precopy_region *g;

		if (m->shared_object)
			continue; /* kept once for all its mappers (shared.c) */
		g = find_region(t, m);
		if (!g) {
			r = capture_copy_mapping(c, t, m);
			if (r < 0)
				return r;
			continue;
		}
		r = frozen_region(c, t, g, m);
		if (r < 0)
			return log_error(r, "cannot scan the written pages of pid %d: %m", p->pid);
	}
	return 0;
}

void precopy_abandon(struct target *t)
{
	for (size_t i = 0; i < t->n_pc; i++)
		if (t->pc[i].dest)
			madvise(t->pc[i].dest, t->pc[i].dump_len, MADV_DONTNEED);
	precopy_stop(t);
}

void precopy_stop(struct target *t)
{
	/* Unregistering clears the protection of every page while holding the target's mmap lock
	 * for writing (~35 ms per GiB here): in slices, so that a thread of the target faulting
	 * meanwhile waits for one slice, not for all. Closing then releases what is left (and is
	 * all that happens when osmosis dies: the kernel's release does the same at once). */
	if (t->uffd >= 0) {
		uint64_t t0 = now_ns();
		for (size_t i = 0; i < t->n_pc; i++) {
			for (uint64_t a = t->pc[i].start; a < t->pc[i].end; a += UNREGISTER_SLICE) {
				struct uffdio_range rg = {
				    .start = a, .len = MIN(UNREGISTER_SLICE, t->pc[i].end - a)};
				if (ioctl(t->uffd, UFFDIO_UNREGISTER, &rg) < 0)
					break; /* the layout changed: the release will do it */
			}
		}
		close(t->uffd);
		log_debug("pid %d: write tracking removed in %.2f ms", t->proc->pid,
			  (double)(now_ns() - t0) / 1e6);
	}
	t->uffd = -1;
	free(t->pc);
	t->pc = NULL;
	t->n_pc = t->cap_pc = 0;
}
