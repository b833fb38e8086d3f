/* SPDX-License-Identifier: MIT */
/*
 * osmosis: consistent snapshots of live processes with a brief freeze, and their diagnosis.
 * This file holds the command table and global options; each command lives in src/cli/.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "cli/cli.h"

struct command {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *summary;
};

static const struct command commands[] = {
    {"snap", cmd_snap, "freeze processes at one instant and write their cores and a manifest"},
    {"show", cmd_show, "show what a snapshot holds: system, processes, threads, descriptors"},
    {"analyze", cmd_analyze, "diagnose a snapshot: stacks, locks, wait graph, patterns"},
    {"patterns", cmd_patterns, "list the analysis patterns and their thresholds"},
    {"watch", cmd_watch, "watch processes and snapshot them when a condition holds"},
    {"diff", cmd_diff, "what changed between two snapshots: stuck threads, growth, CPU"},
    {"list", cmd_list, "the snapshots under a directory: when, trigger, processes, finding"},
    {"core", cmd_core, "write the plain ELF core of one process of a snapshot (from core.PID.zst)"},
};

static void usage(FILE *f)
{
	fprintf(f, "Usage: osmosis [--version] [--help] COMMAND [ARGS]\n\n"
		   "Optimally Saved Memory Of System Internal State: consistent snapshots of live\n"
		   "processes with a freeze of milliseconds, written as standard ELF cores.\n\n"
		   "Commands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
	fprintf(f, "\n'osmosis COMMAND --help' describes a command; see also osmosis(1).\n");
}

/* Levenshtein distance, for "did you mean". */
static size_t edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), prev[64], cur[64];

	if (la >= 63 || lb >= 63)
		return 99;
	for (size_t j = 0; j <= lb; j++)
		prev[j] = j;
	for (size_t i = 1; i <= la; i++) {
		cur[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
			size_t del = prev[j] + 1, ins = cur[j - 1] + 1;
			cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
		}
		memcpy(prev, cur, sizeof(size_t) * (lb + 1));
	}
	return prev[lb];
}

int main(int argc, char **argv)
{
	const char *name;

	if (argc < 2) {
		usage(stderr);
		return EXIT_USAGE;
	}
	name = argv[1];
	if (!strcmp(name, "--help") || !strcmp(name, "-h") || !strcmp(name, "help")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(name, "--version") || !strcmp(name, "version")) {
		printf("osmosis %s\n", OSMOSIS_VERSION);
		return 0;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(name, commands[i].name))
			return commands[i].fn(argc - 1, argv + 1);

	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (edit_distance(name, commands[i].name) <= 2) {
			log_error(EINVAL, "'%s' is not an osmosis command; did you mean '%s'?",
				  name, commands[i].name);
			return EXIT_USAGE;
		}
	log_error(EINVAL, "'%s' is not an osmosis command (see osmosis --help)", name);
	return EXIT_USAGE;
}
