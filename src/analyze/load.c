/* SPDX-License-Identifier: MIT */
/*
 * Loading a snapshot for analysis: the manifest, then each process's core. Cores may come from
 * other machines, be truncated or damaged: every program header is checked against the file's
 * size, every note against its segment; what cannot be read is recorded as a problem and the rest
 * is analyzed. Memory is read from the core file on demand (the core is not loaded), so memory
 * use follows what is analyzed, not the cores' size.
 */
#include <elf.h>
#include <elfutils/libdwfl.h>
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "analyze/analysis.h"
#include "analyze/runtime/runtime.h"
#include "arch.h"
#include "base/util.h"
#include "core/zcore.h"
#include "snapshot/manifest.h"

#define MAX_NOTES_BYTES (256u << 20)

static void problem(struct analysis *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void problem(struct analysis *a, const char *fmt, ...)
{
	size_t cap = a->n_problems;
	char *s = NULL;
	va_list ap;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	if (!s || grow_array((void **)&a->problems, &cap, a->n_problems + 1, sizeof(char *))) {
		free(s);
		return;
	}
	a->problems[a->n_problems++] = s;
}

void analysis_add_problem(struct analysis *a, const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	problem(a, "%s", buf);
}

size_t aprocess_read(const struct aprocess *ap, uint64_t addr, void *buf, size_t len)
{
	size_t done = 0;

	while (done < len) {
		uint64_t a = addr + done;
		size_t i, n;

		for (i = 0; i < ap->n_loads; i++)
			if (a >= ap->loads[i].vaddr && a - ap->loads[i].vaddr < ap->loads[i].memsz)
				break;
		if (i == ap->n_loads)
			break;
		uint64_t rel = a - ap->loads[i].vaddr;
		if (rel >= ap->loads[i].filesz)
			break; /* not dumped */
		n = (size_t)MIN((uint64_t)(len - done), ap->loads[i].filesz - rel);
		if (ap->zcore ? zcore_pread(ap->zcore, (char *)buf + done, n,
					    ap->loads[i].offset + rel) != n
			      : pread(ap->core_fd, (char *)buf + done, n,
				      (off_t)(ap->loads[i].offset + rel)) != (ssize_t)n)
			break;
		done += n;
	}
	return done;
}

struct athread *analysis_find_thread(const struct analysis *a, pid_t tid)
{
	for (size_t i = 0; i < a->n_procs; i++)
		for (size_t j = 0; j < a->procs[i].n_threads; j++)
			if (a->procs[i].threads[j].t->tid == tid)
				return &a->procs[i].threads[j];
	return NULL;
}

struct aprocess *analysis_find_process(const struct analysis *a, pid_t pid)
{
	for (size_t i = 0; i < a->n_procs; i++)
		if (a->procs[i].p->pid == pid)
			return &a->procs[i];
	return NULL;
}

double analysis_threshold(const struct analysis *a, const char *name, double def)
{
	for (size_t i = 0; i < a->n_thresholds; i++)
		if (!strcmp(a->thresholds[i].name, name))
			return a->thresholds[i].value;
	return def;
}

static void read_notes(struct analysis *a, struct aprocess *ap, Elf *elf, const GElf_Phdr *ph)
{
	Elf_Data *d;
	size_t off = 0, name_off, desc_off;
	GElf_Nhdr nh;
	size_t cap_files = 0;

	if (ph->p_filesz > MAX_NOTES_BYTES || ph->p_offset > ap->core_size ||
	    ph->p_filesz > ap->core_size - ph->p_offset) {
		problem(a, "core.%d: its notes lie beyond the end of the file", ap->p->pid);
		return;
	}
	d = elf_getdata_rawchunk(elf, (int64_t)ph->p_offset, ph->p_filesz, ELF_T_NHDR);
	if (!d) {
		problem(a, "core.%d: unreadable notes: %s", ap->p->pid, elf_errmsg(-1));
		return;
	}
	while ((off = gelf_getnote(d, off, &nh, &name_off, &desc_off)) > 0) {
		const char *desc = (const char *)d->d_buf + desc_off;

		if (nh.n_type == NT_PRSTATUS &&
		    nh.n_descsz >= ARCH_PRSTATUS_REG_OFFSET + ARCH_GREGS_COUNT * 8) {
			pid_t tid;
			memcpy(&tid, desc + 32, sizeof(tid));
			for (size_t i = 0; i < ap->n_threads; i++) {
				struct athread *t = &ap->threads[i];
				if (t->t->tid != tid)
					continue;
				memcpy(t->regs, desc + ARCH_PRSTATUS_REG_OFFSET, sizeof(t->regs));
				t->fs_base = t->regs[ARCH_GREGS_TP];
				t->in_core = true;
			}
		} else if (nh.n_type == NT_FILE && nh.n_descsz >= 16) {
			uint64_t count, hdr = 16;
			const char *names, *end = desc + nh.n_descsz;
			memcpy(&count, desc, 8);
			if (count > nh.n_descsz / 24)
				continue;
			names = desc + hdr + count * 24;
			for (uint64_t k = 0; k < count && names < end; k++) {
				size_t l = strnlen(names, (size_t)(end - names));
				bool seen = false;
				for (size_t j = 0; j < ap->n_files && !seen; j++)
					seen = !strncmp(ap->files[j], names, l) && !ap->files[j][l];
				if (!seen && !grow_array((void **)&ap->files, &cap_files,
							 ap->n_files + 1, sizeof(char *)))
					ap->files[ap->n_files++] = strndup(names, l);
				names += l + 1;
			}
		}
	}
}

/* A compressed core (core.PID.zst): an Elf over a sparse image of it (src/core/zcore.h), its
 * size the core's; memory reads go through the zstd reader. A truncated file is a problem, and
 * what it holds is analyzed. */
static Elf *open_compressed(struct analysis *a, struct aprocess *ap)
{
	struct zcore *z = NULL;
	char err[256];
	void *image;
	size_t len;
	int r = zcore_open(ap->core_fd, &z, err, sizeof(err));

	if (r == 0 && err[0])
		problem(a, "%s: %s", ap->p->core_name, err);
	if (r == 0 && (r = zcore_image(z, &image, &len, err, sizeof(err))) < 0)
		zcore_close(z);
	if (r < 0) {
		problem(a, "%s: %s", ap->p->core_name, err[0] ? err : strerror(-r));
		return NULL;
	}
	ap->zcore = z;
	ap->core_size = zcore_size(z);
	return elf_memory(image, len);
}

static int open_core(struct analysis *a, struct aprocess *ap, int dirfd)
{
	struct stat st;
	Elf *elf;
	size_t phnum;
	size_t cap = 0;

	ap->core_fd = openat(dirfd, ap->p->core_name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (ap->core_fd < 0) {
		problem(a, "core.%d: cannot open: %s", ap->p->pid, strerror(errno));
		return -errno;
	}
	if (fstat(ap->core_fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		problem(a, "core.%d: not a regular file", ap->p->pid);
		return -EINVAL;
	}
	ap->core_size = (uint64_t)st.st_size;
	elf = zcore_name(ap->p->core_name) ? open_compressed(a, ap)
					   : elf_begin(ap->core_fd, ELF_C_READ_MMAP, NULL);
	if (!elf || elf_kind(elf) != ELF_K_ELF) {
		problem(a, "core.%d: not an ELF file", ap->p->pid);
		if (elf)
			elf_end(elf);
		return -EINVAL;
	}
	ap->elf = elf;
	GElf_Ehdr eh;
	if (!gelf_getehdr(elf, &eh) || eh.e_type != ET_CORE) {
		problem(a, "core.%d: not an ELF core", ap->p->pid);
		return -EINVAL;
	}
	if (elf_getphdrnum(elf, &phnum) < 0) {
		problem(a, "core.%d: unreadable program headers", ap->p->pid);
		return -EINVAL;
	}
	for (size_t i = 0; i < phnum; i++) {
		GElf_Phdr ph;
		if (!gelf_getphdr(elf, (int)i, &ph)) {
			problem(a, "core.%d: program header %zu unreadable", ap->p->pid, i);
			break;
		}
		if (ph.p_type == PT_NOTE) {
			read_notes(a, ap, elf, &ph);
		} else if (ph.p_type == PT_LOAD) {
			uint64_t filesz = ph.p_filesz;
			if (ph.p_offset > ap->core_size || filesz > ap->core_size - ph.p_offset) {
				filesz =
				    ph.p_offset > ap->core_size ? 0 : ap->core_size - ph.p_offset;
				problem(
				    a,
				    "core.%d: the segment at 0x%llx is cut short (the file ends "
				    "%llu bytes early)",
				    ap->p->pid, (unsigned long long)ph.p_vaddr,
				    (unsigned long long)(ph.p_filesz - filesz));
			}
			if (grow_array((void **)&ap->loads, &cap, ap->n_loads + 1,
				       sizeof(*ap->loads)))
				return -ENOMEM;
			ap->loads[ap->n_loads].vaddr = ph.p_vaddr;
			ap->loads[ap->n_loads].memsz = ph.p_memsz;
			ap->loads[ap->n_loads].offset = ph.p_offset;
			ap->loads[ap->n_loads].filesz = MIN(filesz, ph.p_memsz);
			ap->loads[ap->n_loads].flags = ph.p_flags;
			ap->n_loads++;
		}
	}
	ap->has_core = true;
	return 0;
}

static void build_threads(struct aprocess *ap)
{
	ap->threads = calloc(ap->p->n_threads ? ap->p->n_threads : 1, sizeof(*ap->threads));
	if (!ap->threads)
		return;
	for (size_t i = 0; i < ap->p->n_threads; i++) {
		ap->threads[i].t = ap->p->threads[i];
		ap->threads[i].proc = ap;
		ap->threads[i].wait.fd = -1;
	}
	ap->n_threads = ap->p->n_threads;
}

int analysis_load(const char *dir, struct analysis *a, char *err, size_t errlen)
{
	int dirfd, r;

	elf_version(EV_CURRENT);
	dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0) {
		snprintf(err, errlen, "cannot open %s: %s", dir, strerror(errno));
		return -errno;
	}
	r = manifest_load(dirfd, &a->snap, err, errlen);
	if (r < 0) {
		close(dirfd);
		return r;
	}
	a->dir = strdup(dir);
	a->procs = calloc(a->snap->n_procs ? a->snap->n_procs : 1, sizeof(*a->procs));
	if (!a->procs) {
		close(dirfd);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	a->n_procs = a->snap->n_procs;
	for (size_t i = 0; i < a->n_procs; i++) {
		struct aprocess *ap = &a->procs[i];
		ap->p = a->snap->procs[i];
		ap->core_fd = -1;
		build_threads(ap);
		if (!strcmp(ap->p->capture, "memory")) {
			if (!ap->p->core_name[0] || strchr(ap->p->core_name, '/')) {
				problem(a, "pid %d: the manifest names no usable core file",
					ap->p->pid);
				continue;
			}
			if (open_core(a, ap, dirfd) == 0) {
				unwind_process(ap);
				/* Runtimes look at the modules while libdwfl still has them. */
				if (ap->dwfl)
					runtimes_detect(a, ap);
			}
			/* Frames and modules are copied out: let libdwfl and libelf go, so memory
			 * follows one process at a time, not every core. Memory reads after this
			 * use the core descriptor and the bounded segment table. */
			if (ap->dwfl)
				dwfl_end(ap->dwfl);
			ap->dwfl = NULL;
			if (ap->elf)
				elf_end(ap->elf);
			ap->elf = NULL;
			zcore_release_image(ap->zcore);
			for (size_t j = 0; j < ap->n_threads; j++)
				if (ap->threads[j].t->captured && !ap->threads[j].in_core &&
				    ap->has_core)
					problem(a, "core.%d: thread %d is missing from the core",
						ap->p->pid, ap->threads[j].t->tid);
		}
	}
	close(dirfd);
	decode_waits(a);
	build_wait_graph(a);
	runtimes_read(a);
	find_cycles_and_chains(a);
	return 0;
}

static void frames_free(struct athread *t)
{
	for (size_t i = 0; i < t->n_frames; i++) {
		free(t->frames[i].function);
		free(t->frames[i].module);
		free(t->frames[i].file);
	}
	free(t->frames);
	free(t->runtime_name);
	free(t->unwind_error);
	free(t->edges);
}

void analysis_done(struct analysis *a)
{
	for (size_t i = 0; i < a->n_procs; i++) {
		struct aprocess *ap = &a->procs[i];
		for (size_t j = 0; j < ap->n_threads; j++)
			frames_free(&ap->threads[j]);
		free(ap->threads);
		if (ap->dwfl)
			dwfl_end(ap->dwfl);
		if (ap->elf)
			elf_end(ap->elf);
		zcore_close(ap->zcore);
		if (ap->core_fd >= 0)
			close(ap->core_fd);
		free(ap->loads);
		for (size_t j = 0; j < ap->n_modules; j++)
			free(ap->modules[j].path);
		free(ap->modules);
		for (size_t j = 0; j < ap->n_files; j++)
			free(ap->files[j]);
		free(ap->files);
		free(ap->core_error);
		runtimes_free(ap);
	}
	free(a->procs);
	for (size_t i = 0; i < a->n_cycles; i++)
		free(a->cycles[i].steps);
	free(a->cycles);
	for (size_t i = 0; i < a->n_chains; i++)
		free(a->chains[i].steps);
	free(a->chains);
	for (size_t i = 0; i < a->n_problems; i++)
		free(a->problems[i]);
	free(a->problems);
	free(a->thresholds);
	snapshot_free(a->snap);
	free(a->dir);
	memset(a, 0, sizeof(*a));
}
