/* SPDX-License-Identifier: MIT */
/*
 * Reporting a core's modules to libdwfl without letting the snapshot open files.
 *
 * A snapshot is data from anywhere. libdwfl's own dwfl_core_file_report() opens every path the
 * core's NT_FILE note names (and the executable the caller names) with a plain open(): a FIFO
 * there blocks the analysis for ever, a device node is opened with its side effects, and the file
 * found is used when its build-id is missing. So osmosis reports the modules itself:
 *
 *   1. Candidates: the start of every NT_FILE mapping of file offset 0, and the vDSO from
 *      AT_SYSINFO_EHDR. A candidate is a module only if the core's memory holds an ELF header
 *      there (the kernel and osmosis dump the first page of every file mapping that has one).
 *   2. Its bounds come from its program headers and its build-id from its PT_NOTE, both read from
 *      the core's memory (bounded: 256 headers, 64 KiB of notes), never from the file.
 *   3. The file NT_FILE names is opened only through open_regular_file() (O_PATH first, fstat,
 *      only a regular file is reopened O_RDONLY|O_NONBLOCK|O_NOCTTY|O_CLOEXEC), and used only when
 *      its build-id equals the core's; failing that, the file the debug tree names by that
 *      build-id (.build-id/xx/rest) is tried the same way. Otherwise the module keeps what the
 *      core holds: bounds, build-id, and its whole image when every byte of it was dumped (the
 *      vDSO is).
 *   4. libdwfl is given these through find_elf (the verified file or the image, never a name
 *      left for it to open) and find_debuginfo (separate debug files only through
 *      open_regular_file, only with the module's build-id; debuginfod only when DEBUGINFOD_URLS
 *      is set, by build-id alone).
 *   5. A module on a verified file is also named to the analysis's symbol cache (symcache.c),
 *      keyed by its build-id: symbols and lines are read once for every process that maps the
 *      file, in a session of its own (modules_open_one(), the same checks and callbacks).
 *
 * The modules are reported in the core's address order; a candidate overlapping the one before
 * is left out, as libdwfl would not place it.
 */
#include <elf.h>
#include <elfutils/libdwelf.h>
#include <elfutils/libdwfl.h>
#include <errno.h>
#include <fcntl.h>
#include <libelf.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "analyze/modules.h"
#include "analyze/symcache.h"
#include "base/fs.h"
#include "base/util.h"

#define MODULE_MAX_PHDRS 256
#define MODULE_MAX_PHOFF (1u << 20)
#define MODULE_MAX_NOTES (64u << 10)
#define MODULE_MAX_IMAGE (64u << 20)
#define MODULE_MAX_SPAN	 (1ull << 40)
#define MODULE_MAX_COUNT 65536
#define BUILD_ID_MIN	 3
#define BUILD_ID_MAX	 64
#define MODULE_PAGE	 4096
#define DEBUG_DIR	 "/usr/lib/debug"

struct module_source {
	char *path;	  /* the verified file on this machine, or NULL */
	int fd;		  /* its descriptor until libdwfl takes it, else -1 */
	Elf *elf;	  /* the file's ELF or the image's, until libdwfl takes it */
	void *image;	  /* the module's bytes from the core, kept until dwfl_end */
	size_t image_len; /* 0 when the core does not hold all of it */
	/* The symbol cache's entry for the verified file (symcache.c), and where this process
	 * has the module: symbols and lines are asked of the cache at pc - low. */
	struct symfile *shared;
	uint64_t low;
};

/* What the core's memory says of a module. */
struct core_module {
	uint64_t low, high, bias;
	Elf64_Ehdr eh;
	Elf64_Phdr ph[MODULE_MAX_PHDRS];
	size_t n_ph;
	unsigned char build_id[BUILD_ID_MAX];
	size_t build_id_len;
	uint64_t build_id_vaddr;
};

void modules_source_free(struct module_source *src)
{
	if (!src)
		return;
	if (src->elf)
		elf_end(src->elf);
	if (src->fd >= 0)
		close(src->fd);
	free(src->image);
	free(src->path);
	free(src);
}

void modules_sources_free(struct aprocess *ap)
{
	for (size_t i = 0; i < ap->n_sources; i++)
		modules_source_free(ap->sources[i]);
	free(ap->sources);
	ap->sources = NULL;
	ap->n_sources = 0;
}

