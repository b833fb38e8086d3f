/* SPDX-License-Identifier: MIT */
/*
 * The copy method: inside the freeze, copy every byte the core will hold into the arena reserved
 * before the freeze, then let the targets go. The freeze costs one pass over the dumped memory at
 * memory-copy speed, split across worker threads (the targets' CPUs are idle meanwhile). It
 * needs nothing from the target but its memory: no injection, no private state; it is what every
 * other method falls back to (a process under seccomp, a failed clone, a tree's child that
 * joined during the freeze). The planning it uses is every method's (plan.c).
 */
#include "capture/capture.h"

static int copy_choose(struct capture *c, struct target *t)
{
	(void)c;
	capture_set_method(t, &capture_copy, "requested with --method copy");
	return 0;
}

static uint64_t copy_arena_bytes(const struct capture *c, const struct target *t)
{
	(void)c;
	return t->planned_bytes;
}

static uint64_t copy_freeze_bytes(const struct capture *c, const struct target *t,
				  uint64_t *ret_bounded)
{
	(void)c;
	*ret_bounded = 0;
	return capture_ready_whole_bytes(t, NULL);
}

static int copy_frozen(struct capture *c, struct target *t)
{
	return capture_copy_all(c, t, false);
}

const struct capture_ops capture_copy = {
    .id = METHOD_COPY,
    .help = "copied into a reserved buffer during the pause",
    .choose = copy_choose,
    .arena_bytes = copy_arena_bytes,
    .freeze_bytes = copy_freeze_bytes,
    .frozen = copy_frozen,
};
