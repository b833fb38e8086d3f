/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "base/util.h"
#include "proc/maps.h"

static bool parse_hex(const char **pp, const char *end, uint64_t *ret)
{
	const char *p = *pp;
	uint64_t v = 0;
	int digits = 0;

	while (p < end) {
		int d;
		if (*p >= '0' && *p <= '9')
			d = *p - '0';
		else if (*p >= 'a' && *p <= 'f')
			d = *p - 'a' + 10;
		else if (*p >= 'A' && *p <= 'F')
			d = *p - 'A' + 10;
		else
			break;
		if (v >> 60)
			return false;
		v = v << 4 | (uint64_t)d;
		p++;
		digits++;
	}
	if (!digits)
		return false;
	*pp = p;
	*ret = v;
	return true;
}

static bool parse_dec(const char **pp, const char *end, uint64_t *ret)
{
	const char *p = *pp;
	uint64_t v = 0;
	int digits = 0;

	while (p < end && *p >= '0' && *p <= '9') {
		if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, *p - '0', &v))
			return false;
		p++;
		digits++;
	}
	if (!digits)
		return false;
	*pp = p;
	*ret = v;
	return true;
}

static bool expect(const char **pp, const char *end, char c)
{
	if (*pp >= end || **pp != c)
		return false;
	(*pp)++;
	return true;
}

static void skip_spaces(const char **pp, const char *end)
{
	while (*pp < end && **pp == ' ')
		(*pp)++;
}

int maps_parse_line(const char *line, size_t len, struct osm_mapping *m)
{
	const char *p = line, *end = line + len;
	uint64_t start, stop, off, maj, min, ino;
	char perms[4];

	memset(m, 0, sizeof(*m));
	if (!parse_hex(&p, end, &start) || !expect(&p, end, '-') || !parse_hex(&p, end, &stop) ||
	    stop < start)
		return -EINVAL;
	skip_spaces(&p, end);
	if (end - p < 4)
		return -EINVAL;
	memcpy(perms, p, 4);
	p += 4;
	skip_spaces(&p, end);
	if (!parse_hex(&p, end, &off))
		return -EINVAL;
	skip_spaces(&p, end);
	if (!parse_hex(&p, end, &maj) || !expect(&p, end, ':') || !parse_hex(&p, end, &min))
		return -EINVAL;
	skip_spaces(&p, end);
	if (!parse_dec(&p, end, &ino))
		return -EINVAL;
	skip_spaces(&p, end);

	m->start = start;
	m->end = stop;
	m->pgoff = off;
	m->prot = (perms[0] == 'r' ? PROT_READ : 0) | (perms[1] == 'w' ? PROT_WRITE : 0) |
		  (perms[2] == 'x' ? PROT_EXEC : 0);
	m->shared = perms[3] == 's';
	m->dev_major = (uint32_t)maj;
	m->dev_minor = (uint32_t)min;
	m->inode = ino;
	if (p < end) {
		m->path = strndup(p, end - p);
		if (!m->path)
			return -ENOMEM;
	}
	return 0;
}

static uint64_t smaps_kb(const char *line, size_t len, size_t keylen)
{
	const char *p = line + keylen, *end = line + len;
	uint64_t v = 0;

	skip_spaces(&p, end);
	if (!parse_dec(&p, end, &v))
		return 0;
	return v > UINT64_MAX / 1024 ? UINT64_MAX : v * 1024;
}

static uint64_t parse_vmflags(const char *p, const char *end)
{
	static const struct {
		char name[3];
		uint64_t flag;
	} names[] = {
	    {"dd", VMF_DONTDUMP}, {"io", VMF_IO},	  {"ht", VMF_HUGETLB},	{"pf", VMF_PFNMAP},
	    {"dc", VMF_DONTCOPY}, {"wf", VMF_WIPEONFORK}, {"mw", VMF_MAYWRITE},
	};
	uint64_t flags = 0;

	while (p + 2 <= end) {
		skip_spaces(&p, end);
		if (p + 2 > end)
			break;
		for (size_t i = 0; i < ARRAY_SIZE(names); i++)
			if (p[0] == names[i].name[0] && p[1] == names[i].name[1] &&
			    (p + 2 == end || p[2] == ' '))
				flags |= names[i].flag;
		while (p < end && *p != ' ')
			p++;
	}
	return flags;
}

static bool is_header_line(const char *line, size_t len)
{
	/* smaps key lines start with a capitalised key and a colon; header lines with a hex digit.
	 */
	for (size_t i = 0; i < len; i++) {
		if (line[i] == '-')
			return i > 0;
		if (!((line[i] >= '0' && line[i] <= '9') || (line[i] >= 'a' && line[i] <= 'f')))
			return false;
	}
	return false;
}

