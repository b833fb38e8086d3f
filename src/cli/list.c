/* SPDX-License-Identifier: MIT */
/*
 * osmosis list [BASE]: the snapshots under BASE (default: ./osmosis-watch-HOST when it exists,
 * else the current directory), oldest first: when each was taken, its trigger (from the
 * manifest), its processes, its pause, and its top finding when an analysis.json lies beside
 * it (osmosis watch --analyze writes one). Every manifest and analysis is untrusted input, read
 * through the bounded manifest reader; a directory that is not a snapshot is passed over.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/fs.h"
#include "base/log.h"
#include "base/util.h"
#include "cli/cli.h"
#include "snapshot/manifest.h"

#define MAX_ANALYSIS_BYTES (64u << 20)

static const char list_usage[] =
    "Usage: osmosis list [--json] [BASE]\n"
    "\n"
    "The snapshots under BASE (default ./osmosis-watch-HOST if it exists, else .), oldest\n"
    "first: when, the trigger that took it (osmosis watch), its processes, its pause, and\n"
    "its top finding when analysis.json is beside it (osmosis watch --analyze).\n"
    "\n"
    "      --json   as JSON: {\"schema_version\", \"base\", \"snapshots\": [...]}\n"
    "  -h, --help   show this help\n";

struct row {
	char name[256];
	char created[32];
	char *trigger;	 /* "hang: a wait cycle ..." */
	char *condition; /* "hang" */
	char *finding;	 /* "deadlock: ..." */
	char *processes; /* "1234 victim, 1240 worker" */
	size_t n_procs;
	uint64_t pause_us;
};

static int cmp_row(const void *a, const void *b)
{
	const struct row *x = a, *y = b;
	int c = strcmp(x->created, y->created);
	return c ? c : strcmp(x->name, y->name);
}

static char *top_finding(int dfd)
{
	_cleanup_free_ char *buf = NULL;
	size_t len;
	json_object *root, *f, *first, *v;
	char *out = NULL;
	struct stat st;

	if (fstatat(dfd, "analysis.json", &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode) ||
	    st.st_size > MAX_ANALYSIS_BYTES)
		return NULL;
	if (read_file_at(dfd, "analysis.json", &buf, &len) < 0)
		return NULL;
	root = json_tokener_parse(buf);
	if (root && json_object_object_get_ex(root, "findings", &f) &&
	    json_object_is_type(f, json_type_array)) {
		if (!json_object_array_length(f))
			out = strdup("none");
		else if ((first = json_object_array_get_idx(f, 0)) &&
			 json_object_is_type(first, json_type_object)) {
			const char *pat = "", *sum = "";
			if (json_object_object_get_ex(first, "pattern", &v) &&
			    json_object_is_type(v, json_type_string))
				pat = json_object_get_string(v);
			if (json_object_object_get_ex(first, "summary", &v) &&
			    json_object_is_type(v, json_type_string))
				sum = json_object_get_string(v);
			if (asprintf(&out, "%s: %s", pat, sum) < 0)
				out = NULL;
		}
	}
	json_object_put(root);
	return out;
}

