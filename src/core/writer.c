/* SPDX-License-Identifier: MIT */
/*
 * The ELF core writer. Layout (that of gdb's gcore; the kernel's differs only in where the
 * per-process notes sit between the first thread's notes):
 *
 *   Elf64_Ehdr                          e_type ET_CORE, e_phnum = 1 + mappings (or PN_XNUM)
 *   Elf64_Phdr[]                        PT_NOTE, then one PT_LOAD per mapping, in address order
 *   Elf64_Shdr (only with PN_XNUM)      sh_info holds the real program header count
 *   notes:
 *     NT_PRPSINFO                       the process
 *     per thread, main thread first:    NT_PRSTATUS, NT_FPREGSET, NT_X86_XSTATE (arch), NT_SIGINFO
 *     NT_AUXV, NT_FILE                  the process
 *   padding to a page boundary
 *   segment data                        p_filesz bytes per PT_LOAD, page aligned; zero pages and
 *                                       ranges not captured are holes (read as zeroes)
 *
 * A PT_LOAD's p_memsz is the mapping's size; p_filesz is what the dump rule kept (maps.c): 0 for
 * mappings the kernel would not dump, one page for ELF headers of file mappings, else all of it.
 *
 * Placed layout, when pre-copy's rounds already wrote segments into the file (core_off set):
 *
 *   Elf64_Ehdr                          e_phoff and e_shoff point to the end
 *   padding to a page boundary
 *   placed segments                     at their core_off, written before the freeze; what the
 *                                       target wrote since is written over them in place
 *   the other segments                  one after another, page aligned, in address order
 *   notes, Elf64_Phdr[], Elf64_Shdr     at the end: their sizes are known only at the freeze
 *
 * ELF puts no order on these (readers follow e_phoff and p_offset): gdb, lldb, eu-stack and
 * libelf read both layouts.
 */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/procfs.h>
#include <unistd.h>

#include "arch.h"
#include "base/pagemap.h"
#include "base/util.h"
#include "core/notes.h"
#include "core/writer.h"
#include "proc/maps.h"

static bool mapping_has_file(const struct osm_mapping *m)
{
	return m->path && m->path[0] == '/';
}

static void add_file_note(const struct osm_process *p, uint64_t page_size, struct note_sink *ns)
{
	_cleanup_free_ uint8_t *buf = NULL;
	size_t count = 0, names = 0, size, off;

	for (size_t i = 0; i < p->n_maps; i++)
		if (mapping_has_file(&p->maps[i])) {
			count++;
			names += strlen(p->maps[i].path) + 1;
		}
	size = 2 * 8 + count * 3 * 8 + names;
	buf = calloc(1, size);
	if (!buf) {
		ns->err = -ENOMEM;
		return;
	}
	((uint64_t *)buf)[0] = count;
	((uint64_t *)buf)[1] = page_size;
	off = 16;
	for (size_t i = 0; i < p->n_maps; i++) {
		const struct osm_mapping *m = &p->maps[i];
		uint64_t ent[3] = {m->start, m->end, m->pgoff / page_size};
		if (!mapping_has_file(m))
			continue;
		memcpy(buf + off, ent, sizeof(ent));
		off += sizeof(ent);
	}
	for (size_t i = 0; i < p->n_maps; i++) {
		const struct osm_mapping *m = &p->maps[i];
		size_t l;
		if (!mapping_has_file(m))
			continue;
		l = strlen(m->path) + 1;
		memcpy(buf + off, m->path, l);
		off += l;
	}
	note_add(ns, "CORE", NT_FILE, buf, size);
}

static void add_prpsinfo(const struct osm_process *p, struct note_sink *ns)
{
	static const char states[] = "RSDTZW";
	struct elf_prpsinfo ps;
	const char *s;

	memset(&ps, 0, sizeof(ps));
	s = strchr(states, p->state);
	ps.pr_state = s && p->state ? (char)(s - states) : 0;
	ps.pr_sname = p->state ? p->state : 'R';
	ps.pr_zomb = p->state == 'Z';
	ps.pr_uid = p->uid;
	ps.pr_gid = p->gid;
	ps.pr_pid = p->pid;
	ps.pr_ppid = p->ppid;
	ps.pr_pgrp = p->pgid;
	ps.pr_sid = p->sid;
	memcpy(ps.pr_fname, p->comm, MIN(strlen(p->comm), sizeof(ps.pr_fname)));
	if (p->cmdline)
		memcpy(ps.pr_psargs, p->cmdline, MIN(strlen(p->cmdline), sizeof(ps.pr_psargs) - 1));
	note_add(ns, "CORE", NT_PRPSINFO, &ps, sizeof(ps));
}

