/* SPDX-License-Identifier: MIT */
/*
 * osmosis show DIR: what a snapshot holds, like ps and lsof for a moment in the past: the system,
 * the processes as a tree, each frozen process's threads with what they wait in, and their
 * descriptors with the other ends of pipes and unix sockets. Reads only the manifest, so a
 * snapshot from another machine shows the same. --json prints the manifest as osmosis read it.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"
#include "base/parse.h"
#include "base/util.h"
#include "snapshot/timeline.h"
#include "cli/cli.h"
#include "snapshot/describe.h"
#include "snapshot/manifest.h"

static const char show_usage[] =
    "Usage: osmosis show [--json] [-p PID] DIR\n"
    "\n"
    "Show what a snapshot holds: the system's state, the processes as a tree, every thread\n"
    "with its state and what it waits in, and every descriptor with the other ends of its\n"
    "pipes and sockets.\n"
    "\n"
    "  -p, --pid PID   only this process's threads and descriptors\n"
    "      --json      print the manifest as osmosis read it\n"
    "  -h, --help      show this help\n";

static int64_t kv_get(const struct osm_kv *kv, size_t n, const char *key)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(kv[i].key, key))
			return kv[i].value;
	return -1;
}

static void show_system(const struct osm_snapshot *s)
{
	const struct osm_system *sys = &s->sys;
	int64_t avail = kv_get(sys->meminfo, sys->n_meminfo, "MemAvailable");
	int64_t total = kv_get(sys->meminfo, sys->n_meminfo, "MemTotal");
	int64_t swap_total = kv_get(sys->meminfo, sys->n_meminfo, "SwapTotal");
	int64_t swap_free = kv_get(sys->meminfo, sys->n_meminfo, "SwapFree");
	char a[32], b[32];

	printf("\nSystem\n  %ld CPU%s", sys->ncpu, sys->ncpu == 1 ? "" : "s");
	for (size_t i = 0; i < sys->n_cpus; i++) {
		const struct osm_cpu *c = &sys->cpus[i];
		if (c->busy_pct < 0)
			continue;
		if (c->cpu < 0)
			printf(", %.1f%% busy (", c->busy_pct);
		else
			printf("%scpu%d %.1f%%", i > 1 ? ", " : "", c->cpu, c->busy_pct);
	}
	if (sys->n_cpus && sys->cpus[0].busy_pct >= 0)
		printf(")");
	printf("; load %.2f %.2f %.2f; %llu running, %llu blocked\n", sys->load[0], sys->load[1],
	       sys->load[2], (unsigned long long)sys->procs_running,
	       (unsigned long long)sys->procs_blocked);
	if (total > 0)
		printf("  memory: %s available of %s", format_bytes((uint64_t)MAX(avail, 0), a, 32),
		       format_bytes((uint64_t)total, b, 32));
	if (swap_total > 0)
		printf("; swap %s used of %s\n",
		       format_bytes((uint64_t)(swap_total - MAX(swap_free, 0)), a, 32),
		       format_bytes((uint64_t)swap_total, b, 32));
	else if (total > 0)
		printf("; no swap\n");
	if (sys->n_psi) {
		printf("  pressure (share of time some task stalled, last 10 s):");
		for (size_t i = 0; i < sys->n_psi; i++)
			printf(" %s %.2f%%", sys->psi[i].resource, sys->psi[i].some[0]);
		printf("\n");
	}
}

static double process_cpu(const struct osm_process *p)
{
	double sum = 0;
	for (size_t i = 0; i < p->n_threads; i++)
		if (p->threads[i]->has_cpu_pct)
			sum += p->threads[i]->cpu_pct;
	return sum;
}

static bool is_child(const struct osm_snapshot *s, const struct osm_process *p)
{
	for (size_t i = 0; i < s->n_procs; i++)
		if (s->procs[i] != p && s->procs[i]->pid == p->ppid)
			return true;
	return false;
}

static void show_process_line(const struct osm_snapshot *s, const struct osm_process *p, int depth,
			      int budget)
{
	char rss[32], indent[64] = "";
	int n = MIN(depth, 10);

	for (int i = 0; i < n; i++)
		strcat(indent, "  ");
	format_bytes(p->vm_rss, rss, sizeof(rss));
	printf("  %s%-*d %7d %5u  %c %4zu %5zu %10s %6.1f  %s", indent,
	       8 - 2 * n > 0 ? 8 - 2 * n : 1, p->pid, p->ppid, (unsigned)p->uid, p->state,
	       p->n_threads, p->n_fds, rss, process_cpu(p), p->comm);
	if (!capture_state_frozen(p->capture))
		printf("  [%s%s%s]", capture_state_name(p->capture), p->capture_note ? ": " : "",
		       p->capture_note ? p->capture_note : "");
	printf("\n");
	if (budget <= 0)
		return;
	for (size_t i = 0; i < s->n_procs; i++)
		if (s->procs[i] != p && s->procs[i]->ppid == p->pid)
			show_process_line(s, s->procs[i], depth + 1, budget - 1);
}

static void show_processes(const struct osm_snapshot *s)
{
	size_t frozen = 0, skipped = 0, exited = 0;

	for (size_t i = 0; i < s->n_procs; i++) {
		enum osm_capture c = s->procs[i]->capture;
		frozen += capture_state_frozen(c);
		skipped += c == CAPTURE_SKIPPED;
		exited += c == CAPTURE_EXITED;
	}
	printf("\nProcesses (%zu frozen, %zu skipped, %zu exited during the snapshot)\n", frozen,
	       skipped, exited);
	printf("  %-8s %7s %5s  %c %4s %5s %10s %6s  %s\n", "PID", "PPID", "UID", 'S', "THR", "FDS",
	       "RSS", "CPU%", "COMMAND");
	for (size_t i = 0; i < s->n_procs; i++)
		if (!is_child(s, s->procs[i]))
			show_process_line(s, s->procs[i], 0, 64);
}

/* Other holders of the same pipe or the peer of a unix socket, as "pid N fd M". */
static void other_ends(const struct osm_snapshot *s, const struct osm_process *self,
		       const struct osm_fd *f)
{
	int shown = 0;
	uint64_t want = !strcmp(f->type, "pipe") ? f->inode : f->peer_inode;

	if (!want || (strcmp(f->type, "pipe") && strcmp(f->type, "socket")))
		return;
	for (size_t i = 0; i < s->n_procs; i++) {
		const struct osm_process *p = s->procs[i];
		for (size_t j = 0; j < p->n_fds; j++) {
			const struct osm_fd *g = &p->fds[j];
			if (g == f || strcmp(g->type, f->type) || g->inode != want)
				continue;
			if (!strcmp(f->type, "pipe") &&
			    (g->flags & O_ACCMODE) == (f->flags & O_ACCMODE))
				continue; /* same end */
			if (shown++ == 0)
				printf("  <->");
			if (shown > 6) {
				printf(" ...");
				return;
			}
			printf(" %s%d fd %d", p == self ? "self " : "pid ", p->pid, g->fd);
		}
	}
}

