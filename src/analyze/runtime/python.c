/* SPDX-License-Identifier: MIT */
/*
 * CPython as a runtime of the analysis (runtime.h). detect() finds the interpreter from the
 * process's modules alone: the `_PyRuntime` and `Py_Version` symbols in the dynamic symbol
 * table of the interpreter itself (a static build, PIE or not) or of libpython3.X.so, stripped
 * or not; no debug info and no headers. The version comes from Py_Version in the binary and
 * chooses the layout (python_layout.c); from 3.13 on the layout is the interpreter's own
 * _Py_DebugOffsets, whose version must agree. read() reads the threads and frames through a
 * page cache over the core (python_read.c), merges each thread's Python frames into its native
 * stack at the _PyEval_EvalFrameDefault frames, names the threads (threading.Thread.name), and
 * hands the GIL and threading's locks to python_locks.c for the wait graph.
 */
#include <elfutils/libdwfl.h>
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "analyze/runtime/python.h"
#include "analyze/runtime/python_model.h"
#include "analyze/runtime/runtime.h"
#include "base/fs.h"
#include "base/util.h"

#define MAX_SEGS 16

/* What detect() keeps for read(): the symbols, the version, and where the interpreter's
 * read-only segments lie in its file. A core holds only the first page of a file-backed
 * read-only mapping (as the kernel writes them), so the names of the interpreter's static
 * types ("code", "str", "_thread.lock"), which live in .rodata, are read from the file the
 * unwinder used for the module. */
/* A module's file whose read-only segments stand in for what the core lacks. */
struct rofile {
	char *path;
	struct {
		uint64_t vaddr, memsz, offset, filesz;
	} segs[MAX_SEGS];
	size_t n_segs;
	int fd;
};

struct cpython {
	uint64_t runtime;
	unsigned version;
	bool have_version;
	char module[64];
	/* the interpreter (or libpython), and the _asyncio extension whose static types
	 * (_asyncio.Task, _asyncio.FutureIter) name themselves in its own .rodata */
	struct rofile files[2];
	size_t n_files;
};

/* --- detect -------------------------------------------------------------------------------- */

struct find_ctx {
	struct cpython *py;
	bool found;
	char why[160];
};

/* The value of an 8-byte object at file address vaddr of the module's own ELF file. */
static bool read_elf_u64(Elf *elf, uint64_t vaddr, uint64_t *ret)
{
	Elf_Scn *scn = NULL;
	while ((scn = elf_nextscn(elf, scn))) {
		GElf_Shdr sh;
		Elf_Data *d;
		if (!gelf_getshdr(scn, &sh) || sh.sh_type == SHT_NOBITS ||
		    !(sh.sh_flags & SHF_ALLOC))
			continue;
		if (vaddr < sh.sh_addr || vaddr - sh.sh_addr + 8 > sh.sh_size)
			continue;
		d = elf_getdata(scn, NULL);
		if (!d || !d->d_buf || vaddr - sh.sh_addr + 8 > d->d_size)
			return false;
		memcpy(ret, (const char *)d->d_buf + (vaddr - sh.sh_addr), 8);
		return true;
	}
	return false;
}

/* Keep where the module's read-only PT_LOAD segments lie in its file. */
static void rofile_add(struct cpython *py, Elf *elf, Dwarf_Addr bias, const char *mainfile)
{
	struct rofile *f;
	size_t phnum = 0;

	if (!elf || !mainfile || py->n_files >= ARRAY_SIZE(py->files) ||
	    elf_getphdrnum(elf, &phnum) != 0)
		return;
	f = &py->files[py->n_files];
	f->path = strdup(mainfile);
	if (!f->path)
		return;
	py->n_files++;
	for (size_t i = 0; i < phnum && f->n_segs < MAX_SEGS; i++) {
		GElf_Phdr ph;
		if (!gelf_getphdr(elf, (int)i, &ph) || ph.p_type != PT_LOAD || (ph.p_flags & PF_W))
			continue;
		f->segs[f->n_segs].vaddr = ph.p_vaddr + bias;
		f->segs[f->n_segs].memsz = ph.p_memsz;
		f->segs[f->n_segs].offset = ph.p_offset;
		f->segs[f->n_segs].filesz = MIN(ph.p_filesz, ph.p_memsz);
		f->n_segs++;
	}
}

