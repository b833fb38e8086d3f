/* SPDX-License-Identifier: MIT */
/*
 * --method auto: not a method of its own, the choice among the others, per target, from
 * estimates of what each would cost in the freeze:
 *
 *   copy       when copying the whole process costs no more than a clone (small processes),
 *              or when neither clone nor pre-copy can be used (no thread able to run an
 *              injected syscall);
 *   pre-copy   when the kernel has async write-protect and PAGEMAP_SCAN, and pre-copy's rounds
 *              bring the written set down to what the freeze copies faster than a clone is
 *              made (the rounds decide, not a guess: a writer's pace under tracking, with
 *              osmosis copying beside it, is only seen there);
 *   clone      otherwise (a large process writing much of its memory faster than it is copied).
 * The manifest records the method each target got and the figures behind the choice. The
 * engine may still change it before the freeze: a budget too small to hold copies gives clones
 * (capture.c, reserve).
 */
#include <errno.h>
#include <string.h>

#include "base/parse.h"
#include "base/timeutil.h"
#include "base/util.h"
#include "capture/capture.h"

/*
 * What each method would cost in the freeze, to compare them. Rough, from
 * docs/design/kernel-facts.md: a clone copies one page-table entry per resident private page (~95
 * ns per 4 KiB page) plus a fixed cost for the injection; the copy and pre-copy methods copy at
 * memory speed, pre-copy only what the target writes, after a scan of its page tables (~0.5 ms per
 * GiB).
 */
#define FORK_NS_PER_PG	95ull
#define INJECT_NS	(500ull * 1000ull)
#define SCAN_NS_PER_GIB (500ull * 1000ull)
#define COPY_BPS_GUESS	(8ull * 1000000000ull) /* two copy threads: design/kernel-facts.md */
/* Below this, a process of a tracked shared object is still copied whole in the freeze. */
#define AUTO_TRACK_MIN (1ull << 20)

static uint64_t copy_ns(uint64_t bytes, uint64_t bps)
{
	return bytes * 1000000000ull / MAX(bps, (uint64_t)1);
}

uint64_t capture_own_bytes(const struct target *t)
{
	return t->planned_bytes - MIN(t->planned_bytes, shared_planned_bytes(t));
}

static uint64_t estimate_copy_ns(const struct target *t)
{
	return copy_ns(capture_own_bytes(t), COPY_BPS_GUESS);
}

static uint64_t estimate_clone_ns(const struct target *t, size_t page_size)
{
	uint64_t pages = 0, copied = 0;

	for (size_t i = 0; i < t->n_pre_maps; i++) {
		const struct osm_mapping *m = &t->pre_maps[i];
		if (m->shared_object)
			continue;
		if (clone_copies_in_freeze(m))
			copied += capture_planned_size(m);
		else
			pages += m->rss_bytes / page_size;
	}
	return pages * FORK_NS_PER_PG + INJECT_NS + copy_ns(copied, COPY_BPS_GUESS);
}

static uint64_t estimate_precopy_ns(const struct target *t, uint64_t written, uint64_t bps)
{
	uint64_t tracked = precopy_tracked_bytes(t);
	uint64_t rest = precopy_untracked_bytes(t);

	rest -= MIN(rest, shared_planned_bytes(t));

	return copy_ns(written + rest, bps) + tracked / (1ull << 30) * SCAN_NS_PER_GIB +
	       SCAN_NS_PER_GIB / 2;
}

/* First look (no injection): copy when it is cheaper than a clone (small processes); otherwise
 * start tracking writes, and pre-copy's rounds decide (auto_review). */
static int choose_auto(struct capture *c, struct target *t)
{
	uint64_t cp = estimate_copy_ns(t), cl = estimate_clone_ns(t, c->page_size);
	const char *why;
	char a[32];
	bool ok;
	int r;

	/* A process whose shared object is tracked takes the injection of a userfaultfd anyway:
	 * tracking its own memory through it costs nothing more before the freeze, and the freeze
	 * then copies what it wrote, not all of it. Many small processes of one service
	 * (PostgreSQL's backends) otherwise add their copies up in the pause. */
	bool tracked_anyway = shared_tracks(c, t) && capture_own_bytes(t) >= AUTO_TRACK_MIN;

	if (cp <= cl && !tracked_anyway) {
		capture_set_method(t, &capture_copy,
				   "auto: copying its %s in the freeze (~%.1f ms) costs no more "
				   "than a clone (~%.1f ms)",
				   format_bytes(capture_own_bytes(t), a, sizeof(a)),
				   (double)cp / 1e6, (double)cl / 1e6);
		return 0;
	}
	r = capture_injectable(c, t, &ok);
	if (r < 0 || !ok)
		return r;
	if (!tracker_supported(&why)) {
		capture_set_method(t, &capture_clone,
				   "auto: %s; a clone (~%.1f ms) costs less than copying "
				   "its %s (~%.1f ms)",
				   why, (double)cl / 1e6,
				   format_bytes(t->planned_bytes, a, sizeof(a)), (double)cp / 1e6);
		return 0;
	}
	/* Tentative: auto_review keeps it or hands the target to the clone. */
	capture_set_method(t, &capture_precopy, "auto: pre-copy tried first");
	r = precopy_begin(c, t);
	if (r == -EINTR || r == -ETIMEDOUT)
		return r;
	if (r < 0) {
		capture_set_method(t, &capture_clone,
				   "auto: write tracking could not start (%s), so a clone",
				   strerror(-r));
		return 0;
	}
	return precopy_open_stage(c, t);
}

/* After pre-copy's rounds: keep pre-copy or hand t to a clone, the reason recorded either way. */
static void auto_review(struct capture *c, struct target *t)
{
	uint64_t freeze_bytes, copy_bps;

	if (!precopy_last_round(t, &freeze_bytes, &copy_bps))
		return;
	/* Round 0 copied beside the running target; the freeze copies with the targets' CPUs
	 * free, at least as fast as this machine's usual figure. */
	uint64_t pre_ns = estimate_precopy_ns(t, freeze_bytes, MAX(copy_bps, COPY_BPS_GUESS));
	uint64_t clone_ns = estimate_clone_ns(t, c->page_size);
	bool keep = pre_ns <= clone_ns;
	char a[32];

	capture_set_method(t, keep ? &capture_precopy : &capture_clone,
			   "auto: pre-copy's last round %s %s written (~%.1f ms to copy in the "
			   "freeze, a clone ~%.1f ms)%s",
			   keep ? "found" : "still found", format_bytes(freeze_bytes, a, sizeof(a)),
			   (double)pre_ns / 1e6, (double)clone_ns / 1e6,
			   keep ? "" : ", so a clone");
}

const struct capture_ops capture_auto = {
    .id = METHOD_AUTO,
    .help = "(default) chosen per process from its size and write rate",
    .choose = choose_auto,
    .review = auto_review,
};
