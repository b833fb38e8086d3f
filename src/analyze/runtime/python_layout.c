/* SPDX-License-Identifier: MIT */
/*
 * CPython layouts on x86_64. 3.11 and 3.12 carry no table of their own offsets, so the ones the
 * reader needs are written here, each measured on the builds docs/python.md names (Debian 12's
 * 3.11.2, pyenv's 3.11.7 and 3.12.1) and checked by tests against real processes. A layout is
 * used only for the minor version it was measured on. From 3.13 on the interpreter describes
 * itself: _Py_DebugOffsets at the start of _PyRuntime (cookie "xdebugpy", then the version),
 * made for out-of-process readers; the reader takes its offsets from there and carries only
 * what the table lacks (the lock objects, dicts, ints, the code's stack size).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "analyze/runtime/python.h"

#define MINOR(v) (((v) >> 16) & 0xff)
#define MAJOR(v) (((v) >> 24) & 0xff)

/* What does not change from 3.11 to 3.13 (object headers, the GIL's struct, lock objects). */
static void common(struct py_layout *L)
{
	L->ob_type = 8;
	L->tp_name = 24;
	L->tp_basicsize = 32;
	L->tp_flags = 168;
	L->var_size = 16;
	L->bytes_sval = 32;
	L->tuple_item = 24;
	L->u_length = 16;
	L->u_state = 32;
	L->dict_keys = 32;
	L->dict_values = 40;
	L->long_digits = 24;
	L->md_dict = 16;
	L->lock_lock = 16;
	L->lock_locked = 32;
	L->rlock_owner = 24;
	L->rlock_count = 32;
	L->cfunc_ml = 16;
	L->cfunc_self = 24;
	/* struct _gil_runtime_state: interval, last_holder, locked, switch_number, cond,
	 * mutex, switch_cond, switch_mutex */
	L->gil_holder = 8;
	L->gil_locked = 16;
	L->gil_cond = 32;
	L->gil_mutex = 80;
	L->gil_switch_cond = 120;
	L->gil_size = 208;
	L->co_names = 32;
	L->co_filename = 112;
	L->co_name = 120;
	L->co_qualname = 128;
	L->co_linetable = 136;
	L->co_localsplusnames = 96;
	L->fr_stacktop = 64;
	L->fr_localsplus = 72;
	L->ts_next = 8;
	/* asyncio and the objects its walk meets (PyMethodObject, PyFunctionObject, PySetObject,
	 * PyWeakReference, PyFloatObject, _asyncio's FutureIter) */
	L->futiter_future = 16;
	L->method_func = 16;
	L->method_self = 24;
	L->func_qualname = 40;
	L->set_used = 24;
	L->set_mask = 32;
	L->set_table = 40;
	L->weakref_object = 16;
	L->float_value = 16;
	L->task_loop = 16;
	L->gen_state_yield_from = -1;
}

/* Coroutine objects and _asyncio.Task, measured with ctypes on 3.11.2, 3.12.1, 3.13.0. */
static void asyncio_layout(struct py_layout *L, int minor)
{
	L->gen_iframe = minor == 11 ? 80 : 72;
	L->gen_frame_state = minor == 11 ? 75 : 67;
	L->gen_check_resume = minor < 13; /* 3.13: FRAME_SUSPENDED_YIELD_FROM (-1) says it */
	L->task_fut_waiter = minor < 13 ? 128 : 112;
	L->task_coro = minor < 13 ? 136 : 120;
	L->task_name = minor < 13 ? 144 : 128;
	L->task_state = minor < 13 ? 88 : 96;
}

int py_layout_for_version(unsigned version, struct py_layout *L, char *why, size_t len)
{
	memset(L, 0, sizeof(*L));
	L->version = version;
	if (MAJOR(version) != 3 || MINOR(version) < 11) {
		snprintf(why, len, "CPython %u.%u is not supported (3.11 to 3.13 are)",
			 MAJOR(version), MINOR(version));
		return -ENOTSUP;
	}
	common(L);
	switch (MINOR(version)) {
	case 11:
		L->rt_interpreters_head = 40;
		L->rt_gil = 360; /* _PyRuntime.ceval.gil */
		L->is_next = 0;
		L->is_threads_head = 16;
		L->is_modules = 888;
		L->ts_cframe = 56;
		L->cf_current_frame = 8;
		L->ts_thread_id = 152;
		L->ts_native_thread_id = 160;
		L->fr_code = 32;
		L->fr_previous = 48;
		L->fr_instr = 56; /* prev_instr */
		L->fr_is_entry = 68;
		L->fr_owner = 69;
		L->co_firstlineno = 72;
		L->co_nlocalsplus = 76;
		L->co_stacksize = 68;
		L->co_code_adaptive = 184;
		L->ht_cached_keys = 872;
		L->u_ascii_size = 48;
		L->u_compact_size = 72;
		L->dv_values = 0;
		L->long_tagged = false;
		L->managed_dict_style = 311;
		asyncio_layout(L, 11);
		return 0;
	case 12:
		L->rt_interpreters_head = 40;
		L->is_next = 0;
		L->is_threads_head = 72;
		L->is_modules = 944; /* imports.modules */
		L->is_gil_ptr = 384; /* ceval.gil */
		L->ts_cframe = 56;
		L->cf_current_frame = 0;
		L->ts_thread_id = 136;
		L->ts_native_thread_id = 144;
		L->fr_code = 0;
		L->fr_previous = 8;
		L->fr_instr = 56; /* prev_instr */
		L->fr_owner = 70;
		L->co_firstlineno = 68;
		L->co_nlocalsplus = 72;
		L->co_stacksize = 64;
		L->co_code_adaptive = 192;
		L->ht_cached_keys = 880;
		L->u_ascii_size = 40;
		L->u_compact_size = 56;
		L->dv_values = 0;
		L->long_tagged = true;
		L->managed_dict_style = 312;
		asyncio_layout(L, 12);
		return 0;
	default:
		snprintf(why, len,
			 "CPython %u.%u carries no _Py_DebugOffsets table where one was expected",
			 MAJOR(version), MINOR(version));
		return -ENOTSUP;
	}
}

