/* SPDX-License-Identifier: MIT */
/* The text report: readable at 100 columns, colour only on a terminal (and never with NO_COLOR). */
#include <string.h>

#include "base/parse.h"
#include "base/util.h"
#include "report/report.h"

#define WIDTH 100

struct style {
	const char *err, *warn, *info, *bold, *dim, *off;
};

/* Word-wrap text at WIDTH: the first line after first, the rest after indent. A word longer
 * than a whole line is broken where the line ends; nothing is ever cut off. */
static void wrap2(FILE *out, const char *first, const char *indent, const char *text)
{
	size_t col, il = strlen(indent);
	bool line_start = true;
	const char *p = text;

	fputs(first, out);
	col = strlen(first);
	while (*p) {
		const char *sp = strchr(p, ' ');
		size_t wl = sp ? (size_t)(sp - p) : strlen(p);
		if (!line_start && col + 1 + wl > WIDTH) {
			fprintf(out, "\n%s", indent);
			col = il;
		} else if (!line_start) {
			fputc(' ', out);
			col++;
		}
		while (col + wl > WIDTH && WIDTH > col + 8) {
			size_t room = WIDTH - col;
			fwrite(p, 1, room, out);
			p += room;
			wl -= room;
			fprintf(out, "\n%s", indent);
			col = il;
		}
		fwrite(p, 1, wl, out);
		col += wl;
		p += wl;
		line_start = false;
		while (*p == ' ')
			p++;
	}
	fputc('\n', out);
}

static void wrap(FILE *out, const char *indent, const char *text)
{
	wrap2(out, indent, indent, text);
}

/* An evidence line: its own leading spaces kept, continuation lines indented four more. */
static void line_wrap(FILE *out, const char *indent, const char *text)
{
	char first[64], rest[64];
	size_t lead = strspn(text, " ");
	if (lead > 40)
		lead = 40;
	snprintf(first, sizeof(first), "%s%.*s", indent, (int)lead, text);
	/* continuation lines under the text, not repeating the label ("waits: ") */
	snprintf(rest, sizeof(rest), "%*s", (int)MIN(strlen(first) + 4, sizeof(rest) - 1), "");
	wrap2(out, first, rest, text + lead);
}

static const char *thread_name(const struct athread *t)
{
	return t->runtime_name ? t->runtime_name : t->t->name;
}

static void frame_text(const struct frame *f, char *buf, size_t len)
{
	if (f->kind == FRAME_PYTHON)
		snprintf(buf, len, "%s (python) %s:%d", f->function ? f->function : "?",
			 f->file ? f->file : "?", f->line);
	else if (f->kind == FRAME_JAVA && f->line > 0)
		snprintf(buf, len, "%s (java) line %d", f->function ? f->function : "?", f->line);
	else if (f->kind == FRAME_JAVA)
		snprintf(buf, len, "%s (java)", f->function ? f->function : "?");
	else if (f->function && f->file)
		snprintf(buf, len, "%s (%s) %s:%d", f->function, f->module ? f->module : "?",
			 f->file, f->line);
	else if (f->function)
		snprintf(buf, len, "%s+0x%llx (%s)", f->function, (unsigned long long)f->offset,
			 f->module ? f->module : "?");
	else
		snprintf(buf, len, "0x%llx (%s+0x%llx)", (unsigned long long)f->pc,
			 f->module ? f->module : "?", (unsigned long long)f->offset);
}