static void us_to_timeval(uint64_t us, struct timeval *tv)
{
	tv->tv_sec = (time_t)(us / 1000000);
	tv->tv_usec = (suseconds_t)(us % 1000000);
}

static void add_thread_notes(const struct osm_process *p, const struct osm_thread *t,
			     struct note_sink *ns)
{
	struct elf_prstatus pr;
	siginfo_t si;

	memset(&pr, 0, sizeof(pr));
	pr.pr_info.si_signo = t->inject_sig;
	pr.pr_cursig = (short)t->inject_sig;
	pr.pr_sigpend = t->sigpend;
	pr.pr_sighold = t->sighold;
	pr.pr_pid = t->tid;
	pr.pr_ppid = p->ppid;
	pr.pr_pgrp = p->pgid;
	pr.pr_sid = p->sid;
	us_to_timeval(t->utime_us, &pr.pr_utime);
	us_to_timeval(t->stime_us, &pr.pr_stime);
	arch_fill_prstatus_regs(&t->regs, &pr.pr_reg, sizeof(pr.pr_reg));
	pr.pr_fpvalid = t->regs.fp_valid;
	note_add(ns, "CORE", NT_PRSTATUS, &pr, sizeof(pr));
	arch_thread_extra_notes(t, ns);
	/* The stop's own siginfo is ptrace's (SIGTRAP) unless a real signal was being delivered:
	 * record only a real one, as a kernel core of a live process would. */
	memset(&si, 0, sizeof(si));
	if (t->inject_sig)
		si = t->siginfo;
	note_add(ns, "CORE", NT_SIGINFO, &si, sizeof(si));
}

int core_build_notes(const struct osm_process *p, uint64_t page_size, struct note_sink *ns)
{
	const struct osm_thread *main_thread = process_find_thread(p, p->pid);

	add_prpsinfo(p, ns);
	/* The main thread first: debuggers make the first NT_PRSTATUS the current thread. */
	if (main_thread && main_thread->captured)
		add_thread_notes(p, main_thread, ns);
	for (size_t i = 0; i < p->n_threads; i++) {
		const struct osm_thread *t = p->threads[i];
		if (t == main_thread || !t->captured)
			continue;
		add_thread_notes(p, t, ns);
	}
	if (p->auxv_len)
		note_add(ns, "CORE", NT_AUXV, p->auxv, p->auxv_len);
	add_file_note(p, page_size, ns);
	return ns->err;
}

static bool page_is_zero(const uint8_t *p, uint64_t len)
{
	const uint64_t *w = (const uint64_t *)p;
	for (uint64_t i = 0; i < len / 8; i++)
		if (w[i])
			return false;
	return true;
}

/* Write [data, data+len) skipping whole zero pages, so they become holes. */
static int write_dense(struct core_sink *out, const uint8_t *data, uint64_t len, uint64_t page_size)
{
	uint64_t i = 0;

	while (i < len) {
		uint64_t run = i, chunk;
		bool zero = page_is_zero(data + i, MIN(page_size, len - i));
		while (run < len) {
			chunk = MIN(page_size, len - run);
			if (page_is_zero(data + run, chunk) != zero)
				break;
			run += chunk;
		}
		int r = zero ? out->skip(out, run - i) : out->write(out, data + i, run - i);
		if (r < 0)
			return r;
		i = run;
	}
	return 0;
}

/*
 * Pages of osmosis's own buffers that were never written are holes, and are not read: reading
 * them would fault memory in (on this kernel a read of an untouched MADV_HUGEPAGE buffer takes a
 * zeroed huge page each time, not the zero page). The image of a shared object, mostly unused,
 * became resident whole at write-out (4.3 GiB for PostgreSQL's 4 GiB of shared buffers), and each
 * of its mappers' cores read all its zeroes again. PAGEMAP_SCAN on osmosis's own pagemap names
 * the pages present or swapped; without it (before Linux 6.7) every page is read as before.
 * Called from one thread (the write-out).
 */
#define SCAN_MIN (1u << 20)

