/* SPDX-License-Identifier: MIT */
/*
 * Unwinding every thread of a core with elfutils' libdwfl: modules as load.c reported them (only
 * regular files whose build-id matches the core's, see modules.c), CFI from
 * .eh_frame or .debug_frame, symbols from the symbol tables, source lines where debug info is
 * (asked of the symbol cache shared by all processes, symcache.c, for modules on verified files).
 * A thread whose unwinding fails keeps the frames found so far (at least its first frame, from
 * its registers) and the reason.
 */
#include <dwarf.h>
#include <elfutils/libdwfl.h>
#include <errno.h>
#include <gelf.h>
#include <libelf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analyze/analysis.h"
#include "analyze/modules.h"
#include "analyze/symcache.h"
#include "arch.h"
#include "base/util.h"

struct unwind_ctx {
	struct aprocess *ap;
	struct athread *t;
	size_t cap;
};

/* The file mappings of the core (NT_FILE: start, end, page offset, then the paths), for pcs
 * outside every ELF module: code in a memfd or a deleted file, as JITs keep it. */
static void read_file_ranges(struct aprocess *ap)
{
	Elf *elf = ap->elf;
	size_t phnum, cap = 0;

	if (!elf || elf_getphdrnum(elf, &phnum) < 0)
		return;
	for (size_t i = 0; i < phnum; i++) {
		GElf_Phdr ph;
		Elf_Data *d;
		GElf_Nhdr nh;
		size_t off = 0, name_off, desc_off;
		if (!gelf_getphdr(elf, (int)i, &ph) || ph.p_type != PT_NOTE ||
		    ph.p_offset > ap->core_size || ph.p_filesz > ap->core_size - ph.p_offset ||
		    ph.p_filesz > (256u << 20))
			continue;
		d = elf_getdata_rawchunk(elf, (int64_t)ph.p_offset, ph.p_filesz, ELF_T_NHDR);
		if (!d)
			continue;
		while ((off = gelf_getnote(d, off, &nh, &name_off, &desc_off)) > 0) {
			const char *desc = (const char *)d->d_buf + desc_off, *names, *end;
			uint64_t count;
			if (nh.n_type != NT_FILE || nh.n_descsz < 16)
				continue;
			memcpy(&count, desc, 8);
			if (count > (nh.n_descsz - 16) / 24)
				continue;
			end = desc + nh.n_descsz;
			names = desc + 16 + count * 24;
			for (uint64_t k = 0; k < count && names < end; k++) {
				size_t l = strnlen(names, (size_t)(end - names));
				uint64_t r[3];
				memcpy(r, desc + 16 + k * 24, sizeof(r));
				if (!grow_array((void **)&ap->file_ranges, &cap,
						ap->n_file_ranges + 1, sizeof(*ap->file_ranges))) {
					struct file_range *fr =
					    &ap->file_ranges[ap->n_file_ranges++];
					fr->start = r[0];
					fr->end = r[1];
					fr->path = strndup(names, l);
				}
				names += l + 1;
			}
		}
	}
}

/* A pc no ELF module covers: say what memory it is in instead of "?". */
static void name_memory(const struct aprocess *ap, uint64_t pc, struct frame *f)
{
	for (size_t i = 0; i < ap->n_file_ranges; i++) {
		const struct file_range *fr = &ap->file_ranges[i];
		if (pc >= fr->start && pc < fr->end && fr->path) {
			const char *slash = strrchr(fr->path, '/');
			f->module = strdup(slash && slash[1] ? slash + 1 : fr->path);
			f->offset = pc - fr->start;
			return;
		}
	}
	for (size_t i = 0; i < ap->n_loads; i++)
		if (pc >= ap->loads[i].vaddr && pc - ap->loads[i].vaddr < ap->loads[i].memsz) {
			f->module = strdup(ap->loads[i].flags & PF_X
					       ? "[anonymous executable memory]"
					       : "[anonymous memory, not executable]");
			f->offset = pc - ap->loads[i].vaddr;
			return;
		}
	f->module = strdup("[unmapped memory]");
	f->offset = 0;
}

static void symbolize(struct aprocess *ap, Dwfl *dwfl, uint64_t pc, bool activation,
		      struct frame *f)
{
	/* A return address points after the call: look up the call itself. */
	uint64_t lookup = activation ? pc : pc - 1;
	Dwfl_Module *mod = dwfl_addrmodule(dwfl, lookup);
	const char *modname, *name;
	GElf_Off off = 0;
	GElf_Sym sym;
	Dwarf_Addr start = 0;
	Dwfl_Line *line;
	struct symfile *sf;
	struct sym_answer ans;
	uint64_t low = 0;

