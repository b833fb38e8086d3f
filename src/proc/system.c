/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/fs.h"
#include "base/util.h"
#include "proc/system.h"

int system_parse_stat(const char *text, struct osm_system *sys)
{
	const char *line = text;
	size_t cap = 0;

	while (line && *line) {
		unsigned long long t[8] = {0};
		int cpu = -2;

		if (!strncmp(line, "cpu ", 4)) {
			cpu = -1;
			sscanf(line + 4, "%llu %llu %llu %llu %llu %llu %llu %llu", &t[0], &t[1],
			       &t[2], &t[3], &t[4], &t[5], &t[6], &t[7]);
		} else if (!strncmp(line, "cpu", 3)) {
			sscanf(line + 3, "%d %llu %llu %llu %llu %llu %llu %llu %llu", &cpu, &t[0],
			       &t[1], &t[2], &t[3], &t[4], &t[5], &t[6], &t[7]);
			if (cpu < 0)
				cpu = -2;
		} else if (!strncmp(line, "procs_running ", 14)) {
			sys->procs_running = strtoull(line + 14, NULL, 10);
		} else if (!strncmp(line, "procs_blocked ", 14)) {
			sys->procs_blocked = strtoull(line + 14, NULL, 10);
		} else if (!strncmp(line, "ctxt ", 5)) {
			sys->ctxt = strtoull(line + 5, NULL, 10);
		} else if (!strncmp(line, "processes ", 10)) {
			sys->processes_forked = strtoull(line + 10, NULL, 10);
		}
		if (cpu >= -1) {
			struct osm_cpu *c;
			if (grow_array((void **)&sys->cpus, &cap, sys->n_cpus + 1, sizeof(*c)))
				return -ENOMEM;
			c = &sys->cpus[sys->n_cpus++];
			c->cpu = cpu;
			for (int i = 0; i < 8; i++)
				c->ticks[i] = t[i];
			c->busy_pct = -1;
		}
		line = strchr(line, '\n');
		if (line)
			line++;
	}
	return 0;
}

int system_parse_kv(const char *text, bool kb_to_bytes, struct osm_kv **ret, size_t *ret_n)
{
	struct osm_kv *v = NULL;
	size_t n = 0, cap = 0;
	const char *line = text;

	while (line && *line) {
		char key[64];
		long long val;
		char unit[8] = "";
		int k = sscanf(line, "%63[^: ]%*[: ] %lld %7s", key, &val, unit);

		if (k >= 2) {
			if (grow_array((void **)&v, &cap, n + 1, sizeof(*v))) {
				kv_free(v, n);
				return -ENOMEM;
			}
			v[n].key = strdup(key);
			v[n].value = (kb_to_bytes && !strcmp(unit, "kB")) ? val * 1024 : val;
			n++;
		}
		line = strchr(line, '\n');
		if (line)
			line++;
	}
	*ret = v;
	*ret_n = n;
	return 0;
}

int system_parse_psi(const char *text, struct osm_psi *psi)
{
	const char *line = text;
	int found = 0;

	while (line && *line) {
		double a, b, c;
		unsigned long long total;
		if (sscanf(line, "some avg10=%lf avg60=%lf avg300=%lf total=%llu", &a, &b, &c,
			   &total) == 4) {
			psi->some[0] = a, psi->some[1] = b, psi->some[2] = c;
			psi->some_total_us = total;
			found++;
		} else if (sscanf(line, "full avg10=%lf avg60=%lf avg300=%lf total=%llu", &a, &b,
				  &c, &total) == 4) {
			psi->full[0] = a, psi->full[1] = b, psi->full[2] = c;
			psi->full_total_us = total;
			psi->has_full = true;
			found++;
		}
		line = strchr(line, '\n');
		if (line)
			line++;
	}
	return found ? 0 : -EINVAL;
}

int system_sample_cpus(struct cpu_sample *ret)
{
	_cleanup_free_ char *text = NULL;
	struct osm_system tmp = {0};
	int r = read_file_at(AT_FDCWD, "/proc/stat", &text, NULL);

	if (r < 0)
		return r;
	r = system_parse_stat(text, &tmp);
	if (r < 0) {
		free(tmp.cpus);
		return r;
	}
	ret->cpus = tmp.cpus;
	ret->n = tmp.n_cpus;
	return 0;
}

