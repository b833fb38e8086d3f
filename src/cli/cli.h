/* SPDX-License-Identifier: MIT */
/* The subcommands. Each is cmd_<name>(argc, argv) with argv[0] the command's name; returns the
 * process exit code: 0 success, 1 failure, 2 bad usage. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#define EXIT_USAGE 2

int cmd_snap(int argc, char **argv);
int cmd_show(int argc, char **argv);
int cmd_analyze(int argc, char **argv);
int cmd_patterns(int argc, char **argv);
int cmd_watch(int argc, char **argv);
int cmd_diff(int argc, char **argv);
int cmd_list(int argc, char **argv);
int cmd_core(int argc, char **argv);

/* Parses --json and --help for diff and list: -1 when the positional arguments start at optind,
 * else the exit code (0 after --help, EXIT_USAGE after a bad option, said in one line). */
int cli_parse_json_help(int argc, char **argv, const char *usage, bool *json);

struct pattern;
struct threshold_value;
/* Analyze a snapshot directory and print the report (used by analyze and snap --analyze). */
int analyze_dir(const char *dir, bool json, const struct pattern *const *only, size_t n_only,
		const struct threshold_value *th, size_t n_th);
