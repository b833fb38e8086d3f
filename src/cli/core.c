/* SPDX-License-Identifier: MIT */
/*
 * osmosis core DIR PID [-o FILE]: the plain ELF core of one process of a snapshot, for gdb,
 * lldb and eu-stack. A compressed core (core.PID.zst) is decompressed chunk by chunk (memory:
 * two chunks and the index), zero chunks and zero pages left as holes; a plain core is copied.
 * FILE (default ./core.PID) is created new (0600, never over an existing file), written under a
 * temporary name, synced and renamed into place: a failure leaves nothing under FILE.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/fs.h"
#include "base/log.h"
#include "base/parse.h"
#include "base/util.h"
#include "cli/cli.h"
#include "core/zcore.h"
#include "snapshot/manifest.h"

static const char core_usage[] =
    "Usage: osmosis core DIR PID [-o FILE]\n"
    "\n"
    "Write the plain ELF core of process PID of snapshot DIR to FILE (default ./core.PID),\n"
    "decompressing a compressed core (core.PID.zst). gdb, lldb and eu-stack open the result.\n"
    "FILE must not exist.\n";

/* A plain core: copied as it is, holes kept (SEEK_DATA/SEEK_HOLE). */
static int copy_plain(int in, int out)
{
	static char buf[1 << 20];
	off_t end = lseek(in, 0, SEEK_END), data = 0;

	if (end < 0)
		return -errno;
	while ((data = lseek(in, data, SEEK_DATA)) >= 0 && data < end) {
		off_t hole = lseek(in, data, SEEK_HOLE);
		if (hole < 0)
			hole = end;
		while (data < hole) {
			size_t n = (size_t)MIN((off_t)sizeof(buf), hole - data);
			ssize_t got = pread(in, buf, n, data);
			if (got <= 0)
				return got < 0 ? -errno : -EIO;
			int r = pwrite_all(out, buf, (size_t)got, data);
			if (r < 0)
				return r;
			data += got;
		}
	}
	return ftruncate(out, end) < 0 ? -errno : 0;
}

int cmd_core(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"output", required_argument, NULL, 'o'},
	    {"help", no_argument, NULL, 'h'},
	    {},
	};
	const char *output = NULL;
	char defout[64], err[256], name[64];
	struct osm_snapshot *s = NULL;
	struct outfile of = {.fd = -1};
	struct zcore *z = NULL;
	int c, dfd = -1, in = -1, outdir = -1, r, ret = 1;
	pid_t pid;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":o:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'o':
			output = optarg;
			break;
		case 'h':
			fputs(core_usage, stdout);
			return 0;
		case ':':
			log_error(EINVAL, "option '%s' needs an argument (see osmosis core --help)",
				  argv[optind - 1]);
			return EXIT_USAGE;
		default:
			log_error(EINVAL, "unknown option '%s' (see osmosis core --help)",
				  argv[optind - 1]);
			return EXIT_USAGE;
		}
	}
	if (optind != argc - 2) {
		log_error(EINVAL, "give a snapshot directory and a PID (see osmosis core --help)");
		return EXIT_USAGE;
	}
	if (parse_pid(argv[optind + 1], &pid) < 0) {
		log_error(EINVAL, "'%s' is not a process id", argv[optind + 1]);
		return EXIT_USAGE;
	}
	dfd = open(argv[optind], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		log_error(errno, "cannot open %s: %m", argv[optind]);
		goto out;
	}
	/* The manifest names the core; without one, the usual names are tried. */
	name[0] = 0;
	if (manifest_load(dfd, &s, err, sizeof(err)) == 0) {
		for (size_t i = 0; i < s->n_procs; i++)
			if (s->procs[i]->pid == pid && s->procs[i]->core_name[0] &&
			    !strchr(s->procs[i]->core_name, '/'))
				snprintf(name, sizeof(name), "%s", s->procs[i]->core_name);
	}
	if (!name[0]) {
		snprintf(name, sizeof(name), "core.%d%s", pid, ZCORE_SUFFIX);
		if (faccessat(dfd, name, F_OK, AT_SYMLINK_NOFOLLOW) < 0)
			snprintf(name, sizeof(name), "core.%d", pid);
	}
	in = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (in < 0) {
		log_error(errno, "no core of pid %d in %s (%s): %m", pid, argv[optind], name);
		goto out;
	}
	if (zcore_name(name)) {
		r = zcore_open(in, &z, err, sizeof(err));
		if (r < 0) {
			log_error(r, "%s/%s: %s", argv[optind], name, err);
			goto out;
		}
		if (err[0])
			log_warn("%s/%s: %s", argv[optind], name, err);
	}
	if (!output) {
		snprintf(defout, sizeof(defout), "core.%d", pid);
		output = defout;
	}
	{
		_cleanup_free_ char *d = strdup(output), *b = strdup(output);
		if (!d || !b) {
			log_error(ENOMEM, "out of memory");
			goto out;
		}
		outdir = open(dirname(d), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (outdir < 0) {
			log_error(errno, "cannot open the directory of %s: %m", output);
			goto out;
		}
		if (faccessat(outdir, basename(b), F_OK, AT_SYMLINK_NOFOLLOW) == 0) {
			log_error(EEXIST, "%s exists: osmosis core writes only a new file", output);
			goto out;
		}
		r = outfile_open(outdir, basename(b), &of);
		if (r < 0) {
			log_error(r, "cannot create %s: %m", output);
			goto out;
		}
	}
	r = z ? zcore_extract(z, of.fd) : copy_plain(in, of.fd);
	if (r == -EBADMSG && z) {
		/* Truncated or damaged: what could be read is written; the rest is missing. */
		log_warn("%s/%s: %s; the core written is incomplete", argv[optind], name,
			 zcore_problem(z) ? zcore_problem(z) : "a frame is damaged");
		r = 0;
	}
	if (r < 0) {
		outfile_abort(&of);
		log_error(r, "cannot write %s: %m", output);
		goto out;
	}
	r = outfile_commit(&of);
	if (r < 0) {
		log_error(r, "cannot write %s: %m", output);
		goto out;
	}
	ret = 0;
out:
	if (of.fd >= 0)
		outfile_abort(&of);
	zcore_close(z);
	snapshot_free(s);
	if (in >= 0)
		close(in);
	if (dfd >= 0)
		close(dfd);
	if (outdir >= 0)
		close(outdir);
	return ret;
}
