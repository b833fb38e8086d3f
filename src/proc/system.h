/* SPDX-License-Identifier: MIT */
/*
 * The whole system's state around a snapshot: CPUs and their use over the sampling interval,
 * load, run queue, memory, pressure stall information, vmstat counters, uptime, swap devices.
 * Read just before the freeze. Best effort: what cannot be read is left empty.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "snapshot/model.h"

/* Per-CPU tick counters from /proc/stat (first sample of the interval). */
struct cpu_sample {
	struct osm_cpu *cpus;
	size_t n;
};

int system_sample_cpus(struct cpu_sample *ret);
void cpu_sample_done(struct cpu_sample *s);
/* Fill sys; with before != NULL, busy_pct is the use between before and now. */
int system_load(struct osm_system *sys, const struct cpu_sample *before);

/* Parsers exposed for tests and fuzzing. */
int system_parse_stat(const char *text, struct osm_system *sys);
int system_parse_kv(const char *text, bool kb_to_bytes, struct osm_kv **ret, size_t *ret_n);
int system_parse_psi(const char *text, struct osm_psi *psi);
