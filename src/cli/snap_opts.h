/* SPDX-License-Identifier: MIT */
/*
 * The options that say how a snapshot is taken, shared by osmosis snap and osmosis watch (which
 * passes them on to the osmosis snap it runs): one table of names, one parser with its checks and
 * messages, and the way back to arguments. Each command adds snap_longopts to its own table.
 */
#pragma once

#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "snapshot/take.h"

enum {
	SNAP_OPT_METHOD = 'm',
	SNAP_OPT_STATE_ONLY = 's',
	SNAP_OPT_MAX_PAUSE = 0x400,
	SNAP_OPT_SAMPLE,
	SNAP_OPT_MAX_MEMORY,
	SNAP_OPT_COMPRESS,
};

/* The long options, without a terminating entry. */
extern const struct option snap_longopts[];
extern const size_t snap_longopts_count;
/* The --help lines of these options (the methods from the capture registry). */
void snap_options_help(FILE *out);

/* Defaults: --method auto, --max-pause 10, --sample 0.25, zstd's default level. */
void snap_options_init(struct snapshot_options *o);
/* Apply option c (a value of snap_longopts) with its argument. Returns 1 when c is one of
 * these options, 0 when it is not, or -EINVAL (logged) for a bad argument. */
int snap_option(struct snapshot_options *o, int c, const char *arg);

/* The options that differ from the defaults as osmosis snap arguments, appended to argv at
 * *argc (at most SNAP_ARGV_MAX entries; the strings live in buf). */
#define SNAP_ARGV_MAX 10
struct snap_argv_buf {
	char s[4][32];
};
void snap_options_argv(const struct snapshot_options *o, char **argv, size_t *argc,
		       struct snap_argv_buf *buf);