static bool has_inode(const struct osm_process *p, uint64_t inode)
{
	for (size_t i = 0; i < p->n_fds; i++)
		if (p->fds[i].inode == inode && !strcmp(p->fds[i].type, "file"))
			return true;
	return false;
}

/* Who holds a lock: the descriptors of the snapshot that have it (a flock belongs to an open
 * file description, shared by every process with a descriptor on it), else the pid that took
 * it (which may have exited). */
static void print_holders(const struct osm_file_lock *l)
{
	if (!l->n_holders) {
		printf(", held by pid %d", l->pid);
		return;
	}
	printf(", held by");
	for (size_t h = 0; h < l->n_holders; h++)
		printf("%s pid %d fd %d", h ? "," : "", l->holders[h].pid, l->holders[h].fd);
	if (l->pid > 0)
		printf(" (taken by pid %d)", l->pid);
}

/* The file locks this process holds or waits for (from /proc/locks at the snapshot). */
static void show_file_locks(const struct osm_snapshot *s, const struct osm_process *p)
{
	bool header = false;

	for (size_t i = 0; i < s->n_file_locks; i++) {
		const struct osm_file_lock *l = &s->file_locks[i];
		char end[24];
		bool holder = false;
		for (size_t h = 0; h < l->n_holders && !holder; h++)
			holder = l->holders[h].pid == p->pid;
		if (l->n_holders ? !holder && !(l->waiting && l->pid == p->pid)
				 : l->pid != p->pid && !(l->pid == -1 && has_inode(p, l->inode)))
			continue;
		if (!header) {
			printf("  %-6s %-6s %-5s %-14s %-10s %s\n", "LOCK", "TYPE", "MODE", "BYTES",
			       "STATE", "FILE");
			header = true;
		}
		if (l->end < 0)
			snprintf(end, sizeof(end), "EOF");
		else
			snprintf(end, sizeof(end), "%lld", (long long)l->end);
		printf("  %-6lld %-6s %-5s %6llu-%-7s %-10s %s (inode %llu)", (long long)l->id,
		       l->type, l->access, (unsigned long long)l->start, end,
		       l->waiting ? "waiting" : "held", l->path ? l->path : "?",
		       (unsigned long long)l->inode);
		if (l->waiting)
			for (size_t j = 0; j < s->n_file_locks; j++)
				if (s->file_locks[j].id == l->id && !s->file_locks[j].waiting)
					print_holders(&s->file_locks[j]);
		printf("\n");
	}
}