static bool read_exact(const struct aprocess *ap, uint64_t addr, void *buf, size_t len)
{
	return aprocess_read(ap, addr, buf, len) == len;
}

/* The build-id among the notes of one PT_NOTE, read from the core. */
static void find_build_id(const struct aprocess *ap, struct core_module *m, const Elf64_Phdr *ph)
{
	_cleanup_free_ uint8_t *buf = NULL;
	struct note_iter it;
	struct note n;
	uint64_t at;

	if (!ph->p_filesz || ph->p_filesz > MODULE_MAX_NOTES ||
	    __builtin_add_overflow(m->bias, ph->p_vaddr, &at))
		return;
	buf = malloc(ph->p_filesz);
	if (!buf || !read_exact(ap, at, buf, ph->p_filesz))
		return;
	note_iter_init(&it, buf, ph->p_filesz);
	while (note_next(&it, &n)) {
		if (n.type != NT_GNU_BUILD_ID || !note_name_is(&n, "GNU") ||
		    n.descsz < BUILD_ID_MIN || n.descsz > BUILD_ID_MAX)
			continue;
		memcpy(m->build_id, n.desc, n.descsz);
		m->build_id_len = n.descsz;
		m->build_id_vaddr = at + (uint64_t)(n.desc - buf);
		return;
	}
}

/* Read the module whose ELF header is at addr in the core's memory. Returns false when there is
 * none there or its headers do not describe a module that starts at addr. */
static bool read_core_module(const struct aprocess *ap, uint64_t addr, struct core_module *m)
{
	const Elf64_Phdr *first = NULL;
	uint64_t top = 0;

	memset(m, 0, sizeof(*m));
	if (!read_exact(ap, addr, &m->eh, sizeof(m->eh)) ||
	    memcmp(m->eh.e_ident, ELFMAG, SELFMAG) || m->eh.e_ident[EI_CLASS] != ELFCLASS64 ||
	    m->eh.e_ident[EI_DATA] != ELFDATA2LSB ||
	    (m->eh.e_type != ET_EXEC && m->eh.e_type != ET_DYN) ||
	    m->eh.e_phentsize != sizeof(Elf64_Phdr) || !m->eh.e_phnum ||
	    m->eh.e_phnum > MODULE_MAX_PHDRS || m->eh.e_phoff > MODULE_MAX_PHOFF)
		return false;
	m->n_ph = m->eh.e_phnum;
	if (!read_exact(ap, addr + m->eh.e_phoff, m->ph, m->n_ph * sizeof(Elf64_Phdr)))
		return false;
	for (size_t i = 0; i < m->n_ph; i++) {
		const Elf64_Phdr *ph = &m->ph[i];
		uint64_t end;
		if (ph->p_type != PT_LOAD)
			continue;
		if (!first)
			first = ph;
		if (__builtin_add_overflow(ph->p_vaddr, ph->p_memsz, &end))
			return false;
		top = MAX(top, end);
	}
	/* The first PT_LOAD maps the file's first page, where the header was found. */
	if (!first || first->p_offset >= MODULE_PAGE)
		return false;
	m->bias = addr - ALIGN_DOWN(first->p_vaddr, (uint64_t)MODULE_PAGE);
	m->low = addr;
	if (__builtin_add_overflow(m->bias, ALIGN_UP(top, (uint64_t)MODULE_PAGE), &m->high) ||
	    m->high <= m->low || m->high - m->low > MODULE_MAX_SPAN)
		return false;
	for (size_t i = 0; i < m->n_ph && !m->build_id_len; i++)
		if (m->ph[i].p_type == PT_NOTE)
			find_build_id(ap, m, &m->ph[i]);
	return true;
}

/* The module's file image from the core, when the core holds every byte of it. */
static void image_from_core(const struct aprocess *ap, const struct core_module *m,
			    struct module_source *src)
{
	_cleanup_free_ uint8_t *img = NULL;
	size_t len = 0;
	Elf64_Ehdr *eh;