/* _Py_DebugOffsets of 3.13, as uint64_t fields in this order (docs/python.md). */
enum {
	DO_VERSION = 1,
	DO_FREE_THREADED,
	DO_RT_SIZE,
	DO_RT_FINALIZING,
	DO_RT_INTERPRETERS_HEAD,
	DO_IS_SIZE,
	DO_IS_ID,
	DO_IS_NEXT,
	DO_IS_THREADS_HEAD,
	DO_IS_GC,
	DO_IS_IMPORTS_MODULES,
	DO_IS_SYSDICT,
	DO_IS_BUILTINS,
	DO_IS_CEVAL_GIL,
	DO_IS_GIL_RUNTIME_STATE,
	DO_IS_GIL_ENABLED,
	DO_IS_GIL_LOCKED,
	DO_IS_GIL_HOLDER,
	DO_TS_SIZE,
	DO_TS_PREV,
	DO_TS_NEXT,
	DO_TS_INTERP,
	DO_TS_CURRENT_FRAME,
	DO_TS_THREAD_ID,
	DO_TS_NATIVE_THREAD_ID,
	DO_TS_DATASTACK_CHUNK,
	DO_TS_STATUS,
	DO_FR_SIZE,
	DO_FR_PREVIOUS,
	DO_FR_EXECUTABLE,
	DO_FR_INSTR_PTR,
	DO_FR_LOCALSPLUS,
	DO_FR_OWNER,
	DO_CO_SIZE,
	DO_CO_FILENAME,
	DO_CO_NAME,
	DO_CO_QUALNAME,
	DO_CO_LINETABLE,
	DO_CO_FIRSTLINENO,
	DO_CO_ARGCOUNT,
	DO_CO_LOCALSPLUSNAMES,
	DO_CO_LOCALSPLUSKINDS,
	DO_CO_CODE_ADAPTIVE,
	DO_OB_SIZE,
	DO_OB_TYPE,
	DO_TP_SIZE,
	DO_TP_NAME,
	DO_TP_REPR,
	DO_TP_FLAGS,
	DO_TUPLE_SIZE,
	DO_TUPLE_ITEM,
	DO_TUPLE_OB_SIZE,
	DO_LIST_SIZE,
	DO_LIST_ITEM,
	DO_LIST_OB_SIZE,
	DO_DICT_SIZE,
	DO_DICT_KEYS,
	DO_DICT_VALUES,
	DO_FLOAT_SIZE,
	DO_FLOAT_FVAL,
	DO_LONG_SIZE,
	DO_LONG_TAG,
	DO_LONG_DIGIT,
	DO_BYTES_SIZE,
	DO_BYTES_OB_SIZE,
	DO_BYTES_SVAL,
	DO_U_SIZE,
	DO_U_STATE,
	DO_U_LENGTH,
	DO_U_ASCII_SIZE,
	DO_N /* the table's length in uint64_t words, the cookie included */
};

/* No offset inside these structures is larger than this: anything above is a damaged table. */
#define DO_MAX_OFFSET (1u << 20)

int py_layout_from_debug_offsets(const struct rmem *m, uint64_t runtime, unsigned version,
				 struct py_layout *L, char *why, size_t len)
{
	uint64_t d[DO_N];