static void show_threads(const struct osm_snapshot *s, const struct osm_process *p)
{
	char what[512];

	printf("\nThreads of %d %s (%s)\n", p->pid, p->comm, p->exe && *p->exe ? p->exe : "?");
	if (p->method)
		printf("  memory kept by %s: %s\n", p->method,
		       p->method_reason ? p->method_reason : "?");
	printf("  %-8s %-16s %c %6s %8s  %s\n", "TID", "NAME", 'S', "CPU%", "CTXSW", "WAITS IN");
	for (size_t i = 0; i < p->n_threads; i++) {
		const struct osm_thread *t = p->threads[i];
		describe_wait(p, t, what, sizeof(what));
		printf("  %-8d %-16s %c ", t->tid, t->name, t->state);
		if (t->has_cpu_pct)
			printf("%6.1f", t->cpu_pct);
		else
			printf("%6s", "-");
		printf(" %8llu  %s", (unsigned long long)(t->vctx + t->nvctx), what);
		if (t->wchan[0] && strcmp(t->wchan, "0"))
			printf("  [%s]", t->wchan);
		printf("\n");
	}
	show_file_locks(s, p);
	if (p->fd_error) {
		printf("  descriptors: unreadable\n");
		return;
	}
	if (!p->n_fds)
		return;
	printf("  %-5s %-8s %s\n", "FD", "TYPE", "WHAT");
	for (size_t i = 0; i < p->n_fds; i++) {
		describe_fd(&p->fds[i], what, sizeof(what));
		printf("  %-5d %-8s %s", p->fds[i].fd, p->fds[i].type, what);
		other_ends(s, p, &p->fds[i]);
		printf("\n");
	}
}

