/* SPDX-License-Identifier: MIT */
/* The core writer against elfutils' libelf as the oracle: headers, segment data and holes, note
 * order, and extended program header numbering (PN_XNUM). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <elf.h>
#include <errno.h>
#include <gelf.h>
#include <libelf.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/writer.h"

#define PAGE 4096

static struct osm_process *make_process(size_t n_maps)
{
	struct osm_process *p = calloc(1, sizeof(*p));
	p->pid = 100;
	p->ppid = 1;
	p->state = 'S';
	strcpy(p->comm, "fake");
	p->cmdline = strdup("fake --flag");
	p->exe = strdup("/usr/bin/fake");
	for (pid_t tid = 100; tid < 103; tid++) {
		struct osm_thread *t = process_add_thread(p, tid == 100 ? 102 : tid - 1);
		t->captured = true;
		t->regs.gp.rip = 0x1000 + (uint64_t)t->tid;
		t->regs.fp_valid = true;
	}
	process_add_thread(p, 999)->gone = true; /* not captured: left out */
	p->maps = calloc(n_maps, sizeof(*p->maps));
	p->n_maps = n_maps;
	for (size_t i = 0; i < n_maps; i++) {
		struct osm_mapping *m = &p->maps[i];
		m->start = 0x10000000ull + i * 2 * PAGE;
		m->end = m->start + PAGE;
		m->prot = PROT_READ | (i % 2 ? PROT_WRITE : 0);
	}
	return p;
}

static Elf *open_mem(struct mem_sink *ms)
{
	elf_version(EV_CURRENT);
	return elf_memory((char *)ms->buf, ms->base.pos);
}

static void test_layout_and_data(void **state)
{
	struct osm_process *p = make_process(3);
	static uint8_t page_a[2 * PAGE], page_b[PAGE];
	struct mem_sink ms;
	GElf_Ehdr eh;
	GElf_Phdr ph;
	size_t phnum;
	Elf *e;
	(void)state;

	/* map 0: two pages, second one zero (a hole); map 1: dumped, nothing captured (zeroes);
	 * map 2: not dumped */
	p->maps[0].end = p->maps[0].start + 2 * PAGE;
	memset(page_a, 0x5a, PAGE);
	p->maps[0].dump_len = 2 * PAGE;
	mapping_add_extent(&p->maps[0], 0, 2 * PAGE, page_a);
	p->maps[1].dump_len = PAGE;
	memset(page_b, 0x11, PAGE);
	p->maps[1].path = strdup("/lib/libfake.so");
	p->maps[1].pgoff = 3 * PAGE;

	mem_sink_init(&ms, 1 << 26);
	assert_int_equal(core_write(p, &ms.base, PAGE), 0);
	e = open_mem(&ms);
	assert_non_null(e);
	assert_non_null(gelf_getehdr(e, &eh));
	assert_int_equal(eh.e_type, ET_CORE);
	assert_int_equal(eh.e_machine, EM_X86_64);
	assert_int_equal(elf_getphdrnum(e, &phnum), 0);
	assert_int_equal(phnum, 4);
	gelf_getphdr(e, 0, &ph);
	assert_int_equal(ph.p_type, PT_NOTE);
	gelf_getphdr(e, 1, &ph);
	assert_int_equal(ph.p_type, PT_LOAD);
	assert_int_equal(ph.p_vaddr, p->maps[0].start);
	assert_int_equal(ph.p_filesz, 2 * PAGE);
	assert_int_equal(ph.p_offset % PAGE, 0);
	assert_int_equal(ph.p_flags, PF_R);
	assert_memory_equal(ms.buf + ph.p_offset, page_a, 2 * PAGE);
	gelf_getphdr(e, 2, &ph);
	assert_int_equal(ph.p_flags, PF_R | PF_W);
	assert_int_equal(ph.p_filesz, PAGE);
	for (size_t i = 0; i < PAGE; i++)
		assert_int_equal(ms.buf[ph.p_offset + i], 0);
	gelf_getphdr(e, 3, &ph);
	assert_int_equal(ph.p_filesz, 0);
	assert_int_equal(ph.p_memsz, PAGE);

	/* notes: PRPSINFO, 3 x (PRSTATUS FPREGSET SIGINFO), AUXV absent (no auxv), FILE */
	gelf_getphdr(e, 0, &ph);
	Elf_Data *d = elf_getdata_rawchunk(e, ph.p_offset, ph.p_filesz, ELF_T_NHDR);
	assert_non_null(d);
	uint32_t want[] = {NT_PRPSINFO, NT_PRSTATUS, NT_FPREGSET, NT_SIGINFO,
			   NT_PRSTATUS, NT_FPREGSET, NT_SIGINFO,  NT_PRSTATUS,
			   NT_FPREGSET, NT_SIGINFO,  NT_FILE};
	size_t off = 0, name_off, desc_off, k = 0;
	GElf_Nhdr nh;
	pid_t first_tid = 0;
	while ((off = gelf_getnote(d, off, &nh, &name_off, &desc_off)) > 0) {
		assert_true(k < sizeof(want) / sizeof(want[0]));
		assert_int_equal(nh.n_type, want[k]);
		if (nh.n_type == NT_PRSTATUS && !first_tid)
			memcpy(&first_tid, (char *)d->d_buf + desc_off + 32, sizeof(first_tid));
		if (nh.n_type == NT_FILE) {
			uint64_t hdr[5];
			memcpy(hdr, (char *)d->d_buf + desc_off, sizeof(hdr));
			assert_int_equal(hdr[0], 1);	/* one file mapping */
			assert_int_equal(hdr[1], PAGE); /* page size */
			assert_int_equal(hdr[2], p->maps[1].start);
			assert_int_equal(hdr[4], 3); /* offset in pages */
			assert_string_equal((char *)d->d_buf + desc_off + 40, "/lib/libfake.so");
		}
		k++;
	}
	assert_int_equal(k, sizeof(want) / sizeof(want[0]));
	assert_int_equal(first_tid, 100); /* the main thread first */
	elf_end(e);
	mem_sink_done(&ms);
	process_free(p);
}