	for (size_t i = 0; i < m->n_ph; i++) {
		const Elf64_Phdr *ph = &m->ph[i];
		uint64_t end;
		if (ph->p_type != PT_LOAD)
			continue;
		if (__builtin_add_overflow(ph->p_offset, ph->p_filesz, &end) ||
		    end > MODULE_MAX_IMAGE)
			return;
		len = MAX(len, (size_t)end);
	}
	if (!len || !(img = calloc(1, len)))
		return;
	for (size_t i = 0; i < m->n_ph; i++) {
		const Elf64_Phdr *ph = &m->ph[i];
		if (ph->p_type == PT_LOAD &&
		    !read_exact(ap, m->bias + ph->p_vaddr, img + ph->p_offset, ph->p_filesz))
			return; /* not all of it was dumped */
	}
	/* Section headers past the image (most files keep them after the last segment) would make
	 * libelf refuse it: without them, libdwfl works from the program headers. */
	eh = (Elf64_Ehdr *)img;
	if (eh->e_shoff > len || (size_t)eh->e_shnum * sizeof(Elf64_Shdr) > len - eh->e_shoff ||
	    eh->e_shentsize != sizeof(Elf64_Shdr)) {
		eh->e_shoff = 0;
		eh->e_shnum = 0;
		eh->e_shstrndx = SHN_UNDEF;
	}
	src->elf = elf_memory((char *)img, len);
	if (!src->elf)
		return;
	if (elf_kind(src->elf) != ELF_K_ELF) {
		elf_end(src->elf);
		src->elf = NULL;
		return;
	}
	src->image = TAKE_PTR(img);
	src->image_len = len;
}

static bool same_build_id(Elf *elf, const unsigned char *bits, size_t len)
{
	const void *id;
	ssize_t n = dwelf_elf_gnu_build_id(elf, &id);
	return len && n == (ssize_t)len && !memcmp(id, bits, len);
}

/* Use the ELF file at path for a module whose build-id (from the core) is id[0..id_len) if it is
 * a regular file with that build-id. Returns true when it does (src takes it); else why says why
 * not ("" when the file is simply not there: a snapshot from another machine, a deleted file). */
static bool use_file(const unsigned char *id, size_t id_len, const char *path,
		     struct module_source *src, char *why, size_t whylen)
{
	const char *kind;
	int fd = open_regular_file(AT_FDCWD, path, 0, &kind);
	Elf *elf;

	why[0] = 0;
	if (fd < 0) {
		if (kind)
			snprintf(why, whylen, "%s is %s, not a regular file: not opened", path,
				 kind);
		return false;
	}
	elf = elf_begin(fd, ELF_C_READ_MMAP, NULL);
	if (!elf || elf_kind(elf) != ELF_K_ELF)
		snprintf(why, whylen, "%s is not an ELF file on this machine: not used", path);
	else if (!id_len)
		snprintf(why, whylen,
			 "the core's memory holds no build-id to check %s against: not used", path);
	else if (!same_build_id(elf, id, id_len))
		snprintf(why, whylen,
			 "%s on this machine is not the file the process had mapped (its build-id "
			 "differs): not used",
			 path);
	else if ((src->path = strdup(path))) {
		src->fd = fd;
		src->elf = elf;
		return true;
	}
	if (elf)
		elf_end(elf);
	close(fd);
	return false;
}

/* The file for module m: the one the core names, else the one this machine's debug tree names
 * by m's build-id (.build-id/xx/rest, installed with debug symbol packages). What was refused
 * is recorded once. */
static void file_for_module(struct analysis *a, const struct aprocess *ap,
			    const struct core_module *m, const char *path,
			    struct module_source *src)
{
	char why[PATH_MAX + 160], other[PATH_MAX + 160], byid[PATH_MAX], hex[2 * BUILD_ID_MAX + 1];
	bool found = path && use_file(m->build_id, m->build_id_len, path, src, why, sizeof(why));

	if (!path)
		why[0] = 0;
	if (!found && m->build_id_len) {
		for (size_t i = 0; i < m->build_id_len; i++)
			snprintf(hex + 2 * i, 3, "%02x", m->build_id[i]);
		snprintf(byid, sizeof(byid), DEBUG_DIR "/.build-id/%.2s/%s", hex, hex + 2);
		found = use_file(m->build_id, m->build_id_len, byid, src, other, sizeof(other));
	}
	if (why[0])
		analysis_problem(a, "core.%d: %s; %s", ap->p->pid, why,
				 found ? "the file of its build-id stands for it"
				       : "the analysis uses what the core holds of it");
}

