/* SPDX-License-Identifier: MIT */
/* The symbol cache shared by the processes of one analysis (src/analyze/symcache.c), on this test
 * program's own file: answers equal what the file says, an entry whose build-id the file does not
 * carry answers nothing, answers stay right through table growth and through files closed and
 * opened again when more entries are asked than stay open. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <elf.h>
#include <libelf.h>
#include <limits.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "analyze/symcache.h"

/* Where this program lies: what modules.c reads from a core for it. */
struct self {
	char path[PATH_MAX];
	unsigned char build_id[64];
	size_t build_id_len;
	uint64_t low, high, build_id_vaddr;
};

__attribute__((noinline)) int symcache_marker(int x);
__attribute__((noinline)) int symcache_marker(int x)
{
	__asm__ volatile("" : "+r"(x));
	return x * 3 + 1;
}

static int find_self(struct dl_phdr_info *info, size_t size, void *arg)
{
	struct self *s = arg;
	uint64_t low = UINT64_MAX, high = 0;

	(void)size;
	if (info->dlpi_name && info->dlpi_name[0])
		return 0; /* the main program comes first, without a name */
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type == PT_LOAD) {
			uint64_t start = info->dlpi_addr + (ph->p_vaddr & ~4095ull);
			uint64_t end =
			    info->dlpi_addr + ((ph->p_vaddr + ph->p_memsz + 4095) & ~4095ull);
			low = start < low ? start : low;
			high = end > high ? end : high;
		} else if (ph->p_type == PT_NOTE && !s->build_id_len) {
			const char *p = (const char *)(info->dlpi_addr + ph->p_vaddr);
			const char *end = p + ph->p_memsz;
			while (p + sizeof(ElfW(Nhdr)) <= end) {
				const ElfW(Nhdr) *n = (const ElfW(Nhdr) *)p;
				const char *name = p + sizeof(*n);
				const char *desc = name + ((n->n_namesz + 3) & ~3u);
				if (n->n_type == NT_GNU_BUILD_ID && n->n_namesz == 4 &&
				    !memcmp(name, "GNU", 4) && n->n_descsz <= sizeof(s->build_id)) {
					memcpy(s->build_id, desc, n->n_descsz);
					s->build_id_len = n->n_descsz;
					s->build_id_vaddr = (uint64_t)(uintptr_t)desc;
					break;
				}
				p = desc + ((n->n_descsz + 3) & ~3u);
			}
		}
	}
	s->low = low;
	s->high = high;
	return 1;
}

static void self_get(struct self *s)
{
	ssize_t n;

	memset(s, 0, sizeof(*s));
	n = readlink("/proc/self/exe", s->path, sizeof(s->path) - 1);
	assert_true(n > 0);
	s->path[n] = 0;
	dl_iterate_phdr(find_self, s);
	if (!s->build_id_len)
		skip(); /* built without a build-id: nothing to key on */
	assert_true(s->high > s->low);
}

static uint64_t marker_rel(const struct self *s, uint64_t plus)
{
	return (uint64_t)(uintptr_t)symcache_marker + plus - s->low;
}

static void test_answers_are_the_files(void **state)
{
	struct symcache *sc = symcache_new();
	struct sym_answer a, b;
	struct symfile *sf, *again;
	struct self s;

	(void)state;
	self_get(&s);
	sf = symcache_file(sc, s.build_id, s.build_id_len, s.path, s.low, s.high, s.build_id_vaddr);
	assert_non_null(sf);
	again = symcache_file(sc, s.build_id, s.build_id_len, s.path, s.low + 4096 * 16,
			      s.high + 4096 * 16, s.build_id_vaddr + 4096 * 16);
	assert_ptr_equal(sf, again); /* another process's copy at another address: one entry */
	assert_true(symcache_lookup(sf, marker_rel(&s, 1), &a));
	assert_non_null(a.function);
	assert_string_equal(a.function, "symcache_marker");
	assert_int_equal(a.offset, 1);
	if (a.file)
		assert_non_null(strstr(a.file, "test_symcache.c"));
	assert_true(symcache_lookup(sf, marker_rel(&s, 1), &b));
	assert_ptr_equal(a.function, b.function);	       /* answered from the cache */
	assert_false(symcache_lookup(sf, s.high - s.low, &b)); /* past the module */
	symcache_free(sc);
}

static void test_a_file_without_the_cores_build_id_answers_nothing(void **state)
{
	struct symcache *sc = symcache_new();
	struct sym_answer a;
	struct symfile *sf;
	struct self s;

	(void)state;
	self_get(&s);
	s.build_id[0] ^= 0xff;
	sf = symcache_file(sc, s.build_id, s.build_id_len, s.path, s.low, s.high, s.build_id_vaddr);
	assert_non_null(sf);
	assert_false(symcache_lookup(sf, marker_rel(&s, 0), &a));
	assert_false(symcache_lookup(sf, marker_rel(&s, 0), &a)); /* and stays refused */
	assert_null(symcache_file(sc, s.build_id, 0, s.path, s.low, s.high, 0));
	assert_null(symcache_file(NULL, s.build_id, s.build_id_len, s.path, s.low, s.high, 0));
	symcache_free(sc);
}

static void test_growth_and_more_files_than_stay_open(void **state)
{
	enum { FILES = 12, ADDRS = 3000 };
	struct symcache *sc = symcache_new();
	struct symfile *sf[FILES];
	const char *names[ADDRS];
	struct sym_answer a;
	struct self s;

	(void)state;
	self_get(&s);
	/* Entries of one file told apart by their span, as differently built copies would be. */
	for (int i = 0; i < FILES; i++) {
		sf[i] = symcache_file(sc, s.build_id, s.build_id_len, s.path, s.low,
				      s.high + 4096ull * i, s.build_id_vaddr);
		assert_non_null(sf[i]);
		for (int j = 0; j < i; j++)
			assert_ptr_not_equal(sf[i], sf[j]);
	}
	/* The second round asks what is not cached yet: files closed by the first open again. */
	for (int round = 1; round <= 2; round++)
		for (int i = 0; i < FILES; i++) {
			assert_true(symcache_lookup(sf[i], marker_rel(&s, round), &a));
			assert_string_equal(a.function, "symcache_marker");
			assert_int_equal(a.offset, round);
		}
	/* Many addresses of one entry: the table grows and keeps every answer. */
	for (int k = 0; k < ADDRS; k++) {
		uint64_t rel = (uint64_t)k * 7 % (s.high - s.low);
		assert_true(symcache_lookup(sf[0], rel, &a));
		names[k] = a.function;
	}
	for (int k = 0; k < ADDRS; k++) {
		uint64_t rel = (uint64_t)k * 7 % (s.high - s.low);
		assert_true(symcache_lookup(sf[0], rel, &a));
		assert_ptr_equal(a.function, names[k]);
	}
	symcache_free(sc);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_answers_are_the_files),
	    cmocka_unit_test(test_a_file_without_the_cores_build_id_answers_nothing),
	    cmocka_unit_test(test_growth_and_more_files_than_stay_open),
	};
	elf_version(EV_CURRENT);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
