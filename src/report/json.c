/* SPDX-License-Identifier: MIT */
/* The JSON report (docs/analysis-json.md). */
#include <errno.h>
#include <json-c/json.h>
#include <string.h>

#include "report/report.h"

#define ADD json_object_object_add

static json_object *jstr_or_null(const char *s)
{
	return s ? json_object_new_string(s) : NULL;
}

static json_object *ids(const pid_t *v, size_t n)
{
	json_object *a = json_object_new_array();
	for (size_t i = 0; i < n; i++)
		json_object_array_add(a, json_object_new_int(v[i]));
	return a;
}

static json_object *frames_json(const struct frame *frames, size_t n_frames)
{
	json_object *a = json_object_new_array();
	for (size_t i = 0; i < n_frames; i++) {
		const struct frame *f = &frames[i];
		json_object *o = json_object_new_object();
		if (f->kind == FRAME_PYTHON) {
			ADD(o, "kind", json_object_new_string("python"));
			ADD(o, "function", jstr_or_null(f->function));
			ADD(o, "file", jstr_or_null(f->file));
			ADD(o, "line", f->line > 0 ? json_object_new_int(f->line) : NULL);
			json_object_array_add(a, o);
			continue;
		}
		if (f->kind == FRAME_JAVA) {
			ADD(o, "kind", json_object_new_string("java"));
			ADD(o, "method", jstr_or_null(f->function));
			ADD(o, "file", jstr_or_null(f->file));
			ADD(o, "line", f->line > 0 ? json_object_new_int(f->line) : NULL);
			json_object_array_add(a, o);
			continue;
		}
		ADD(o, "kind", json_object_new_string("native"));
		ADD(o, "pc", json_object_new_int64((int64_t)f->pc));
		ADD(o, "function", jstr_or_null(f->function));
		ADD(o, "module", jstr_or_null(f->module));
		ADD(o, "offset", json_object_new_int64((int64_t)f->offset));
		ADD(o, "file", jstr_or_null(f->file));
		ADD(o, "line", f->file ? json_object_new_int(f->line) : NULL);
		json_object_array_add(a, o);
	}
	return a;
}