	f->pc = pc;
	if (!mod) {
		name_memory(ap, pc, f);
		return;
	}
	modname = dwfl_module_info(mod, NULL, &start, NULL, NULL, NULL, NULL, NULL);
	if (modname) {
		const char *slash = strrchr(modname, '/');
		f->module = strdup(slash ? slash + 1 : modname);
	}
	/* A module on a verified file: its symbols and lines are read once for all processes. */
	sf = modules_symfile(mod, &low);
	if (sf && lookup >= low && symcache_lookup(sf, lookup - low, &ans)) {
		f->function = ans.function ? strdup(ans.function) : NULL;
		f->offset = ans.function ? ans.offset + (pc - lookup) : pc - start;
		if (ans.file) {
			f->file = strdup(ans.file);
			f->line = ans.line;
		}
		return;
	}
	name = dwfl_module_addrinfo(mod, lookup, &off, &sym, NULL, NULL, NULL);
	if (name) {
		f->function = demangle(name);
		f->offset = off + (pc - lookup);
	} else {
		f->offset = pc - start;
	}
	line = dwfl_module_getsrc(mod, lookup);
	if (line) {
		int lineno = 0;
		const char *file = dwfl_lineinfo(line, NULL, &lineno, NULL, NULL, NULL);
		if (file) {
			f->file = strdup(file);
			f->line = lineno;
		}
	}
}

static int frame_cb(Dwfl_Frame *state, void *arg)
{
	struct unwind_ctx *c = arg;
	Dwarf_Addr pc;
	bool activation = false;

	if (!dwfl_frame_pc(state, &pc, &activation))
		return DWARF_CB_ABORT;
	if (c->t->n_frames >= ANALYSIS_MAX_FRAMES) {
		c->t->unwind_error = strdup("stack deeper than 256 frames: the rest is not shown");
		return DWARF_CB_ABORT;
	}
	if (grow_array((void **)&c->t->frames, &c->cap, c->t->n_frames + 1, sizeof(struct frame)))
		return DWARF_CB_ABORT;
	symbolize(c->ap, c->ap->dwfl, pc, activation, &c->t->frames[c->t->n_frames++]);
	return DWARF_CB_OK;
}

static int thread_cb(Dwfl_Thread *thread, void *arg)
{
	struct aprocess *ap = arg;
	pid_t tid = dwfl_thread_tid(thread);
	struct unwind_ctx c = {.ap = ap};

	for (size_t i = 0; i < ap->n_threads; i++)
		if (ap->threads[i].t->tid == tid)
			c.t = &ap->threads[i];
	if (!c.t)
		return DWARF_CB_OK;
	if (dwfl_thread_getframes(thread, frame_cb, &c) != 0 && !c.t->unwind_error) {
		const char *msg = dwfl_errmsg(-1);
		/* The end of the stack reads as an error from some unwinders: only a stop with
		 * fewer than two frames, or a real message, is reported. */
		if (msg && strcmp(msg, "no error") && c.t->n_frames < 2)
			c.t->unwind_error = strdup(msg);
	}
	return DWARF_CB_OK;
}

static int module_cb(Dwfl_Module *mod, void **userdata, const char *name, Dwarf_Addr start,
		     void *arg)
{
	struct aprocess *ap = arg;
	const unsigned char *bits;
	GElf_Addr vaddr;
	size_t cap = ap->n_modules;
	int len;

	(void)userdata;
	if (grow_array((void **)&ap->modules, &cap, ap->n_modules + 1, sizeof(*ap->modules)))
		return DWARF_CB_ABORT;
	struct module_info *m = &ap->modules[ap->n_modules++];
	const char *mainfile = NULL;
	memset(m, 0, sizeof(*m));
	/* The file's path where libdwfl found it (the module name may be a basename); else the
	 * name from NT_FILE, which keeps a " (deleted)" mark. */
	dwfl_module_info(mod, NULL, NULL, NULL, NULL, NULL, &mainfile, NULL);
	m->path = strdup(mainfile ? mainfile : name ? name : "?");
	m->start = start;
	len = dwfl_module_build_id(mod, &bits, &vaddr);
	for (int i = 0; i < len && i < 39; i++)
		sprintf(m->build_id + 2 * i, "%02x", bits[i]);
	return DWARF_CB_OK;
}

/* --- the process's state for libdwfl's unwinder, from the core --------------------------------
 *
 * libdwfl's own core attach reads each stack word through elf_getdata_rawchunk, which elfutils
 * (0.188) keeps in a list it searches from the start at every read: unwinding a process cost
 * time growing with the square of the words read. These callbacks give libdwfl the same
 * threads (NT_PRSTATUS, as load.c read them), registers (the set its backend unwinds with) and
 * memory (the core's dumped segments, through the image libelf holds), one word read in a few
 * instructions. */

