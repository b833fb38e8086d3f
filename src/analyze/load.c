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
#include "analyze/modules.h"
#include "analyze/symcache.h"
#include "arch.h"
#include "base/fs.h"
#include "base/util.h"
#include "core/zcore.h"
#include "core/notes.h"
#include "snapshot/manifest.h"

#define MAX_NOTES_BYTES (256u << 20)

static void add_line(char ***lines, size_t *n, const char *fmt, va_list ap)
{
	size_t cap = *n;
	char *s = NULL;

	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	if (!s || grow_array((void **)lines, &cap, *n + 1, sizeof(char *))) {
		free(s);
		return;
	}
	(*lines)[(*n)++] = s;
}

void analysis_problem(struct analysis *a, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	add_line(&a->problems, &a->n_problems, fmt, ap);
	va_end(ap);
}

void analysis_note(struct analysis *a, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	add_line(&a->notes, &a->n_notes, fmt, ap);
	va_end(ap);
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

/* What the notes say that the modules need, kept until they are reported. */
struct core_notes {
	uint8_t *buf; /* the note segment holding NT_FILE */
	struct note_file_entry *files;
	size_t n_files;
	uint64_t vdso; /* AT_SYSINFO_EHDR, 0 if none */
};

static void core_notes_done(struct core_notes *cn)
{
	free(cn->buf);
	free(cn->files);
	*cn = (struct core_notes){0};
}

static void add_file_name(struct aprocess *ap, const struct note_file_entry *f, size_t *cap)
{
	for (size_t j = 0; j < ap->n_files; j++)
		if (!strncmp(ap->files[j], f->name, f->name_len) && !ap->files[j][f->name_len])
			return;
	if (!grow_array((void **)&ap->files, cap, ap->n_files + 1, sizeof(char *)) &&
	    (ap->files[ap->n_files] = strndup(f->name, f->name_len)))
		ap->n_files++;
}

/* One PT_NOTE: copied out of the core into a buffer of exactly its size (so a reader that
 * strays is caught by the sanitizers), then read with the bounded readers of core/notes.c. */
static void read_notes(struct analysis *a, struct aprocess *ap, const GElf_Phdr *ph,
		       struct core_notes *cn)
{
	_cleanup_free_ uint8_t *buf = NULL;
	struct note_iter it;
	struct note n;
	size_t cap_files = ap->n_files;
	bool keep = false;

	if (ph->p_filesz > MAX_NOTES_BYTES || ph->p_offset > ap->core_size ||
	    ph->p_filesz > ap->core_size - ph->p_offset) {
		analysis_problem(a, "core.%d: its notes lie beyond the end of the file",
				 ap->p->pid);
		return;
	}
	if (!ph->p_filesz)
		return;
	buf = malloc(ph->p_filesz);
	if (!buf) {
		analysis_problem(a, "core.%d: no memory for its notes", ap->p->pid);
		return;
	}
	if (ap->zcore ? zcore_pread(ap->zcore, buf, ph->p_filesz, ph->p_offset) != ph->p_filesz
		      : pread(ap->core_fd, buf, ph->p_filesz, (off_t)ph->p_offset) !=
			    (ssize_t)ph->p_filesz) {
		analysis_problem(a, "core.%d: its notes cannot be read", ap->p->pid);
		return;
	}
	note_iter_init(&it, buf, ph->p_filesz);
	while (note_next(&it, &n)) {
		if (!note_name_is(&n, "CORE") && !note_name_is(&n, "LINUX"))
			continue;
		if (n.type == NT_PRSTATUS) {
			uint64_t regs[ARRAY_SIZE(ap->threads[0].regs)];
			pid_t tid;
			if (note_read_prstatus(&n, &tid, regs, ARRAY_SIZE(regs)) < 0) {
				analysis_problem(
				    a,
				    "core.%d: an NT_PRSTATUS note at offset %zu is too "
				    "short (%zu bytes)",
				    ap->p->pid, n.offset, n.descsz);
				continue;
			}
			for (size_t i = 0; i < ap->n_threads; i++) {
				struct athread *t = &ap->threads[i];
				if (t->t->tid != tid)
					continue;
				memcpy(t->regs, regs, sizeof(t->regs));
				t->fs_base = t->regs[ARCH_GREGS_TP];
				t->in_core = true;
			}
		} else if (n.type == NT_AUXV && !cn->vdso) {
			note_auxv_get(&n, AT_SYSINFO_EHDR, &cn->vdso);
		} else if (n.type == NT_FILE && !cn->files) {
			int r = note_file_parse(&n, &cn->files, &cn->n_files);
			if (r < 0) {
				analysis_problem(a, "core.%d: its NT_FILE note is malformed: %s",
						 ap->p->pid, strerror(-r));
				continue;
			}
			for (size_t k = 0; k < cn->n_files; k++)
				add_file_name(ap, &cn->files[k], &cap_files);
			keep = true; /* the entries point into buf */
		}
	}
	if (it.bad)
		analysis_problem(a, "core.%d: notes at offset %zu: %s", ap->p->pid, it.off, it.bad);
	if (keep)
		cn->buf = TAKE_PTR(buf);
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
		analysis_problem(a, "%s: %s", ap->p->core_name, err);
	if (r == 0 && (r = zcore_image(z, &image, &len, err, sizeof(err))) < 0)
		zcore_close(z);
	if (r < 0) {
		analysis_problem(a, "%s: %s", ap->p->core_name, err[0] ? err : strerror(-r));
		return NULL;
	}
	ap->zcore = z;
	ap->core_size = zcore_size(z);
	return elf_memory(image, len);
}

static int open_core(struct analysis *a, struct aprocess *ap, int dirfd)
{
	_cleanup_(core_notes_done) struct core_notes cn = {0};
	struct stat st;
	Elf *elf;
	size_t phnum;
	size_t cap = 0;

	const char *kind;
	int r;

	ap->core_fd = open_regular_file(dirfd, ap->p->core_name, O_NOFOLLOW, &kind);
	if (ap->core_fd < 0) {
		if (kind)
			analysis_problem(a, "core.%d: %s is %s, not a regular file: not opened",
					 ap->p->pid, ap->p->core_name, kind);
		else
			analysis_problem(a, "core.%d: cannot open: %s", ap->p->pid,
					 strerror(-ap->core_fd));
		r = ap->core_fd;
		ap->core_fd = -1;
		return r;
	}
	if (fstat(ap->core_fd, &st) < 0) {
		analysis_problem(a, "core.%d: cannot stat: %s", ap->p->pid, strerror(errno));
		return -errno;
	}
	ap->core_size = (uint64_t)st.st_size;
	elf = zcore_name(ap->p->core_name) ? open_compressed(a, ap)
					   : elf_begin(ap->core_fd, ELF_C_READ_MMAP, NULL);
	if (!elf || elf_kind(elf) != ELF_K_ELF) {
		analysis_problem(a, "core.%d: not an ELF file", ap->p->pid);
		if (elf)
			elf_end(elf);
		return -EINVAL;
	}
	ap->elf = elf;
	GElf_Ehdr eh;
	if (!gelf_getehdr(elf, &eh) || eh.e_type != ET_CORE) {
		analysis_problem(a, "core.%d: not an ELF core", ap->p->pid);
		return -EINVAL;
	}
	if (elf_getphdrnum(elf, &phnum) < 0) {
		analysis_problem(a, "core.%d: unreadable program headers", ap->p->pid);
		return -EINVAL;
	}
	for (size_t i = 0; i < phnum; i++) {
		GElf_Phdr ph;
		if (!gelf_getphdr(elf, (int)i, &ph)) {
			analysis_problem(a, "core.%d: program header %zu unreadable", ap->p->pid,
					 i);
			break;
		}
		if (ph.p_type == PT_NOTE) {
			read_notes(a, ap, &ph, &cn);
		} else if (ph.p_type == PT_LOAD) {
			uint64_t filesz = ph.p_filesz;
			if (ph.p_offset > ap->core_size || filesz > ap->core_size - ph.p_offset) {
				filesz =
				    ph.p_offset > ap->core_size ? 0 : ap->core_size - ph.p_offset;
				analysis_problem(
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
	r = modules_report(a, ap, cn.files, cn.n_files, cn.vdso);
	if (r < 0)
		analysis_problem(a, "core.%d: its modules could not be listed: %s", ap->p->pid,
				 strerror(-r));
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

static int cmp_core_name(const void *x, const void *y, void *arg)
{
	struct osm_process *const *procs = arg;
	size_t i = *(const size_t *)x, j = *(const size_t *)y;
	int c = strcmp(procs[i]->core_name, procs[j]->core_name);
	return c ? c : i < j ? -1 : i > j;
}

/* Processes that name a core file an earlier process already named: that core is another
 * process's, and reading it again for each would let a manifest cost the analysis any time it
 * likes. Returns a malloc'ed flag per process (NULL without memory: nothing is flagged). */
static bool *cores_named_before(const struct osm_snapshot *s, size_t *ret_n)
{
	_cleanup_free_ size_t *order = calloc(s->n_procs ? s->n_procs : 1, sizeof(*order));
	bool *later = calloc(s->n_procs ? s->n_procs : 1, sizeof(*later));
	size_t n = 0;

	*ret_n = 0;
	if (!order || !later) {
		free(later);
		return NULL;
	}
	for (size_t i = 0; i < s->n_procs; i++)
		if (s->procs[i]->core_name[0])
			order[n++] = i;
	qsort_r(order, n, sizeof(*order), cmp_core_name, s->procs);
	for (size_t i = 1; i < n; i++)
		if (!strcmp(s->procs[order[i - 1]]->core_name, s->procs[order[i]]->core_name)) {
			later[order[i]] = true;
			(*ret_n)++;
		}
	return later;
}

int analysis_load(const char *dir, struct analysis *a, char *err, size_t errlen)
{
	_cleanup_free_ bool *shared_core = NULL;
	size_t n_shared = 0;
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
	if (a->snap->n_duplicates)
		analysis_problem(a,
				 "manifest.json: %zu process entries repeat one listed before (the "
				 "first, pid %d): each process is analyzed once",
				 a->snap->n_duplicates, a->snap->duplicate_pid);
	a->dir = strdup(dir);
	a->procs = calloc(a->snap->n_procs ? a->snap->n_procs : 1, sizeof(*a->procs));
	if (!a->procs) {
		close(dirfd);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	a->n_procs = a->snap->n_procs;
	shared_core = cores_named_before(a->snap, &n_shared);
	a->symcache = symcache_new();
	if (n_shared)
		analysis_problem(
		    a,
		    "manifest.json: %zu processes name a core file that a process before "
		    "them names: each core is read for the first only",
		    n_shared);
	for (size_t i = 0; i < a->n_procs; i++) {
		struct aprocess *ap = &a->procs[i];
		ap->p = a->snap->procs[i];
		ap->core_fd = -1;
		build_threads(ap);
		if (ap->p->capture == CAPTURE_MEMORY) {
			if (!ap->p->core_name[0] || strchr(ap->p->core_name, '/')) {
				analysis_problem(a,
						 "pid %d: the manifest names no usable core file",
						 ap->p->pid);
				continue;
			}
			if (shared_core && shared_core[i])
				continue;
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
			modules_sources_free(ap);
			if (ap->elf)
				elf_end(ap->elf);
			ap->elf = NULL;
			zcore_release_image(ap->zcore);
			for (size_t j = 0; j < ap->n_threads; j++)
				if (ap->threads[j].t->captured && !ap->threads[j].in_core &&
				    ap->has_core)
					analysis_problem(
					    a, "core.%d: thread %d is missing from the core",
					    ap->p->pid, ap->threads[j].t->tid);
		}
	}
	close(dirfd);
	/* Every frame is symbolized: the shared files and answers go. */
	symcache_free(a->symcache);
	a->symcache = NULL;
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
	graph_free_edges(t);
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
		modules_sources_free(ap);
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
		for (size_t j = 0; j < ap->n_file_ranges; j++)
			free(ap->file_ranges[j].path);
		free(ap->file_ranges);
		free(ap->core_error);
		runtimes_free(ap);
	}
	free(a->procs);
	symcache_free(a->symcache);
	for (size_t i = 0; i < a->n_cycles; i++) {
		free(a->cycles[i].steps);
		free(a->cycles[i].others);
	}
	free(a->cycles);
	for (size_t i = 0; i < a->n_chains; i++)
		free(a->chains[i].steps);
	free(a->chains);
	for (size_t i = 0; i < a->n_problems; i++)
		free(a->problems[i]);
	free(a->problems);
	for (size_t i = 0; i < a->n_notes; i++)
		free(a->notes[i]);
	free(a->notes);
	free(a->thresholds);
	free(a->focus);
	snapshot_free(a->snap);
	free(a->dir);
	memset(a, 0, sizeof(*a));
}
