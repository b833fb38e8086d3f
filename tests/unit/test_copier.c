/* SPDX-License-Identifier: MIT */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "capture/copier.h"

#define N 4096

struct each {
	atomic_uint calls[N];
};

static void count_call(void *ctx, size_t i)
{
	struct each *e = ctx;
	atomic_fetch_add(&e->calls[i], 1);
}

/* Every piece of work is done once, whichever thread takes it, run after run (a worker woken
 * after the caller ran out of work joins no run and takes none twice). */
static void test_each_piece_is_done_once(void **state)
{
	struct copier *c = copier_new(3, 4096);
	struct each *e = calloc(1, sizeof(*e));
	(void)state;
	assert_non_null(c);
	assert_non_null(e);
	for (int run = 0; run < 50; run++) {
		size_t n = run % 2 ? N : (size_t)run;
		memset(e, 0, sizeof(*e));
		assert_int_equal(copier_each_frozen(c, count_call, e, n), 0);
		for (size_t i = 0; i < N; i++)
			assert_int_equal(atomic_load(&e->calls[i]), i < n ? 1 : 0);
	}
	free(e);
	copier_free(c);
}

/* A copy after such runs still copies every byte (the workers' state is the copy's again). */
static void test_a_copy_after_them_copies_everything(void **state)
{
	struct copier *c = copier_new(2, 4096);
	size_t len = 64 * 4096;
	uint8_t *src = malloc(len), *dst = calloc(1, len);
	struct copy_job jobs[64];
	struct each *e = calloc(1, sizeof(*e));
	(void)state;
	assert_non_null(c);
	for (size_t i = 0; i < len; i++)
		src[i] = (uint8_t)(i * 7 + 1);
	assert_int_equal(copier_each_frozen(c, count_call, e, 100), 0);
	for (size_t k = 0; k < 64; k++)
		jobs[k] = (struct copy_job){.pid = getpid(),
					    .memfd = -1,
					    .remote = (uint64_t)(uintptr_t)(src + k * 4096),
					    .len = 4096,
					    .dest = dst + k * 4096};
	assert_int_equal(copier_run_frozen(c, jobs, 64), 0);
	assert_memory_equal(src, dst, len);
	for (size_t k = 0; k < 64; k++)
		assert_int_equal(jobs[k].unreadable, 0);
	free(src);
	free(dst);
	free(e);
	copier_free(c);
}

/* Outside the freeze a small run is copied by the caller alone and a large one by every thread:
 * both copy every byte, run after run, in any order of sizes. */
static void test_small_and_large_runs_copy_everything(void **state)
{
	const size_t len = 32u << 20, job = 1u << 20;
	struct copier *c = copier_new(2, 4096);
	uint8_t *src = malloc(len), *dst = malloc(len);
	struct copy_job jobs[32];
	(void)state;
	assert_non_null(c);
	assert_non_null(src);
	assert_non_null(dst);
	for (size_t i = 0; i < len; i++)
		src[i] = (uint8_t)(i * 13 + 5);
	for (int run = 0; run < 12; run++) {
		size_t n = run % 3 == 0 ? 32 : (size_t)(run % 3); /* 32 MiB, or 1-2 MiB */
		memset(dst, 0, len);
		for (size_t k = 0; k < n; k++)
			jobs[k] = (struct copy_job){.pid = getpid(),
						    .memfd = -1,
						    .remote = (uint64_t)(uintptr_t)(src + k * job),
						    .len = job,
						    .dest = dst + k * job};
		assert_int_equal(copier_run(c, jobs, n), 0);
		assert_memory_equal(src, dst, n * job);
		for (size_t k = 0; k < n; k++)
			assert_int_equal(jobs[k].unreadable, 0);
	}
	free(src);
	free(dst);
	copier_free(c);
}

/* Small jobs of one process go in one call; a page it refuses in the middle of them (no access
 * there) is counted and zeroed in its job alone, and every other job is copied whole. */
static void test_a_refused_page_among_batched_jobs_costs_its_job_only(void **state)
{
	const size_t page = 4096, n = 200;
	struct copier *c = copier_new(1, page);
	uint8_t *src =
	    mmap(NULL, n * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint8_t *dst = malloc(n * page);
	struct copy_job jobs[200];
	(void)state;
	assert_non_null(c);
	assert_true(src != MAP_FAILED);
	assert_non_null(dst);
	for (size_t i = 0; i < n * page; i++)
		src[i] = (uint8_t)(i * 11 + 3);
	assert_int_equal(mprotect(src + 70 * page, page, PROT_NONE), 0);
	memset(dst, 0xee, n * page);
	for (size_t k = 0; k < n; k++)
		jobs[k] = (struct copy_job){.pid = getpid(),
					    .memfd = -1,
					    .remote = (uint64_t)(uintptr_t)(src + k * page),
					    .len = page,
					    .dest = dst + k * page};
	assert_int_equal(copier_run_frozen(c, jobs, n), 0);
	for (size_t k = 0; k < n; k++) {
		if (k == 70) {
			assert_int_equal(jobs[k].unreadable, page);
			for (size_t b = 0; b < page; b++)
				assert_int_equal(dst[k * page + b], 0);
			continue;
		}
		assert_int_equal(jobs[k].unreadable, 0);
		assert_memory_equal(src + k * page, dst + k * page, page);
	}
	munmap(src, n * page);
	free(dst);
	copier_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_each_piece_is_done_once),
	    cmocka_unit_test(test_a_copy_after_them_copies_everything),
	    cmocka_unit_test(test_small_and_large_runs_copy_everything),
	    cmocka_unit_test(test_a_refused_page_among_batched_jobs_costs_its_job_only),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
