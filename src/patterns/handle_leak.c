/* SPDX-License-Identifier: MIT */
/* handle-leak: descriptors a process opened and did not close, from evidence, not only counts:
 * a count near RLIMIT_NOFILE (error); many descriptors on one target (one file, one kind of
 * anonymous inode); many pipes and socket pairs whose both ends the process holds itself, with
 * no other holder (a pair made and forgotten). Peers are compared by role (the same executable
 * and command line: a PostgreSQL checkpointer with its like, not with every postgres), as
 * context, never as the evidence: a busy server holds many descriptors to many clients. */
#include <stdlib.h>
#include <string.h>

#include "patterns/pattern.h"

static const char *const recs[] = {
    "Descriptors are opened and not closed: find the code that opens the target or type that "
    "dominates (below) and the path where it is not closed (error paths, exceptions, forgotten "
    "close-on-exec in children).",
    "When the limit is reached, open, accept and socket fail with EMFILE: the service stops "
    "taking connections. Raising the limit only buys time.",
    NULL,
};

static const struct threshold thresholds[] = {
    {"handle-leak.limit-share", 80, "% of RLIMIT_NOFILE", "descriptors as a share of the limit"},
    {"handle-leak.same-target", 100, "descriptors",
     "descriptors on one target (a file, an anonymous inode kind) that are evidence of a leak"},
    {"handle-leak.own-pairs", 50, "pairs",
     "pipes and socket pairs with both ends in the process and no other holder"},
    {"handle-leak.min", 100, "descriptors", "fewer than this is never a leak"},
};

static bool same_role(const struct osm_process *p, const struct osm_process *q)
{
	return p->exe && q->exe && !strcmp(p->exe, q->exe) &&
	       !strcmp(p->cmdline ? p->cmdline : "", q->cmdline ? q->cmdline : "");
}

static bool held_elsewhere(const struct analysis *a, const struct osm_process *p, uint64_t inode)
{
	for (size_t i = 0; i < a->n_procs; i++) {
		const struct osm_process *q = a->procs[i].p;
		if (q == p)
			continue;
		for (size_t j = 0; j < q->n_fds; j++)
			if (q->fds[j].inode == inode)
				return true;
	}
	return false;
}

static const struct osm_fd *fd_by_inode(const struct osm_process *p, uint64_t inode,
					const struct osm_fd * not )
{
	for (size_t i = 0; i < p->n_fds; i++)
		if (p->fds[i].inode == inode && &p->fds[i] != not )
			return &p->fds[i];
	return NULL;
}

/* Pipes and socket pairs with both ends here and nowhere else (each pair counted once). */
static size_t own_pairs(const struct analysis *a, const struct osm_process *p)
{
	size_t n = 0;
	for (size_t i = 0; i < p->n_fds; i++) {
		const struct osm_fd *f = &p->fds[i];
		if (!strcmp(f->type, "pipe") && (f->flags & 3) == 0 && f->inode) {
			bool writer = false;
			for (size_t j = 0; j < p->n_fds && !writer; j++)
				writer = p->fds[j].inode == f->inode && (p->fds[j].flags & 3) == 1;
			n += writer && !held_elsewhere(a, p, f->inode);
		} else if (!strcmp(f->type, "socket") && f->peer_inode &&
			   f->inode < f->peer_inode && fd_by_inode(p, f->peer_inode, NULL)) {
			n +=
			    !held_elsewhere(a, p, f->inode) && !held_elsewhere(a, p, f->peer_inode);
		}
	}
	return n;
}

static int cmp_str(const void *x, const void *y)
{
	const char *a = *(const char *const *)x, *b = *(const char *const *)y;
	return strcmp(a ? a : "", b ? b : "");
}

/* The target most descriptors point at, and how many. */
static size_t top_target(const struct osm_process *p, const char **ret)
{
	const char **v = calloc(p->n_fds + 1, sizeof(*v));
	size_t best = 0, run = 0;
	*ret = NULL;
	if (!v)
		return 0;
	for (size_t i = 0; i < p->n_fds; i++)
		v[i] = p->fds[i].target;
	qsort(v, p->n_fds, sizeof(*v), cmp_str);
	for (size_t i = 0; i < p->n_fds; i++) {
		run = i && !cmp_str(&v[i], &v[i - 1]) ? run + 1 : 1;
		if (run > best && v[i]) {
			best = run;
			*ret = v[i];
		}
	}
	free(v);
	return best;
}

