/* SPDX-License-Identifier: MIT */
#include <elf.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

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
