/* SPDX-License-Identifier: MIT */
/* The lock decoder on hand-made inputs: glibc's x86_64 mutex layouts and the syscalls waits
 * come from. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "analyze/locks.h"

static const pid_t tids[] = {100, 101, 102};

static struct lock_input futex_wait(uint64_t addr, uint32_t expected, const char *fn)
{
	static const char *fns[1];
	struct lock_input in = {.syscall = "futex", .args = {addr, 128, expected}};
	fns[0] = fn;
	in.functions = fns;
	in.n_functions = fn ? 1 : 0;
	in.tids = tids;
	in.n_tids = 3;
	return in;
}

static void test_mutex_locked_by_owner(void **state)
{
	struct lock_input in = futex_wait(0x1000, 2, "__lll_lock_wait");
	struct lock_info o;
	(void)state;
	in.have_words = true;
	in.words[0] = 2;   /* __lock: locked, waiters */
	in.words[2] = 101; /* __owner */
	lock_decode(&in, &o);
	assert_int_equal(o.kind, WAIT_MUTEX);
	assert_int_equal(o.owner, 101);
	assert_int_equal(o.verdict, MUTEX_LOCKED_WAITERS);
	assert_non_null(strstr(o.text, "locked by TID 101"));
}

static void test_mutex_without_symbols(void **state)
{
	struct lock_input in = futex_wait(0x1000, 2, NULL);
	struct lock_info o;
	(void)state;
	in.have_words = true;
	in.words[0] = 2;
	in.words[2] = 102;
	lock_decode(&in, &o);
	assert_int_equal(o.kind, WAIT_MUTEX);
	assert_int_equal(o.owner, 102);
}

static void test_mutex_abandoned(void **state)
{
	struct lock_input in = futex_wait(0x1000, 2, "pthread_mutex_lock");
	struct lock_info o;
	(void)state;
	in.have_words = true;
	in.words[0] = 2;
	in.words[2] = 555; /* not a thread of the process */
	lock_decode(&in, &o);
	assert_int_equal(o.verdict, MUTEX_ABANDONED);
	assert_non_null(strstr(o.why, "555"));
}

static void test_mutex_robust_owner_died(void **state)
{
	struct lock_input in = futex_wait(0x1000, 0, "pthread_mutex_lock");
	struct lock_info o;
	(void)state;
	in.have_words = true;
	in.words[0] = 0x40000000u | 0x80000000u | 101;
	in.words[4] = 16 | 128; /* robust, process-shared */
	lock_decode(&in, &o);
	assert_int_equal(o.verdict, MUTEX_ABANDONED);
	assert_int_equal(o.owner, 101);
}

static void test_mutex_corruptions(void **state)
{
	static const struct {
		uint32_t lock, count, owner;
		int32_t kind;
		const char *why;
	} cases[] = {
	    {2, 0, 101, -1, "destroyed"},   {2, 0, 101, 0x4000, "bits"},
	    {7, 0, 101, 0, "__lock is 7"},  {0, 0, 101, 0, "free but"},
	    {2, 3, 101, 0, "__count is 3"}, {2, 0, 0, 0, "no __owner"},
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct lock_input in = futex_wait(0x1000, 2, "__lll_lock_wait");
		struct lock_info o;
		in.have_words = true;
		in.words[0] = cases[i].lock;
		in.words[1] = cases[i].count;
		in.words[2] = cases[i].owner;
		in.words[4] = (uint32_t)cases[i].kind;
		lock_decode(&in, &o);
		assert_int_equal(o.verdict, MUTEX_CORRUPT);
		assert_non_null(strstr(o.why, cases[i].why));
	}
}

static void test_recursive_mutex_count_is_fine(void **state)
{
	struct lock_input in = futex_wait(0x1000, 2, "__lll_lock_wait");
	struct lock_info o;
	(void)state;
	in.have_words = true;
	in.words[0] = 2;
	in.words[1] = 3;
	in.words[2] = 100;
	in.words[4] = 1; /* recursive */
	lock_decode(&in, &o);
	assert_int_equal(o.verdict, MUTEX_LOCKED_WAITERS);
}

