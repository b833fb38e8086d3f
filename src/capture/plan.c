/* SPDX-License-Identifier: MIT */
/*
 * The planning every capture method shares: what is dumped of each mapping, which of its pages
 * are worth reading, and the copy jobs that read them (copy.c copies everything this way; the
 * clone and pre-copy methods for what they do not keep otherwise).
 *
 * Before the freeze: smaps (VmFlags for MADV_DONTDUMP, Rss and Swap for sizing), /proc/PID/pagemap
 * and /proc/PID/mem opened.
 * Inside the freeze: registers; maps re-read (cheap) and matched to the smaps facts, with a fresh
 * smaps read only for mappings that changed; for private anonymous mappings that were not fully
 * resident, pagemap says which pages exist (absent ones are zero); copy jobs queued.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "base/fs.h"
#include "base/log.h"
#include "base/parse.h"
#include "base/timeutil.h"
#include "base/util.h"
#include "capture/capture.h"
#include "proc/maps.h"
#include "proc/process.h"

#define JOB_MAX                                                                                    \
	(1u << 20) /* bytes per copy job: threads share a large run; the guard is                  \
		    * checked between jobs */
#define PM_PRESENT    (1ull << 63)
#define PM_SWAPPED    (1ull << 62)
#define PAGEMAP_BATCH 65536
#define PM_PFN_MASK   ((1ull << 55) - 1)

/*
 * The PFN of the kernel's shared zero page, or 0 when pagemap hides PFNs (not root). Reading a
 * never-written anonymous page (gcore does, for one) maps the zero page there, and pagemap then
 * calls it present; those pages are still zero and need no copy. Learned from a page of our own.
 */