/* The _asyncio extension module, wherever it is in the module list. */
static int module_find_asyncio(Dwfl_Module *mod, void **userdata, const char *name,
			       Dwarf_Addr start, void *arg)
{
	struct cpython *py = arg;
	const char *base = name ? strrchr(name, '/') : NULL;
	const char *mainfile = NULL;
	Dwarf_Addr bias = 0;

	(void)userdata;
	(void)start;
	base = base ? base + 1 : name;
	if (!base || strncmp(base, "_asyncio.", 9))
		return DWARF_CB_OK;
	Elf *elf = dwfl_module_getelf(mod, &bias);
	dwfl_module_info(mod, NULL, NULL, NULL, NULL, NULL, &mainfile, NULL);
	rofile_add(py, elf, bias, mainfile);
	return DWARF_CB_ABORT;
}

static int module_find(Dwfl_Module *mod, void **userdata, const char *name, Dwarf_Addr start,
		       void *arg)
{
	struct find_ctx *c = arg;
	const char *base = name ? strrchr(name, '/') : NULL;
	uint64_t runtime = 0, version_addr = 0;
	int n;

	(void)userdata;
	(void)start;
	base = base ? base + 1 : name;
	if (!base || (strncmp(base, "python3", 7) && strncmp(base, "libpython3", 10)))
		return DWARF_CB_OK;
	n = dwfl_module_getsymtab(mod);
	for (int i = 0; i < n && (!runtime || !version_addr); i++) {
		GElf_Sym sym;
		GElf_Addr addr;
		const char *s = dwfl_module_getsym_info(mod, i, &sym, &addr, NULL, NULL, NULL);
		if (!s || sym.st_shndx == SHN_UNDEF)
			continue;
		if (!strcmp(s, "_PyRuntime"))
			runtime = addr;
		else if (!strcmp(s, "Py_Version"))
			version_addr = addr;
	}
	if (!runtime)
		return DWARF_CB_OK;
	c->found = true;
	c->py->runtime = runtime;
	snprintf(c->py->module, sizeof(c->py->module), "%s", base);
	Dwarf_Addr bias = 0;
	Elf *elf = dwfl_module_getelf(mod, &bias);
	const char *mainfile = NULL;
	uint64_t v;
	if (elf && version_addr && read_elf_u64(elf, version_addr - bias, &v)) {
		c->py->version = (unsigned)v;
		c->py->have_version = true;
	}
	dwfl_module_info(mod, NULL, NULL, NULL, NULL, NULL, &mainfile, NULL);
	rofile_add(c->py, elf, bias, mainfile);
	return DWARF_CB_ABORT;
}

static void free_state(void *state);

static int detect(struct aprocess *ap, void **ret_state, char *why, size_t len)
{
	struct cpython *py = calloc(1, sizeof(*py));
	struct find_ctx c = {.py = py};

	if (!py)
		return -ENOMEM;
	for (size_t i = 0; i < ARRAY_SIZE(py->files); i++)
		py->files[i].fd = -1;
	dwfl_getmodules(ap->dwfl, module_find, &c, 0);
	if (!c.found) {
		free_state(py);
		return 0;
	}
	dwfl_getmodules(ap->dwfl, module_find_asyncio, py, 0);
	(void)why;
	(void)len;
	*ret_state = py;
	return 1;
}

/* --- memory: a page cache over the core ------------------------------------------------------ */

#define PC_PAGES 512
#define PC_PAGE	 4096u

struct pcache_entry {
	uint64_t page;
	uint32_t len;
	bool valid;
	uint8_t data[PC_PAGE];
};

struct pcache {
	const struct aprocess *ap;
	const struct cpython *py;
	struct pcache_entry *e;
};

/* A page the core lacks, from a read-only segment of the interpreter's or _asyncio's file. */
static size_t file_read(const struct cpython *py, uint64_t page, uint8_t *buf)
{
	for (size_t k = 0; k < py->n_files; k++) {
		const struct rofile *f = &py->files[k];
		if (f->fd < 0)
			continue;
		for (size_t i = 0; i < f->n_segs; i++) {
			uint64_t rel = page - f->segs[i].vaddr;
			if (page < f->segs[i].vaddr || rel >= f->segs[i].filesz)
				continue;
			size_t n = (size_t)MIN((uint64_t)PC_PAGE, f->segs[i].filesz - rel);
			ssize_t r = pread(f->fd, buf, n, (off_t)(f->segs[i].offset + rel));
			return r > 0 ? (size_t)r : 0;
		}
	}
	return 0;
}