static int find_elf(Dwfl_Module *mod, void **userdata, const char *modname, Dwarf_Addr base,
		    char **file_name, Elf **elfp)
{
	struct module_source *src = *userdata;

	*elfp = NULL;
	/* Never a name without a descriptor: libdwfl would open the name itself. */
	if (!src || (!src->elf && src->fd < 0))
		return -1;
	if (src->fd >= 0 && src->path && !(*file_name = strdup(src->path)))
		return -1;
	*elfp = TAKE_PTR(src->elf);
	return TAKE_FD(src->fd);
}

static int try_debug_file(Dwfl_Module *mod, const char *path, bool check_id, char **ret_name)
{
	const unsigned char *bits;
	GElf_Addr vaddr;
	const char *kind;
	int len = dwfl_module_build_id(mod, &bits, &vaddr);
	int fd = open_regular_file(AT_FDCWD, path, 0, &kind);
	Elf *elf;
	bool ok;

	if (fd < 0)
		return -1;
	if (check_id) {
		elf = elf_begin(fd, ELF_C_READ_MMAP, NULL);
		ok = elf && elf_kind(elf) == ELF_K_ELF && len > 0 &&
		     same_build_id(elf, bits, (size_t)len);
		if (elf)
			elf_end(elf);
		if (!ok) {
			close(fd);
			return -1;
		}
	}
	if (!(*ret_name = strdup(path))) {
		close(fd);
		return -1;
	}
	return fd;
}

static int find_debuginfo(Dwfl_Module *mod, void **userdata, const char *modname, Dwarf_Addr base,
			  const char *file_name, const char *debuglink_file,
			  GElf_Word debuglink_crc, char **debuginfo_file_name)
{
	const unsigned char *bits;
	GElf_Addr vaddr;
	char path[PATH_MAX], hex[2 * BUILD_ID_MAX + 1];
	int len = dwfl_module_build_id(mod, &bits, &vaddr), fd = -1;
	const char *env;

	errno = 0;
	/* An absolute link (a dwz alternate file) names a file of this machine's debug tree. */
	if (debuglink_file && debuglink_file[0] == '/')
		return try_debug_file(mod, debuglink_file, false, debuginfo_file_name);
	if (len < BUILD_ID_MIN || len > BUILD_ID_MAX)
		return -1;
	for (int i = 0; i < len; i++)
		snprintf(hex + 2 * i, 3, "%02x", bits[i]);
	snprintf(path, sizeof(path), DEBUG_DIR "/.build-id/%.2s/%s.debug", hex, hex + 2);
	fd = try_debug_file(mod, path, true, debuginfo_file_name);
	if (fd < 0 && debuglink_file && !strchr(debuglink_file, '/') && file_name &&
	    file_name[0] == '/') {
		const char *slash = strrchr(file_name, '/');
		int dirlen = (int)(slash - file_name);
		const char *const forms[] = {"%.*s/%s", "%.*s/.debug/%s", DEBUG_DIR "%.*s/%s"};
		for (size_t i = 0; i < ARRAY_SIZE(forms) && fd < 0; i++) {
			if (snprintf(path, sizeof(path), forms[i], dirlen, file_name,
				     debuglink_file) >= (int)sizeof(path))
				continue;
			fd = try_debug_file(mod, path, true, debuginfo_file_name);
		}
	}
	/* debuginfod by build-id alone: with no file name and no link, libdwfl's standard search
	 * looks only in the debug tree and asks the servers of DEBUGINFOD_URLS. */
	if (fd < 0 && (env = getenv("DEBUGINFOD_URLS")) && env[0])
		fd = dwfl_standard_find_debuginfo(mod, userdata, modname, base, NULL, NULL, 0,
						  debuginfo_file_name);
	return fd;
}

static char *debuginfo_path;

static const Dwfl_Callbacks callbacks = {
    .find_elf = find_elf,
    .find_debuginfo = find_debuginfo,
    .debuginfo_path = &debuginfo_path,
};

