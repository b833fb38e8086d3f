/* SPDX-License-Identifier: MIT */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <sched.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "base/parse.h"
#include "base/sched.h"
#include "base/util.h"
#include "proc/procfs.h"

static void test_numbers(void **state)
{
	uint64_t u;
	pid_t pid;
	(void)state;
	assert_int_equal(parse_u64("42", 10, &u), 0);
	assert_int_equal(u, 42);
	assert_int_equal(parse_u64("33", 16, &u), 0);
	assert_int_equal(u, 0x33);
	assert_int_equal(parse_u64("", 10, &u), -EINVAL);
	assert_int_equal(parse_u64(" 1", 10, &u), -EINVAL);
	assert_int_equal(parse_u64("-1", 10, &u), -EINVAL);
	assert_int_equal(parse_u64("1x", 10, &u), -EINVAL);
	assert_int_equal(parse_u64("99999999999999999999999", 10, &u), -ERANGE);
	assert_int_equal(parse_pid("1", &pid), 0);
	assert_int_equal(pid, 1);
	assert_int_equal(parse_pid("0", &pid), -ERANGE);
	assert_int_equal(parse_pid("2147483648", &pid), -ERANGE);
}

static void test_durations(void **state)
{
	uint64_t ns;
	(void)state;
	assert_int_equal(parse_duration_ns("10", &ns), 0);
	assert_int_equal(ns, 10000000000ull);
	assert_int_equal(parse_duration_ns("0.25", &ns), 0);
	assert_int_equal(ns, 250000000ull);
	assert_int_equal(parse_duration_ns("250ms", &ns), 0);
	assert_int_equal(ns, 250000000ull);
	assert_int_equal(parse_duration_ns("0", &ns), -ERANGE);
	assert_int_equal(parse_duration_ns("-1", &ns), -EINVAL);
	assert_int_equal(parse_duration_ns("nan", &ns), -ERANGE);
	assert_int_equal(parse_duration_ns("inf", &ns), -ERANGE);
	assert_int_equal(parse_duration_ns("5h", &ns), -EINVAL);
	assert_int_equal(parse_duration_ns("1e30", &ns), -ERANGE);
}

static void test_format_bytes(void **state)
{
	char b[32];
	(void)state;
	assert_string_equal(format_bytes(512, b, sizeof(b)), "512 B");
	assert_string_equal(format_bytes(1536, b, sizeof(b)), "1.5 KiB");
	assert_string_equal(format_bytes(3ull << 30, b, sizeof(b)), "3.0 GiB");
}

static void test_stat(void **state)
{
	struct proc_stat st;
	/* comm with spaces and parentheses: the last ')' ends it */
	const char *line =
	    "1234 (a) (b c)) S 1 1234 1234 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 5 0 "
	    "98765 1000 200 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 "
	    "0 0 0 0 0 0 0 0 0\n";
	(void)state;
	assert_int_equal(proc_parse_stat(line, &st), 0);
	assert_string_equal(st.comm, "a) (b c)");
	assert_int_equal(st.state, 'S');
	assert_int_equal(st.ppid, 1);
	assert_int_equal(st.flags, 4194560);
	assert_int_equal(st.utime, 7);
	assert_int_equal(st.stime, 3);
	assert_int_equal(st.starttime, 98765);
	assert_int_equal(st.processor, 1);
	assert_int_equal(proc_parse_stat("1234 (x S 1", &st), -EINVAL);
	assert_int_equal(proc_parse_stat("", &st), -EINVAL);
	assert_int_equal(proc_parse_stat("1 (x) S 1 2 3", &st), -EINVAL);
	assert_int_equal(
	    proc_parse_stat("1 (x) S a b c d e f g h i j k l m n o p q r s t u v w x y "
			    "z 1 2 3 4 5 6 7 8 9 0",
			    &st),
	    -EINVAL);
}

static void test_status_ids(void **state)
{
	struct proc_ids ids;
	(void)state;
	assert_int_equal(proc_parse_status_ids("Name:\tx\nUid:\t1000\t1001\t1000\t1000\n"
					       "Gid:\t50\t51\t50\t50\n",
					       &ids),
			 0);
	assert_int_equal(ids.ruid, 1000);
	assert_int_equal(ids.euid, 1001);
	assert_int_equal(ids.egid, 51);
	assert_int_equal(proc_parse_status_ids("Name:\tx\n", &ids), -EINVAL);
}

/* A hold makes the calling thread SCHED_FIFO when it may, and gives back exactly the policy it
 * had, SCHED_IDLE and a nice value included; a real-time thread is left alone. */
static void test_sched_hold(void **state)
{
	struct sched_param idle = {0}, sp;
	struct sched_hold h;
	(void)state;
	sched_hold_begin(&h);
	assert_int_equal(sched_getscheduler(0), h.held ? SCHED_FIFO : SCHED_OTHER);
	sched_hold_end(&h);
	assert_int_equal(sched_getscheduler(0), SCHED_OTHER);
	assert_false(h.held);
	if (sched_setscheduler(0, SCHED_IDLE, &idle) < 0)
		return;
	sched_hold_begin(&h);
	bool held = h.held;
	sched_hold_end(&h);
	assert_int_equal(sched_getscheduler(0), SCHED_IDLE);
	if (!held)
		return; /* not permitted here: nothing more to see */
	sp.sched_priority = sched_get_priority_min(SCHED_RR);
	assert_int_equal(sched_setscheduler(0, SCHED_RR, &sp), 0);
	sched_hold_begin(&h);
	assert_false(h.held);
	assert_int_equal(sched_getscheduler(0), SCHED_RR);
	sched_hold_end(&h);
	assert_int_equal(sched_getscheduler(0), SCHED_RR);
	sp.sched_priority = 0;
	assert_int_equal(sched_setscheduler(0, SCHED_OTHER, &sp), 0);
}

/* The count of allocations in the freeze: in the suite's sanitized build it sees the C library's
 * own allocations too (strdup, opendir), not only osmosis's growing helpers. */
static void test_freeze_allocs(void **state)
{
	void *arr = NULL;
	size_t cap = 0;
	char *s;
	(void)state;
	freeze_allocs_begin();
	assert_int_equal(grow_array(&arr, &cap, 4, 8), 0);
	assert_int_equal(freeze_allocs_end(), 1);
	assert_int_equal(freeze_allocs_end(), 1); /* ended: counts no more */
	freeze_allocs_begin();
	s = strdup("x");
	assert_non_null(s);
#ifdef OSM_ALLOC_HOOK
	assert_int_equal(freeze_allocs_end(), 1);
#else
	assert_int_equal(freeze_allocs_end(), 0);
#endif
	free(s);
	free(arr);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_numbers),	  cmocka_unit_test(test_durations),
	    cmocka_unit_test(test_format_bytes),  cmocka_unit_test(test_stat),
	    cmocka_unit_test(test_status_ids),	  cmocka_unit_test(test_sched_hold),
	    cmocka_unit_test(test_freeze_allocs),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
