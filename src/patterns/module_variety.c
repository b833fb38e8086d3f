/* SPDX-License-Identifier: MIT */
/* module-variety: one library path mapped with different build-ids across processes, or files
 * deleted (replaced on disk) while mapped. */
#include <string.h>

#include "patterns/pattern.h"

static const char *const recs[] = {
    "Processes run different builds of the same library: they were started before and after "
    "an upgrade. Restart the old ones so all run the version on disk.",
    "A mapped file marked (deleted) was replaced while in use: the process still runs the old "
    "code, with its old bugs and vulnerabilities.",
    NULL,
};

/* The same path, whether or not the kernel marked it " (deleted)". */
static bool same_path(const char *x, const char *y)
{
	size_t lx = strlen(x), ly = strlen(y);
	if (lx >= 10 && !strcmp(x + lx - 10, " (deleted)"))
		lx -= 10;
	if (ly >= 10 && !strcmp(y + ly - 10, " (deleted)"))
		ly -= 10;
	return lx == ly && !strncmp(x, y, lx);
}

static void match(const struct analysis *a, const struct pattern *self, struct findings *out)
{
	/* Deleted files, per process. */
	for (size_t i = 0; i < a->n_procs; i++) {
		const struct aprocess *ap = &a->procs[i];
		struct finding *f = NULL;
		for (size_t j = 0; j < ap->n_files; j++) {
			const char *path = ap->files[j];
			size_t l = strlen(path);
			if (l < 10 || strcmp(path + l - 10, " (deleted)") ||
			    !strncmp(path, "/memfd:", 7) || !strncmp(path, "/dev/", 5) ||
			    !strncmp(path, "/SYSV", 5))
				continue;
			if (!f) {
				f = finding_new(
				    out, self, SEV_WARNING,
				    "Pid %d (%s) runs code from files deleted or replaced "
				    "on disk.",
				    ap->p->pid, ap->p->comm);
				if (!f)
					return;
				finding_pid(f, ap->p->pid);
			}
			finding_line(f, "mapped: %s", path);
		}
	}
	/* One path, several build-ids. */
	for (size_t i = 0; i < a->n_procs; i++)
		for (size_t m = 0; m < a->procs[i].n_modules; m++) {
			const struct module_info *mi = &a->procs[i].modules[m];
			struct finding *f = NULL;
			bool earlier = false;
			if (!mi->build_id[0] || mi->path[0] != '/')
				continue;
			/* Report each path once: skip if an earlier process has it. */
			for (size_t j = 0; j < i && !earlier; j++)
				for (size_t n = 0; n < a->procs[j].n_modules; n++)
					earlier |= same_path(a->procs[j].modules[n].path, mi->path);
			if (earlier)
				continue;
			for (size_t j = i + 1; j < a->n_procs; j++)
				for (size_t n = 0; n < a->procs[j].n_modules; n++) {
					const struct module_info *o = &a->procs[j].modules[n];
					if (!same_path(o->path, mi->path) || !o->build_id[0] ||
					    !strcmp(o->build_id, mi->build_id))
						continue;
					if (!f) {
						f = finding_new(
						    out, self, SEV_WARNING,
						    "%s is mapped with different build-ids "
						    "in different processes.",
						    mi->path);
						if (!f)
							return;
						finding_pid(f, a->procs[i].p->pid);
						finding_line(f, "pid %d: build-id %s",
							     a->procs[i].p->pid, mi->build_id);
					}
					finding_pid(f, a->procs[j].p->pid);
					finding_line(f, "pid %d: build-id %s", a->procs[j].p->pid,
						     o->build_id);
				}
		}
}

const struct pattern pattern_module_variety = {
    .id = "module-variety",
    .title = "Module variety",
    .severity = SEV_WARNING,
    .description = "Processes map different builds of one library, or files deleted while "
		   "mapped.",
    .needs = "cores (NT_FILE, build-ids)",
    .thresholds = NULL,
    .n_thresholds = 0,
    .recommendations = recs,
    .match = match,
};
