/* SPDX-License-Identifier: MIT */
/*
 * Notes written into cores (note_add) and read back from cores that may come from anywhere (the
 * readers). See notes.h for the contract of each; the layouts are those of the kernel's
 * fs/binfmt_elf.c, written down in docs/design/kernel-facts.md.
 */
#include <elf.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/procfs.h>

#include "base/util.h"
#include "core/notes.h"

void note_add(struct note_sink *ns, const char *name, uint32_t type, const void *desc,
	      size_t descsz)
{
	size_t namesz = strlen(name) + 1, need;
	Elf64_Nhdr nh;

	if (ns->err)
		return;
	if (descsz > UINT32_MAX - 8) {
		ns->err = -EOVERFLOW;
		return;
	}
	need = sizeof(nh) + ALIGN_UP(namesz, 4) + ALIGN_UP(descsz, 4);
	if (grow_array((void **)&ns->buf, &ns->cap, ns->len + need, 1)) {
		ns->err = -ENOMEM;
		return;
	}
	nh.n_namesz = (uint32_t)namesz;
	nh.n_descsz = (uint32_t)descsz;
	nh.n_type = type;
	memcpy(ns->buf + ns->len, &nh, sizeof(nh));
	memset(ns->buf + ns->len + sizeof(nh), 0, need - sizeof(nh));
	memcpy(ns->buf + ns->len + sizeof(nh), name, namesz);
	if (descsz)
		memcpy(ns->buf + ns->len + sizeof(nh) + ALIGN_UP(namesz, 4), desc, descsz);
	ns->len += need;
}

void note_sink_done(struct note_sink *ns)
{
	free(ns->buf);
	*ns = (struct note_sink){0};
}

void note_iter_init(struct note_iter *it, const void *buf, size_t len)
{
	*it = (struct note_iter){.buf = buf, .len = len};
}

bool note_next(struct note_iter *it, struct note *ret)
{
	Elf64_Nhdr nh;
	size_t left, name_room, desc_room;

	if (it->bad || it->off >= it->len)
		return false;
	left = it->len - it->off;
	if (left < sizeof(nh)) {
		/* Padding at the end of a segment is not a note. */
		for (size_t i = 0; i < left; i++)
			if (it->buf[it->off + i]) {
				it->bad = "a note header is cut short";
				return false;
			}
		it->off = it->len;
		return false;
	}
	memcpy(&nh, it->buf + it->off, sizeof(nh));
	left -= sizeof(nh);
	if (nh.n_namesz > left) {
		it->bad = "a note's name runs past the segment";
		return false;
	}
	name_room = MIN(ALIGN_UP((size_t)nh.n_namesz, 4), left);
	left -= name_room;
	if (nh.n_descsz > left) {
		it->bad = "a note's description runs past the segment";
		return false;
	}
	/* The last note's padding may be missing: what is there is enough. */
	desc_room = MIN(ALIGN_UP((size_t)nh.n_descsz, 4), left);
	ret->type = nh.n_type;
	ret->offset = it->off;
	ret->name = (const char *)it->buf + it->off + sizeof(nh);
	ret->namesz = nh.n_namesz;
	ret->desc = it->buf + it->off + sizeof(nh) + name_room;
	ret->descsz = nh.n_descsz;
	it->off += sizeof(nh) + name_room + desc_room;
	return true;
}

bool note_name_is(const struct note *n, const char *s)
{
	size_t l = strlen(s) + 1;
	return n->namesz == l && !memcmp(n->name, s, l);
}

int note_read_prstatus(const struct note *n, pid_t *ret_tid, uint64_t *regs, size_t nregs)
{
	const size_t reg_off = offsetof(struct elf_prstatus, pr_reg);
	const size_t reg_len = sizeof(((struct elf_prstatus *)0)->pr_reg);
	const size_t pid_off = offsetof(struct elf_prstatus, pr_pid);
	pid_t tid;

	if (n->descsz < reg_off + reg_len)
		return -EBADMSG;
	memcpy(&tid, n->desc + pid_off, sizeof(tid));
	memset(regs, 0, nregs * sizeof(*regs));
	memcpy(regs, n->desc + reg_off, MIN(reg_len, nregs * sizeof(*regs)));
	*ret_tid = tid;
	return 0;
}

bool note_auxv_get(const struct note *n, uint64_t type, uint64_t *ret)
{
	uint64_t pair[2];

	for (size_t off = 0; n->descsz - off >= sizeof(pair); off += sizeof(pair)) {
		memcpy(pair, n->desc + off, sizeof(pair));
		if (pair[0] == AT_NULL)
			break;
		if (pair[0] == type) {
			*ret = pair[1];
			return true;
		}
	}
	return false;
}

int note_file_parse(const struct note *n, struct note_file_entry **ret, size_t *ret_n)
{
	/* u64 count, u64 page size, count x {start, end, page offset}, then count names. */
	const size_t head = 2 * sizeof(uint64_t), ent = 3 * sizeof(uint64_t);
	uint64_t count, page_size;
	struct note_file_entry *e;
	const char *names, *end;
	size_t k = 0;

	if (n->descsz < head)
		return -EBADMSG;
	memcpy(&count, n->desc, sizeof(count));
	memcpy(&page_size, n->desc + sizeof(count), sizeof(page_size));
	if (count > (n->descsz - head) / ent || count > NOTE_FILE_MAX_ENTRIES)
		return -EBADMSG;
	e = calloc(count ? count : 1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	names = (const char *)n->desc + head + count * ent;
	end = (const char *)n->desc + n->descsz;
	for (uint64_t i = 0; i < count && names < end; i++) {
		uint64_t v[3];
		size_t l = strnlen(names, (size_t)(end - names));

		if (l == (size_t)(end - names))
			break; /* no NUL before the end */
		memcpy(v, n->desc + head + i * ent, sizeof(v));
		e[k] = (struct note_file_entry){
		    .start = v[0], .end = v[1], .name = names, .name_len = l};
		if (page_size && v[2] <= UINT64_MAX / page_size)
			e[k].offset = v[2] * page_size;
		else
			e[k].offset = UINT64_MAX; /* unknown: never taken for offset 0 */
		k++;
		names += l + 1;
	}
	*ret = e;
	*ret_n = k;
	return 0;
}
