/* SPDX-License-Identifier: MIT */
/* libFuzzer harness for the compressed-core reader: any bytes as a core.PID.zst. Opening it
 * (index or frame walk), reads at offsets the input chooses, the image for libelf (and libelf
 * over it), and the plain core written out: nothing may crash, hang, read out of bounds or use
 * memory beyond its bounds. */
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/zcore.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t buf[3 << 20];
	struct zcore *z = NULL;
	char err[256];
	void *image;
	size_t len;
	int fd = memfd_create("fuzz", MFD_CLOEXEC);

	if (fd < 0)
		abort();
	if (size && write(fd, data, size) != (ssize_t)size)
		abort();
	if (zcore_open(fd, &z, err, sizeof(err)) == 0) {
		uint64_t off = 0;
		if (size >= 8)
			memcpy(&off, data, 8);
		zcore_pread(z, buf, sizeof(buf), 0);
		zcore_pread(z, buf, 4096, off % (zcore_size(z) + 1));
		zcore_is_zero(z, off % (zcore_size(z) + 1), 100000);
		if (zcore_image(z, &image, &len, err, sizeof(err)) == 0) {
			elf_version(EV_CURRENT);
			Elf *elf = elf_memory(image, len);
			size_t phnum;
			if (elf && elf_getphdrnum(elf, &phnum) == 0) {
				GElf_Phdr ph;
				for (size_t i = 0; i < phnum && i < 64; i++)
					gelf_getphdr(elf, (int)i, &ph);
			}
			if (elf)
				elf_end(elf);
		}
		int out = memfd_create("fuzz-out", MFD_CLOEXEC);
		if (out >= 0) {
			zcore_extract(z, out);
			close(out);
		}
		zcore_close(z);
	}
	close(fd);
	return 0;
}
