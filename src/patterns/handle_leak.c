/* SPDX-License-Identifier: MIT */
/* handle-leak: a descriptor count near RLIMIT_NOFILE, or far above its peers; by type. */
#include <string.h>

#include "patterns/pattern.h"

static const char *const recs[] = {
    "Descriptors are opened and not closed: find the code that opens the type that dominates "
    "(below) and the path where it is not closed (error paths, exceptions, forgotten "
    "close-on-exec in children).",
    "When the limit is reached, open, accept and socket fail with EMFILE: the service stops "
    "taking connections. Raising the limit only buys time.",
    NULL,
};

static const struct threshold thresholds[] = {
    {"handle-leak.limit-share", 80, "% of RLIMIT_NOFILE", "descriptors as a share of the limit"},
    {"handle-leak.peer-factor", 10, "x",
     "descriptors over the median of processes of one "
     "executable"},
    {"handle-leak.min", 100, "descriptors", "fewer than this is never a leak"},
};

static void match(const struct analysis *a, const struct pattern *self, struct findings *out)
{
	double share = pattern_threshold(a, self, "handle-leak.limit-share");
	double factor = pattern_threshold(a, self, "handle-leak.peer-factor");
	double min = pattern_threshold(a, self, "handle-leak.min");

	for (size_t i = 0; i < a->n_procs; i++) {
		const struct osm_process *p = a->procs[i].p;
		size_t peers = 0, peer_total = 0;
		double pct = 0;
		bool near_limit, over_peers;

		if ((double)p->n_fds < min)
			continue;
		if (p->nofile_soft && p->nofile_soft != UINT64_MAX)
			pct = 100.0 * (double)p->n_fds / (double)p->nofile_soft;
		for (size_t j = 0; j < a->n_procs; j++)
			if (j != i && a->procs[j].p->exe && p->exe &&
			    !strcmp(a->procs[j].p->exe, p->exe)) {
				peers++;
				peer_total += a->procs[j].p->n_fds;
			}
		near_limit = pct >= share;
		over_peers = peers >= 2 &&
			     (double)p->n_fds >= factor * ((double)peer_total / (double)peers + 1);
		if (!near_limit && !over_peers)
			continue;
		struct finding *f = finding_new(
		    out, self, near_limit ? SEV_ERROR : SEV_WARNING,
		    "Pid %d (%s) holds %zu descriptors%s.", p->pid, p->comm, p->n_fds,
		    near_limit ? ", near its RLIMIT_NOFILE" : ", far more than its peers");
		if (!f)
			return;
		finding_pid(f, p->pid);
		if (p->nofile_soft != UINT64_MAX)
			finding_line(f, "%zu of %llu allowed (%.0f%%)", p->n_fds,
				     (unsigned long long)p->nofile_soft, pct);
		if (peers)
			finding_line(f, "%zu other processes of %s hold %.0f on average", peers,
				     p->exe, (double)peer_total / (double)peers);
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
	}
}

const struct pattern pattern_handle_leak = {
    .id = "handle-leak",
    .title = "Handle leak",
    .severity = SEV_WARNING,
    .description = "A process holds many more descriptors than it should.",
    .needs = "the manifest (descriptor tables, limits)",
    .thresholds = thresholds,
    .n_thresholds = 3,
    .recommendations = recs,
    .match = match,
};
