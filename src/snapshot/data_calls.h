/* SPDX-License-Identifier: MIT */
/*
 * The syscalls that move data through a descriptor, its number in the first argument: the
 * analysis reads a thread in one as waiting on the other end of a pipe or a socket
 * (analyze/locks.c), and the freeze tells such a wait from a return out of the call
 * (capture/threads.c). One table for both.
 */
#pragma once

#include <string.h>

enum data_call {
	DATA_NONE,
	DATA_READ,
	DATA_WRITE,	/* a vector write (writev, sendmsg): the length is not an argument */
	DATA_WRITE_LEN, /* the third argument is the length asked for */
};

static inline enum data_call data_call_of(const char *name)
{
	static const struct {
		const char *name;
		enum data_call kind;
	} calls[] = {
	    {"read", DATA_READ},	  {"readv", DATA_READ},	      {"pread64", DATA_READ},
	    {"preadv", DATA_READ},	  {"preadv2", DATA_READ},     {"recvfrom", DATA_READ},
	    {"recvmsg", DATA_READ},	  {"recvmmsg", DATA_READ},    {"write", DATA_WRITE_LEN},
	    {"pwrite64", DATA_WRITE_LEN}, {"sendto", DATA_WRITE_LEN}, {"writev", DATA_WRITE},
	    {"pwritev", DATA_WRITE},	  {"pwritev2", DATA_WRITE},   {"sendmsg", DATA_WRITE},
	    {"sendmmsg", DATA_WRITE},
	};

	for (size_t i = 0; name && i < sizeof(calls) / sizeof(calls[0]); i++)
		if (!strcmp(name, calls[i].name))
			return calls[i].kind;
	return DATA_NONE;
}
