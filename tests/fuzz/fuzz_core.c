/* SPDX-License-Identifier: MIT */
/* libFuzzer harness for the core reader: any bytes as core.1 beside a fixed manifest, through
 * the whole analysis (program headers, notes, NT_FILE, libdwfl unwinding, lock decoding, the
 * patterns). Cores come from other machines: nothing here may crash, hang or read out of
 * bounds. */
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "analyze/analysis.h"
#include "analyze/runtime/runtime.h"
#include "patterns/pattern.h"

static const char manifest[] =
    "{\"schema_version\": 1, \"created\": \"2026-01-01T00:00:00Z\", \"host\": \"fuzz\","
    " \"method\": \"copy\", \"processes\": [{\"pid\": 1, \"ppid\": 0, \"comm\": \"fuzz\","
    " \"exe\": \"/nonexistent/fuzz\", \"capture\": \"memory\", \"core\": \"core.1\","
    " \"threads\": [{\"tid\": 1, \"name\": \"a\", \"state\": \"S\", \"captured\": true,"
    " \"syscall\": {\"nr\": 202, \"args\": [4096, 128, 2, 0, 0, 0]}},"
    " {\"tid\": 2, \"name\": \"b\", \"state\": \"S\", \"captured\": true,"
    " \"syscall\": {\"nr\": 0, \"args\": [3, 0, 0, 0, 0, 0]}}], \"fds\": []}]}";

static char dir[64];

static void write_file(const char *name, const void *data, size_t len)
{
	char path[128];
	int fd;
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		abort();
	if (len && write(fd, data, len) != (ssize_t)len)
		abort();
	close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct analysis a = {0};
	struct findings fs = {0};
	char err[256];

	if (!dir[0]) {
		snprintf(dir, sizeof(dir), "/tmp/osmosis-fuzz-core-XXXXXX");
		if (!mkdtemp(dir))
			abort();
		write_file("manifest.json", manifest, sizeof(manifest) - 1);
		runtime_disable("java"); /* a fuzzer runs no helper programs */
	}
	write_file("core.1", data, size);
	if (analysis_load(dir, &a, err, sizeof(err)) == 0) {
		for (size_t i = 0; i < pattern_count; i++)
			pattern_registry[i]->match(&a, pattern_registry[i], &fs);
		findings_finish(&fs);
		findings_done(&fs);
	}
	analysis_done(&a);
	return 0;
}
