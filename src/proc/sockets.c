/* SPDX-License-Identifier: MIT */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/fs.h"
#include "base/util.h"
#include "proc/sockets.h"

static const char *tcp_state(unsigned st)
{
	static const char *const names[] = {
	    "?",	 "established", "syn-sent",   "syn-recv", "fin-wait1", "fin-wait2",
	    "time-wait", "close",	"close-wait", "last-ack", "listen",    "closing",
	};
	return st < ARRAY_SIZE(names) ? names[st] : "?";
}

static struct sock_info *add(struct sock_table *t)
{
	if (grow_array((void **)&t->v, &t->cap, t->n + 1, sizeof(*t->v)))
		return NULL;
	t->sorted = false;
	return &t->v[t->n++];
}

/* "0100007F:1F90" (IPv4) or 32 hex digits (IPv6), as the kernel prints them. */
static char *format_addr(const char *hex, bool v6)
{
	char out[INET6_ADDRSTRLEN + 8];
	unsigned port = 0;
	const char *colon = strchr(hex, ':');

	if (!colon)
		return strdup("?");
	port = (unsigned)strtoul(colon + 1, NULL, 16);
	if (!v6) {
		struct in_addr a;
		if (colon - hex != 8)
			return strdup("?");
		a.s_addr = (uint32_t)strtoul(hex, NULL, 16);
		inet_ntop(AF_INET, &a, out, sizeof(out));
		snprintf(out + strlen(out), sizeof(out) - strlen(out), ":%u", port);
	} else {
		struct in6_addr a;
		char word[9];
		if (colon - hex != 32)
			return strdup("?");
		for (int i = 0; i < 4; i++) {
			uint32_t w;
			memcpy(word, hex + i * 8, 8);
			word[8] = 0;
			w = (uint32_t)strtoul(word, NULL, 16);
			memcpy(&a.s6_addr[i * 4], &w, 4);
		}
		out[0] = '[';
		inet_ntop(AF_INET6, &a, out + 1, sizeof(out) - 1);
		snprintf(out + strlen(out), sizeof(out) - strlen(out), "]:%u", port);
	}
	return strdup(out);
}

int sock_parse_proc_net(struct sock_table *t, const char *text, const char *proto)
{
	bool v6 = strchr(proto, '6') != NULL, udp = proto[0] == 'u';
	const char *line = strchr(text, '\n'); /* skip the header */

	while (line && *++line) {
		char local[80], remote[80];
		unsigned st, tx, rx;
		unsigned long long inode;
		struct sock_info *s;

		if (sscanf(line, " %*u: %79s %79s %x %x:%x %*x:%*x %*x %*u %*u %llu", local, remote,
			   &st, &tx, &rx, &inode) == 6) {
			s = add(t);
			if (!s)
				return -ENOMEM;
			memset(s, 0, sizeof(*s));
			s->inode = inode;
			snprintf(s->proto, sizeof(s->proto), "%s", proto);
			snprintf(s->state, sizeof(s->state), "%s",
				 udp ? (st == 1 ? "connected" : "unconnected") : tcp_state(st));
			s->local = format_addr(local, v6);
			s->remote = format_addr(remote, v6);
			s->rqueue = rx;
			s->wqueue = tx;
		}
		line = strchr(line, '\n');
	}
	return 0;
}