static int write_sparse(struct core_sink *out, const uint8_t *data, uint64_t len,
			uint64_t page_size)
{
	static int pagemap = -2;
	static struct page_region vec[64];
	uint64_t base = (uintptr_t)data, start = base, end = base + ALIGN_UP(len, page_size),
		 pos = 0;
	int r;

	if (pagemap == -2)
		pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (len < SCAN_MIN || pagemap < 0 || base % page_size)
		return write_dense(out, data, len, page_size);
	while (start < end) {
		struct pm_scan_arg a = {.size = sizeof(a),
					.start = start,
					.end = end,
					.vec = (uintptr_t)vec,
					.vec_len = ARRAY_SIZE(vec),
					.category_anyof_mask = PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
					.return_mask = PAGE_IS_PRESENT | PAGE_IS_SWAPPED};
		int n = ioctl(pagemap, PAGEMAP_SCAN, &a);

		if (n < 0 || a.walk_end <= start)
			break; /* the rest is read */
		for (int i = 0; i < n; i++) {
			uint64_t lo = MAX(vec[i].start - base, pos),
				 hi = MIN(vec[i].end - base, len);
			if (lo >= hi)
				continue;
			if (lo > pos && (r = out->skip(out, lo - pos)) < 0)
				return r;
			if ((r = write_dense(out, data + lo, hi - lo, page_size)) < 0)
				return r;
			pos = hi;
		}
		start = a.walk_end;
	}
	if (start < end)
		return pos < len ? write_dense(out, data + pos, len - pos, page_size) : 0;
	return pos < len ? out->skip(out, len - pos) : 0;
}

#define FD_CHUNK (4u << 20)

/* An extent kept in another process (a clone): read it in chunks. A range the kernel refuses is
 * read page by page; pages it still refuses stay zero (holes). */
static int write_from_fd(struct core_sink *out, const struct osm_extent *e, uint64_t len,
			 uint64_t page_size)
{
	static uint8_t *buf;
	uint64_t done = 0;
	int r;

	if (!buf && !(buf = malloc(FD_CHUNK)))
		return -ENOMEM;
	while (done < len) {
		uint64_t n = MIN(len - done, (uint64_t)FD_CHUNK);
		ssize_t got = pread(e->fd, buf, n, (off_t)(e->src + done));
		if (got != (ssize_t)n) {
			for (uint64_t p = 0; p < n; p += page_size) {
				uint64_t k = MIN(page_size, n - p);
				if (pread(e->fd, buf + p, k, (off_t)(e->src + done + p)) !=
				    (ssize_t)k)
					memset(buf + p, 0, k);
			}
		}
		r = write_sparse(out, buf, n, page_size);
		if (r < 0)
			return r;
		done += n;
	}
	return 0;
}

static int cmp_extent(const void *a, const void *b)
{
	const struct osm_extent *x = a, *y = b;
	return (x->off > y->off) - (x->off < y->off);
}

static int write_segment(struct core_sink *out, struct osm_mapping *m, uint64_t page_size)
{
	uint64_t pos = 0;
	int r;

	if (m->n_ext > 1)
		qsort(m->ext, m->n_ext, sizeof(*m->ext), cmp_extent);
	for (size_t i = 0; i < m->n_ext; i++) {
		struct osm_extent *e = &m->ext[i];
		uint64_t len;

		if (e->off >= m->dump_len || e->off < pos)
			continue; /* beyond what the segment holds, or overlapping: ignore */
		len = MIN(e->len, m->dump_len - e->off);
		if (e->off > pos && (r = out->skip(out, e->off - pos)) < 0)
			return r;
		r = e->data ? write_sparse(out, e->data, len, page_size)
			    : write_from_fd(out, e, len, page_size);
		if (r < 0)
			return r;
		pos = e->off + len;
	}
	if (pos < m->dump_len)
		return out->skip(out, m->dump_len - pos);
	return 0;
}

/* The changes of a placed segment, written over it in place. Zero pages are written too: the
 * file holds older bytes there. */
static int write_placed(struct core_sink *out, const struct osm_mapping *m)
{
	for (size_t i = 0; i < m->n_ext; i++) {
		const struct osm_extent *e = &m->ext[i];
		if (!e->data || e->off >= m->dump_len)
			return e->data ? 0 : -EINVAL;
		int r = out->pwrite(out, e->data, MIN(e->len, m->dump_len - e->off),
				    m->core_off + e->off);
		if (r < 0)
			return r;
	}
	return 0;
}