static int load_row(int basefd, const char *name, struct row *r)
{
	_cleanup_close_ int dfd =
	    openat(basefd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	struct osm_snapshot *s = NULL;
	char err[256];
	size_t len = 0;

	if (dfd < 0 || manifest_load(dfd, &s, err, sizeof(err)) < 0)
		return -1;
	memset(r, 0, sizeof(*r));
	snprintf(r->name, sizeof(r->name), "%s", name);
	snprintf(r->created, sizeof(r->created), "%s", s->created);
	r->pause_us = s->pause_us;
	r->n_procs = s->n_procs;
	r->processes = calloc(1, 400);
	size_t shown = 0;
	for (; r->processes && shown < s->n_procs && len < 300; shown++)
		len += (size_t)snprintf(r->processes + len, 400 - len, "%s%d %s", shown ? ", " : "",
					s->procs[shown]->pid, s->procs[shown]->comm);
	if (r->processes && shown < s->n_procs)
		snprintf(r->processes + len, 400 - len, ", ... (%zu more)", s->n_procs - shown);
	if (s->trigger_json) {
		json_object *t = json_tokener_parse(s->trigger_json), *v;
		const char *cond = "?", *detail = "";
		if (t && json_object_object_get_ex(t, "condition", &v) &&
		    json_object_is_type(v, json_type_string))
			cond = json_object_get_string(v);
		if (t && json_object_object_get_ex(t, "detail", &v) &&
		    json_object_is_type(v, json_type_string))
			detail = json_object_get_string(v);
		r->condition = strdup(cond);
		if (asprintf(&r->trigger, "%s: %s", cond, detail) < 0)
			r->trigger = NULL;
		json_object_put(t);
	}
	r->finding = top_finding(dfd);
	snapshot_free(s);
	return 0;
}

static void row_done(struct row *r)
{
	free(r->trigger);
	free(r->condition);
	free(r->finding);
	free(r->processes);
}

int cmd_list(int argc, char **argv)
{
	_cleanup_closedir_ DIR *d = NULL;
	struct row *rows = NULL;
	size_t n = 0, cap = 0;
	char base[4096];
	struct dirent *de;
	bool json;
	int r, basefd;

	r = cli_parse_json_help(argc, argv, list_usage, &json);
	if (r >= 0)
		return r;
	if (argc - optind > 1) {
		log_error(EINVAL, "give at most one directory (see osmosis list --help)");
		return EXIT_USAGE;
	}
	if (optind < argc) {
		snprintf(base, sizeof(base), "%s", argv[optind]);
	} else {
		char host[256] = "host";
		struct stat st;
		gethostname(host, sizeof(host) - 1);
		host[sizeof(host) - 1] = 0;
		for (char *h = host; *h; h++)
			if (*h == '/')
				*h = '_';
		snprintf(base, sizeof(base), "osmosis-watch-%s", host);
		if (stat(base, &st) < 0 || !S_ISDIR(st.st_mode))
			snprintf(base, sizeof(base), ".");
	}
	d = opendir(base);
	if (!d) {
		log_error(errno, "cannot read %s: %m", base);
		return 1;
	}
	basefd = dirfd(d);
	while ((de = readdir(d))) {
		struct stat st;
		if (de->d_name[0] == '.' || strlen(de->d_name) >= sizeof(rows->name))
			continue;
		if (fstatat(basefd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		    !S_ISDIR(st.st_mode))
			continue;
		if (grow_array((void **)&rows, &cap, n + 1, sizeof(*rows))) {
			log_error(ENOMEM, "out of memory");
			break;
		}
		if (load_row(basefd, de->d_name, &rows[n]) == 0)
			n++;
	}
	if (n)
		qsort(rows, n, sizeof(*rows), cmp_row);
	if (json) {
		json_object *root = json_object_new_object(), *a = json_object_new_array();
		json_object_object_add(root, "schema_version", json_object_new_int(1));
		json_object_object_add(root, "base", json_object_new_string(base));
		for (size_t i = 0; i < n; i++) {
			json_object *o = json_object_new_object();
			json_object_object_add(o, "dir", json_object_new_string(rows[i].name));
			json_object_object_add(o, "created",
					       json_object_new_string(rows[i].created));
			json_object_object_add(
			    o, "trigger",
			    rows[i].condition ? json_object_new_string(rows[i].condition) : NULL);
			json_object_object_add(
			    o, "trigger_detail",
			    rows[i].trigger ? json_object_new_string(rows[i].trigger) : NULL);
			json_object_object_add(o, "processes",
					       json_object_new_int64((int64_t)rows[i].n_procs));
			json_object_object_add(o, "pause_us",
					       json_object_new_int64((int64_t)rows[i].pause_us));
			json_object_object_add(
			    o, "top_finding",
			    rows[i].finding ? json_object_new_string(rows[i].finding) : NULL);
			json_object_array_add(a, o);
		}
		json_object_object_add(root, "snapshots", a);
		puts(json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY |
							      JSON_C_TO_STRING_SPACED |
							      JSON_C_TO_STRING_NOSLASHESCAPE));
		json_object_put(root);
	} else {
		printf("%zu snapshot%s under %s\n", n, n == 1 ? "" : "s", base);
		for (size_t i = 0; i < n; i++) {
			printf("%s  %s\n", rows[i].created, rows[i].name);
			printf("    trigger:   %.200s\n",
			       rows[i].trigger ? rows[i].trigger : "none (osmosis snap)");
			printf("    processes: %zu (%s)  pause %.1f ms\n", rows[i].n_procs,
			       rows[i].processes ? rows[i].processes : "",
			       (double)rows[i].pause_us / 1000.0);
			printf("    finding:   %.200s\n",
			       rows[i].finding
				   ? rows[i].finding
				   : "(no analysis.json here: run osmosis analyze DIR, or "
				     "watch --analyze)");
		}
	}
	for (size_t i = 0; i < n; i++)
		row_done(&rows[i]);
	free(rows);
	return 0;
}