int report_json(FILE *out, const struct analysis *a, const struct findings *fs)
{
	json_object *root = json_object_new_object(), *findings = json_object_new_array();
	json_object *procs = json_object_new_array(), *problems = json_object_new_array();
	const char *txt;

	if (!root)
		return -ENOMEM;
	ADD(root, "schema_version", json_object_new_int(ANALYSIS_JSON_SCHEMA_VERSION));
	ADD(root, "snapshot", json_object_new_string(a->dir));
	ADD(root, "created", json_object_new_string(a->snap->created));
	ADD(root, "host", jstr_or_null(a->snap->host));
	for (size_t i = 0; i < fs->n; i++) {
		const struct finding *f = &fs->v[i];
		json_object *o = json_object_new_object(), *recs = json_object_new_array();
		json_object *rel = json_object_new_array();
		ADD(o, "pattern", json_object_new_string(f->pattern->id));
		ADD(o, "id", jstr_or_null(f->id));
		ADD(o, "title", json_object_new_string(f->pattern->title));
		ADD(o, "severity", json_object_new_string(severity_name(f->severity)));
		ADD(o, "summary", jstr_or_null(f->summary));
		ADD(o, "pids", ids(f->pids, f->n_pids));
		ADD(o, "tids", ids(f->tids, f->n_tids));
		ADD(o, "evidence",
		    f->evidence ? json_object_get(f->evidence) : json_object_new_object());
		json_object *lines = json_object_new_array();
		for (size_t j = 0; j < f->n_lines; j++)
			json_object_array_add(lines, json_object_new_string(f->lines[j]));
		json_object_object_add(json_object_object_get(o, "evidence"), "lines", lines);
		for (size_t j = 0; j < f->n_recs; j++)
			json_object_array_add(recs, json_object_new_string(f->recs[j]));
		for (size_t j = 0; f->pattern->recommendations && f->pattern->recommendations[j];
		     j++)
			json_object_array_add(
			    recs, json_object_new_string(f->pattern->recommendations[j]));
		ADD(o, "recommendations", recs);
		for (size_t j = 0; j < f->n_related; j++)
			json_object_array_add(rel, json_object_new_string(f->related[j]));
		ADD(o, "related", rel);
		json_object_array_add(findings, o);
	}
	ADD(root, "findings", findings);
	for (size_t i = 0; i < a->n_procs; i++) {
		const struct aprocess *ap = &a->procs[i];
		json_object *p = json_object_new_object(), *threads = json_object_new_array();
		ADD(p, "pid", json_object_new_int(ap->p->pid));
		ADD(p, "comm", json_object_new_string(ap->p->comm));
		ADD(p, "runtime", jstr_or_null(ap->runtime_version));
		for (size_t j = 0; j < ap->n_threads; j++) {
			const struct athread *t = &ap->threads[j];
			json_object *o = json_object_new_object();
			ADD(o, "tid", json_object_new_int(t->t->tid));
			ADD(o, "name", json_object_new_string(t->t->name));
			if (t->runtime_thread) {
				ADD(o, "runtime_name", jstr_or_null(t->runtime_name));
				ADD(o, "holds_gil", json_object_new_boolean(t->holds_gil));
				ADD(o, "waits_gil", json_object_new_boolean(t->waits_gil));
			}
			ADD(o, "state", json_object_new_string((char[2]){t->t->state, 0}));
			ADD(o, "wait",
			    t->wait.text[0] ? json_object_new_string(t->wait.text) : NULL);
			ADD(o, "last_ran_ago_ms",
			    t->t->last_ran_ago_ms >= 0
				? json_object_new_int64(t->t->last_ran_ago_ms)
				: NULL);
			ADD(o, "frames", frames_json(t->frames, t->n_frames));
			ADD(o, "unwind_error", jstr_or_null(t->unwind_error));
			json_object_array_add(threads, o);
		}
		ADD(p, "threads", threads);
		if (ap->n_tasks) {
			json_object *tasks = json_object_new_array();
			for (size_t j = 0; j < ap->n_tasks; j++) {
				const struct atask *t = &ap->tasks[j];
				json_object *o = json_object_new_object();
				ADD(o, "name", jstr_or_null(t->name));
				ADD(o, "address", json_object_new_int64((int64_t)t->addr));
				ADD(o, "loop", json_object_new_int64((int64_t)t->loop));
				ADD(o, "done", json_object_new_boolean(t->done));
				ADD(o, "awaits", json_object_new_string(t->awaits));
				ADD(o, "lock",
				    t->lock ? json_object_new_int64((int64_t)t->lock) : NULL);
				ADD(o, "waits_for",
				    t->waits_for >= 0 ? jstr_or_null(ap->tasks[t->waits_for].name)
						      : NULL);
				ADD(o, "frames", frames_json(t->frames, t->n_frames));
				json_object_array_add(tasks, o);
			}
			ADD(p, "tasks", tasks);
			ADD(p, "loop_thread",
			    ap->loop_thread ? json_object_new_int(ap->loop_thread->t->tid) : NULL);
		}
		json_object_array_add(procs, p);
	}
	ADD(root, "processes", procs);
	for (size_t i = 0; i < a->n_problems; i++)
		json_object_array_add(problems, json_object_new_string(a->problems[i]));
	ADD(root, "problems", problems);
	{
		json_object *notes = json_object_new_array();
		for (size_t i = 0; i < a->n_notes; i++)
			json_object_array_add(notes, json_object_new_string(a->notes[i]));
		ADD(root, "notes", notes);
	}
	txt =
	    json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
						     JSON_C_TO_STRING_NOSLASHESCAPE);
	if (txt)
		fprintf(out, "%s\n", txt);
	json_object_put(root);
	return txt ? 0 : -ENOMEM;
}
