/* SPDX-License-Identifier: MIT */
/* The bounded note readers (core/notes.c) on descriptions held in heap buffers of their exact
 * size, so that under AddressSanitizer any read past a description fails the test; and the
 * regression of the NT_PRSTATUS reader that copied 256 bytes from offset 112 of a note it had
 * checked to hold 328 (a 336-byte kernel-sized note at the end of the notes). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/procfs.h>
#include <sys/stat.h>
#include <unistd.h>

#include "analyze/analysis.h"
#include "arch.h"
#include "base/util.h"
#include "core/notes.h"

#define PRSTATUS_REG_END (offsetof(struct elf_prstatus, pr_reg) + sizeof(elf_gregset_t))

/* A copy of n bytes in a heap block of exactly n bytes. */
static uint8_t *exact(const void *src, size_t n)
{
	uint8_t *p = malloc(n ? n : 1);
	assert_non_null(p);
	memcpy(p, src, n);
	return p;
}

static void test_iter_walks_and_stops_at_what_does_not_fit(void **state)
{
	struct note_sink ns = {0};
	uint8_t desc[5] = {1, 2, 3, 4, 5};
	struct note_iter it;
	struct note n;
	uint8_t *buf;
	size_t k = 0;
	(void)state;

	note_add(&ns, "CORE", NT_PRPSINFO, desc, sizeof(desc));
	note_add(&ns, "LINUX", 0x202, desc, 3);
	assert_int_equal(ns.err, 0);
	buf = exact(ns.buf, ns.len);
	note_iter_init(&it, buf, ns.len);
	while (note_next(&it, &n)) {
		assert_true(k == 0 ? note_name_is(&n, "CORE") : note_name_is(&n, "LINUX"));
		assert_int_equal(n.descsz, k == 0 ? 5 : 3);
		assert_memory_equal(n.desc, desc, n.descsz);
		k++;
	}
	assert_int_equal(k, 2);
	assert_null(it.bad);
	free(buf);

	/* every shorter segment: no read past it, and a reason unless it ends between notes */
	for (size_t len = 0; len < ns.len; len++) {
		buf = exact(ns.buf, len);
		note_iter_init(&it, buf, len);
		k = 0;
		while (note_next(&it, &n)) {
			assert_true(n.desc + n.descsz <= buf + len);
			k++;
		}
		assert_true(k <= 2);
		free(buf);
	}
	/* a name longer than the segment */
	buf = exact(ns.buf, ns.len);
	((Elf64_Nhdr *)buf)->n_namesz = 1u << 30;
	note_iter_init(&it, buf, ns.len);
	assert_false(note_next(&it, &n));
	assert_non_null(it.bad);
	/* a description longer than the segment */
	((Elf64_Nhdr *)buf)->n_namesz = 5;
	((Elf64_Nhdr *)buf)->n_descsz = UINT32_MAX;
	note_iter_init(&it, buf, ns.len);
	assert_false(note_next(&it, &n));
	assert_non_null(it.bad);
	free(buf);
	note_sink_done(&ns);
}

static void test_prstatus_is_checked_against_its_struct(void **state)
{
	struct elf_prstatus pr;
	uint64_t regs[32];
	struct note n = {.type = NT_PRSTATUS};
	pid_t tid = 0;
	uint8_t *buf;
	(void)state;

	assert_int_equal(sizeof(pr), 336); /* the kernel's size on x86_64 */
	memset(&pr, 0, sizeof(pr));
	pr.pr_pid = 4242;
	for (size_t i = 0; i < ARRAY_SIZE(pr.pr_reg); i++)
		pr.pr_reg[i] = 0x1000 + i;
	/* kernel-sized, and exactly as long as pr_reg's end: both read in bounds */
	for (size_t len = sizeof(pr); len >= PRSTATUS_REG_END;
	     len -= sizeof(pr) - PRSTATUS_REG_END) {
		buf = exact(&pr, len);
		n.desc = buf;
		n.descsz = len;
		memset(regs, 0xff, sizeof(regs));
		assert_int_equal(note_read_prstatus(&n, &tid, regs, ARRAY_SIZE(regs)), 0);
		assert_int_equal(tid, 4242);
		assert_int_equal(regs[ARCH_GREGS_PC], 0x1000 + ARCH_GREGS_PC);
		assert_int_equal(regs[ARCH_GREGS_COUNT - 1], 0x1000 + ARCH_GREGS_COUNT - 1);
		assert_int_equal(regs[ARCH_GREGS_COUNT], 0); /* beyond pr_reg: cleared, not read */
		free(buf);
		if (len == PRSTATUS_REG_END)
			break;
	}
	/* one byte short of pr_reg's end: refused */
	buf = exact(&pr, PRSTATUS_REG_END - 1);
	n.desc = buf;
	n.descsz = PRSTATUS_REG_END - 1;
	assert_int_equal(note_read_prstatus(&n, &tid, regs, ARRAY_SIZE(regs)), -EBADMSG);
	free(buf);
}

