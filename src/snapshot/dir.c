/* SPDX-License-Identifier: MIT */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "base/log.h"
#include "base/util.h"
#include "snapshot/dir.h"

static char *parent_of(const char *path)
{
	_cleanup_free_ char *copy = strdup(path);
	return copy ? strdup(dirname(copy)) : NULL;
}

static char *base_of(const char *path)
{
	_cleanup_free_ char *copy = strdup(path);
	return copy ? strdup(basename(copy)) : NULL;
}

int snapdir_create(const char *path, struct snapdir *ret)
{
	_cleanup_free_ char *parent = NULL, *base = NULL;
	struct snapdir d = {.dirfd = -1};
	struct stat st;

	if (!*path)
		return log_error(EINVAL, "the output directory name is empty");
	if (lstat(path, &st) == 0)
		return log_error(EEXIST, "%s already exists; osmosis writes a new directory only",
				 path);
	if (errno != ENOENT)
		return log_error(errno, "cannot use %s: %m", path);
	parent = parent_of(path);
	base = base_of(path);
	if (!parent || !base)
		return log_error(ENOMEM, "out of memory");
	if (!strcmp(base, ".") || !strcmp(base, "..") || !strcmp(base, "/"))
		return log_error(EINVAL, "%s is not a usable directory name", path);
	if (stat(parent, &st) < 0)
		return log_error(errno, "cannot use %s: %s: %m", path, parent);
	if (!S_ISDIR(st.st_mode))
		return log_error(ENOTDIR, "cannot use %s: %s is not a directory", path, parent);
	if (asprintf(&d.tmp, "%s/.%s.partial-XXXXXX", parent, base) < 0)
		return log_error(ENOMEM, "out of memory");
	if (!mkdtemp(d.tmp)) { /* mode 0700 */
		int r = log_error(errno, "cannot create a directory in %s: %m", parent);
		free(d.tmp);
		return r;
	}
	d.dirfd = open(d.tmp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	d.final = strdup(path);
	if (d.dirfd < 0 || !d.final) {
		int r = log_error(errno ? errno : ENOMEM, "cannot open %s: %m", d.tmp);
		snapdir_abort(&d);
		return r;
	}
	*ret = d;
	return 0;
}

int snapdir_commit(struct snapdir *d)
{
	_cleanup_free_ char *parent = parent_of(d->final);
	_cleanup_close_ int pfd = -1;

	if (fsync(d->dirfd) < 0)
		return log_error(errno, "cannot sync %s: %m", d->tmp);
	if (syscall(SYS_renameat2, AT_FDCWD, d->tmp, AT_FDCWD, d->final, RENAME_NOREPLACE) < 0)
		return log_error(errno, "cannot rename %s to %s: %m", d->tmp, d->final);
	if (parent && (pfd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0)
		fsync(pfd);
	close(d->dirfd);
	d->dirfd = -1;
	free(d->tmp);
	d->tmp = NULL;
	return 0;
}

void snapdir_abort(struct snapdir *d)
{
	if (d->dirfd >= 0) {
		int fd = dup(d->dirfd);
		DIR *dir = fd >= 0 ? fdopendir(fd) : NULL;
		struct dirent *de;

		if (dir) {
			while ((de = readdir(dir)))
				if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
					unlinkat(d->dirfd, de->d_name, 0);
			closedir(dir);
		} else if (fd >= 0) {
			close(fd);
		}
		close(d->dirfd);
		d->dirfd = -1;
	}
	if (d->tmp)
		rmdir(d->tmp);
	free(d->tmp);
	free(d->final);
	d->tmp = d->final = NULL;
}
