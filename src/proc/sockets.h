/* SPDX-License-Identifier: MIT */
/*
 * The machine's sockets by inode, so that a descriptor "socket:[N]" can say what it is: unix
 * sockets with their peer (NETLINK_SOCK_DIAG, UDIAG_SHOW_PEER: /proc/net/unix has no peer column)
 * and queue lengths; TCP and UDP sockets with local and remote address and state (/proc/net/tcp,
 * tcp6, udp, udp6). Tables are per network namespace: sock_diag answers for osmosis's own; for a
 * process in another namespace its /proc/PID/net files are read (unix peers are then unknown).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sock_info {
	uint64_t inode;
	char proto[8];
	char state[16];
	char *local, *remote;
	uint64_t peer_inode;
	uint32_t rqueue, wqueue;
};

struct sock_table {
	uint64_t netns; /* inode of the network namespace */
	struct sock_info *v;
	size_t n, cap;
	bool sorted;
};

/* Fill t for the namespace of the process whose /proc directory is procfd (osmosis's own when
 * the namespaces match, through sock_diag). Returns 0 or a negative errno; logs nothing. */
int sock_table_load(struct sock_table *t, int procfd, uint64_t netns, bool own_netns);
const struct sock_info *sock_table_find(struct sock_table *t, uint64_t inode);
void sock_table_done(struct sock_table *t);

/* Parse one /proc/net/{tcp,tcp6,udp,udp6} text into t (exposed for tests and fuzzing). */
int sock_parse_proc_net(struct sock_table *t, const char *text, const char *proto);