static void test_join_condvar_semaphore_rwlock(void **state)
{
	struct lock_info o;
	struct lock_input in;
	(void)state;
	in = futex_wait(0x2000, 101, "__pthread_clockjoin_ex");
	lock_decode(&in, &o);
	assert_int_equal(o.kind, WAIT_JOIN);
	assert_int_equal(o.owner, 101);
	in = futex_wait(0x2000, 101, NULL); /* no symbols: the expected value is a TID */
	lock_decode(&in, &o);
	assert_int_equal(o.kind, WAIT_JOIN);
	in = futex_wait(0x3000, 0, "pthread_cond_wait@@GLIBC_2.3.2");
	lock_decode(&in, &o);
	assert_int_equal(o.kind, WAIT_CONDVAR);
	assert_non_null(strstr(o.text, "no owner by design"));
	in = futex_wait(0x4000, 0, "__new_sem_wait_slow64");
	lock_decode(&in, &o);
	assert_int_equal(o.kind, WAIT_SEMAPHORE);
	in = futex_wait(0x5008, 2, "pthread_rwlock_rdlock");
	in.have_words = in.have_before = true;
	in.words[4] = 102; /* __cur_writer at base+24 = futex(+8) + 16 */
	lock_decode(&in, &o);
	assert_int_equal(o.kind, WAIT_RWLOCK);
	assert_int_equal(o.owner, 102);
}

static void test_other_syscalls(void **state)
{
	struct lock_info o;
	struct lock_input in = {.tids = tids, .n_tids = 3};
	(void)state;
	in.syscall = "wait4";
	in.args[0] = (uint64_t)-1;
	lock_decode(&in, &o);
	assert_int_equal(o.kind, WAIT_CHILD);
	assert_int_equal(o.child, -1);
	in.syscall = "read";
	in.args[0] = 7;
	lock_decode(&in, &o);
	assert_int_equal(o.kind, WAIT_READ);
	assert_int_equal(o.fd, 7);
	in.syscall = "epoll_wait";
	lock_decode(&in, &o);
	assert_int_equal(o.kind, WAIT_POLL);
	in.syscall = "clock_nanosleep";
	lock_decode(&in, &o);
	assert_int_equal(o.kind, WAIT_SLEEP);
	in.syscall = NULL;
	lock_decode(&in, &o);
	assert_int_equal(o.kind, WAIT_NONE);
}

/* A timed wait met by a stop resumes as restart_syscall: the frames name the call. */
static void test_restarted_calls(void **state)
{
	static const char *poll_fns[] = {"__GI___poll", "select_poll_poll.lto_priv.0"};
	static const char *sleep_fns[] = {"__GI___clock_nanosleep", "__nanosleep"};
	static const char *sem_fns[] = {"__futex_abstimed_wait_common",
					"__new_sem_wait_slow64.constprop.0",
					"PyThread_acquire_lock_timed"};
	static const char *mutex_fns[] = {"__lll_clocklock_wait",
					  "pthread_mutex_timedlock@@GLIBC_2.34"};
	static const char *other_fns[] = {"syscall", "main"};
	static const char *epoll_fns[] = {"epoll_wait", "main"};
	struct lock_input in = {.syscall = "restart_syscall", .tids = tids, .n_tids = 3};
	struct lock_info o;
	(void)state;

	in.functions = poll_fns;
	in.n_functions = 2;
	assert_string_equal(lock_resolve_syscall(&in), "poll");
	in.functions = sleep_fns;
	assert_string_equal(lock_resolve_syscall(&in), "clock_nanosleep");
	in.functions = sem_fns;
	in.n_functions = 3;
	assert_string_equal(lock_resolve_syscall(&in), "futex");
	in.functions = mutex_fns;
	in.n_functions = 2;
	in.args[0] = 0x1000;
	in.args[2] = 2;
	in.have_words = true;
	in.words[0] = 2;
	in.words[2] = 101;
	in.syscall = lock_resolve_syscall(&in);
	lock_decode(&in, &o);
	assert_int_equal(o.kind, WAIT_MUTEX);
	assert_int_equal(o.owner, 101);
	/* Not one of the three, or no frames: left as it is, and said so. */
	in.syscall = "restart_syscall";
	in.functions = other_fns;
	assert_string_equal(lock_resolve_syscall(&in), "restart_syscall");
	in.functions = epoll_fns;
	assert_string_equal(lock_resolve_syscall(&in), "restart_syscall");
	in.n_functions = 0;
	assert_string_equal(lock_resolve_syscall(&in), "restart_syscall");
	lock_decode(&in, &o);
	assert_int_equal(o.kind, WAIT_OTHER);
	assert_non_null(strstr(o.text, "resumed after a stop"));
	/* Any other call is left alone. */
	in.syscall = "read";
	in.functions = poll_fns;
	in.n_functions = 1;
	assert_string_equal(lock_resolve_syscall(&in), "read");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_mutex_locked_by_owner),
	    cmocka_unit_test(test_mutex_without_symbols),
	    cmocka_unit_test(test_mutex_abandoned),
	    cmocka_unit_test(test_mutex_robust_owner_died),
	    cmocka_unit_test(test_mutex_corruptions),
	    cmocka_unit_test(test_recursive_mutex_count_is_fine),
	    cmocka_unit_test(test_join_condvar_semaphore_rwlock),
	    cmocka_unit_test(test_other_syscalls),
	    cmocka_unit_test(test_restarted_calls),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
