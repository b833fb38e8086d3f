/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "base/fs.h"
#include "base/util.h"

int read_file_at(int dirfd, const char *path, char **ret, size_t *ret_len)
{
	_cleanup_close_ int fd = -1;
	_cleanup_free_ char *buf = NULL;
	size_t len = 0, cap = 0;

	fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return -errno;
	for (;;) {
		ssize_t n;

		if (len + 1 >= cap) {
			size_t ncap = cap ? cap * 2 : 4096;
			freeze_allocs_note();
			char *p = realloc(buf, ncap);
			if (!p)
				return -ENOMEM;
			buf = p;
			cap = ncap;
		}
		n = read(fd, buf + len, cap - len - 1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			break;
		len += n;
	}
	if (!buf && (freeze_allocs_note(), !(buf = malloc(1))))
		return -ENOMEM;
	buf[len] = 0;
	*ret = TAKE_PTR(buf);
	if (ret_len)
		*ret_len = len;
	return 0;
}

int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		p += n;
		len -= n;
	}
	return 0;
}

/* At most this much per call: the kernel copies a write into the page cache without giving
 * the CPU up on a kernel built without preemption, and a snapshotted service waiting for that
 * CPU would see the whole copy as a stall (gigabytes of a core in one call: hundreds of ms). */
#define WRITE_MAX (1u << 20)

int pwrite_all(int fd, const void *buf, size_t len, off_t off)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = pwrite(fd, p, MIN(len, (size_t)WRITE_MAX), off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		p += n;
		len -= n;
		off += n;
	}
	return 0;
}

int outfile_open(int dirfd, const char *final, struct outfile *ret)
{
	struct outfile of = {.dirfd = dirfd, .fd = -1};

	if (asprintf(&of.tmp, ".%s.tmp", final) < 0) {
		of.tmp = NULL;
		return -ENOMEM;
	}
	of.final = strdup(final);
	if (!of.final) {
		free(of.tmp);
		return -ENOMEM;
	}
	of.fd = openat(dirfd, of.tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (of.fd < 0) {
		int r = -errno;
		free(of.tmp);
		free(of.final);
		return r;
	}
	*ret = of;
	return 0;
}

int outfile_commit(struct outfile *of)
{
	int r = 0;

	if (fsync(of->fd) < 0)
		r = -errno;
	if (close(of->fd) < 0 && r == 0)
		r = -errno;
	of->fd = -1;
	if (r == 0 &&
	    syscall(SYS_renameat2, of->dirfd, of->tmp, of->dirfd, of->final, RENAME_NOREPLACE) < 0)
		r = -errno;
	if (r < 0)
		unlinkat(of->dirfd, of->tmp, 0);
	free(of->tmp);
	free(of->final);
	of->tmp = of->final = NULL;
	return r;
}

void outfile_abort(struct outfile *of)
{
	if (of->fd >= 0)
		close(of->fd);
	of->fd = -1;
	if (of->tmp)
		unlinkat(of->dirfd, of->tmp, 0);
	free(of->tmp);
	free(of->final);
	of->tmp = of->final = NULL;
}

static const char *file_kind(mode_t mode)
{
	switch (mode & S_IFMT) {
	case S_IFIFO:
		return "a FIFO";
	case S_IFSOCK:
		return "a socket";
	case S_IFCHR:
		return "a character device";
	case S_IFBLK:
		return "a block device";
	case S_IFDIR:
		return "a directory";
	case S_IFLNK:
		return "a symbolic link";
	default:
		return "not a regular file";
	}
}

int open_regular_file(int dirfd, const char *path, int flags, const char **ret_kind)
{
	_cleanup_close_ int pfd = -1;
	struct stat st, st2;
	char self[64];
	int fd;

	*ret_kind = NULL;
	pfd = openat(dirfd, path, O_PATH | O_CLOEXEC | (flags & O_NOFOLLOW));
	if (pfd < 0)
		return -errno;
	if (fstat(pfd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode)) {
		*ret_kind = file_kind(st.st_mode);
		return -EINVAL;
	}
	/* Reopening the O_PATH descriptor opens the very inode just checked. Without /proc, the
	 * path is opened again: the checks below still refuse anything but that same file. */
	snprintf(self, sizeof(self), "/proc/self/fd/%d", pfd);
	fd = open(self, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT)
		fd = openat(dirfd, path,
			    O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC | (flags & O_NOFOLLOW));
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st2) < 0 || !S_ISREG(st2.st_mode) || st2.st_dev != st.st_dev ||
	    st2.st_ino != st.st_ino) {
		close(fd);
		*ret_kind = "a file that changed while it was opened";
		return -EINVAL;
	}
	return fd;
}