/* The phases of the command, on its own clock (ms from its start), and its peak memory. */
static void show_timeline(const struct osm_timeline *tl)
{
	char a[32], b[32], c[32];

	if (!tl->t0_ns || !tl->n)
		return;
	printf("  timeline (ms from the command's start; the pause %.3f-%.3f):\n",
	       tl->pause_ns / 1e6, tl->pause_end_ns / 1e6);
	for (size_t i = 0; i < tl->n; i++) {
		const struct osm_phase *ph = &tl->phases[i];
		if (ph->dur_ns == OSM_PHASE_OPEN)
			printf("    %10.3f  %10s     %s", ph->start_ns / 1e6, "to the end",
			       ph->name);
		else
			printf("    %10.3f  %10.3f ms  %s", ph->start_ns / 1e6, ph->dur_ns / 1e6,
			       ph->name);
		if (ph->pid)
			printf(" (pid %d)", ph->pid);
		printf("\n");
	}
	if (tl->dropped)
		printf("    ... %zu more phases not recorded\n", tl->dropped);
	char parts[256];
	if (timeline_format_pause(tl, parts, sizeof(parts)))
		printf("  pause breakdown (ms): %s\n", parts);
	printf("  peak memory of osmosis: %s resident, %s in its buffers",
	       format_bytes(tl->peak_rss, a, sizeof(a)),
	       format_bytes(tl->peak_buffers, b, sizeof(b)));
	if (tl->max_memory)
		printf(" (budget %s)", format_bytes(tl->max_memory, c, sizeof(c)));
	printf("\n");
}

int cmd_show(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"json", no_argument, NULL, 'j'},
	    {"pid", required_argument, NULL, 'p'},
	    {"help", no_argument, NULL, 'h'},
	    {},
	};
	struct osm_snapshot *s = NULL;
	char err[512];
	bool json = false;
	pid_t only = 0;
	int c, dfd, r;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":p:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'j':
			json = true;
			break;
		case 'p':
			if (parse_pid(optarg, &only) < 0) {
				log_error(EINVAL, "'%s' is not a process id", optarg);
				return EXIT_USAGE;
			}
			break;
		case 'h':
			fputs(show_usage, stdout);
			return 0;
		case ':':
			log_error(EINVAL, "option '%s' needs an argument (see osmosis show --help)",
				  argv[optind - 1]);
			return EXIT_USAGE;
		default:
			log_error(EINVAL, "unknown option '%s' (see osmosis show --help)",
				  argv[optind - 1]);
			return EXIT_USAGE;
		}
	}
	if (optind != argc - 1) {
		log_error(EINVAL, "give one snapshot directory (see osmosis show --help)");
		return EXIT_USAGE;
	}
	dfd = open(argv[optind], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		log_error(errno, "cannot open %s: %m", argv[optind]);
		return 1;
	}
	r = manifest_load(dfd, &s, err, sizeof(err));
	close(dfd);
	if (r < 0) {
		log_error(r, "%s: %s", argv[optind], err);
		return 1;
	}
	if (json) {
		char *txt = manifest_to_json(s);
		if (!txt) {
			snapshot_free(s);
			log_error(ENOMEM, "out of memory");
			return 1;
		}
		puts(txt);
		free(txt);
		snapshot_free(s);
		return 0;
	}
	printf("Snapshot %s\n  taken %s on %s (kernel %s)\n  scope %s%s%s, %s, pause %.3f ms, "
	       "whole command %llu ms",
	       argv[optind], s->created, s->host ? s->host : "?", s->kernel ? s->kernel : "?",
	       s->scope, s->scope_arg ? " " : "", s->scope_arg ? s->scope_arg : "",
	       s->state_only ? "state only" : s->method, s->pause_us / 1000.0,
	       (unsigned long long)s->total_ms);
	if (s->sample_ms)
		printf(", CPU sampled over %llu ms before the freeze",
		       (unsigned long long)s->sample_ms);
	printf("\n");
	show_timeline(&s->timeline);
	show_system(s);
	show_processes(s);
	for (size_t i = 0; i < s->n_procs; i++) {
		const struct osm_process *p = s->procs[i];
		if (only && p->pid != only)
			continue;
		if (!only && !p->n_threads)
			continue;
		show_threads(s, p);
	}
	snapshot_free(s);
	return 0;
}