static uint64_t zero_page_pfn(size_t page_size)
{
	static uint64_t pfn = UINT64_MAX;
	volatile uint8_t *p;
	uint64_t ent = 0;
	int fd;

	if (pfn != UINT64_MAX)
		return pfn;
	pfn = 0;
	p = mmap(NULL, page_size, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return 0;
	(void)p[0]; /* a read fault maps the zero page */
	fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (fd >= 0 && pread(fd, &ent, sizeof(ent), (off_t)((uintptr_t)p / page_size * 8)) == 8 &&
	    (ent & PM_PRESENT))
		pfn = ent & PM_PFN_MASK;
	if (fd >= 0)
		close(fd);
	munmap((void *)p, page_size);
	return pfn;
}

int capture_read_maps(struct target *t, const char *file, struct osm_mapping **ret, size_t *ret_n)
{
	_cleanup_free_ char *text = NULL;
	size_t len;
	int r;

	r = read_file_at(t->ref.procfd, file, &text, &len);
	if (r < 0)
		return r == -ENOENT ? -ESRCH : r;
	r = maps_parse(text, len, ret, ret_n);
	if (r == -EINVAL)
		return log_error(r, "cannot parse /proc/%d/%s", t->proc->pid, file);
	return r;
}

bool clone_copies_in_freeze(const struct osm_mapping *m)
{
	return m->shared || (m->vmflags & (VMF_DONTCOPY | VMF_WIPEONFORK));
}

bool capture_staged(const struct target *t)
{
	return t->stage.fd >= 0;
}

/* Bytes the arena needs for m: present pages only where absent pages can be skipped. */
uint64_t capture_planned_size(const struct osm_mapping *m)
{
	uint64_t resident = m->rss_bytes + m->swap_bytes;

	if (m->trim_absent && resident < m->dump_len)
		return resident;
	return m->dump_len;
}

int capture_plan_target(struct capture *c, struct target *t)
{
	int r;

	r = capture_read_maps(t, "smaps", &t->pre_maps, &t->n_pre_maps);
	if (r == -ESRCH && t->optional)
		return r; /* recorded by the caller */
	if (r < 0)
		return r == -ESRCH ? log_error(r, "pid %d exited", t->proc->pid)
				   : log_error(r, "cannot read /proc/%d/smaps: %m", t->proc->pid);
	t->planned_bytes = 0;
	for (size_t j = 0; j < t->n_pre_maps; j++) {
		maps_plan_dump(&t->pre_maps[j], t->proc->coredump_filter, c->page_size);
		t->planned_bytes += capture_planned_size(&t->pre_maps[j]);
	}
	t->pagemap_fd = openat(t->ref.procfd, "pagemap", O_RDONLY | O_CLOEXEC);
	if (pidref_open_mem(&t->ref) < 0)
		log_debug("pid %d: /proc/PID/mem unavailable; unreadable pages stay zero",
			  t->proc->pid);
	zero_page_pfn(c->page_size); /* learn it now, not inside the freeze */
	return 0;
}

int capture_job_slot(struct capture *c)
{
	if (c->n_jobs < c->cap_jobs)
		return 0;
	if (c->arena.sealed) {
		/* Inside the freeze the job array does not grow (capture_reserve_frozen). */
		c->jobs_exhausted = true;
		return -ENOBUFS;
	}
	return grow_array((void **)&c->jobs, &c->cap_jobs, c->n_jobs + 1, sizeof(*c->jobs))
		   ? -ENOMEM
		   : 0;
}

/* Jobs of at most JOB_MAX bytes: into memory at dest, or (dest NULL) into the staging file at
 * file_off. */
static int add_jobs(struct capture *c, struct target *t, uint64_t remote, uint64_t len,
		    uint8_t *dest, uint64_t file_off)
{
	while (len > 0) {
		uint64_t n = MIN(len, (uint64_t)JOB_MAX);
		int r = capture_job_slot(c);
		if (r < 0)
			return r;
		c->jobs[c->n_jobs++] = (struct copy_job){.pid = t->proc->pid,
							 .memfd = t->ref.memfd,
							 .remote = remote,
							 .len = n,
							 .dest = dest,
							 .file_off = dest ? 0 : file_off};
		remote += n;
		if (dest)
			dest += n;
		else
			file_off += n;
		len -= n;
	}
	return 0;
}

int capture_add_job(struct capture *c, struct target *t, uint64_t remote, uint64_t len,
		    uint8_t *dest)
{
	return add_jobs(c, t, remote, len, dest, 0);
}

int capture_add_staged_job(struct capture *c, struct target *t, uint64_t remote, uint64_t len,
			   uint64_t file_off)
{
	return add_jobs(c, t, remote, len, NULL, file_off);
}

/*
 * Whether a pagemap entry that shows a swap entry is a page in swap. Pre-copy's write protection
 * marks never-touched pages too (UFFD_FEATURE_WP_UNPOPULATED), and such a marker reads as a swap
 * entry; reading it as a page would give the target a page it never had (a sleep's 132 KiB heap
 * and stack, 16 KiB of each resident, were left wholly resident). With pfns shown (root), a
 * marker is swap type 31, the last of the 32 (SWP_PTE_MARKER: docs/design/kernel-facts.md);
 * without, a mapping that had nothing in swap when its smaps were read has only markers.
 */
static bool in_swap(uint64_t ent, const struct osm_mapping *m)
{
	if (!(ent & PM_SWAPPED))
		return false;
	if (ent & PM_PFN_MASK)
		return (ent & 0x1f) != 31;
	return !(m->vmflags & VMF_KNOWN) || m->swap_bytes > 0;
}

/* Whether a pagemap entry shows a page whose bytes must be read. */
static bool page_has_data(uint64_t ent, uint64_t zero_pfn, const struct osm_mapping *m)
{
	if (ent & PM_SWAPPED)
		return in_swap(ent, m);
	if (!(ent & PM_PRESENT))
		return false;
	return !zero_pfn || (ent & PM_PFN_MASK) != zero_pfn;
}

int capture_runs(struct capture *c, struct target *t, struct osm_mapping *m, int pagemap_fd,
		 capture_emit_fn emit, void *ctx)
{
	static uint64_t pm[PAGEMAP_BATCH];
	uint64_t zpfn = zero_page_pfn(c->page_size);
	uint64_t npages, resident = m->rss_bytes + m->swap_bytes;
	int r;

	if (m->dump_len == 0)
		return 0;
	if (!m->trim_absent || resident >= m->dump_len || pagemap_fd < 0)
		return emit(c, t, m, 0, m->dump_len, ctx);

	/* Private anonymous memory: a page that is neither present nor swapped is zero. */
	npages = m->dump_len / c->page_size;
	for (uint64_t base = 0; base < npages;) {
		uint64_t n = MIN(npages - base, (uint64_t)PAGEMAP_BATCH);
		off_t off = (off_t)((m->start / c->page_size + base) * sizeof(uint64_t));
		ssize_t got = pread(pagemap_fd, pm, n * sizeof(uint64_t), off);

		if (got <= 0) /* no pagemap: take the rest whole */
			return emit(c, t, m, base * c->page_size, (npages - base) * c->page_size,
				    ctx);
		n = (uint64_t)got / sizeof(uint64_t);
		for (uint64_t i = 0; i < n;) {
			uint64_t j = i;
			if (!page_has_data(pm[i], zpfn, m)) {
				i++;
				continue;
			}
			while (j < n && page_has_data(pm[j], zpfn, m))
				j++;
			r = emit(c, t, m, (base + i) * c->page_size, (j - i) * c->page_size, ctx);
			if (r < 0)
				return r;
			i = j;
		}
		base += n;
	}
	return 0;
}

static int emit_copy(struct capture *c, struct target *t, struct osm_mapping *m, uint64_t off,
		     uint64_t len, void *ctx)
{
	uint8_t *dest = arena_alloc(&c->arena, len);

	(void)ctx;
	if (!dest || mapping_add_extent(m, off, len, dest) < 0)
		return -ENOMEM;
	return capture_add_job(c, t, m->start + off, len, dest);
}

int capture_copy_mapping(struct capture *c, struct target *t, struct osm_mapping *m)
{
	int r = capture_runs(c, t, m, t->pagemap_fd, emit_copy, NULL);
	if ((r == -ENOMEM || r == -ENOBUFS) && c->arena.sealed)
		return r; /* past the reservation in the freeze: the caller records it */
	if (r < 0)
		return log_error(r, "out of memory planning the copy of pid %d", t->proc->pid);
	return 0;
}

/* Stack pages in swap right above each blocked thread's stack pointer (paged-out-stack). */
void capture_count_swapped_stacks(struct capture *c, struct target *t)
{
	uint64_t pm[16];

	if (t->pagemap_fd < 0)
		return;
	for (size_t i = 0; i < t->proc->n_threads; i++) {
		struct osm_thread *th = t->proc->threads[i];
		uint64_t sp = arch_regs_sp(&th->regs), n = 0;
		if (!th->captured || th->syscall_nr < 0)
			continue;
		for (size_t m = 0; m < t->proc->n_maps; m++) {
			const struct osm_mapping *mp = &t->proc->maps[m];
			if (sp < mp->start || sp >= mp->end)
				continue;
			uint64_t first = sp / c->page_size;
			uint64_t count =
			    MIN((uint64_t)16, (mp->end - first * c->page_size) / c->page_size);
			ssize_t got = pread(t->pagemap_fd, pm, count * 8, (off_t)(first * 8));
			for (ssize_t k = 0; k < got / 8; k++)
				n += in_swap(pm[k], mp);
			break;
		}
		th->stack_swapped_pages = n;
	}
}

/* Read file into buf (cap bytes, NUL added) without allocating. -ENOBUFS when it does not fit. */
static int read_into(int dirfd, const char *file, char *buf, size_t cap, size_t *ret_len)
{
	_cleanup_close_ int fd = openat(dirfd, file, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	size_t len = 0;

	if (fd < 0)
		return errno == ENOENT ? -ESRCH : -errno;
	for (;;) {
		if (len + 1 >= cap)
			return -ENOBUFS;
		ssize_t n = read(fd, buf + len, cap - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		len += (size_t)n;
	}
	buf[len] = 0;
	*ret_len = len;
	return 0;
}

static bool layout_ready(const struct target *t)
{
	return t->ready_maps && t->freeze_text;
}

/* One target's maps text read into its reserved buffer (the set's i-th), on whichever thread. */
static void prefetch_one(void *ctx, size_t i)
{
	struct target *t = ((struct capture *)ctx)->set->v[i];

	if (!target_live(t) || !layout_ready(t))
		return;
	t->prefetch_rc =
	    read_into(t->ref.procfd, "maps", t->freeze_text, t->text_cap, &t->prefetch_len);
	t->prefetched = true;
}

void capture_prefetch_layouts(struct capture *c)
{
	uint64_t t0 = now_ns();

	for (size_t i = 0; i < c->set->n; i++)
		c->set->v[i]->prefetched = false;
	if (c->copier && copier_each_frozen(c->copier, prefetch_one, c, c->set->n) < 0)
		for (size_t i = 0; i < c->set->n; i++)
			c->set->v[i]->prefetched = false; /* interrupted: each reads its own */
	timeline_pause_part(c->tl, PAUSE_LAYOUT, now_ns() - t0);
}

/* Inside the freeze: t's ready layout, if the maps text is still the one it was made from. */
static bool take_ready_layout(struct target *t, struct osm_mapping **ret, size_t *ret_n)
{
	size_t len = t->prefetch_len;
	int r = t->prefetch_rc;

	if (!layout_ready(t))
		return false;
	if (!t->prefetched)
		r = read_into(t->ref.procfd, "maps", t->freeze_text, t->text_cap, &len);
	t->prefetched = false;
	if (r < 0 || len != t->ready_len || memcmp(t->freeze_text, t->ready_text, len) != 0)
		return false;
	*ret = TAKE_PTR(t->ready_maps);
	*ret_n = t->n_ready_maps;
	t->n_ready_maps = 0;
	return true;
}

static int layout_frozen(struct capture *c, struct target *t);

int capture_layout_frozen(struct capture *c, struct target *t)
{
	int r;

	uint64_t t0 = now_ns();

	r = capture_thread_state(t->proc);
	timeline_pause_part(c->tl, PAUSE_REGISTERS, now_ns() - t0);
	if (r < 0 || c->state_only)
		return r;
	t0 = now_ns();
	r = layout_frozen(c, t);
	timeline_pause_part(c->tl, PAUSE_LAYOUT, now_ns() - t0);
	return r;
}

static int layout_frozen(struct capture *c, struct target *t)
{
	struct osm_mapping *maps = NULL;
	size_t n = 0;
	int r;

	/* A target that joined during the freeze (a tree's new child) was not prepared. */
	if (t->pagemap_fd < 0)
		t->pagemap_fd = openat(t->ref.procfd, "pagemap", O_RDONLY | O_CLOEXEC);
	pidref_open_mem(&t->ref);
	/* The layout read last before the freeze is used when the maps text is the same (read
	 * into a buffer reserved for it): nothing is parsed or allocated. */
	bool ready = take_ready_layout(t, &maps, &n);
	/* Otherwise the layout changed since smaps was read: maps is cheap, smaps is read again
	 * only if some mapping is new. */
	r = ready ? 0 : capture_read_maps(t, "maps", &maps, &n);
	if (r == -ESRCH && t->optional)
		return r; /* recorded by the caller */
	if (r < 0)
		return r == -ESRCH ? log_error(r, "pid %d exited during the snapshot", t->proc->pid)
				   : r;
	/* /proc/PID/mem and pagemap were opened on the memory the process had then: after an
	 * execve they read nothing (the old address space is gone), while maps shows the new
	 * program. One byte of a readable mapping tells. */
	for (size_t i = 0; i < n && t->ref.memfd >= 0; i++) {
		uint8_t b;
		if (!(maps[i].prot & PROT_READ) || (maps[i].path && maps[i].path[0] == '['))
			continue;
		if (pread(t->ref.memfd, &b, 1, (off_t)maps[i].start) == 0) {
			maps_free(maps, n);
			return t->optional
				   ? -ENOEXEC
				   : log_error(ENOEXEC,
					       "pid %d ran a new program (execve) during the "
					       "snapshot",
					       t->proc->pid);
		}
		break;
	}
	if (!ready && maps_carry_smaps(maps, n, t->pre_maps, t->n_pre_maps) > 0) {
		maps_free(maps, n);
		r = capture_read_maps(t, "smaps", &maps, &n);
		if (r < 0)
			return r;
	}
	for (size_t i = 0; i < t->proc->n_maps; i++)
		mapping_done(&t->proc->maps[i]);
	free(t->proc->maps);
	t->proc->maps = maps;
	t->proc->n_maps = n;
	capture_count_swapped_stacks(c, t);
	for (size_t i = 0; i < n && !ready; i++)
		maps_plan_dump(&maps[i], t->proc->coredump_filter, c->page_size);
	return 0;
}

void capture_refresh_layout(struct capture *c, struct target *t)
{
	struct osm_mapping *maps = NULL, *fresh = NULL;
	size_t n = 0, n_fresh = 0;

	if (capture_read_maps(t, "maps", &maps, &n) < 0)
		return;
	if (maps_carry_smaps(maps, n, t->pre_maps, t->n_pre_maps) > 0 &&
	    capture_read_maps(t, "smaps", &fresh, &n_fresh) == 0) {
		maps_free(t->pre_maps, t->n_pre_maps);
		t->pre_maps = fresh;
		t->n_pre_maps = n_fresh;
		for (size_t j = 0; j < n_fresh; j++)
			maps_plan_dump(&fresh[j], t->proc->coredump_filter, c->page_size);
	}
	maps_free(maps, n);
}

/* ------------------------------------------------------------------------------------------ */
/* Reserving, before the freeze, what the freeze would otherwise allocate */

struct runs_count {
	size_t runs, jobs;
	uint64_t bytes;
};

static int count_runs(struct capture *c, struct target *t, struct osm_mapping *m, uint64_t off,
		      uint64_t len, void *ctx)
{
	struct runs_count *rc = ctx;

	(void)c, (void)t, (void)m, (void)off;
	rc->runs++;
	rc->jobs += len / JOB_MAX + 1;
	rc->bytes += len;
	return 0;
}

void capture_ready_free(struct target *t)
{
	maps_free(t->ready_maps, t->n_ready_maps);
	t->ready_maps = NULL;
	t->n_ready_maps = 0;
	free(t->ready_text);
	free(t->freeze_text);
	t->ready_text = t->freeze_text = NULL;
	t->ready_len = t->text_cap = 0;
}

/* Room for extents a mapping's pages may need in the freeze, beyond the runs seen now. */
#define EXT_HEADROOM 4
/* The maps text may grow a little before the freeze reads it (then it differs anyway). */
#define TEXT_HEADROOM (64u << 10)

int capture_ready_layout(struct capture *c, struct target *t)
{
	_cleanup_free_ char *text = NULL;
	struct osm_mapping *maps = NULL;
	size_t len = 0, n = 0, jobs = 0;
	int r;

	capture_ready_free(t);
	/* Jobs for the layout read by smaps (what the freeze reads when the layout changed
	 * meanwhile), counted as below. */
	for (size_t i = 0; i < t->n_pre_maps; i++) {
		struct osm_mapping pm = t->pre_maps[i]; /* a copy: capture_runs takes no const */
		struct runs_count rc = {0};
		if (capture_runs(c, t, &pm, t->pagemap_fd, count_runs, &rc) == 0)
			jobs += rc.jobs;
	}
	t->jobs_bound = jobs + jobs / 4 + t->n_pre_maps + 256;
	jobs = 0;
	r = read_file_at(t->ref.procfd, "maps", &text, &len);
	if (r == 0)
		r = maps_parse(text, len, &maps, &n);
	if (r < 0)
		return r == -ENOENT ? -ESRCH : r;
	if (maps_carry_smaps(maps, n, t->pre_maps, t->n_pre_maps) > 0) {
		/* Changed since smaps was read: the freeze reads it the usual way. */
		maps_free(maps, n);
		return 0;
	}
	for (size_t i = 0; i < n; i++) {
		struct osm_mapping *m = &maps[i];
		struct runs_count rc = {0};

		maps_plan_dump(m, t->proc->coredump_filter, c->page_size);
		r = capture_runs(c, t, m, t->pagemap_fd, count_runs, &rc);
		if (r < 0)
			break;
		jobs += rc.jobs;
		m->present_bytes = rc.bytes;
		/* Private mappings may be pre-copy's (a read-only one too: precopy.c): its extents
		 * are the runs written since the last round, which may be more than the runs
		 * present now. */
		size_t ext = rc.runs + (!m->shared ? EXT_HEADROOM : 0);
		if (m->dump_len && ext > m->cap_ext) {
			struct osm_extent *e = realloc(m->ext, ext * sizeof(*e));
			if (!e) {
				r = -ENOMEM;
				break;
			}
			m->ext = e;
			m->cap_ext = ext;
		}
	}
	t->text_cap = len + len / 2 + TEXT_HEADROOM;
	t->ready_text = r == 0 ? malloc(t->text_cap) : NULL;
	t->freeze_text = r == 0 ? malloc(t->text_cap) : NULL;
	if (r < 0 || !t->ready_text || !t->freeze_text) {
		maps_free(maps, n);
		capture_ready_free(t);
		return r < 0 ? r : -ENOMEM;
	}
	memcpy(t->ready_text, text, len);
	t->ready_len = len;
	t->ready_maps = maps;
	t->n_ready_maps = n;
	/* Jobs: every run of every mapping (the most any method queues for them), and as many
	 * again for the pages written or faulted in meanwhile. */
	t->jobs_bound = MAX(t->jobs_bound, jobs + jobs / 4 + n + 64);
	return 0;
}

uint64_t capture_ready_whole_bytes(const struct target *t,
				   bool (*whole)(const struct target *t,
						 const struct osm_mapping *m))
{
	uint64_t n = 0;

	for (size_t i = 0; i < t->n_ready_maps; i++) {
		const struct osm_mapping *m = &t->ready_maps[i];
		if (m->dump_len && !m->shared && (!whole || whole(t, m)))
			n += m->present_bytes;
	}
	return n;
}

/* A line of /proc/PID/maps is 60-120 bytes (longer with a path); each mapping room for a few
 * extents. A large estimate only makes the reservation smaller. */
uint64_t capture_ready_estimate(const struct target *t)
{
	uint64_t text = (uint64_t)t->n_pre_maps * 160;

	return 2 * (text + text / 2 + TEXT_HEADROOM) +
	       (uint64_t)t->n_pre_maps *
		   (sizeof(struct osm_mapping) + 4 * sizeof(struct osm_extent));
}

uint64_t capture_ready_bytes(const struct target *t)
{
	uint64_t n = 2 * (uint64_t)t->text_cap;

	for (size_t i = 0; i < t->n_ready_maps; i++)
		n += sizeof(struct osm_mapping) +
		     t->ready_maps[i].cap_ext * sizeof(struct osm_extent);
	return n;
}
