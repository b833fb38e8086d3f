/* SPDX-License-Identifier: MIT */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "snapshot/timeline.h"

static size_t find(const struct osm_timeline *tl, const char *name)
{
	for (size_t i = 0; i < tl->n; i++)
		if (!strcmp(tl->phases[i].name, name))
			return i;
	return SIZE_MAX;
}

/* A tree of 26 processes, as a PostgreSQL cluster: each has its register, rounds and
 * unregister phase. What comes after the pause (write-out, commit) is still recorded, each
 * per-process run of phases is one phase spanning them all, and nothing is dropped. */
static void test_a_set_keeps_the_phases_after_the_pause(void **state)
{
	struct osm_timeline tl;
	(void)state;
	timeline_init(&tl);
	timeline_end(&tl, timeline_begin(&tl, "sample", 0));
	timeline_end(&tl, timeline_begin(&tl, "state", 0));
	for (pid_t pid = 100; pid < 126; pid++)
		timeline_end(&tl, timeline_begin(&tl, "register", pid));
	timeline_end(&tl, timeline_begin(&tl, "reserve", 0));
	for (pid_t pid = 100; pid < 126; pid++)
		timeline_end(&tl, timeline_begin(&tl, "rounds", pid));
	timeline_end(&tl, timeline_begin(&tl, "freeze", 0));
	for (pid_t pid = 100; pid < 126; pid++)
		timeline_end(&tl, timeline_begin(&tl, "unregister", pid));
	timeline_end(&tl, timeline_begin(&tl, "write-out", 0));
	(void)timeline_begin(&tl, "commit", 0);

	assert_int_equal(tl.dropped, 0);
	assert_true(find(&tl, "write-out") != SIZE_MAX);
	size_t c = find(&tl, "commit");
	assert_true(c != SIZE_MAX);
	assert_true(tl.phases[c].dur_ns == OSM_PHASE_OPEN);
	size_t u = find(&tl, "unregister");
	assert_true(u != SIZE_MAX);
	assert_int_equal(tl.phases[u].pid, 0); /* several */
	assert_true(tl.phases[u].dur_ns != OSM_PHASE_OPEN);
	assert_true(tl.phases[u + 1].start_ns >= tl.phases[u].start_ns + tl.phases[u].dur_ns);
	for (size_t i = u + 1; i < tl.n; i++)
		assert_true(strcmp(tl.phases[i].name, "unregister"));
	/* in order */
	for (size_t i = 1; i < tl.n; i++)
		assert_true(tl.phases[i].start_ns >= tl.phases[i - 1].start_ns);
	/* The first processes' phases, while there was room, kept their own entries. */
	assert_int_equal(tl.phases[find(&tl, "register")].pid, 100);
}

/* A phase still open is never extended (its end is another phase's). */
static void test_an_open_phase_is_not_extended(void **state)
{
	struct osm_timeline tl;
	(void)state;
	timeline_init(&tl);
	for (int i = 0; i < OSM_MAX_PHASES / 2; i++)
		timeline_end(&tl, timeline_begin(&tl, i % 2 ? "a" : "b", 0));
	size_t n = tl.n;
	size_t first = timeline_begin(&tl, "x", 1);
	size_t second = timeline_begin(&tl, "x", 2);
	assert_int_equal(first, n);
	assert_int_equal(second, n + 1);
	assert_int_equal(tl.phases[first].pid, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_a_set_keeps_the_phases_after_the_pause),
	    cmocka_unit_test(test_an_open_phase_is_not_extended),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