struct core_state {
	struct aprocess *ap;
	const char *raw; /* the core's bytes as libelf holds them (mapped or the zstd image) */
	size_t raw_size;
	size_t last; /* the segment of the last read */
};

static pid_t next_thread(Dwfl *dwfl, void *dwfl_arg, void **thread_argp)
{
	struct core_state *cs = dwfl_arg;
	struct aprocess *ap = cs->ap;
	size_t i = *thread_argp ? (size_t)((struct athread *)*thread_argp - ap->threads) + 1 : 0;

	(void)dwfl;
	for (; i < ap->n_threads; i++)
		if (ap->threads[i].in_core) {
			*thread_argp = &ap->threads[i];
			return ap->threads[i].t->tid;
		}
	return 0;
}

static bool memory_read(Dwfl *dwfl, Dwarf_Addr addr, Dwarf_Word *result, void *dwfl_arg)
{
	struct core_state *cs = dwfl_arg;
	const struct aprocess *ap = cs->ap;
	size_t i = cs->last;
	uint64_t rel;

	(void)dwfl;
	if (i >= ap->n_loads || addr < ap->loads[i].vaddr ||
	    addr - ap->loads[i].vaddr >= ap->loads[i].memsz)
		for (i = 0; i < ap->n_loads; i++)
			if (addr >= ap->loads[i].vaddr &&
			    addr - ap->loads[i].vaddr < ap->loads[i].memsz)
				break;
	if (i == ap->n_loads)
		return false;
	cs->last = i;
	rel = addr - ap->loads[i].vaddr;
	/* The whole word in what the core holds of this segment, as libdwfl reads it. */
	if (rel > ap->loads[i].filesz || ap->loads[i].filesz - rel < sizeof(*result))
		return false;
	if (cs->raw && ap->loads[i].offset + rel <= cs->raw_size &&
	    cs->raw_size - (ap->loads[i].offset + rel) >= sizeof(*result)) {
		memcpy(result, cs->raw + ap->loads[i].offset + rel, sizeof(*result));
		return true;
	}
	return aprocess_read(ap, addr, result, sizeof(*result)) == sizeof(*result);
}

static bool set_initial_registers(Dwfl_Thread *thread, void *thread_arg)
{
	const struct athread *t = thread_arg;
	uint64_t dwarf[ARCH_DWARF_NREGS];

	arch_gregs_to_dwarf(t->regs, dwarf);
	if (!dwfl_thread_state_registers(thread, 0, ARCH_DWARF_NREGS, dwarf))
		return false;
	dwfl_thread_state_register_pc(thread, t->regs[ARCH_GREGS_PC]);
	return true;
}

static void detach(Dwfl *dwfl, void *dwfl_arg)
{
	(void)dwfl;
	free(dwfl_arg);
}

static const Dwfl_Thread_Callbacks core_callbacks = {
    .next_thread = next_thread,
    .memory_read = memory_read,
    .set_initial_registers = set_initial_registers,
    .detach = detach,
};

/* Give libdwfl the process's threads and memory; the state is freed by dwfl_end. */
static bool attach_core(struct aprocess *ap, Dwfl *dwfl)
{
	struct core_state *cs = calloc(1, sizeof(*cs));

	if (!cs)
		return false;
	cs->ap = ap;
	cs->raw = elf_rawfile(ap->elf, &cs->raw_size);
	if (!dwfl_attach_state(dwfl, ap->elf, ap->p->pid, &core_callbacks, cs)) {
		free(cs);
		return false;
	}
	return true;
}

static char *dwfl_error(void)
{
	const char *msg = dwfl_errmsg(-1);
	return strdup(msg ? msg : "libdwfl gave no reason");
}

void unwind_process(struct aprocess *ap)
{
	/* The modules were reported by load.c (modules.c), which decides what files may be
	 * opened: libdwfl's own core reporting would open every path the core names. */
	Dwfl *dwfl = ap->dwfl;

	if (!dwfl)
		return;
	read_file_ranges(ap);
	dwfl_getmodules(dwfl, module_cb, ap, 0);
	if (!attach_core(ap, dwfl)) {
		ap->core_error = dwfl_error();
	} else {
		dwfl_getthreads(dwfl, thread_cb, ap);
	}
	/* Threads with no frame at all still get their first frame from their registers. */
	for (size_t i = 0; i < ap->n_threads; i++) {
		struct athread *t = &ap->threads[i];
		if (t->n_frames || !t->in_core)
			continue;
		t->frames = calloc(1, sizeof(*t->frames));
		if (!t->frames)
			continue;
		symbolize(ap, dwfl, t->regs[ARCH_GREGS_PC], true, &t->frames[0]);
		t->n_frames = 1;
		if (!t->unwind_error)
			t->unwind_error =
			    strdup(ap->core_error ? ap->core_error : "the unwinder found no frame");
	}
}
