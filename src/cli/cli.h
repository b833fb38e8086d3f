/* SPDX-License-Identifier: MIT */
/* The subcommands. Each is cmd_<name>(argc, argv) with argv[0] the command's name; returns the
 * process exit code: 0 success, 1 failure, 2 bad usage. */
#pragma once

#define EXIT_USAGE 2

int cmd_snap(int argc, char **argv);
int cmd_show(int argc, char **argv);