static void test_file_note_is_checked_against_its_count(void **state)
{
	uint8_t d[16 + 2 * 24 + 12];
	uint64_t hdr[2] = {2, 4096}, e[6] = {0x1000, 0x2000, 0, 0x3000, 0x5000, 3};
	struct note n = {.type = NT_FILE};
	struct note_file_entry *fe;
	size_t nf;
	uint8_t *buf;
	(void)state;

	memcpy(d, hdr, sizeof(hdr));
	memcpy(d + 16, e, sizeof(e));
	memcpy(d + 16 + 48, "/a\0/bb/cc\0\0", 12);
	buf = exact(d, sizeof(d));
	n.desc = buf;
	n.descsz = sizeof(d);
	assert_int_equal(note_file_parse(&n, &fe, &nf), 0);
	assert_int_equal(nf, 2);
	assert_string_equal(fe[0].name, "/a");
	assert_int_equal(fe[1].offset, 3 * 4096);
	assert_int_equal(fe[1].name_len, 6);
	free(fe);
	/* the last name without its NUL: left out, not read past */
	n.descsz = 16 + 48 + 9;
	assert_int_equal(note_file_parse(&n, &fe, &nf), 0);
	assert_int_equal(nf, 1);
	free(fe);
	/* a count the description cannot hold, and a description shorter than the header */
	hdr[0] = 3;
	memcpy(buf, hdr, sizeof(hdr));
	assert_int_equal(note_file_parse(&n, &fe, &nf), -EBADMSG);
	n.descsz = 15;
	assert_int_equal(note_file_parse(&n, &fe, &nf), -EBADMSG);
	free(buf);
}

static void test_auxv_reads_whole_pairs_only(void **state)
{
	uint64_t av[5] = {AT_PAGESZ, 4096, AT_SYSINFO_EHDR, 0x7fff0000, AT_NULL};
	struct note n = {.type = NT_AUXV};
	uint64_t v = 0;
	uint8_t *buf;
	(void)state;

	buf = exact(av, sizeof(av));
	n.desc = buf;
	n.descsz = sizeof(av);
	assert_true(note_auxv_get(&n, AT_SYSINFO_EHDR, &v));
	assert_int_equal(v, 0x7fff0000);
	n.descsz = 3 * 8 + 4; /* half a pair: not read */
	assert_false(note_auxv_get(&n, AT_SYSINFO_EHDR, &v));
	free(buf);
}

/* Regression: a core whose notes end with a kernel-sized (336-byte) NT_PRSTATUS, analyzed
 * through analysis_load(), which copies the notes into a buffer of their exact size. */
static void test_analysis_reads_a_prstatus_that_ends_the_notes(void **state)
{
	static const char manifest[] =
	    "{\"schema_version\": 1, \"created\": \"2026-01-01T00:00:00Z\", \"host\": \"t\","
	    " \"method\": \"copy\", \"processes\": [{\"pid\": 7, \"ppid\": 1, \"comm\": \"t\","
	    " \"exe\": \"/nonexistent/t\", \"capture\": \"memory\", \"core\": \"core.7\","
	    " \"threads\": [{\"tid\": 7, \"name\": \"t\", \"state\": \"S\", \"captured\": true}],"
	    " \"fds\": []}]}";
	char dir[] = "/tmp/osmosis-test-notes-XXXXXX", path[128];
	struct note_sink ns = {0};
	struct elf_prstatus pr;
	struct elf_prpsinfo ps;
	struct analysis a = {0};
	Elf64_Ehdr eh;
	Elf64_Phdr ph;
	char err[256];
	int fd;
	(void)state;

	memset(&ps, 0, sizeof(ps));
	ps.pr_pid = 7;
	memset(&pr, 0, sizeof(pr));
	pr.pr_pid = 7;
	pr.pr_reg[ARCH_GREGS_PC] = 0xdead0000;
	note_add(&ns, "CORE", NT_PRPSINFO, &ps, sizeof(ps));
	note_add(&ns, "CORE", NT_PRSTATUS, &pr, sizeof(pr));
	assert_int_equal(ns.err, 0);

	memset(&eh, 0, sizeof(eh));
	memcpy(eh.e_ident, ELFMAG, SELFMAG);
	eh.e_ident[EI_CLASS] = ELFCLASS64;
	eh.e_ident[EI_DATA] = ELFDATA2LSB;
	eh.e_ident[EI_VERSION] = EV_CURRENT;
	eh.e_type = ET_CORE;
	eh.e_machine = ARCH_ELF_MACHINE;
	eh.e_version = EV_CURRENT;
	eh.e_phoff = sizeof(eh);
	eh.e_ehsize = sizeof(eh);
	eh.e_phentsize = sizeof(ph);
	eh.e_phnum = 1;
	memset(&ph, 0, sizeof(ph));
	ph.p_type = PT_NOTE;
	ph.p_offset = sizeof(eh) + sizeof(ph);
	ph.p_filesz = ns.len;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/manifest.json", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, manifest, sizeof(manifest) - 1), sizeof(manifest) - 1);
	close(fd);
	snprintf(path, sizeof(path), "%s/core.7", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, &eh, sizeof(eh)), sizeof(eh));
	assert_int_equal(write(fd, &ph, sizeof(ph)), sizeof(ph));
	assert_int_equal(write(fd, ns.buf, ns.len), (ssize_t)ns.len);
	close(fd);

	assert_int_equal(analysis_load(dir, &a, err, sizeof(err)), 0);
	assert_int_equal(a.n_procs, 1);
	assert_true(a.procs[0].threads[0].in_core);
	assert_int_equal(a.procs[0].threads[0].regs[ARCH_GREGS_PC], 0xdead0000);
	analysis_done(&a);

	unlink(path);
	snprintf(path, sizeof(path), "%s/manifest.json", dir);
	unlink(path);
	rmdir(dir);
	note_sink_done(&ns);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_iter_walks_and_stops_at_what_does_not_fit),
	    cmocka_unit_test(test_prstatus_is_checked_against_its_struct),
	    cmocka_unit_test(test_file_note_is_checked_against_its_count),
	    cmocka_unit_test(test_auxv_reads_whole_pairs_only),
	    cmocka_unit_test(test_analysis_reads_a_prstatus_that_ends_the_notes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
