/* SPDX-License-Identifier: MIT */
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

#include "snapshot/manifest.h"

static const char *state_name(char c)
{
	switch (c) {
	case 'R':
		return "running";
	case 'S':
		return "sleeping";
	case 'D':
		return "disk-sleep";
	case 'T':
		return "stopped";
	case 't':
		return "tracing-stop";
	case 'Z':
		return "zombie";
	case 'X':
		return "dead";
	case 'I':
		return "idle";
	default:
		return "unknown";
	}
}

static json_object *thread_json(const struct osm_thread *t)
{
	json_object *o = json_object_new_object();
	char st[2] = {t->state, 0};

	json_object_object_add(o, "tid", json_object_new_int(t->tid));
	json_object_object_add(o, "name", json_object_new_string(t->name));
	json_object_object_add(o, "state", json_object_new_string(st));
	json_object_object_add(o, "state_name", json_object_new_string(state_name(t->state)));
	json_object_object_add(o, "captured", json_object_new_boolean(t->captured));
	return o;
}

static json_object *process_json(const struct osm_process *p)
{
	json_object *o = json_object_new_object(), *threads = json_object_new_array();
	uint64_t unreadable = 0;

	json_object_object_add(o, "pid", json_object_new_int(p->pid));
	json_object_object_add(o, "ppid", json_object_new_int(p->ppid));
	json_object_object_add(o, "comm", json_object_new_string(p->comm));
	json_object_object_add(o, "exe", json_object_new_string(p->exe ? p->exe : ""));
	json_object_object_add(o, "cmdline", json_object_new_string(p->cmdline ? p->cmdline : ""));
	json_object_object_add(o, "uid", json_object_new_int64(p->uid));
	json_object_object_add(o, "core", json_object_new_string(p->core_name));
	json_object_object_add(o, "coredump_filter", json_object_new_int64(p->coredump_filter));
	json_object_object_add(o, "mappings", json_object_new_int64((int64_t)p->n_maps));
	json_object_object_add(o, "captured_bytes",
			       json_object_new_int64((int64_t)p->captured_bytes));
	for (size_t i = 0; i < p->n_maps; i++)
		unreadable += p->maps[i].unreadable;
	json_object_object_add(o, "unreadable_bytes", json_object_new_int64((int64_t)unreadable));
	for (size_t i = 0; i < p->n_threads; i++) {
		if (!p->threads[i]->captured && p->threads[i]->gone)
			continue;
		json_object_array_add(threads, thread_json(p->threads[i]));
	}
	json_object_object_add(o, "threads", threads);
	return o;
}

char *manifest_to_json(const struct osm_snapshot *s)
{
	json_object *root = json_object_new_object(), *procs = json_object_new_array();
	char *out;

	json_object_object_add(root, "schema_version",
			       json_object_new_int(MANIFEST_SCHEMA_VERSION));
	json_object_object_add(root, "osmosis_version", json_object_new_string(OSMOSIS_VERSION));
	json_object_object_add(root, "created", json_object_new_string(s->created));
	json_object_object_add(root, "host", json_object_new_string(s->host ? s->host : ""));
	json_object_object_add(root, "kernel", json_object_new_string(s->kernel ? s->kernel : ""));
	json_object_object_add(root, "arch", json_object_new_string(ARCH_NAME));
	json_object_object_add(root, "method", json_object_new_string(s->method));
	json_object_object_add(root, "method_reason",
			       json_object_new_string(s->method_reason ? s->method_reason : ""));
	json_object_object_add(root, "pause_us", json_object_new_int64((int64_t)s->pause_us));
	for (size_t i = 0; i < s->n_procs; i++)
		json_object_array_add(procs, process_json(s->procs[i]));
	json_object_object_add(root, "processes", procs);

	const char *txt =
	    json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
						     JSON_C_TO_STRING_NOSLASHESCAPE);
	out = txt ? strdup(txt) : NULL;
	json_object_put(root);
	return out;
}
