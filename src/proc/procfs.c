/* SPDX-License-Identifier: MIT */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "base/fs.h"
#include "base/parse.h"
#include "base/util.h"
#include "proc/procfs.h"

int proc_parse_stat(const char *buf, struct proc_stat *ret)
{
	struct proc_stat st = {0};
	const char *open, *close_paren, *p;
	unsigned long long f[52];
	int n = 0;
	size_t len;

	/* "pid (comm) state ppid ...": comm may hold spaces and parentheses, so take the last ')'.
	 */
	open = strchr(buf, '(');
	close_paren = strrchr(buf, ')');
	if (!open || !close_paren || close_paren < open)
		return -EINVAL;
	len = MIN((size_t)(close_paren - open - 1), sizeof(st.comm) - 1);
	memcpy(st.comm, open + 1, len);
	st.comm[len] = 0;
	p = close_paren + 1;
	while (*p == ' ')
		p++;
	if (!*p)
		return -EINVAL;
	st.state = *p++;
	/* Fields from ppid (4) onward; f[0] is field 4. */
	while (*p && n < (int)ARRAY_SIZE(f)) {
		char *end;
		unsigned long long v;

		while (*p == ' ')
			p++;
		if (!*p || *p == '\n')
			break;
		/* Unsigned fields reach 2^64-1 (rsslim), signed ones go negative (nice): strtoull
		 * takes both, wrapping negatives, which the fields we use never are. */
		errno = 0;
		v = strtoull(p, &end, 10);
		if (end == p || (errno && errno != ERANGE))
			return -EINVAL;
		f[n++] = v;
		p = end;
	}
	if (n < 36)
		return -EINVAL;
	st.ppid = (pid_t)f[0];
	st.pgrp = (pid_t)f[1];
	st.session = (pid_t)f[2];
	st.flags = (unsigned)f[5];
	st.utime = f[10];
	st.stime = f[11];
	st.starttime = f[18];
	st.faults = f[6] + f[8];
	st.cfaults = f[7] + f[9];
	st.processor = (int)f[35];
	st.exit_signal = (int)f[34];
	*ret = st;
	return 0;
}

int proc_read_stat(int dirfd, const char *path, struct proc_stat *ret)
{
	/* Into the stack (a stat line is a few hundred bytes): this runs inside the freeze too
	 * (a tree's growth, the survivors' check), which allocates nothing. */
	_cleanup_close_ int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	char buf[4096];
	ssize_t n;

	if (fd < 0)
		return errno == ENOENT ? -ESRCH : -errno;
	do
		n = read(fd, buf, sizeof(buf) - 1);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == ESRCH ? -ESRCH : -errno;
	if ((size_t)n == sizeof(buf) - 1)
		return -EINVAL; /* no stat line is this long */
	buf[n] = 0;
	return proc_parse_stat(buf, ret);
}

static int parse_id_line(const char *buf, const char *key, unsigned out[2])
{
	const char *p = strstr(buf, key);
	unsigned a, b;

	if (!p)
		return -EINVAL;
	if (sscanf(p + strlen(key), " %u %u", &a, &b) != 2)
		return -EINVAL;
	out[0] = a;
	out[1] = b;
	return 0;
}

int proc_parse_status_ids(const char *buf, struct proc_ids *ret)
{
	unsigned u[2], g[2];

	if (parse_id_line(buf, "\nUid:", u) < 0 || parse_id_line(buf, "\nGid:", g) < 0)
		return -EINVAL;
	*ret = (struct proc_ids){.ruid = u[0], .euid = u[1], .rgid = g[0], .egid = g[1]};
	return 0;
}

int proc_read_status_ids(int procfd, struct proc_ids *ret)
{
	_cleanup_free_ char *buf = NULL;
	int r = read_file_at(procfd, "status", &buf, NULL);

	if (r < 0)
		return r == -ENOENT ? -ESRCH : r;
	return proc_parse_status_ids(buf, ret);
}

static int cmp_pid(const void *a, const void *b)
{
	pid_t x = *(const pid_t *)a, y = *(const pid_t *)b;
	return (x > y) - (x < y);
}

int proc_list_tasks(int procfd, pid_t **ret, size_t *ret_n)
{
	_cleanup_closedir_ DIR *d = NULL;
	_cleanup_free_ pid_t *tids = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	int fd;

	fd = openat(procfd, "task", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? -ESRCH : -errno;
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -errno;
	}
	while ((de = readdir(d))) {
		pid_t tid;

		if (parse_pid(de->d_name, &tid) < 0)
			continue;
		if (grow_array((void **)&tids, &cap, n + 1, sizeof(*tids)))
			return -ENOMEM;
		tids[n++] = tid;
	}
	if (n > 1)
		qsort(tids, n, sizeof(*tids), cmp_pid);
	*ret = TAKE_PTR(tids);
	*ret_n = n;
	return 0;
}

int proc_list_tasks_into(int procfd, pid_t *buf, size_t cap, size_t *ret_n)
{
	_cleanup_close_ int fd = openat(procfd, "task", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	char ents[8192] __attribute__((aligned(8)));
	size_t n = 0;

	if (fd < 0)
		return errno == ENOENT ? -ESRCH : -errno;
	for (;;) {
		long got = syscall(SYS_getdents64, fd, ents, sizeof(ents));
		if (got < 0)
			return -errno;
		if (got == 0)
			break;
		for (long off = 0; off < got;) {
			const struct dirent64 *de = (const struct dirent64 *)(ents + off);
			pid_t tid;
			if (de->d_reclen == 0 || off + de->d_reclen > got)
				return -EIO;
			off += de->d_reclen;
			if (parse_pid(de->d_name, &tid) < 0)
				continue;
			if (n >= cap)
				return -ENOBUFS;
			buf[n++] = tid;
		}
	}
	if (n > 1)
		qsort(buf, n, sizeof(*buf), cmp_pid);
	*ret_n = n;
	return 0;
}

int proc_read_cmdline(int procfd, char **ret)
{
	char *buf = NULL;
	size_t len;
	int r = read_file_at(procfd, "cmdline", &buf, &len);

	if (r < 0)
		return r;
	while (len > 0 && buf[len - 1] == 0)
		len--;
	for (size_t i = 0; i < len; i++)
		if (buf[i] == 0)
			buf[i] = ' ';
	buf[len] = 0;
	*ret = buf;
	return 0;
}

int proc_read_exe(int procfd, char **ret)
{
	char buf[4096];
	ssize_t n = readlinkat(procfd, "exe", buf, sizeof(buf) - 1);

	if (n < 0)
		return -errno;
	buf[n] = 0;
	*ret = strdup(buf);
	return *ret ? 0 : -ENOMEM;
}

int proc_read_coredump_filter(int procfd, unsigned *ret)
{
	_cleanup_free_ char *buf = NULL;
	uint64_t v;
	int r = read_file_at(procfd, "coredump_filter", &buf, NULL);

	if (r < 0)
		return r;
	buf[strcspn(buf, "\n")] = 0;
	r = parse_u64(buf, 16, &v);
	if (r < 0)
		return r;
	*ret = (unsigned)v;
	return 0;
}

bool proc_is_dumpable(int procfd, uid_t euid)
{
	struct stat st;

	/* The kernel gives the /proc/PID files of a non-dumpable task to root (task_dump_owner). */
	if (fstatat(procfd, "status", &st, 0) < 0)
		return false;
	return st.st_uid == euid;
}