static void test_xnum(void **state)
{
	size_t n = 70000, phnum;
	struct osm_process *p = make_process(n);
	struct mem_sink ms;
	GElf_Ehdr eh;
	GElf_Phdr ph;
	Elf *e;
	(void)state;
	mem_sink_init(&ms, 1 << 26);
	assert_int_equal(core_write(p, &ms.base, PAGE), 0);
	e = open_mem(&ms);
	assert_non_null(gelf_getehdr(e, &eh));
	assert_int_equal(eh.e_phnum, PN_XNUM);
	assert_int_equal(elf_getphdrnum(e, &phnum), 0);
	assert_int_equal(phnum, n + 1);
	assert_non_null(gelf_getphdr(e, (int)n, &ph));
	assert_int_equal(ph.p_vaddr, p->maps[n - 1].start);
	elf_end(e);
	mem_sink_done(&ms);
	process_free(p);
}

static void test_sink_limit(void **state)
{
	struct osm_process *p = make_process(3);
	struct mem_sink ms;
	(void)state;
	mem_sink_init(&ms, 100); /* smaller than the headers: the writer reports the sink's error */
	assert_int_equal(core_write(p, &ms.base, PAGE), -EFBIG);
	mem_sink_done(&ms);
	process_free(p);
}

/* The placed layout: a segment pre-copy wrote into the file keeps its bytes, what changed is
 * written over it in place, the other segments follow, the notes and program headers go last. */
static void test_placed_layout(void **state)
{
	struct osm_process *p = make_process(2);
	static uint8_t changed[PAGE], other[PAGE];
	char path[] = "/tmp/osmosis-test-placed-XXXXXX";
	int fd = mkstemp(path);
	struct file_sink fs;
	uint8_t *all;
	GElf_Ehdr eh;
	GElf_Phdr ph;
	size_t phnum;
	(void)state;

	assert_true(fd >= 0);
	unlink(path);
	/* map 0 placed at page 1 (two pages), as pre-copy's rounds left it: 0x33, 0x44 */
	p->maps[0].end = p->maps[0].start + 2 * PAGE;
	p->maps[0].dump_len = 2 * PAGE;
	p->maps[0].core_off = PAGE;
	memset(changed, 0x33, PAGE);
	assert_int_equal(pwrite(fd, changed, PAGE, PAGE), PAGE);
	memset(changed, 0x44, PAGE);
	assert_int_equal(pwrite(fd, changed, PAGE, 2 * PAGE), PAGE);
	/* the freeze found its second page written: 0x55 */
	memset(changed, 0x55, PAGE);
	mapping_add_extent(&p->maps[0], PAGE, PAGE, changed);
	/* map 1 not placed */
	p->maps[1].dump_len = PAGE;
	memset(other, 0x66, PAGE);
	mapping_add_extent(&p->maps[1], 0, PAGE, other);

	file_sink_init(&fs, fd);
	assert_int_equal(core_write(p, &fs.base, PAGE), 0);
	off_t size = lseek(fd, 0, SEEK_END);
	all = malloc((size_t)size);
	assert_int_equal(pread(fd, all, (size_t)size, 0), size);
	elf_version(EV_CURRENT);
	Elf *e = elf_memory((char *)all, (size_t)size);
	assert_non_null(gelf_getehdr(e, &eh));
	assert_int_equal(eh.e_type, ET_CORE);
	assert_true(eh.e_phoff > 3 * PAGE); /* at the end */
	assert_int_equal(elf_getphdrnum(e, &phnum), 0);
	assert_int_equal(phnum, 3);
	gelf_getphdr(e, 1, &ph);
	assert_int_equal(ph.p_offset, PAGE);
	assert_int_equal(all[ph.p_offset], 0x33);
	assert_int_equal(all[ph.p_offset + PAGE], 0x55);
	gelf_getphdr(e, 2, &ph);
	assert_int_equal(ph.p_offset, 3 * PAGE);
	assert_int_equal(all[ph.p_offset], 0x66);
	gelf_getphdr(e, 0, &ph);
	assert_int_equal(ph.p_type, PT_NOTE);
	assert_true(ph.p_offset >= 4 * PAGE);
	assert_non_null(elf_getdata_rawchunk(e, ph.p_offset, ph.p_filesz, ELF_T_NHDR));
	elf_end(e);
	free(all);
	close(fd);
	/* a sink that only appends cannot take it */
	struct mem_sink ms;
	mem_sink_init(&ms, 1 << 26);
	assert_int_equal(core_write(p, &ms.base, PAGE), -EINVAL);
	mem_sink_done(&ms);
	process_free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_layout_and_data),
	    cmocka_unit_test(test_xnum),
	    cmocka_unit_test(test_sink_limit),
	    cmocka_unit_test(test_placed_layout),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
