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