void report_text(FILE *out, const struct analysis *a, const struct findings *fs, bool color)
{
	struct style st = color ? (struct style){"\033[1;31m", "\033[1;33m", "\033[1;36m",
						 "\033[1m",    "\033[2m",    "\033[0m"}
				: (struct style){"", "", "", "", "", ""};
	size_t counts[3] = {0}, threads = 0;
	struct stack_group *groups = NULL;
	size_t n_groups = 0;

	for (size_t i = 0; i < fs->n; i++)
		counts[fs->v[i].severity]++;
	for (size_t i = 0; i < a->n_procs; i++)
		threads += a->procs[i].n_threads;
	fprintf(out, "%sosmosis analyze %s%s\n", st.bold, a->dir, st.off);
	fprintf(out, "snapshot of %zu process%s, %zu thread%s, taken %s on %s\n", a->n_procs,
		a->n_procs == 1 ? "" : "es", threads, threads == 1 ? "" : "s", a->snap->created,
		a->snap->host ? a->snap->host : "?");
	fprintf(out, "%zu error%s, %zu warning%s, %zu note%s\n", counts[SEV_ERROR],
		counts[SEV_ERROR] == 1 ? "" : "s", counts[SEV_WARNING],
		counts[SEV_WARNING] == 1 ? "" : "s", counts[SEV_INFO],
		counts[SEV_INFO] == 1 ? "" : "s");

	for (size_t i = 0; i < fs->n; i++) {
		const struct finding *f = &fs->v[i];
		const char *c = f->severity == SEV_ERROR     ? st.err
				: f->severity == SEV_WARNING ? st.warn
							     : st.info;
		fprintf(out, "\n%s%s%s %s%s: %s%s\n", c,
			f->severity == SEV_ERROR     ? "ERROR"
			: f->severity == SEV_WARNING ? "WARNING"
						     : "NOTE",
			st.off, st.bold, f->id ? f->id : f->pattern->id, f->pattern->title, st.off);
		wrap(out, "  ", f->summary ? f->summary : "");
		if (f->n_lines) {
			fprintf(out, "  %sEvidence:%s\n", st.dim, st.off);
			for (size_t j = 0; j < f->n_lines; j++)
				line_wrap(out, "    ", f->lines[j]);
		}
		for (size_t j = 0; j < f->n_related; j++)
			wrap2(out, "  Related: ", "           ", f->related[j]);
		fprintf(out, "  %sWhat to do:%s\n", st.dim, st.off);
		for (size_t j = 0; j < f->n_recs; j++)
			wrap2(out, "    - ", "      ", f->recs[j]);
		for (size_t j = 0; f->pattern->recommendations && f->pattern->recommendations[j];
		     j++)
			wrap2(out, "    - ", "      ", f->pattern->recommendations[j]);
	}
	if (!fs->n)
		fprintf(out, "\nNo problem found by the %zu patterns.\n", pattern_count);

	if (stack_groups(a, &groups, &n_groups) < 0)
		return;
	fprintf(out, "\n%sStack trace collection%s: %zu distinct stack%s across %zu thread%s\n",
		st.bold, st.off, n_groups, n_groups == 1 ? "" : "s", threads,
		threads == 1 ? "" : "s");
	for (size_t i = 0; i < n_groups; i++) {
		const struct stack_group *g = &groups[i];
		char buf[512];
		size_t col;

		fprintf(out, "\n  %zu thread%s:", g->n, g->n == 1 ? "" : "s");
		col = 14;
		for (size_t j = 0; j < g->n; j++) {
			int w =
			    snprintf(buf, sizeof(buf), " %d/%d \"%s\"", g->threads[j]->proc->p->pid,
				     g->threads[j]->t->tid, thread_name(g->threads[j]));
			if (col + (size_t)w > WIDTH) {
				fputs("\n   ", out);
				col = 3;
			}
			fputs(buf, out);
			col += (size_t)w;
		}
		fputc('\n', out);
		if (g->threads[0]->holds_gil)
			fprintf(out, "    holds the GIL\n");
		if (g->threads[0]->wait.text[0]) {
			int64_t oldest = -1;
			char age[32], wait[400];
			for (size_t j = 0; j < g->n; j++)
				oldest = MAX(oldest, g->threads[j]->t->last_ran_ago_ms);
			bool each = false; /* ownerless waits group across objects */
			for (size_t j = 1; j < g->n; j++)
				each |= g->threads[j]->wait.addr != g->threads[0]->wait.addr;
			if (oldest >= 0)
				snprintf(wait, sizeof(wait),
					 "%s%s (last ran %s%s before the freeze)",
					 g->threads[0]->wait.text, each ? ", each its own" : "",
					 g->n > 1 ? "up to " : "",
					 format_duration_ms(oldest, age, sizeof(age)));
			else
				snprintf(wait, sizeof(wait), "%s%s", g->threads[0]->wait.text,
					 each ? ", each its own" : "");
			line_wrap(out, "    waits: ", wait);
		}
		for (size_t k = 0; k < g->threads[0]->n_frames; k++) {
			char fr[400];
			frame_text(&g->threads[0]->frames[k], fr, sizeof(fr));
			snprintf(buf, sizeof(buf), "#%-2zu %s", k, fr);
			line_wrap(out, "    ", buf);
		}
		if (g->threads[0]->unwind_error)
			line_wrap(out, "    (the stack stops here: ", g->threads[0]->unwind_error);
	}
	stack_groups_free(groups, n_groups);
	for (size_t i = 0; i < a->n_procs; i++) {
		const struct aprocess *ap = &a->procs[i];
		if (!ap->n_tasks)
			continue;
		fprintf(out, "\n%sasyncio tasks of pid %d%s: %zu task%s", st.bold, ap->p->pid,
			st.off, ap->n_tasks, ap->n_tasks == 1 ? "" : "s");
		if (ap->loop_thread)
			fprintf(out, ", their loop run by thread %d \"%s\"",
				ap->loop_thread->t->tid, thread_name(ap->loop_thread));
		fputc('\n', out);
		for (size_t j = 0; j < ap->n_tasks; j++) {
			const struct atask *t = &ap->tasks[j];
			char buf[512], fr[400];
			snprintf(buf, sizeof(buf), "task \"%s\" %s", t->name ? t->name : "?",
				 t->awaits);
			fputc('\n', out);
			line_wrap(out, "  ", buf);
			for (size_t k = 0; k < t->n_frames; k++) {
				frame_text(&t->frames[k], fr, sizeof(fr));
				snprintf(buf, sizeof(buf), "#%-2zu %s", k, fr);
				line_wrap(out, "    ", buf);
			}
		}
	}
	if (a->n_problems) {
		fprintf(out, "\n%sWhat could not be read%s\n", st.bold, st.off);
		for (size_t i = 0; i < a->n_problems; i++)
			line_wrap(out, "  ", a->problems[i]);
	}
}