static bool is_placed(const struct osm_process *p)
{
	for (size_t i = 0; i < p->n_maps; i++)
		if (p->maps[i].core_off)
			return true;
	return false;
}

static void fill_phdr(Elf64_Phdr *h, const struct osm_mapping *m, uint64_t off, uint64_t page_size)
{
	h->p_type = PT_LOAD;
	h->p_flags = ((m->prot & PROT_READ) ? PF_R : 0) | ((m->prot & PROT_WRITE) ? PF_W : 0) |
		     ((m->prot & PROT_EXEC) ? PF_X : 0);
	h->p_offset = off;
	h->p_vaddr = m->start;
	h->p_filesz = m->dump_len;
	h->p_memsz = m->end - m->start;
	h->p_align = page_size;
}

static void fill_ehdr(Elf64_Ehdr *eh, Elf64_Shdr *sh, uint64_t phnum, uint64_t phoff)
{
	bool xnum = phnum >= PN_XNUM;

	memset(eh, 0, sizeof(*eh));
	memcpy(eh->e_ident, ELFMAG, SELFMAG);
	eh->e_ident[EI_CLASS] = ARCH_ELF_CLASS;
	eh->e_ident[EI_DATA] = ELFDATA2LSB;
	eh->e_ident[EI_VERSION] = EV_CURRENT;
	eh->e_ident[EI_OSABI] = ELFOSABI_NONE;
	eh->e_type = ET_CORE;
	eh->e_machine = ARCH_ELF_MACHINE;
	eh->e_version = EV_CURRENT;
	eh->e_phoff = phoff;
	eh->e_ehsize = sizeof(*eh);
	eh->e_phentsize = sizeof(Elf64_Phdr);
	eh->e_phnum = xnum ? PN_XNUM : (Elf64_Half)phnum;
	memset(sh, 0, sizeof(*sh));
	if (xnum) {
		/* Extended numbering: the real count lives in section header 0's sh_info. */
		eh->e_shoff = phoff + phnum * sizeof(Elf64_Phdr);
		eh->e_shentsize = sizeof(Elf64_Shdr);
		eh->e_shnum = 1;
		eh->e_shstrndx = SHN_UNDEF;
		sh->sh_info = (Elf64_Word)phnum;
	}
}

/* The placed layout (top of this file). */
static int core_write_placed(const struct osm_process *p, struct core_sink *out, uint64_t page_size,
			     struct note_sink *ns)
{
	_cleanup_free_ Elf64_Phdr *ph = NULL;
	uint64_t phnum = p->n_maps + 1, off = page_size, notes_off, phoff;
	Elf64_Ehdr eh;
	Elf64_Shdr sh;
	int r;

	if (!out->pwrite)
		return -EINVAL;
	ph = calloc(phnum, sizeof(*ph));
	if (!ph)
		return -ENOMEM;
	for (size_t i = 0; i < p->n_maps; i++) {
		const struct osm_mapping *m = &p->maps[i];
		if (m->core_off && (m->core_off < page_size || m->core_off % page_size))
			return -EINVAL;
		if (m->core_off)
			off = MAX(off, ALIGN_UP(m->core_off + m->dump_len, page_size));
	}
	for (size_t i = 0; i < p->n_maps; i++) {
		const struct osm_mapping *m = &p->maps[i];
		fill_phdr(&ph[i + 1], m, m->core_off ? m->core_off : off, page_size);
		if (!m->core_off)
			off += ALIGN_UP(m->dump_len, page_size);
	}
	notes_off = off;
	phoff = ALIGN_UP(notes_off + ns->len, 8);
	ph[0] = (Elf64_Phdr){
	    .p_type = PT_NOTE, .p_offset = notes_off, .p_filesz = ns->len, .p_align = 4};
	fill_ehdr(&eh, &sh, phnum, phoff);

