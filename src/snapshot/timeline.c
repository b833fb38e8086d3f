/* SPDX-License-Identifier: MIT */
#include <stdio.h>
#include <string.h>

#include "base/timeutil.h"
#include "snapshot/timeline.h"

void timeline_init(struct osm_timeline *tl)
{
	memset(tl, 0, sizeof(*tl));
	tl->t0_ns = now_ns();
}

static uint64_t rel(const struct osm_timeline *tl, uint64_t mono)
{
	return mono > tl->t0_ns ? mono - tl->t0_ns : 0;
}

size_t timeline_begin(struct osm_timeline *tl, const char *name, pid_t pid)
{
	struct osm_phase *ph;

	if (!tl || !tl->t0_ns)
		return SIZE_MAX;
	/* A set's per-process phases (register, rounds, unregister for each of 26 backends) would
	 * fill the table before the pause, and what comes after it (write-out, commit) would go
	 * unrecorded: past half the table, a phase that follows one of its name right after it
	 * ended extends that one, for all its processes (pid 0). */
	if (tl->n >= OSM_MAX_PHASES / 2) {
		ph = &tl->phases[tl->n - 1];
		if (ph->dur_ns != OSM_PHASE_OPEN && !strcmp(ph->name, name)) {
			if (ph->pid != pid)
				ph->pid = 0;
			ph->dur_ns = OSM_PHASE_OPEN;
			return tl->n - 1;
		}
	}
	if (tl->n >= OSM_MAX_PHASES) {
		tl->dropped++;
		return SIZE_MAX;
	}
	ph = &tl->phases[tl->n];
	memset(ph, 0, sizeof(*ph));
	snprintf(ph->name, sizeof(ph->name), "%s", name);
	ph->pid = pid;
	ph->start_ns = rel(tl, now_ns());
	ph->dur_ns = OSM_PHASE_OPEN;
	return tl->n++;
}

void timeline_end(struct osm_timeline *tl, size_t i)
{
	if (!tl || i >= tl->n)
		return;
	uint64_t end = rel(tl, now_ns());
	tl->phases[i].dur_ns = end > tl->phases[i].start_ns ? end - tl->phases[i].start_ns : 0;
}

void timeline_add(struct osm_timeline *tl, const char *name, pid_t pid, uint64_t start_mono,
		  uint64_t end_mono)
{
	size_t i = timeline_begin(tl, name, pid);

	if (i == SIZE_MAX)
		return;
	tl->phases[i].start_ns = rel(tl, start_mono);
	tl->phases[i].dur_ns = end_mono > start_mono ? end_mono - start_mono : 0;
}

void timeline_set_pause(struct osm_timeline *tl, uint64_t first_stop, uint64_t thawed)
{
	if (!tl || !tl->t0_ns || !first_stop)
		return;
	tl->pause_ns = rel(tl, first_stop);
	tl->pause_end_ns = rel(tl, thawed);
}

const char *const osm_pause_part_names[PAUSE_N_PARTS] = {
    [PAUSE_STOP] = "stop",     [PAUSE_REGISTERS] = "registers", [PAUSE_LAYOUT] = "layout",
    [PAUSE_CLONE] = "clone",   [PAUSE_WRITTEN] = "written",	[PAUSE_COPY] = "copy",
    [PAUSE_RESUME] = "resume", [PAUSE_OTHER] = "other",
};

void timeline_pause_part(struct osm_timeline *tl, enum osm_pause_part part, uint64_t ns)
{
	if (!tl || !tl->t0_ns || part >= PAUSE_N_PARTS)
		return;
	tl->part_ns[part] += ns;
}

void timeline_close_pause(struct osm_timeline *tl)
{
	uint64_t named = 0, pause;

	if (!tl || !tl->t0_ns || tl->pause_end_ns < tl->pause_ns)
		return;
	pause = tl->pause_end_ns - tl->pause_ns;
	tl->part_ns[PAUSE_OTHER] = 0;
	for (int i = 0; i < PAUSE_OTHER; i++)
		named += tl->part_ns[i];
	/* The parts are measured inside the pause: they cannot exceed it but by clock reads. */
	tl->part_ns[PAUSE_OTHER] = pause > named ? pause - named : 0;
}

bool timeline_format_pause(const struct osm_timeline *tl, char *buf, size_t len)
{
	size_t off = 0;
	bool any = false;

	if (len)
		buf[0] = 0;
	for (int i = 0; i < PAUSE_N_PARTS && off < len; i++) {
		/* stop, copy and resume always; the others when they took time */
		bool always = i == PAUSE_STOP || i == PAUSE_COPY || i == PAUSE_RESUME;
		if (!tl->part_ns[i] && !always)
			continue;
		int n = snprintf(buf + off, len - off, "%s%s %.*f", off ? ", " : "",
				 osm_pause_part_names[i], tl->part_ns[i] < 10000000 ? 1 : 0,
				 (double)tl->part_ns[i] / 1e6);
		if (n < 0)
			break;
		off += (size_t)n;
		any |= tl->part_ns[i] != 0;
	}
	return any;
}

uint64_t timeline_self_peak_rss(void)
{
	char line[256];
	unsigned long long kb = 0;
	FILE *f = fopen("/proc/self/status", "re");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmHWM: %llu kB", &kb) == 1)
			break;
	fclose(f);
	return (uint64_t)kb * 1024;
}
