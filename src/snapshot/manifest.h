/* SPDX-License-Identifier: MIT */
/* manifest.json: the snapshot's table of contents and the system state around it. Its fields are
 * documented in docs/manifest.md; schema_version changes when a field changes meaning. */
#pragma once

#include <stddef.h>

#include "snapshot/model.h"

#define MANIFEST_SCHEMA_VERSION 1

/* Serialise s to a malloc'ed JSON string (pretty-printed). NULL on out of memory. */
char *manifest_to_json(const struct osm_snapshot *s);

/* "running", "sleeping", ... for a /proc state letter. */
const char *manifest_state_name(char c);

/* Parse a manifest (untrusted: from any machine) into a new model. On failure returns a negative
 * errno and puts a one-line reason into err. Does not log. */
int manifest_parse(const char *buf, size_t len, struct osm_snapshot **ret, char *err,
		   size_t errlen);
/* Read dirfd/manifest.json and parse it. */
int manifest_load(int dirfd, struct osm_snapshot **ret, char *err, size_t errlen);
