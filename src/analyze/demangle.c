/* SPDX-License-Identifier: MIT */
/*
 * Symbol names as people write them: C++ (Itanium ABI, "_Z...") and Rust (legacy "_ZN...h<hash>E"
 * and v0 "_R...") names demangled with the system's demangler, libiberty's cplus_demangle (the
 * one binutils and gdb use), when osmosis was built with it. Names that are not mangled, or
 * that the demangler refuses, are kept as they are.
 */
#include <stdlib.h>
#include <string.h>

#include "analyze/analysis.h"

#ifdef HAVE_LIBIBERTY
#include <libiberty/demangle.h>
#endif

char *demangle(const char *name)
{
	if (!name)
		return NULL;
#ifdef HAVE_LIBIBERTY
	if (!strncmp(name, "_Z", 2) || !strncmp(name, "_R", 2)) {
		char *d = cplus_demangle(name, DMGL_PARAMS | DMGL_ANSI | DMGL_AUTO);
		if (d)
			return d;
	}
#endif
	return strdup(name);
}

bool demangler_available(void)
{
#ifdef HAVE_LIBIBERTY
	return true;
#else
	return false;
#endif
}
