/* SPDX-License-Identifier: MIT */
/* The catalogue: every pattern, in the order `osmosis patterns` lists them. */
#include <string.h>

#include "patterns/pattern.h"

extern const struct pattern pattern_deadlock, pattern_wait_chain, pattern_high_contention,
    pattern_blocked_thread, pattern_coupled_processes, pattern_abandoned_mutex,
    pattern_mutex_corruption, pattern_spiking_thread, pattern_busy_system, pattern_process_factory,
    pattern_zombie_processes, pattern_handle_leak, pattern_insufficient_memory,
    pattern_stack_overflow, pattern_paged_out_stack, pattern_module_variety, pattern_truncated_dump,
    pattern_gil_held;

const struct pattern *const pattern_registry[] = {
    &pattern_deadlock,	      &pattern_wait_chain,
    &pattern_high_contention, &pattern_blocked_thread,
    &pattern_gil_held,	      &pattern_coupled_processes,
    &pattern_abandoned_mutex, &pattern_mutex_corruption,
    &pattern_spiking_thread,  &pattern_busy_system,
    &pattern_process_factory, &pattern_zombie_processes,
    &pattern_handle_leak,     &pattern_insufficient_memory,
    &pattern_stack_overflow,  &pattern_paged_out_stack,
    &pattern_module_variety,  &pattern_truncated_dump,
};
const size_t pattern_count = sizeof(pattern_registry) / sizeof(pattern_registry[0]);

const struct pattern *pattern_find(const char *id)
{
	for (size_t i = 0; i < pattern_count; i++)
		if (!strcmp(pattern_registry[i]->id, id))
			return pattern_registry[i];
	return NULL;
}
