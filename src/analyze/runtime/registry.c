/* SPDX-License-Identifier: MIT */
/* The runtimes the analysis knows, in the order they are tried. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analyze/runtime/runtime.h"

extern const struct runtime runtime_cpython;
extern const struct runtime runtime_java;

const struct runtime *const runtime_registry[] = {
    &runtime_cpython,
    &runtime_java,
};
const size_t runtime_count = sizeof(runtime_registry) / sizeof(runtime_registry[0]);

/* Runtimes turned off for this run of osmosis (analyze --no-runtime=ID). */
static bool runtime_off[sizeof(runtime_registry) / sizeof(runtime_registry[0])];

int runtime_disable(const char *id)
{
	for (size_t i = 0; i < runtime_count; i++)
		if (!strcmp(runtime_registry[i]->id, id)) {
			runtime_off[i] = true;
			return 0;
		}
	return -ENOENT;
}

void runtimes_detect(struct analysis *a, struct aprocess *ap)
{
	for (size_t i = 0; i < runtime_count && !ap->runtime; i++) {
		const struct runtime *rt = runtime_registry[i];
		char why[200] = "";
		void *state = NULL;
		int r;

		if (runtime_off[i])
			continue;
		r = rt->detect(ap, &state, why, sizeof(why));

		if (r > 0) {
			ap->runtime = rt;
			ap->runtime_state = state;
		} else if (r < 0) {
			analysis_problem(a, "pid %d: %s: %s; its native stacks are analyzed",
					 ap->p->pid, rt->title, why[0] ? why : "cannot be read");
		}
	}
}

void runtimes_read(struct analysis *a)
{
	for (size_t i = 0; i < a->n_procs; i++) {
		struct aprocess *ap = &a->procs[i];
		if (ap->runtime)
			ap->runtime->read(a, ap, ap->runtime_state);
	}
}

void runtimes_free(struct aprocess *ap)
{
	if (ap->runtime && ap->runtime_state)
		ap->runtime->free_state(ap->runtime_state);
	ap->runtime_state = NULL;
	free(ap->runtime_version);
	ap->runtime_version = NULL;
	for (size_t i = 0; i < ap->n_tasks; i++) {
		for (size_t j = 0; j < ap->tasks[i].n_frames; j++) {
			free(ap->tasks[i].frames[j].function);
			free(ap->tasks[i].frames[j].file);
		}
		free(ap->tasks[i].frames);
		free(ap->tasks[i].name);
	}
	free(ap->tasks);
	ap->tasks = NULL;
	ap->n_tasks = 0;
	ap->loop_thread = NULL;
}
