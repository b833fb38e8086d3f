/* SPDX-License-Identifier: MIT */
/*
 * The capture methods, listed once (method.h): --method's parsing, its --help lines and the
 * manual's list come from here; the manifest's names from the method enum's one string table
 * (snapshot/model.c). A new method is one file with its const struct capture_ops, one line
 * here and its enum value (HACKING.md, "How to add a capture method").
 */
#include <stdio.h>
#include <string.h>

#include "base/util.h"
#include "capture/method.h"

const struct capture_ops *const capture_methods[] = {
    &capture_auto,
    &capture_copy,
    &capture_clone,
    &capture_precopy,
};
const size_t capture_method_count = ARRAY_SIZE(capture_methods);

const struct capture_ops *capture_method_find(const char *name)
{
	return capture_method_get(capture_method_parse(name));
}

const struct capture_ops *capture_method_get(enum capture_method id)
{
	for (size_t i = 0; i < capture_method_count; i++)
		if (capture_methods[i]->id == id)
			return capture_methods[i];
	return NULL;
}

const char *capture_method_list(void)
{
	static char buf[128];

	if (!buf[0]) {
		size_t len = 0;
		for (size_t i = 0; i < capture_method_count; i++)
			len += (size_t)snprintf(buf + len, sizeof(buf) - len, "%s%s",
						i == 0				? ""
						: i + 1 == capture_method_count ? " or "
										: ", ",
						capture_method_name(capture_methods[i]->id));
	}
	return buf;
}