static size_t cached_read(void *ctx, uint64_t addr, void *buf, size_t len)
{
	struct pcache *pc = ctx;
	size_t done = 0;

	while (done < len) {
		uint64_t a = addr + done, page = a & ~(uint64_t)(PC_PAGE - 1);
		struct pcache_entry *e = &pc->e[(page / PC_PAGE) % PC_PAGES];
		size_t off = (size_t)(a - page), n;

		if (a < addr)
			break;
		if (!e->valid || e->page != page) {
			e->page = page;
			e->len = (uint32_t)aprocess_read(pc->ap, page, e->data, PC_PAGE);
			if (e->len < PC_PAGE && pc->py) {
				size_t f = file_read(pc->py, page, e->data);
				if (f > e->len)
					e->len = (uint32_t)f;
			}
			e->valid = true;
		}
		if (off >= e->len)
			break;
		n = MIN(len - done, e->len - off);
		memcpy((char *)buf + done, e->data + off, n);
		done += n;
	}
	return done;
}

/* --- read ---------------------------------------------------------------------------------- */

static bool is_eval_frame(const struct frame *f)
{
	return f->kind == FRAME_NATIVE && f->function &&
	       (!strcmp(f->function, "_PyEval_EvalFrameDefault") ||
		!strcmp(f->function, "_PyEval_EvalFrame"));
}

static void py_frame_to(const struct py_frame *pf, struct frame *f)
{
	memset(f, 0, sizeof(*f));
	f->kind = FRAME_PYTHON;
	f->pc = pf->addr;
	f->function = strdup(pf->function ? pf->function : "?");
	f->file = pf->file ? strdup(pf->file) : NULL;
	f->line = pf->line;
}

/* Native frames with each run of Python frames (up to an entry frame) placed before the native
 * evaluation frame that runs it; runs left over (the native stack stopped early) go last. */
static void merge_frames(struct athread *t, const struct py_thread *pt)
{
	size_t n = t->n_frames + pt->n_frames, k = 0, next = 0;
	struct frame *out = calloc(n ? n : 1, sizeof(*out));

	if (!out)
		return;
	for (size_t i = 0; i < t->n_frames; i++) {
		if (is_eval_frame(&t->frames[i]))
			while (next < pt->n_frames) {
				bool entry = pt->frames[next].entry;
				py_frame_to(&pt->frames[next++], &out[k++]);
				if (entry)
					break;
			}
		out[k++] = t->frames[i];
	}
	while (next < pt->n_frames)
		py_frame_to(&pt->frames[next++], &out[k++]);
	free(t->frames);
	t->frames = out;
	t->n_frames = k;
}

static const char *base_name(const char *p)
{
	const char *s = p ? strrchr(p, '/') : NULL;
	return s ? s + 1 : p ? p : "?";
}

static void version_text(struct aprocess *ap, unsigned v)
{
	unsigned level = (v >> 4) & 0xf;
	const char *tag = level == 0xa ? "a" : level == 0xb ? "b" : level == 0xc ? "rc" : "";
	char buf[48];

	if (v)
		snprintf(buf, sizeof(buf), "CPython %u.%u.%u%s", (v >> 24) & 0xff, (v >> 16) & 0xff,
			 (v >> 8) & 0xff, tag);
	else
		snprintf(buf, sizeof(buf), "CPython");
	free(ap->runtime_version);
	ap->runtime_version = strdup(buf);
}