int maps_parse(const char *text, size_t len, struct osm_mapping **ret, size_t *ret_n)
{
	struct osm_mapping *maps = NULL, *cur = NULL;
	size_t n = 0, cap = 0;
	const char *p = text, *end = text + len;

	while (p < end) {
		const char *nl = memchr(p, '\n', end - p);
		size_t ll = nl ? (size_t)(nl - p) : (size_t)(end - p);

		if (ll == 0) {
			p += 1;
			continue;
		}
		if (is_header_line(p, ll)) {
			int r;
			if (grow_array((void **)&maps, &cap, n + 1, sizeof(*maps))) {
				maps_free(maps, n);
				return -ENOMEM;
			}
			r = maps_parse_line(p, ll, &maps[n]);
			if (r < 0) {
				maps_free(maps, n);
				return r;
			}
			cur = &maps[n++];
		} else if (cur) {
#define KEY(k) (ll > sizeof(k) - 1 && !memcmp(p, k, sizeof(k) - 1))
			if (KEY("Rss:"))
				cur->rss_bytes = smaps_kb(p, ll, 4);
			else if (KEY("Anonymous:"))
				cur->anon_bytes = smaps_kb(p, ll, 10);
			else if (KEY("Swap:"))
				cur->swap_bytes = smaps_kb(p, ll, 5);
			else if (KEY("VmFlags:"))
				cur->vmflags = parse_vmflags(p + 8, p + ll) | VMF_KNOWN;
#undef KEY
		} else {
			maps_free(maps, n);
			return -EINVAL;
		}
		p += ll + (nl ? 1 : 0);
	}
	*ret = maps;
	*ret_n = n;
	return 0;
}

static bool path_is(const struct osm_mapping *m, const char *name)
{
	return m->path && !strcmp(m->path, name);
}

static bool file_backed(const struct osm_mapping *m)
{
	/* The kernel's vm_file: a path that is not a pseudo name like [heap] or [stack]. */
	return m->path && m->path[0] != '[' && (m->inode != 0 || m->path[0] == '/');
}

static bool file_unlinked(const struct osm_mapping *m)
{
	size_t l = m->path ? strlen(m->path) : 0;
	return l >= 10 && !strcmp(m->path + l - 10, " (deleted)");
}

void maps_plan_dump(struct osm_mapping *m, unsigned filter, uint64_t page_size)
{
	uint64_t size = m->end - m->start;

	m->dump_len = 0;
	m->elf_header_only = false;
	m->trim_absent = false;

	/* always_dump_vma(): the vDSO and the vsyscall page. */
	if (path_is(m, "[vdso]") || path_is(m, "[vsyscall]")) {
		m->dump_len = size;
		return;
	}
	if (m->vmflags & (VMF_DONTDUMP | VMF_IO))
		return;
	if (m->vmflags & VMF_HUGETLB) {
		if (filter & (m->shared ? MMF_DUMP_HUGETLB_SHARED : MMF_DUMP_HUGETLB_PRIVATE))
			m->dump_len = size;
		return;
	}
	if (m->shared) {
		/* A shared mapping of an unlinked file (shmem: MAP_SHARED|MAP_ANONYMOUS, memfd,
		 * SysV shm) counts as anonymous shared. */
		bool anon = !file_backed(m) || file_unlinked(m);
		if (filter & (anon ? MMF_DUMP_ANON_SHARED : MMF_DUMP_MAPPED_SHARED))
			m->dump_len = size;
		return;
	}
	/* Private mappings that have been written to (the kernel's anon_vma). Anonymous ones count
	 * when they are accessible or hold pages; file-backed ones when they hold private copies.
	 */
	if (filter & MMF_DUMP_ANON_PRIVATE) {
		if (!file_backed(m) && (m->prot != 0 || m->anon_bytes || m->swap_bytes)) {
			m->dump_len = size;
			m->trim_absent = true;
			return;
		}
		if (file_backed(m) && (m->anon_bytes || m->swap_bytes)) {
			m->dump_len = size;
			return;
		}
	}
	if (!file_backed(m))
		return;
	if (filter & MMF_DUMP_MAPPED_PRIVATE) {
		m->dump_len = size;
		return;
	}
	if ((filter & MMF_DUMP_ELF_HEADERS) && m->pgoff == 0 && (m->prot & PROT_READ)) {
		m->dump_len = MIN(size, page_size);
		m->elf_header_only = true;
	}
}

size_t maps_carry_smaps(struct osm_mapping *cur, size_t n_cur, const struct osm_mapping *old,
			size_t n_old)
{
	size_t j = 0, missing = 0;

	/* Both lists are sorted by address, as the kernel prints them. */
	for (size_t i = 0; i < n_cur; i++) {
		struct osm_mapping *c = &cur[i];

		while (j < n_old && old[j].end <= c->start)
			j++;
		if (j < n_old && old[j].start == c->start && old[j].end == c->end &&
		    old[j].prot == c->prot && old[j].pgoff == c->pgoff &&
		    old[j].inode == c->inode && old[j].shared == c->shared) {
			c->vmflags = old[j].vmflags;
			c->rss_bytes = old[j].rss_bytes;
			c->anon_bytes = old[j].anon_bytes;
			c->swap_bytes = old[j].swap_bytes;
		} else {
			missing++;
		}
	}
	return missing;
}

void maps_free(struct osm_mapping *maps, size_t n)
{
	if (!maps)
		return;
	for (size_t i = 0; i < n; i++)
		mapping_done(&maps[i]);
	free(maps);
}
