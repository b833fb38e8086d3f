/* SPDX-License-Identifier: MIT */
/* CPython's opcodes, per minor version, as far as reading a `with` or `async with` statement, a
 * coroutine's await and a call of a method back needs. */
#pragma once

#include <stddef.h>
#include <stdint.h>

struct py_opcodes {
	int minor;
	const uint8_t *deopt;  /* [256]: an opcode's base, specialized forms undone */
	const uint8_t *caches; /* [256]: inline cache units after it */
	int before_with, load_fast, load_fast_check, load_fast_load_fast, load_global, load_name,
	    load_deref, load_attr, load_method, extended_arg; /* -1: none in this version */
	int before_async_with, get_awaitable, load_const, send, yield_value, resume,
	    instrumented_resume, call, precall, pop_top, cache;
};

extern const struct py_opcodes py_opcodes[];
extern const size_t py_opcodes_count;