static void read_process(struct analysis *a, struct aprocess *ap, void *state)
{
	struct cpython *py = state;
	struct pcache pc = {.ap = ap, .py = py};
	struct rmem m = {.read = cached_read, .ctx = &pc};
	struct py_state st = {0};
	char why[200] = "";
	size_t matched = 0;
	int r;

	if (!ap->has_core)
		return;
	pc.e = calloc(PC_PAGES, sizeof(*pc.e));
	if (!pc.e)
		return;
	for (size_t i = 0; i < py->n_files; i++)
		if (py->files[i].fd < 0) {
			/* the file modules.c verified; reopened only if still a regular file */
			const char *kind;
			py->files[i].fd = open_regular_file(AT_FDCWD, py->files[i].path, 0, &kind);
		}
	st.runtime = py->runtime;
	r = py_layout_from_debug_offsets(&m, py->runtime, py->version, &st.L, why, sizeof(why));
	if (r == -ENOENT) {
		if (!py->have_version) {
			analysis_problem(
			    a,
			    "pid %d: CPython in %s: no Py_Version in the binary, so no "
			    "known layout; its native stacks are analyzed",
			    ap->p->pid, py->module);
			goto out;
		}
		r = py_layout_for_version(py->version, &st.L, why, sizeof(why));
	}
	version_text(ap, r == 0 ? st.L.version : py->version);
	if (r < 0) {
		analysis_problem(a, "pid %d: %s (%s): %s; its native stacks are analyzed",
				 ap->p->pid, ap->runtime_version ? ap->runtime_version : "CPython",
				 py->module, why);
		goto out;
	}
	r = py_read_state(&m, &st);
	if (r < 0 && r != -ENOENT) {
		analysis_problem(a, "pid %d: %s: %s; its native stacks are analyzed", ap->p->pid,
				 ap->runtime_version, st.error);
		goto out;
	}
	py_read_thread_names(&m, &st);
	for (size_t i = 0; i < st.n_threads; i++) {
		const struct py_thread *pt = &st.threads[i];
		struct athread *t = NULL;
		for (size_t j = 0; j < ap->n_threads && !t; j++)
			if (ap->threads[j].t->tid == pt->native_id)
				t = &ap->threads[j];
		if (!t)
			continue;
		matched++;
		t->runtime_thread = true;
		if (pt->name && !t->runtime_name)
			t->runtime_name = strdup(pt->name);
		t->holds_gil = st.gil.known && st.gil.locked && st.gil.holder == pt->tstate;
		if (pt->n_frames)
			snprintf(t->runtime_where, sizeof(t->runtime_where), "%s (%s:%d)",
				 pt->frames[0].function ? pt->frames[0].function : "?",
				 base_name(pt->frames[0].file), pt->frames[0].line);
		if (pt->error[0])
			analysis_problem(a, "pid %d thread %d: %s: %s", ap->p->pid, t->t->tid,
					 ap->runtime_version, pt->error);
	}
	if (st.n_threads && !matched) {
		analysis_problem(a,
				 "pid %d: %s: none of its %zu thread states names a thread of "
				 "the process: a damaged or unknown structure; its native "
				 "stacks are analyzed",
				 ap->p->pid, ap->runtime_version, st.n_threads);
		goto out;
	}
	if (st.error[0])
		analysis_problem(a, "pid %d: %s: %s", ap->p->pid, ap->runtime_version, st.error);
	/* Locks first: they look at the native frames' wait, before the merge moves them. */
	python_locks(a, ap, &m, &st);
	python_tasks(a, ap, &m, &st);
	for (size_t i = 0; i < st.n_threads; i++)
		for (size_t j = 0; j < ap->n_threads; j++)
			if (ap->threads[j].t->tid == st.threads[i].native_id)
				merge_frames(&ap->threads[j], &st.threads[i]);
out:
	py_state_done(&st);
	free(pc.e);
}

static void free_state(void *state)
{
	struct cpython *py = state;
	for (size_t i = 0; i < py->n_files; i++) {
		if (py->files[i].fd >= 0)
			close(py->files[i].fd);
		free(py->files[i].path);
	}
	free(py);
}

const struct runtime runtime_cpython = {
    .id = "cpython",
    .title = "CPython",
    .description = "Python frames (function, file, line) merged into each thread's native stack "
		   "at the interpreter's evaluation frames, Python thread names, the GIL's holder "
		   "and waiters, and waits on threading's locks, conditions, events and queues "
		   "named at Python level, as wait-graph edges; asyncio Tasks (suspended "
		   "coroutines are on no thread's stack) with their coroutine chains, names and "
		   "what each awaits (asyncio.Lock with its holder, Event, Queue, sleep, stream "
		   "reads, other tasks).",
    .needs = "cores (the interpreter's memory) and the interpreter's binary or libpython "
	     "(its dynamic symbols _PyRuntime and Py_Version); no debug info",
    .versions = "3.11, 3.12 (layouts carried), 3.13 (the interpreter's _Py_DebugOffsets); "
		"asyncio tasks: 3.11, 3.12, 3.13 (the C _asyncio.Task; layouts carried)",
    .detect = detect,
    .read = read_process,
    .free_state = free_state,
};