static void match(const struct analysis *a, const struct pattern *self, struct findings *out)
{
	double share = pattern_threshold(a, self, "handle-leak.limit-share");
	double same_min = pattern_threshold(a, self, "handle-leak.same-target");
	double pairs_min = pattern_threshold(a, self, "handle-leak.own-pairs");
	double min = pattern_threshold(a, self, "handle-leak.min");

	for (size_t i = 0; i < a->n_procs; i++) {
		const struct osm_process *p = a->procs[i].p;
		size_t peers = 0, peer_total = 0, same, pairs;
		const char *target;
		double pct = 0;
		bool near_limit;

		if ((double)p->n_fds < min)
			continue;
		if (p->nofile_soft && p->nofile_soft != UINT64_MAX)
			pct = 100.0 * (double)p->n_fds / (double)p->nofile_soft;
		near_limit = pct >= share;
		same = top_target(p, &target);
		pairs = own_pairs(a, p);
		if (!near_limit && (double)same < same_min && (double)pairs < pairs_min)
			continue;
		for (size_t j = 0; j < a->n_procs; j++)
			if (j != i && same_role(a->procs[j].p, p)) {
				peers++;
				peer_total += a->procs[j].p->n_fds;
			}
		struct finding *f =
		    finding_new(out, self, near_limit ? SEV_ERROR : SEV_WARNING,
				"Pid %d (%s) holds %zu descriptors%s.", p->pid, p->comm, p->n_fds,
				near_limit ? ", near its RLIMIT_NOFILE"
				: (double)same >= same_min
				    ? ", many of them on one target"
				    : ", many of them pipes or socket pairs it holds both ends of");
		if (!f)
			return;
		finding_pid(f, p->pid);
		if (p->nofile_soft != UINT64_MAX)
			finding_line(f, "%zu of %llu allowed (%.0f%%)", p->n_fds,
				     (unsigned long long)p->nofile_soft, pct);
		if (target && (double)same >= same_min / 2)
			finding_line(f, "%zu descriptors on %s", same, target);
		if (pairs)
			finding_line(f,
				     "%zu pipes or socket pairs with both ends in it and no other "
				     "holder",
				     pairs);
		if (peers)
			finding_line(
			    f, "%zu other processes in the same role (%s) hold %.0f on average",
			    peers, p->cmdline && *p->cmdline ? p->cmdline : p->exe,
			    (double)peer_total / (double)peers);
		/* The breakdown by type. */
		const char *types[16];
		size_t counts[16], nt = 0;
		for (size_t k = 0; k < p->n_fds; k++) {
			size_t t;
			for (t = 0; t < nt && strcmp(types[t], p->fds[k].type); t++)
				;
			if (t == nt && nt < 16) {
				types[nt] = p->fds[k].type;
				counts[nt++] = 0;
			}
			if (t < nt)
				counts[t]++;
		}
		json_object *by = json_object_new_object();
		for (size_t t = 0; t < nt; t++) {
			finding_line(f, "  %-8s %zu", types[t], counts[t]);
			json_object_object_add(by, types[t], json_object_new_int((int)counts[t]));
		}
		json_object_object_add(finding_ev(f), "fds", json_object_new_int((int)p->n_fds));
		json_object_object_add(finding_ev(f), "by_type", by);
		json_object_object_add(finding_ev(f), "same_target",
				       json_object_new_int((int)same));
		if (target)
			json_object_object_add(finding_ev(f), "target",
					       json_object_new_string(target));
		json_object_object_add(finding_ev(f), "own_pairs", json_object_new_int((int)pairs));
	}
}

const struct pattern pattern_handle_leak = {
    .id = "handle-leak",
    .title = "Handle leak",
    .severity = SEV_WARNING,
    .description = "A process holds descriptors it does not close: near its limit, many on one "
		   "target, or pipes and socket pairs it holds both ends of.",
    .needs = "the manifest (descriptor tables, limits)",
    .thresholds = thresholds,
    .n_thresholds = 4,
    .recommendations = recs,
    .match = match,
};
