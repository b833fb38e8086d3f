/* SPDX-License-Identifier: MIT */
/* The options of the commands that take only --json and --help (diff, list). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>

#include "base/log.h"
#include "cli/cli.h"

int cli_parse_json_help(int argc, char **argv, const char *usage, bool *json)
{
	static const struct option longopts[] = {
	    {"json", no_argument, NULL, 'j'},
	    {"help", no_argument, NULL, 'h'},
	    {},
	};
	int c;

	*json = false;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
		switch (c) {
		case 'j':
			*json = true;
			break;
		case 'h':
			fputs(usage, stdout);
			return 0;
		default:
			log_error(EINVAL, "unknown option '%s' (see osmosis %s --help)",
				  argv[optind - 1], argv[0]);
			return EXIT_USAGE;
		}
	}
	return -1;
}
