/* SPDX-License-Identifier: MIT */
/* libFuzzer harness for the lock decoder: any syscall arguments and any words read from a core
 * (which may come from anywhere) must decode without crashing. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "analyze/locks.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const syscalls[] = {"futex",	    "wait4",  "waitid", "read",
					       "write",	    "accept", "poll",	"epoll_wait",
					       "nanosleep", "ioctl"};
	static const char *const fns[] = {"__lll_lock_wait", "pthread_cond_wait",
					  "pthread_join",    "pthread_rwlock_wrlock",
					  "sem_wait",	     NULL};
	struct lock_input in = {0};
	struct lock_info out;
	pid_t tids[4];

	if (size < 1 + 48 + 40 + 16 + 16 + 1)
		return 0;
	in.syscall = syscalls[data[0] % (sizeof(syscalls) / sizeof(syscalls[0]))];
	memcpy(in.args, data + 1, 48);
	memcpy(in.words, data + 49, 40);
	memcpy(in.before, data + 89, 16);
	memcpy(tids, data + 105, 16);
	in.have_words = data[121] & 1;
	in.have_before = data[121] & 2;
	const char *f[1] = {fns[(data[121] >> 2) % 6]};
	in.functions = f;
	in.n_functions = f[0] ? 1 : 0;
	in.tids = tids;
	in.n_tids = 4;
	lock_decode(&in, &out);
	return 0;
}
