/* SPDX-License-Identifier: MIT */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "proc/maps.h"

static const char smaps[] =
    "55d65fa60000-55d65fa61000 r--p 00000000 fe:01 1234   /usr/bin/my prog\n"
    "Size:                  4 kB\n"
    "Rss:                   4 kB\n"
    "Anonymous:             0 kB\n"
    "VmFlags: rd mr mw me\n"
    "55d65fa64000-55d65fa65000 rw-p 00003000 fe:01 1234   /usr/bin/my prog\n"
    "Rss:                   4 kB\n"
    "Anonymous:             4 kB\n"
    "VmFlags: rd wr mr mw me ac\n"
    "7f0000000000-7f0000100000 rw-p 00000000 00:00 0 \n"
    "Rss:                  64 kB\n"
    "Anonymous:            64 kB\n"
    "Swap:                  8 kB\n"
    "VmFlags: rd wr mr mw me ac dd\n"
    "7f0000100000-7f0000101000 ---p 00000000 00:00 0\n"
    "Rss:                   0 kB\n"
    "VmFlags: mr mw me\n"
    "7f0000200000-7f0000300000 rw-s 00000000 00:01 77     /dev/zero (deleted)\n"
    "VmFlags: rd wr sh mr mw me ms\n"
    "7f0000300000-7f0000301000 rw-s 00000000 fe:01 99     /data/file\n"
    "VmFlags: rd wr sh mr mw me ms\n"
    "7ffd8a1d4000-7ffd8a1f5000 rw-p 00000000 00:00 0      [stack]\n"
    "VmFlags: rd wr mr mw me gd ac\n"
    "7f0945dfd000-7f0945dff000 r--p 00000000 00:00 0      [vvar]\n"
    "VmFlags: rd mr pf io de dd\n"
    "7f0945dff000-7f0945e01000 r-xp 00000000 00:00 0      [vdso]\n"
    "VmFlags: rd ex mr mw me de\n";

static void test_parse_smaps(void **state)
{
	struct osm_mapping *m;
	size_t n;
	(void)state;
	assert_int_equal(maps_parse(smaps, strlen(smaps), &m, &n), 0);
	assert_int_equal(n, 9);
	assert_int_equal(m[0].start, 0x55d65fa60000ull);
	assert_int_equal(m[0].prot, PROT_READ);
	assert_string_equal(m[0].path, "/usr/bin/my prog");
	assert_int_equal(m[0].dev_major, 0xfe);
	assert_int_equal(m[0].inode, 1234);
	assert_int_equal(m[1].pgoff, 0x3000);
	assert_int_equal(m[1].anon_bytes, 4096);
	assert_null(m[2].path);
	assert_int_equal(m[2].swap_bytes, 8192);
	assert_true(m[2].vmflags & VMF_DONTDUMP);
	assert_true(m[4].shared);
	assert_true(m[7].vmflags & VMF_IO);
	maps_free(m, n);
}

static void test_plan_dump_default_filter(void **state)
{
	struct osm_mapping *m;
	size_t n;
	(void)state;
	assert_int_equal(maps_parse(smaps, strlen(smaps), &m, &n), 0);
	for (size_t i = 0; i < n; i++)
		maps_plan_dump(&m[i], MMF_DUMP_DEFAULT, 4096);
	assert_int_equal(m[0].dump_len, 4096); /* ELF header page of a file */
	assert_true(m[0].elf_header_only);
	assert_int_equal(m[1].dump_len, 4096); /* private file mapping with private copies */
	assert_false(m[1].elf_header_only);
	assert_int_equal(m[2].dump_len, 0);	   /* MADV_DONTDUMP */
	assert_int_equal(m[3].dump_len, 0);	   /* PROT_NONE never touched */
	assert_int_equal(m[4].dump_len, 0x100000); /* shared anonymous (unlinked shmem) */
	assert_int_equal(m[5].dump_len, 0);	   /* shared file: not in the default filter */
	assert_int_equal(m[6].dump_len, 0x21000);  /* stack */
	assert_true(m[6].trim_absent);
	assert_int_equal(m[7].dump_len, 0);	 /* vvar: io, dd */
	assert_int_equal(m[8].dump_len, 0x2000); /* vdso always */
	maps_free(m, n);
}

static void test_plan_dump_filters(void **state)
{
	struct osm_mapping *m;
	size_t n;
	(void)state;
	assert_int_equal(maps_parse(smaps, strlen(smaps), &m, &n), 0);
	for (size_t i = 0; i < n; i++)
		maps_plan_dump(&m[i], 0, 4096);
	assert_int_equal(m[0].dump_len, 0);
	assert_int_equal(m[6].dump_len, 0);
	assert_int_equal(m[8].dump_len, 0x2000);
	for (size_t i = 0; i < n; i++)
		maps_plan_dump(&m[i], MMF_DUMP_MAPPED_SHARED | MMF_DUMP_MAPPED_PRIVATE, 4096);
	assert_int_equal(m[0].dump_len, 4096);
	assert_false(m[0].elf_header_only);
	assert_int_equal(m[5].dump_len, 4096);
	assert_int_equal(m[4].dump_len, 0); /* anonymous shared needs bit 1 */
	maps_free(m, n);
}

static void test_carry_smaps(void **state)
{
	static const char maps[] =
	    "55d65fa60000-55d65fa61000 r--p 00000000 fe:01 1234   /usr/bin/my prog\n"
	    "7f0000000000-7f0000100000 rw-p 00000000 00:00 0 \n"
	    "7f0000500000-7f0000600000 rw-p 00000000 00:00 0 \n";
	struct osm_mapping *old, *cur;
	size_t n_old, n_cur;
	(void)state;
	assert_int_equal(maps_parse(smaps, strlen(smaps), &old, &n_old), 0);
	assert_int_equal(maps_parse(maps, strlen(maps), &cur, &n_cur), 0);
	assert_int_equal(maps_carry_smaps(cur, n_cur, old, n_old), 1);
	assert_true(cur[1].vmflags & VMF_DONTDUMP);
	assert_int_equal(cur[1].rss_bytes, 65536);
	maps_free(old, n_old);
	maps_free(cur, n_cur);
}

static void test_bad_lines(void **state)
{
	static const char *bad[] = {
	    "zz-10 rw-p 0 0:0 0\n",
	    "10-5 rw-p 0 0:0 0\n",
	    "10-20 rw\n",
	    "10-20 rw-p 0 0:0\n",
	    "Rss: 4 kB\n",
	    "10-20 rw-p 0 00:00 99999999999999999999999\n",
	    "ffffffffffffffffff-ffffffffffffffffffff rw-p 0 0:0 0\n",
	};
	struct osm_mapping *m;
	size_t n;
	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(maps_parse(bad[i], strlen(bad[i]), &m, &n), -EINVAL);
	assert_int_equal(maps_parse("", 0, &m, &n), 0);
	assert_int_equal(n, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_smaps),
	    cmocka_unit_test(test_plan_dump_default_filter),
	    cmocka_unit_test(test_plan_dump_filters),
	    cmocka_unit_test(test_carry_smaps),
	    cmocka_unit_test(test_bad_lines),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
