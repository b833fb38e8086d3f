/* SPDX-License-Identifier: MIT */
/* Compressed cores: what the zstd sink writes, the reader gives back byte for byte (holes as
 * zeroes, zero chunks flagged); `zstd -d` sees plain frames; a truncated file is read up to its
 * last whole frame and says so; a damaged index or frame is noticed, never trusted; the ELF core
 * of a process written compressed is read back through the image libelf opens. */
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
#include "core/zcore.h"

#define MIB (1u << 20)

/* A file on memory holding what the sink wrote through a file sink. */
static int compress_to_fd(const uint8_t *data, size_t len, const size_t *holes, size_t n_holes,
			  unsigned workers)
{
	int fd = memfd_create("zcore", MFD_CLOEXEC);
	struct file_sink fs;
	struct zstd_sink *z;
	size_t pos = 0;

	assert_true(fd >= 0);
	file_sink_init(&fs, fd);
	z = zstd_sink_new(&fs.base, 1, workers);
	assert_non_null(z);
	/* holes: pairs (offset, length) skipped, the rest written in odd-sized pieces */
	for (size_t h = 0; h <= n_holes; h++) {
		size_t end = h < n_holes ? holes[2 * h] : len;
		while (pos < end) {
			size_t n = end - pos < 12345 ? end - pos : 12345;
			assert_int_equal(zstd_sink_base(z)->write(zstd_sink_base(z), data + pos, n),
					 0);
			pos += n;
		}
		if (h < n_holes) {
			assert_int_equal(
			    (zstd_sink_base(z)->skip)(zstd_sink_base(z), holes[2 * h + 1]), 0);
			pos += holes[2 * h + 1];
		}
	}
	assert_int_equal(zstd_sink_base(z)->finish(zstd_sink_base(z)), 0);
	zstd_sink_free(z);
	return fd;
}

static uint8_t *pattern(size_t len, const size_t *holes, size_t n_holes)
{
	uint8_t *d = malloc(len);
	uint32_t x = 12345;

	assert_non_null(d);
	for (size_t i = 0; i < len; i++) {
		x = x * 1103515245u + 12345u;
		d[i] = (i % 64 < 40) ? (uint8_t)(x >> 24) : (uint8_t)i;
	}
	for (size_t h = 0; h < n_holes; h++)
		memset(d + holes[2 * h], 0, holes[2 * h + 1]);
	return d;
}

static void test_round_trip(void **state)
{
	/* a hole inside a chunk, a hole of three whole chunks, a trailing partial chunk */
	const size_t holes[] = {100000, 5000, 2 * MIB, 3 * MIB};
	size_t len = 7 * MIB + 777;
	uint8_t *d = pattern(len, holes, 2), *back = malloc(len);
	char err[256];
	struct zcore *z;

	for (unsigned workers = 0; workers < 3; workers += 2) {
		int fd = compress_to_fd(d, len, holes, 2, workers);
		assert_int_equal(zcore_open(fd, &z, err, sizeof(err)), 0);
		assert_string_equal(err, "");
		assert_null(zcore_problem(z));
		assert_int_equal(zcore_size(z), len);
		assert_int_equal(zcore_pread(z, back, len, 0), len);
		assert_memory_equal(back, d, len);
		/* reads across chunk boundaries, and past the end */
		assert_int_equal(zcore_pread(z, back, 3000, MIB - 1000), 3000);
		assert_memory_equal(back, d + MIB - 1000, 3000);
		assert_int_equal(zcore_pread(z, back, 5000, len - 100), 100);
		assert_true(zcore_is_zero(z, 2 * MIB, 3 * MIB));
		assert_false(zcore_is_zero(z, 0, MIB));
		/* the plain core, holes for zeroes */
		int out = memfd_create("plain", MFD_CLOEXEC);
		assert_int_equal(zcore_extract(z, out), 0);
		assert_int_equal(lseek(out, 0, SEEK_END), (off_t)len);
		assert_int_equal(pread(out, back, len, 0), (ssize_t)len);
		assert_memory_equal(back, d, len);
		close(out);
		zcore_close(z);
		close(fd);
	}
	free(d);
	free(back);
}

