/* SPDX-License-Identifier: MIT */
/*
 * Unwinding every thread of a core with elfutils' libdwfl: modules as load.c reported them (only
 * regular files whose build-id matches the core's, see modules.c), CFI from
 * .eh_frame or .debug_frame, symbols from the symbol tables, source lines where debug info is.
 * A thread whose unwinding fails keeps the frames found so far (at least its first frame, from
 * its registers) and the reason.
 */
#include <dwarf.h>
#include <elfutils/libdwfl.h>
#include <errno.h>
#include <libelf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analyze/analysis.h"
#include "arch.h"
#include "base/util.h"

struct unwind_ctx {
	struct aprocess *ap;
	struct athread *t;
	size_t cap;
};

static void symbolize(Dwfl *dwfl, uint64_t pc, bool activation, struct frame *f)
{
	/* A return address points after the call: look up the call itself. */
	uint64_t lookup = activation ? pc : pc - 1;
	Dwfl_Module *mod = dwfl_addrmodule(dwfl, lookup);
	const char *modname, *name;
	GElf_Off off = 0;
	GElf_Sym sym;
	Dwarf_Addr start = 0;
	Dwfl_Line *line;

	f->pc = pc;
	if (!mod)
		return;
	modname = dwfl_module_info(mod, NULL, &start, NULL, NULL, NULL, NULL, NULL);
	if (modname) {
		const char *slash = strrchr(modname, '/');
		f->module = strdup(slash ? slash + 1 : modname);
	}
	name = dwfl_module_addrinfo(mod, lookup, &off, &sym, NULL, NULL, NULL);
	if (name) {
		f->function = strdup(name);
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
	symbolize(c->ap->dwfl, pc, activation, &c->t->frames[c->t->n_frames++]);
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
	dwfl_getmodules(dwfl, module_cb, ap, 0);
	if (dwfl_core_file_attach(dwfl, ap->elf) < 0) {
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
		symbolize(dwfl, t->regs[ARCH_GREGS_PC], true, &t->frames[0]);
		t->n_frames = 1;
		if (!t->unwind_error)
			t->unwind_error =
			    strdup(ap->core_error ? ap->core_error : "the unwinder found no frame");
	}
}