	if (m->read(m->ctx, runtime, d, sizeof(d)) != sizeof(d)) {
		snprintf(why, len, "_PyRuntime at 0x%llx is not in the core",
			 (unsigned long long)runtime);
		return -EINVAL;
	}
	if (memcmp(d, "xdebugpy", 8))
		return -ENOENT;
	if (!version) /* the binary did not say: the table's own word */
		version = (unsigned)d[DO_VERSION];
	if ((d[DO_VERSION] >> 16) != (version >> 16)) {
		snprintf(why, len,
			 "_Py_DebugOffsets says version 0x%llx but the binary says 0x%x: not read",
			 (unsigned long long)d[DO_VERSION], version);
		return -EINVAL;
	}
	if (MINOR(version) != 13) {
		snprintf(
		    why, len,
		    "CPython 3.%u's _Py_DebugOffsets table is not one this osmosis knows (3.13)",
		    MINOR(version));
		return -ENOTSUP;
	}
	if (d[DO_FREE_THREADED]) {
		snprintf(why, len, "a free-threaded CPython build is not supported");
		return -ENOTSUP;
	}
	for (size_t i = DO_VERSION + 2; i < DO_N; i++)
		if (d[i] > DO_MAX_OFFSET) {
			snprintf(why, len, "_Py_DebugOffsets field %zu is 0x%llx: a damaged table",
				 i, (unsigned long long)d[i]);
			return -EINVAL;
		}
	memset(L, 0, sizeof(*L));
	common(L);
	L->version = version;
	L->from_debug_offsets = true;
	L->rt_interpreters_head = d[DO_RT_INTERPRETERS_HEAD];
	L->is_next = d[DO_IS_NEXT];
	L->is_threads_head = d[DO_IS_THREADS_HEAD];
	L->is_modules = d[DO_IS_IMPORTS_MODULES];
	L->is_gil_ptr = d[DO_IS_CEVAL_GIL];
	/* The table gives the GIL's fields as offsets in the interpreter's own _gil; the reader
	 * follows ceval.gil (which may point to another interpreter's GIL), so keep them
	 * relative to the GIL's start. */
	if (d[DO_IS_GIL_LOCKED] < d[DO_IS_GIL_RUNTIME_STATE] ||
	    d[DO_IS_GIL_HOLDER] < d[DO_IS_GIL_RUNTIME_STATE] ||
	    d[DO_IS_GIL_LOCKED] - d[DO_IS_GIL_RUNTIME_STATE] >= L->gil_size ||
	    d[DO_IS_GIL_HOLDER] - d[DO_IS_GIL_RUNTIME_STATE] >= L->gil_size) {
		snprintf(why, len, "_Py_DebugOffsets places the GIL's fields outside the GIL");
		return -EINVAL;
	}
	L->gil_locked = d[DO_IS_GIL_LOCKED] - d[DO_IS_GIL_RUNTIME_STATE];
	L->gil_holder = d[DO_IS_GIL_HOLDER] - d[DO_IS_GIL_RUNTIME_STATE];
	L->ts_next = d[DO_TS_NEXT];
	L->ts_current_frame = d[DO_TS_CURRENT_FRAME];
	L->ts_thread_id = d[DO_TS_THREAD_ID];
	L->ts_native_thread_id = d[DO_TS_NATIVE_THREAD_ID];
	L->fr_code = d[DO_FR_EXECUTABLE];
	L->fr_previous = d[DO_FR_PREVIOUS];
	L->fr_instr = d[DO_FR_INSTR_PTR];
	L->fr_localsplus = d[DO_FR_LOCALSPLUS];
	L->fr_owner = d[DO_FR_OWNER];
	L->co_filename = d[DO_CO_FILENAME];
	L->co_name = d[DO_CO_NAME];
	L->co_qualname = d[DO_CO_QUALNAME];
	L->co_linetable = d[DO_CO_LINETABLE];
	L->co_firstlineno = d[DO_CO_FIRSTLINENO];
	L->co_localsplusnames = d[DO_CO_LOCALSPLUSNAMES];
	L->co_code_adaptive = d[DO_CO_CODE_ADAPTIVE];
	L->ob_type = d[DO_OB_TYPE];
	L->tp_name = d[DO_TP_NAME];
	L->tp_flags = d[DO_TP_FLAGS];
	L->tuple_item = d[DO_TUPLE_ITEM];
	L->var_size = d[DO_TUPLE_OB_SIZE];
	L->dict_keys = d[DO_DICT_KEYS];
	L->dict_values = d[DO_DICT_VALUES];
	L->long_digits = d[DO_LONG_DIGIT];
	L->bytes_sval = d[DO_BYTES_SVAL];
	L->u_state = d[DO_U_STATE];
	L->u_length = d[DO_U_LENGTH];
	L->u_ascii_size = d[DO_U_ASCII_SIZE];
	/* What the table lacks, measured on 3.13.0 (docs/python.md). */
	L->u_compact_size = L->u_ascii_size + 16;
	L->co_nlocalsplus = 72;
	L->co_stacksize = 64;
	L->fr_stacktop = 64;
	L->ht_cached_keys = 880;
	L->dv_values = 8;
	L->long_tagged = true;
	L->managed_dict_style = 313;
	asyncio_layout(L, 13);
	return 0;
}