static void test_truncated_and_damaged(void **state)
{
	size_t len = 5 * MIB;
	uint8_t *d = pattern(len, NULL, 0), *back = malloc(len);
	char err[256];
	struct zcore *z;
	int fd = compress_to_fd(d, len, NULL, 0, 1);
	off_t size = lseek(fd, 0, SEEK_END);
	uint8_t byte;

	/* cut in the middle of the fourth frame: three chunks remain */
	off_t cut = 0;
	assert_int_equal(zcore_open(fd, &z, err, sizeof(err)), 0);
	zcore_close(z);
	{
		/* find where frame 3 starts: the reader's index says (frames are contiguous) */
		uint8_t t[ZCORE_TRAILER_BYTES];
		assert_int_equal(pread(fd, t, sizeof(t), size - (off_t)sizeof(t)),
				 (ssize_t)sizeof(t));
		uint32_t n;
		memcpy(&n, t + 8, 4);
		assert_int_equal(n, 5);
		uint8_t e[ZCORE_ENTRY_BYTES];
		off_t idx = size - ZCORE_TRAILER_BYTES - (off_t)n * ZCORE_ENTRY_BYTES;
		assert_int_equal(pread(fd, e, sizeof(e), idx + 3 * ZCORE_ENTRY_BYTES),
				 (ssize_t)sizeof(e));
		memcpy(&cut, e, 8);
		cut += 10;
	}
	int tfd = memfd_create("trunc", MFD_CLOEXEC);
	uint8_t *all = malloc((size_t)size);
	assert_int_equal(pread(fd, all, (size_t)size, 0), size);
	assert_int_equal(write(tfd, all, (size_t)cut), cut);
	assert_int_equal(zcore_open(tfd, &z, err, sizeof(err)), 0);
	assert_non_null(zcore_problem(z));
	assert_non_null(strstr(err, "no index"));
	assert_int_equal(zcore_size(z), 3 * MIB);
	assert_int_equal(zcore_pread(z, back, len, 0), 3 * MIB);
	assert_memory_equal(back, d, 3 * MIB);
	zcore_close(z);
	close(tfd);

	/* a damaged index entry: the frames are walked instead, and it is said */
	tfd = memfd_create("index", MFD_CLOEXEC);
	assert_int_equal(write(tfd, all, (size_t)size), size);
	byte = 0x77;
	assert_int_equal(pwrite(tfd, &byte, 1, size - ZCORE_TRAILER_BYTES - 2 * ZCORE_ENTRY_BYTES),
			 1);
	assert_int_equal(zcore_open(tfd, &z, err, sizeof(err)), 0);
	assert_non_null(strstr(err, "index is damaged"));
	assert_int_equal(zcore_size(z), len);
	assert_int_equal(zcore_pread(z, back, len, 0), len);
	assert_memory_equal(back, d, len);
	zcore_close(z);
	close(tfd);

	/* a damaged frame: the read stops there (the checksum), it does not return garbage */
	tfd = memfd_create("frame", MFD_CLOEXEC);
	assert_int_equal(write(tfd, all, (size_t)size), size);
	pread(tfd, &byte, 1, cut + 1000);
	byte ^= 0xff;
	assert_int_equal(pwrite(tfd, &byte, 1, cut + 1000), 1);
	assert_int_equal(zcore_open(tfd, &z, err, sizeof(err)), 0);
	assert_true(zcore_pread(z, back, len, 0) <= 3 * MIB);
	int out = memfd_create("plain", MFD_CLOEXEC);
	assert_int_equal(zcore_extract(z, out), -EBADMSG);
	close(out);
	zcore_close(z);
	close(tfd);

	/* not a compressed core at all */
	tfd = memfd_create("junk", MFD_CLOEXEC);
	assert_int_equal(write(tfd, "\177ELF plain core", 15), 15);
	assert_true(zcore_open(tfd, &z, err, sizeof(err)) < 0);
	assert_true(err[0] != 0);
	close(tfd);

	free(all);
	close(fd);
	free(d);
	free(back);
}

static void test_core_through_image(void **state)
{
	struct osm_process *p = calloc(1, sizeof(*p));
	static uint8_t stack[64 * 1024], heap[3 * MIB];
	struct file_sink fs;
	struct zstd_sink *zs;
	char err[256];
	struct zcore *z;
	void *image;
	size_t len;
	int fd = memfd_create("core", MFD_CLOEXEC);

	p->pid = 100;
	p->state = 'S';
	strcpy(p->comm, "fake");
	struct osm_thread *t = process_add_thread(p, 100);
	t->captured = true;
	t->regs.gp.rsp = 0x7f0000008000ull;
	p->maps = calloc(2, sizeof(*p->maps));
	p->n_maps = 2;
	p->maps[0] = (struct osm_mapping){.start = 0x10000000ull,
					  .end = 0x10000000ull + sizeof(heap),
					  .prot = PROT_READ | PROT_WRITE,
					  .dump_len = sizeof(heap)};
	p->maps[1] = (struct osm_mapping){.start = 0x7f0000000000ull,
					  .end = 0x7f0000000000ull + sizeof(stack),
					  .prot = PROT_READ | PROT_WRITE,
					  .dump_len = sizeof(stack)};
	memset(stack, 0xab, sizeof(stack));
	memset(heap + MIB, 0xcd, MIB);
	assert_int_equal(mapping_add_extent(&p->maps[0], 0, sizeof(heap), heap), 0);
	assert_int_equal(mapping_add_extent(&p->maps[1], 0, sizeof(stack), stack), 0);
	file_sink_init(&fs, fd);
	zs = zstd_sink_new(&fs.base, 3, 1);
	assert_int_equal(core_write(p, zstd_sink_base(zs), 4096), 0);
	zstd_sink_free(zs);

	assert_int_equal(zcore_open(fd, &z, err, sizeof(err)), 0);
	assert_int_equal(zcore_image(z, &image, &len, err, sizeof(err)), 0);
	elf_version(EV_CURRENT);
	Elf *elf = elf_memory(image, len);
	GElf_Ehdr eh;
	GElf_Phdr ph;
	assert_non_null(gelf_getehdr(elf, &eh));
	assert_int_equal(eh.e_type, ET_CORE);
	assert_non_null(gelf_getphdr(elf, 2, &ph)); /* the stack: filled above its pointer */
	assert_int_equal(ph.p_vaddr, 0x7f0000000000ull);
	assert_int_equal(((uint8_t *)image)[ph.p_offset + 0x8000], 0xab);
	assert_non_null(gelf_getphdr(elf, 1, &ph)); /* the heap (3 MiB): not in the image */
	assert_int_equal(((uint8_t *)image)[ph.p_offset + MIB], 0);
	uint8_t b;
	assert_int_equal(zcore_pread(z, &b, 1, ph.p_offset + MIB), 1); /* but read on demand */
	assert_int_equal(b, 0xcd);
	elf_end(elf);
	zcore_close(z);
	close(fd);
	process_free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_round_trip),
	    cmocka_unit_test(test_truncated_and_damaged),
	    cmocka_unit_test(test_core_through_image),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