	if ((r = out->write(out, &eh, sizeof(eh))) < 0)
		return r;
	for (size_t i = 0; i < p->n_maps; i++)
		if (p->maps[i].core_off && (r = write_placed(out, &p->maps[i])) < 0)
			return r;
	/* Past the placed segments; the others follow, page aligned as their offsets say. */
	for (size_t i = 0; i < p->n_maps; i++) {
		struct osm_mapping *m = &p->maps[i];
		if (m->core_off)
			continue;
		if (ph[i + 1].p_offset > out->pos &&
		    (r = out->skip(out, ph[i + 1].p_offset - out->pos)) < 0)
			return r;
		if ((r = write_segment(out, m, page_size)) < 0)
			return r;
	}
	if ((r = out->skip(out, notes_off - out->pos)) < 0 ||
	    (r = out->write(out, ns->buf, ns->len)) < 0 ||
	    (r = out->skip(out, phoff - out->pos)) < 0 ||
	    (r = out->write(out, ph, phnum * sizeof(*ph))) < 0)
		return r;
	if (phnum >= PN_XNUM && (r = out->write(out, &sh, sizeof(sh))) < 0)
		return r;
	return out->finish(out);
}

int core_write(const struct osm_process *p, struct core_sink *out, uint64_t page_size)
{
	struct note_sink ns = {0};
	_cleanup_free_ Elf64_Phdr *ph = NULL;
	Elf64_Ehdr eh;
	Elf64_Shdr sh;
	uint64_t phnum = p->n_maps + 1, off, data_off;
	bool xnum = phnum >= PN_XNUM;
	int r;

	r = core_build_notes(p, page_size, &ns);
	if (r < 0)
		goto out;
	if (is_placed(p)) {
		r = core_write_placed(p, out, page_size, &ns);
		goto out;
	}
	ph = calloc(phnum, sizeof(*ph));
	if (!ph) {
		r = -ENOMEM;
		goto out;
	}

	off = sizeof(eh) + phnum * sizeof(*ph) + (xnum ? sizeof(sh) : 0);
	ph[0] = (Elf64_Phdr){.p_type = PT_NOTE, .p_offset = off, .p_filesz = ns.len, .p_align = 4};
	data_off = ALIGN_UP(off + ns.len, page_size);
	off = data_off;
	for (size_t i = 0; i < p->n_maps; i++) {
		const struct osm_mapping *m = &p->maps[i];
		Elf64_Phdr *h = &ph[i + 1];

		h->p_type = PT_LOAD;
		h->p_flags = ((m->prot & PROT_READ) ? PF_R : 0) |
			     ((m->prot & PROT_WRITE) ? PF_W : 0) |
			     ((m->prot & PROT_EXEC) ? PF_X : 0);
		h->p_offset = off;
		h->p_vaddr = m->start;
		h->p_filesz = m->dump_len;
		h->p_memsz = m->end - m->start;
		h->p_align = page_size;
		off += m->dump_len;
	}

	memset(&eh, 0, sizeof(eh));
	memcpy(eh.e_ident, ELFMAG, SELFMAG);
	eh.e_ident[EI_CLASS] = ARCH_ELF_CLASS;
	eh.e_ident[EI_DATA] = ELFDATA2LSB;
	eh.e_ident[EI_VERSION] = EV_CURRENT;
	eh.e_ident[EI_OSABI] = ELFOSABI_NONE;
	eh.e_type = ET_CORE;
	eh.e_machine = ARCH_ELF_MACHINE;
	eh.e_version = EV_CURRENT;
	eh.e_phoff = sizeof(eh);
	eh.e_ehsize = sizeof(eh);
	eh.e_phentsize = sizeof(Elf64_Phdr);
	eh.e_phnum = xnum ? PN_XNUM : (Elf64_Half)phnum;
	if (xnum) {
		/* Extended numbering: the real count lives in section header 0's sh_info. */
		eh.e_shoff = sizeof(eh) + phnum * sizeof(*ph);
		eh.e_shentsize = sizeof(Elf64_Shdr);
		eh.e_shnum = 1;
		eh.e_shstrndx = SHN_UNDEF;
		memset(&sh, 0, sizeof(sh));
		sh.sh_info = (Elf64_Word)phnum;
	}

	if ((r = out->write(out, &eh, sizeof(eh))) < 0 ||
	    (r = out->write(out, ph, phnum * sizeof(*ph))) < 0)
		goto out;
	if (xnum && (r = out->write(out, &sh, sizeof(sh))) < 0)
		goto out;
	if ((r = out->write(out, ns.buf, ns.len)) < 0)
		goto out;
	if ((r = out->skip(out, data_off - out->pos)) < 0)
		goto out;
	for (size_t i = 0; i < p->n_maps; i++) {
		r = write_segment(out, &p->maps[i], page_size);
		if (r < 0)
			goto out;
	}
	r = out->finish(out);
out:
	note_sink_done(&ns);
	return r;
}
