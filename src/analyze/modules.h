/* SPDX-License-Identifier: MIT */
/*
 * The modules (executable, libraries, vDSO) of a process whose core is analyzed, found from the
 * core alone, and the files of this machine allowed to stand for them. Internal to analyze/.
 */
#pragma once

#include <elfutils/libdwfl.h>
#include <stdint.h>

#include "analyze/analysis.h"
#include "core/notes.h"

/* Begin ap->dwfl and report into it every module whose ELF header the core's memory holds: at
 * the start of each file mapping of offset 0 in NT_FILE (files[0..n_files)), and the vDSO at
 * vdso (AT_SYSINFO_EHDR, 0 if none). A module's file on this machine is opened only if it is a
 * regular file (open_regular_file) whose build-id matches the one in the core's memory (the
 * path NT_FILE names, else the debug tree's .build-id/xx/rest); else
 * the problem is recorded once and the module keeps what the core holds of it (its bounds and
 * build-id, and its whole image when every byte of it is in the core, as for the vDSO). No
 * other file is ever opened on the snapshot's word, by osmosis or by libdwfl (its find_elf and
 * find_debuginfo callbacks are these). Returns 0 or a negative errno (then ap->dwfl is NULL);
 * the problems are recorded in a. */
int modules_report(struct analysis *a, struct aprocess *ap, const struct note_file_entry *files,
		   size_t n_files, uint64_t vdso);

/* Free what stood for ap's modules; call after dwfl_end(ap->dwfl). NULL-safe. */
void modules_sources_free(struct aprocess *ap);

struct module_source;
struct symfile;

/* For the symbol cache (symcache.c): a libdwfl session of one module only, the file at path,
 * used only if it is a regular file whose build-id is build_id[0..len) (checked again here), placed
 * at [low, high) with its build-id at build_id_vaddr, as a process had it. libdwfl gets it and
 * its separate debug file through the same callbacks as modules_report(). Returns the session
 * and its module in *ret_mod, or NULL; *ret_src is freed with modules_source_free() after
 * dwfl_end(). */
Dwfl *modules_open_one(const char *path, const unsigned char *build_id, size_t len, uint64_t low,
		       uint64_t high, uint64_t build_id_vaddr, Dwfl_Module **ret_mod,
		       struct module_source **ret_src);
void modules_source_free(struct module_source *src);

/* The symbol cache's entry of a module modules_report() reported from a verified file, and in
 * *ret_low where the process has it; NULL for any other module. */
struct symfile *modules_symfile(Dwfl_Module *mod, uint64_t *ret_low);