static int load_unix_diag(struct sock_table *t)
{
	struct {
		struct nlmsghdr nlh;
		struct unix_diag_req req;
	} msg = {
	    .nlh = {.nlmsg_len = sizeof(msg),
		    .nlmsg_type = SOCK_DIAG_BY_FAMILY,
		    .nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP},
	    .req = {.sdiag_family = AF_UNIX,
		    .udiag_states = -1,
		    .udiag_show = UDIAG_SHOW_NAME | UDIAG_SHOW_PEER | UDIAG_SHOW_RQLEN},
	};
	_cleanup_close_ int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
	static uint8_t buf[65536];

	if (fd < 0)
		return -errno;
	if (send(fd, &msg, sizeof(msg), 0) < 0)
		return -errno;
	for (;;) {
		ssize_t n = recv(fd, buf, sizeof(buf), 0);
		struct nlmsghdr *h;

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return 0;
		for (h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
			struct unix_diag_msg *um;
			struct rtattr *a;
			int alen;
			struct sock_info *s;

			if (h->nlmsg_type == NLMSG_DONE)
				return 0;
			if (h->nlmsg_type == NLMSG_ERROR)
				return -EPROTO;
			if (h->nlmsg_len < NLMSG_LENGTH(sizeof(*um)))
				continue;
			um = NLMSG_DATA(h);
			s = add(t);
			if (!s)
				return -ENOMEM;
			memset(s, 0, sizeof(*s));
			s->inode = um->udiag_ino;
			snprintf(s->proto, sizeof(s->proto), "unix");
			snprintf(s->state, sizeof(s->state), "%s",
				 um->udiag_state == 1	 ? "connected"
				 : um->udiag_state == 10 ? "listen"
							 : "unconnected");
			alen = (int)(h->nlmsg_len - NLMSG_LENGTH(sizeof(*um)));
			for (a = (struct rtattr *)(um + 1); RTA_OK(a, alen);
			     a = RTA_NEXT(a, alen)) {
				size_t plen = RTA_PAYLOAD(a);
				if (a->rta_type == UNIX_DIAG_PEER && plen >= 4) {
					uint32_t peer;
					memcpy(&peer, RTA_DATA(a), 4);
					s->peer_inode = peer;
				} else if (a->rta_type == UNIX_DIAG_RQLEN &&
					   plen >= sizeof(struct unix_diag_rqlen)) {
					struct unix_diag_rqlen q;
					memcpy(&q, RTA_DATA(a), sizeof(q));
					s->rqueue = q.udiag_rqueue;
					s->wqueue = q.udiag_wqueue;
				} else if (a->rta_type == UNIX_DIAG_NAME && plen > 0 && !s->local) {
					char name[110];
					size_t l = MIN(plen, sizeof(name) - 1);
					memcpy(name, RTA_DATA(a), l);
					name[l] = 0;
					if (name[0] == 0 && l > 0)
						name[0] = '@'; /* abstract */
					s->local = strdup(name);
				}
			}
		}
	}
}

static int load_proc_unix(struct sock_table *t, int procfd)
{
	_cleanup_free_ char *text = NULL;
	const char *line;

	if (read_file_at(procfd, "net/unix", &text, NULL) < 0)
		return 0;
	for (line = strchr(text, '\n'); line && *++line; line = strchr(line, '\n')) {
		unsigned long long inode;
		unsigned st;
		char path[256] = "";
		struct sock_info *s;

		if (sscanf(line, "%*x: %*x %*x %*x %*x %x %llu %255s", &st, &inode, path) < 2)
			continue;
		s = add(t);
		if (!s)
			return -ENOMEM;
		memset(s, 0, sizeof(*s));
		s->inode = inode;
		snprintf(s->proto, sizeof(s->proto), "unix");
		snprintf(s->state, sizeof(s->state), "%s",
			 st == 3   ? "connected"
			 : st == 1 ? "unconnected"
				   : "other");
		if (path[0])
			s->local = strdup(path);
	}
	return 0;
}

int sock_table_load(struct sock_table *t, int procfd, uint64_t netns, bool own_netns)
{
	static const char *const files[] = {"tcp", "tcp6", "udp", "udp6"};
	int r = -1;

	t->netns = netns;
	if (own_netns)
		r = load_unix_diag(t);
	if (r < 0 && (r = load_proc_unix(t, procfd)) < 0)
		return r;
	for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
		_cleanup_free_ char *text = NULL;
		char path[32];
		snprintf(path, sizeof(path), "net/%s", files[i]);
		if (read_file_at(procfd, path, &text, NULL) < 0)
			continue;
		r = sock_parse_proc_net(t, text, files[i]);
		if (r < 0)
			return r;
	}
	return 0;
}

static int cmp_inode(const void *a, const void *b)
{
	const struct sock_info *x = a, *y = b;
	return (x->inode > y->inode) - (x->inode < y->inode);
}

const struct sock_info *sock_table_find(struct sock_table *t, uint64_t inode)
{
	struct sock_info key = {.inode = inode};

	if (!t->sorted) {
		if (t->n > 1)
			qsort(t->v, t->n, sizeof(*t->v), cmp_inode);
		t->sorted = true;
	}
	if (!t->n)
		return NULL;
	return bsearch(&key, t->v, t->n, sizeof(*t->v), cmp_inode);
}

void sock_table_done(struct sock_table *t)
{
	for (size_t i = 0; i < t->n; i++) {
		free(t->v[i].local);
		free(t->v[i].remote);
	}
	free(t->v);
	memset(t, 0, sizeof(*t));
}