void cpu_sample_done(struct cpu_sample *s)
{
	free(s->cpus);
	s->cpus = NULL;
	s->n = 0;
}

static void load_swaps(struct osm_system *sys, const char *text)
{
	const char *line = strchr(text, '\n');
	size_t cap = 0;

	while (line && *++line) {
		char name[256], type[32];
		unsigned long long size, used;
		int prio;
		if (sscanf(line, "%255s %31s %llu %llu %d", name, type, &size, &used, &prio) == 5 &&
		    !grow_array((void **)&sys->swaps, &cap, sys->n_swaps + 1,
				sizeof(*sys->swaps))) {
			struct osm_swap *s = &sys->swaps[sys->n_swaps++];
			s->name = strdup(name);
			s->type = strdup(type);
			s->size = size * 1024;
			s->used = used * 1024;
			s->priority = prio;
		}
		line = strchr(line, '\n');
	}
}

int system_load(struct osm_system *sys, const struct cpu_sample *before)
{
	static const char *const psi_res[] = {"cpu", "memory", "io"};
	_cleanup_free_ char *stat = NULL, *mem = NULL, *vm = NULL, *la = NULL, *up = NULL,
			    *sw = NULL;
	int r;

	sys->ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	if (read_file_at(AT_FDCWD, "/proc/stat", &stat, NULL) == 0) {
		r = system_parse_stat(stat, sys);
		if (r < 0)
			return r;
	}
	/* CPU use over the interval: busy = everything but idle and iowait. */
	for (size_t i = 0; before && i < sys->n_cpus; i++) {
		struct osm_cpu *c = &sys->cpus[i];
		for (size_t j = 0; j < before->n; j++) {
			const struct osm_cpu *b = &before->cpus[j];
			uint64_t total = 0, idle;
			if (b->cpu != c->cpu)
				continue;
			for (int k = 0; k < 8; k++)
				total += c->ticks[k] - b->ticks[k];
			idle = (c->ticks[3] - b->ticks[3]) + (c->ticks[4] - b->ticks[4]);
			c->busy_pct = total ? 100.0 * (double)(total - idle) / (double)total : 0;
		}
	}
	if (read_file_at(AT_FDCWD, "/proc/meminfo", &mem, NULL) == 0 &&
	    (r = system_parse_kv(mem, true, &sys->meminfo, &sys->n_meminfo)) < 0)
		return r;
	if (read_file_at(AT_FDCWD, "/proc/vmstat", &vm, NULL) == 0 &&
	    (r = system_parse_kv(vm, false, &sys->vmstat, &sys->n_vmstat)) < 0)
		return r;
	if (read_file_at(AT_FDCWD, "/proc/loadavg", &la, NULL) == 0)
		sscanf(la, "%lf %lf %lf %d/%d", &sys->load[0], &sys->load[1], &sys->load[2],
		       &sys->runnable, &sys->threads_total);
	if (read_file_at(AT_FDCWD, "/proc/uptime", &up, NULL) == 0)
		sscanf(up, "%lf %lf", &sys->uptime_s, &sys->idle_s);
	if (read_file_at(AT_FDCWD, "/proc/swaps", &sw, NULL) == 0)
		load_swaps(sys, sw);
	for (size_t i = 0; i < ARRAY_SIZE(psi_res); i++) {
		_cleanup_free_ char *text = NULL;
		char path[64];
		snprintf(path, sizeof(path), "/proc/pressure/%s", psi_res[i]);
		if (read_file_at(AT_FDCWD, path, &text, NULL) == 0 &&
		    system_parse_psi(text, &sys->psi[sys->n_psi]) == 0) {
			snprintf(sys->psi[sys->n_psi].resource, sizeof(sys->psi[0].resource), "%s",
				 psi_res[i]);
			sys->n_psi++;
		}
	}
	return 0;
}
