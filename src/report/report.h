/* SPDX-License-Identifier: MIT */
/*
 * One report, two renderers: text for people (findings most severe first, then the stack trace
 * collection: identical stacks grouped across processes), and JSON for programs
 * (docs/analysis-json.md). Results go to the given stream; diagnostics never do.
 */
#pragma once

#include <stdbool.h>
#include <stdio.h>

#include "analyze/analysis.h"
#include "patterns/pattern.h"

#define ANALYSIS_JSON_SCHEMA_VERSION 1

struct stack_group {
	struct athread **threads;
	size_t n;
};

/* Group every thread by identical stacks; most threads first. Free with stack_groups_free. */
int stack_groups(const struct analysis *a, struct stack_group **ret, size_t *ret_n);
void stack_groups_free(struct stack_group *g, size_t n);

void report_text(FILE *out, const struct analysis *a, const struct findings *fs, bool color);
/* Returns 0 or -ENOMEM. */
int report_json(FILE *out, const struct analysis *a, const struct findings *fs);