/* Report the module whose header the core holds at addr. */
static void report_one(struct analysis *a, struct aprocess *ap, Dwfl *dwfl, uint64_t addr,
		       const char *name, const char *path, uint64_t *last_high)
{
	_cleanup_free_ struct core_module *m = malloc(sizeof(*m));
	struct module_source *src;
	Dwfl_Module *mod;
	void **ud;
	size_t cap = ap->n_sources;

	if (!m || !read_core_module(ap, addr, m) || m->low < *last_high ||
	    ap->n_sources >= MODULE_MAX_COUNT)
		return;
	if (grow_array((void **)&ap->sources, &cap, ap->n_sources + 1, sizeof(*ap->sources)) ||
	    !(src = calloc(1, sizeof(*src))))
		return;
	src->fd = -1;
	ap->sources[ap->n_sources++] = src;
	file_for_module(a, ap, m, path, src);
	if (!src->elf)
		image_from_core(ap, m, src);
	else if (src->path) {
		/* A verified file: its symbols and lines are read once for every process. */
		src->shared = symcache_file(a->symcache, m->build_id, m->build_id_len, src->path,
					    m->low, m->high, m->build_id_vaddr);
		src->low = m->low;
	}
	mod = dwfl_report_module(dwfl, name, m->low, m->high);
	if (!mod)
		return;
	if (m->build_id_len)
		dwfl_module_report_build_id(mod, m->build_id, m->build_id_len, m->build_id_vaddr);
	dwfl_module_info(mod, &ud, NULL, NULL, NULL, NULL, NULL, NULL);
	*ud = src;
	*last_high = MAX(*last_high, m->high);
}

Dwfl *modules_open_one(const char *path, const unsigned char *build_id, size_t len, uint64_t low,
		       uint64_t high, uint64_t build_id_vaddr, Dwfl_Module **ret_mod,
		       struct module_source **ret_src)
{
	struct module_source *src = calloc(1, sizeof(*src));
	char why[PATH_MAX + 160];
	Dwfl_Module *mod;
	Dwfl *dwfl;
	void **ud;

	if (!src)
		return NULL;
	src->fd = -1;
	if (!use_file(build_id, len, path, src, why, sizeof(why)) ||
	    !(dwfl = dwfl_begin(&callbacks))) {
		modules_source_free(src);
		return NULL;
	}
	dwfl_report_begin(dwfl);
	mod = dwfl_report_module(dwfl, path, low, high);
	if (mod) {
		dwfl_module_report_build_id(mod, build_id, len, build_id_vaddr);
		dwfl_module_info(mod, &ud, NULL, NULL, NULL, NULL, NULL, NULL);
		*ud = src;
	}
	if (!mod || dwfl_report_end(dwfl, NULL, NULL) != 0) {
		dwfl_end(dwfl);
		modules_source_free(src);
		return NULL;
	}
	*ret_mod = mod;
	*ret_src = src;
	return dwfl;
}

struct symfile *modules_symfile(Dwfl_Module *mod, uint64_t *ret_low)
{
	void **ud = NULL;
	struct module_source *src;

	if (!dwfl_module_info(mod, &ud, NULL, NULL, NULL, NULL, NULL, NULL) || !ud ||
	    !(src = *ud) || !src->shared)
		return NULL;
	*ret_low = src->low;
	return src->shared;
}

int modules_report(struct analysis *a, struct aprocess *ap, const struct note_file_entry *files,
		   size_t n_files, uint64_t vdso)
{
	Dwfl *dwfl = dwfl_begin(&callbacks);
	uint64_t last_high = 0;
	bool vdso_done = !vdso;

	if (!dwfl)
		return -ENOMEM;
	dwfl_report_begin(dwfl);
	for (size_t i = 0; i < n_files; i++) {
		const struct note_file_entry *f = &files[i];
		_cleanup_free_ char *path = NULL;
		if (!vdso_done && vdso < f->start) {
			report_one(a, ap, dwfl, vdso, "[vdso]", NULL, &last_high);
			vdso_done = true;
		}
		if (f->offset != 0 || !(path = strndup(f->name, f->name_len)))
			continue;
		/* A module starts where a file's first page is mapped (a file mapped twice is two
		 * modules, each at its own header). */
		report_one(a, ap, dwfl, f->start, path, path[0] == '/' ? path : NULL, &last_high);
	}
	if (!vdso_done)
		report_one(a, ap, dwfl, vdso, "[vdso]", NULL, &last_high);
	if (dwfl_report_end(dwfl, NULL, NULL) != 0) {
		dwfl_end(dwfl);
		modules_sources_free(ap);
		return -EINVAL;
	}
	ap->dwfl = dwfl;
	return 0;
}
