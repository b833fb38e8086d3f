/* SPDX-License-Identifier: MIT */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/fs.h"
#include "base/parse.h"
#include "base/util.h"
#include "proc/fds.h"
#include "proc/locks.h"

static uint64_t bracket_inode(const char *s)
{
	const char *b = strchr(s, '[');
	return b ? strtoull(b + 1, NULL, 10) : 0;
}

void fd_classify(const char *link, struct osm_fd *f)
{
	static const struct {
		const char *prefix, *type;
	} anon[] = {
	    {"anon_inode:[eventfd]", "eventfd"},
	    {"anon_inode:[eventpoll]", "epoll"},
	    {"anon_inode:[timerfd]", "timerfd"},
	    {"anon_inode:[signalfd]", "signalfd"},
	    {"anon_inode:inotify", "inotify"},
	    {"anon_inode:[pidfd]", "pidfd"},
	    {"anon_inode:", "anon"},
	};
	const char *type = "other";

	if (!strncmp(link, "pipe:[", 6)) {
		type = "pipe";
		f->inode = bracket_inode(link);
	} else if (!strncmp(link, "socket:[", 8)) {
		type = "socket";
		f->inode = bracket_inode(link);
	} else if (!strncmp(link, "/memfd:", 7)) {
		type = "memfd";
	} else if (!strncmp(link, "pidfd:", 6)) {
		type = "pidfd";
	} else if (link[0] == '/') {
		type = "file";
	} else {
		for (size_t i = 0; i < ARRAY_SIZE(anon); i++)
			if (!strncmp(link, anon[i].prefix, strlen(anon[i].prefix))) {
				type = anon[i].type;
				break;
			}
	}
	snprintf(f->type, sizeof(f->type), "%s", type);
}

static void parse_fdinfo(const char *info, struct osm_fd *f)
{
	const char *p;
	size_t cap = 0;

	if ((p = strstr(info, "pos:")))
		f->pos = strtoull(p + 4, NULL, 10);
	if ((p = strstr(info, "flags:")))
		f->flags = (uint32_t)strtoul(p + 6, NULL, 8);
	if ((p = strstr(info, "eventfd-count:")))
		f->eventfd_count = (int64_t)strtoull(p + 14, NULL, 16);
	for (p = info; (p = strstr(p, "tfd:")); p += 4) {
		int tfd = (int)strtol(p + 4, NULL, 10);
		if (grow_array((void **)&f->epoll_tfds, &cap, f->n_epoll_tfds + 1, sizeof(int)))
			return;
		f->epoll_tfds[f->n_epoll_tfds++] = tfd;
	}
}

static int cmp_fd(const void *a, const void *b)
{
	const struct osm_fd *x = a, *y = b;
	return (x->fd > y->fd) - (x->fd < y->fd);
}

int proc_load_fds(const struct pidref *ref, struct osm_process *p, struct sock_table *socks)
{
	_cleanup_closedir_ DIR *d = NULL;
	struct dirent *de;
	size_t cap = 0;
	int fd;

	fd = openat(ref->procfd, "fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || !(d = fdopendir(fd))) {
		p->fd_error = errno;
		if (fd >= 0)
			close(fd);
		return 0;
	}
	while ((de = readdir(d))) {
		char path[64], link[4096];
		struct osm_fd *f;
		int64_t n;
		ssize_t l;

		if (parse_i64(de->d_name, 10, &n) < 0 || n < 0 || n > INT32_MAX)
			continue;
		snprintf(path, sizeof(path), "fd/%d", (int)n);
		l = readlinkat(ref->procfd, path, link, sizeof(link) - 1);
		if (l < 0)
			continue; /* closed meanwhile */
		link[l] = 0;
		if (grow_array((void **)&p->fds, &cap, p->n_fds + 1, sizeof(*p->fds)))
			return -ENOMEM;
		f = &p->fds[p->n_fds++];
		memset(f, 0, sizeof(*f));
		f->fd = (int)n;
		f->target = strdup(link);
		fd_classify(link, f);
		if (!strcmp(f->type, "file")) {
			struct stat st;
			if (fstatat(ref->procfd, path, &st, 0) == 0) {
				f->inode = st.st_ino;
				if (S_ISDIR(st.st_mode))
					snprintf(f->type, sizeof(f->type), "dir");
				else if (S_ISCHR(st.st_mode))
					snprintf(f->type, sizeof(f->type), "char");
				else if (S_ISBLK(st.st_mode))
					snprintf(f->type, sizeof(f->type), "block");
				else if (S_ISFIFO(st.st_mode))
					snprintf(f->type, sizeof(f->type), "pipe");
			}
		}
		_cleanup_free_ char *info = NULL;
		snprintf(path, sizeof(path), "fdinfo/%d", (int)n);
		if (read_file_at(ref->procfd, path, &info, NULL) == 0) {
			parse_fdinfo(info, f);
			if (proc_fd_locks_parse(info, &f->locks, &f->n_locks) < 0)
				return -ENOMEM;
		}
		if (!strcmp(f->type, "socket") && socks) {
			const struct sock_info *s = sock_table_find(socks, f->inode);
			if (s) {
				snprintf(f->proto, sizeof(f->proto), "%s", s->proto);
				snprintf(f->sock_state, sizeof(f->sock_state), "%s", s->state);
				f->local = s->local ? strdup(s->local) : NULL;
				f->remote = s->remote ? strdup(s->remote) : NULL;
				f->peer_inode = s->peer_inode;
				f->rqueue = s->rqueue;
				f->wqueue = s->wqueue;
			} else {
				snprintf(f->proto, sizeof(f->proto), "other");
			}
		}
	}
	if (p->n_fds > 1)
		qsort(p->fds, p->n_fds, sizeof(*p->fds), cmp_fd);
	return 0;
}
