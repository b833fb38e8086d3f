/* SPDX-License-Identifier: MIT */
/* The watch conditions' parsers, the scheduler clock's parser and arithmetic, and the wait-age
 * format: pure functions, on plain strings. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "base/parse.h"
#include "proc/schedclock.h"
#include "watch/watch.h"

static void test_exec_start(void **state)
{
	uint64_t ns;
	(void)state;
	assert_int_equal(schedclock_parse_exec_start("x (1, #threads: 1)\n----\nse.exec_start    "
						     "                            :        "
						     "410681.526385\nse.vruntime : 1.0\n",
						     &ns),
			 0);
	assert_true(ns == 410681526385ull);
	assert_int_equal(schedclock_parse_exec_start("se.exec_start : 12\n", &ns), 0);
	assert_true(ns == 12000000ull);
	assert_int_equal(schedclock_parse_exec_start("se.exec_start : 1.5\n", &ns), 0);
	assert_true(ns == 1500000ull);
	assert_int_equal(schedclock_parse_exec_start("se.exec_start : -1\n", &ns), -EINVAL);
	assert_int_equal(schedclock_parse_exec_start("se.exec_start\n", &ns), -EINVAL);
	assert_int_equal(schedclock_parse_exec_start("nothing", &ns), -EINVAL);
	assert_int_equal(schedclock_parse_exec_start(NULL, &ns), -EINVAL);
	assert_int_equal(
	    schedclock_parse_exec_start("se.exec_start : 99999999999999999999999\n", &ns), -ERANGE);
}

static void test_ago(void **state)
{
	int64_t off[2] = {1000, -5000};
	bool known[2] = {true, false};
	struct schedclock c = {.offset_ns = off, .known = known, .n_cpus = 2};
	(void)state;
	/* last ran at exec_start + offset of its CPU, in CLOCK_MONOTONIC */
	assert_true(schedclock_ago_ns(&c, 10000, 0, 20000) == 9000);
	assert_true(schedclock_ago_ns(&c, 30000, 0, 20000) == 0);  /* "after now": 0 */
	assert_true(schedclock_ago_ns(&c, 10000, 1, 20000) == -1); /* CPU not calibrated */
	assert_true(schedclock_ago_ns(&c, 10000, 7, 20000) == -1);
	assert_true(schedclock_ago_ns(&c, 10000, -1, 20000) == -1);
	assert_true(schedclock_ago_ns(NULL, 10000, 0, 20000) == -1);
	/* exec_start 0 is unknown, not "ran at boot" (the machine's uptime ago) */
	assert_true(schedclock_ago_ns(&c, 0, 0, 20000) == -1);
}

static void test_level_time(void **state)
{
	double v;
	uint64_t ns;
	char err[160];
	(void)state;
	assert_int_equal(watch_parse_level_time("50", 100, 7, &v, &ns, err, sizeof(err)), 0);
	assert_true(v == 50 && ns == 7);
	assert_int_equal(watch_parse_level_time("95.5:2.5", 100, 7, &v, &ns, err, sizeof(err)), 0);
	assert_true(v == 95.5 && ns == 2500000000ull);
	assert_int_equal(watch_parse_level_time("80%:1", 100, 7, &v, &ns, err, sizeof(err)), 0);
	assert_true(v == 80);
	assert_int_equal(watch_parse_level_time("0", 100, 7, &v, &ns, err, sizeof(err)), -EINVAL);
	assert_int_equal(watch_parse_level_time("101", 100, 7, &v, &ns, err, sizeof(err)), -EINVAL);
	assert_int_equal(watch_parse_level_time("-5", 100, 7, &v, &ns, err, sizeof(err)), -EINVAL);
	assert_int_equal(watch_parse_level_time("50:", 100, 7, &v, &ns, err, sizeof(err)), -EINVAL);
	assert_int_equal(watch_parse_level_time("50:x", 100, 7, &v, &ns, err, sizeof(err)),
			 -EINVAL);
	assert_int_equal(watch_parse_level_time("nan", 100, 7, &v, &ns, err, sizeof(err)), -EINVAL);
	assert_int_equal(watch_parse_level_time("", 100, 7, &v, &ns, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "PCT[:SECONDS]"));
}

static void test_size_or_pct(void **state)
{
	double v;
	bool pct;
	char err[160];
	(void)state;
	assert_int_equal(watch_parse_size_or_pct("4096", &v, &pct, err, sizeof(err)), 0);
	assert_true(v == 4096 && !pct);
	assert_int_equal(watch_parse_size_or_pct("512K", &v, &pct, err, sizeof(err)), 0);
	assert_true(v == 512 * 1024.0);
	assert_int_equal(watch_parse_size_or_pct("200MiB", &v, &pct, err, sizeof(err)), 0);
	assert_true(v == 200 * 1048576.0);
	assert_int_equal(watch_parse_size_or_pct("1.5G", &v, &pct, err, sizeof(err)), 0);
	assert_true(v == 1.5 * 1073741824.0);
	assert_int_equal(watch_parse_size_or_pct("100B", &v, &pct, err, sizeof(err)), 0);
	assert_true(v == 100);
	assert_int_equal(watch_parse_size_or_pct("80%", &v, &pct, err, sizeof(err)), 0);
	assert_true(v == 80 && pct);
	assert_int_equal(watch_parse_size_or_pct("120%", &v, &pct, err, sizeof(err)), -EINVAL);
	assert_int_equal(watch_parse_size_or_pct("12Q", &v, &pct, err, sizeof(err)), -EINVAL);
	assert_int_equal(watch_parse_size_or_pct("G", &v, &pct, err, sizeof(err)), -EINVAL);
	assert_int_equal(watch_parse_size_or_pct("-1M", &v, &pct, err, sizeof(err)), -EINVAL);
	assert_int_equal(watch_parse_size_or_pct("1MX", &v, &pct, err, sizeof(err)), -EINVAL);
	assert_int_equal(watch_parse_size_or_pct("", &v, &pct, err, sizeof(err)), -EINVAL);
}

static void test_registry(void **state)
{
	(void)state;
	assert_true(watch_condition_count >= 9);
	for (size_t i = 0; i < watch_condition_count; i++) {
		const struct watch_condition *d = watch_condition_registry[i];
		assert_non_null(d->name);
		assert_non_null(d->help);
		assert_non_null(d->records);
		assert_non_null(d->parse);
		assert_ptr_equal(watch_condition_find(d->name), d);
		if (d->scope == COND_PROCESS)
			assert_non_null(d->process_level);
		else if (d->scope == COND_THREAD)
			assert_non_null(d->thread_level);
		else
			assert_non_null(d->poll);
	}
	assert_null(watch_condition_find("nope"));
}

static void test_wait_age(void **state)
{
	char b[32];
	(void)state;
	assert_string_equal(format_duration_ms(340, b, sizeof(b)), "340 ms");
	assert_string_equal(format_duration_ms(5200, b, sizeof(b)), "5.2 s");
	assert_string_equal(format_duration_ms(247000, b, sizeof(b)), "4 min 07 s");
	assert_string_equal(format_duration_ms(7266000, b, sizeof(b)), "2 h 01 min");
	assert_string_equal(format_duration_ms(3 * 86400000ll + 4 * 3600000ll, b, sizeof(b)),
			    "3 d 04 h");
	assert_string_equal(format_duration_ms(-1, b, sizeof(b)), "an unknown time");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_exec_start), cmocka_unit_test(test_ago),
	    cmocka_unit_test(test_level_time), cmocka_unit_test(test_size_or_pct),
	    cmocka_unit_test(test_registry),   cmocka_unit_test(test_wait_age),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
