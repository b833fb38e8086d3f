/* SPDX-License-Identifier: MIT */
/*
 * CPython's structures read from a snapshot's memory, without debug info or headers: the
 * layouts this file names (python_layout.c, docs/python.md), checked against the version found
 * in the binary. The reader (python_read.c) is pure: it reads through a struct rmem (the core,
 * or a fuzzer's bytes), bounds every count, stops at cycles and bad pointers, and says why it
 * stopped. python.c maps what it reads into the analysis model; python_locks.c turns the GIL
 * and threading's locks into wait-graph edges.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PY_MAX_THREADS	    4096
#define PY_MAX_FRAMES	    512
#define PY_MAX_STR	    512
#define PY_MAX_LINETABLE    (64u << 10)
#define PY_MAX_SLOTS	    512 /* locals and value stack scanned per frame */
#define PY_MAX_DICT_ENTRIES 8192
#define PY_MAX_INTERPRETERS 64

/* Memory of the target: returns the bytes read at addr (short where nothing is known). */
struct rmem {
	size_t (*read)(void *ctx, uint64_t addr, void *buf, size_t len);
	void *ctx;
};

/* The readers' bounded accessors: a pointer is plausible when it is a user-space address,
 * aligned and past the first page; a read succeeds only whole, never from address 0 or across
 * the end of the address space. */
static inline bool rmem_plausible(uint64_t p)
{
	return p >= 4096 && p < 0x800000000000ull && !(p & 7);
}

static inline bool rmem_read(const struct rmem *m, uint64_t addr, void *buf, size_t len)
{
	if (!addr || addr + len < addr)
		return false;
	return m->read(m->ctx, addr, buf, len) == len;
}

static inline bool rmem_read64(const struct rmem *m, uint64_t addr, uint64_t *v)
{
	return rmem_read(m, addr, v, 8);
}

static inline bool rmem_readptr(const struct rmem *m, uint64_t addr, uint64_t *v)
{
	return rmem_read64(m, addr, v) && rmem_plausible(*v);
}

/* The offsets the reader needs, for one CPython version (x86_64). 0 for an absent field is
 * never ambiguous: the fields that may truly be at 0 are flagged. */
struct py_layout {
	unsigned version; /* PY_VERSION_HEX of the binary */
	bool from_debug_offsets;
	/* _PyRuntimeState */
	uint64_t rt_interpreters_head;
	uint64_t rt_gil; /* 3.11: the GIL is in the runtime at this offset (0: per interpreter) */
	/* PyInterpreterState */
	uint64_t is_next, is_threads_head, is_modules;
	uint64_t is_gil_ptr; /* 3.12+: offset of the pointer to the interpreter's GIL */
	/* struct _gil_runtime_state */
	uint64_t gil_holder, gil_locked, gil_cond, gil_mutex, gil_switch_cond, gil_size;
	/* PyThreadState */
	uint64_t ts_next, ts_cframe, cf_current_frame; /* cframe 0: the frame is in the tstate */
	uint64_t ts_current_frame, ts_thread_id, ts_native_thread_id;
	/* _PyInterpreterFrame */
	uint64_t fr_code, fr_previous, fr_instr, fr_stacktop, fr_owner, fr_localsplus;
	uint64_t fr_is_entry; /* 3.11 only; later versions mark entries with an owner */
	/* PyCodeObject */
	uint64_t co_names, co_filename, co_name, co_qualname, co_linetable, co_firstlineno;
	uint64_t co_nlocalsplus, co_stacksize, co_localsplusnames, co_code_adaptive;
	/* objects */
	uint64_t ob_type, tp_name, tp_flags, tp_basicsize, ht_cached_keys;
	uint64_t var_size, bytes_sval, tuple_item;
	uint64_t u_state, u_length, u_ascii_size, u_compact_size;
	uint64_t dict_keys, dict_values, dv_values;
	uint64_t long_digits;
	bool long_tagged; /* 3.12+: lv_tag holds the digit count */
	uint64_t md_dict;
	uint64_t lock_lock, lock_locked, rlock_owner, rlock_count;
	uint64_t cfunc_ml, cfunc_self;
	int managed_dict_style; /* 311, 312, 313 */
	/* asyncio: coroutine objects, the _asyncio module's Task and FutureIter, sets, weakrefs,
	 * bound methods and functions (measured per version: docs/python.md) */
	uint64_t gen_iframe, gen_frame_state;
	int gen_state_yield_from; /* frame_state of a coroutine suspended in an await */
	bool gen_check_resume;	  /* 3.11, 3.12: the await is told by the RESUME after the yield */
	uint64_t task_loop, task_fut_waiter, task_coro, task_name, task_state;
	uint64_t futiter_future, method_func, method_self, func_qualname;
	uint64_t set_used, set_mask, set_table, weakref_object, float_value;
};

/* Fill L for version (PY_VERSION_HEX) from the layouts carried (3.11, 3.12). Returns 0, or
 * -ENOTSUP with the reason in why. */
int py_layout_for_version(unsigned version, struct py_layout *L, char *why, size_t len);
/* 3.13 on: read _Py_DebugOffsets at the start of _PyRuntime (cookie "xdebugpy"); version 0
 * when the binary did not say (the table's own version is then taken). Returns 0,
 * -ENOENT when there is no cookie, -ENOTSUP or -EINVAL with the reason in why. */
int py_layout_from_debug_offsets(const struct rmem *m, uint64_t runtime, unsigned version,
				 struct py_layout *L, char *why, size_t len);

struct py_frame {
	char *function; /* co_qualname (or co_name) */
	char *file;
	int line;   /* 0 when unknown */
	bool entry; /* the last Python frame run by one native evaluation call */
	uint64_t addr, code;
	int lasti; /* instruction index, -1 unknown */
	uint64_t localsplus;
	unsigned n_slots;   /* locals + value stack, bounded by PY_MAX_SLOTS */
	char with_text[96]; /* "with b:" or "async with b:" when it stands at one */
	int32_t stacktop;   /* a suspended coroutine's saved stack depth, -1 unknown */
};

struct py_thread {
	uint64_t tstate;
	uint64_t ident; /* threading.get_ident(): the pthread_t */
	int64_t native_id;
	struct py_frame *frames;
	size_t n_frames;
	char *name; /* threading.Thread.name, or NULL */
	char error[120];
};

#define PY_MAX_TASKS	   4096
#define PY_MAX_TASK_FRAMES 64 /* coroutines awaiting coroutines, per task */

/* An asyncio Task read from the heap: its coroutine chain (cr_frame, then what each frame
 * awaits, as cr_await would say), innermost first, and what the innermost one awaits. */
struct py_task {
	uint64_t addr, loop, fut_waiter, coro;
	char *name;
	bool done;    /* its future's state is not pending */
	bool running; /* its coroutine runs (its frames are on its loop's thread) */
	struct py_frame *frames;
	size_t n_frames;
	uint64_t awaited; /* the object the innermost frame awaits (a Future for a FutureIter) */
	char awaited_type[48]; /* its type's name */
	char error[120];
};

struct py_gil {
	bool known;
	uint64_t addr; /* the struct _gil_runtime_state */
	bool locked;
	uint64_t holder; /* tstate of the last holder */
};

struct py_state {
	struct py_layout L;
	uint64_t runtime;
	struct py_thread *threads;
	size_t n_threads;
	struct py_gil gil;
	char error[200]; /* why the reading stopped early, "" if it did not */
	struct py_task *tasks;
	size_t n_tasks;
	char tasks_error[160]; /* why the task walk stopped, "" if it did not */
	/* a cache of code objects (address -> strings, line table) */
	struct py_code *codes;
	size_t n_codes, cap_codes;
};

/* Read every interpreter's threads and their frames. Pure (memory only through m). Fills st
 * (threads, gil, error); returns 0, or a negative errno when nothing could be read (st->error
 * says why). Free with py_state_done. */
int py_read_state(const struct rmem *m, struct py_state *st);
void py_state_done(struct py_state *st);

/* One interpreter frame at frame (not its chain): false if it is unreadable or its code is not a
 * code object. */
bool py_frame_at(const struct rmem *m, struct py_state *st, uint64_t frame, struct py_frame *f);
/* Whether the code of frame f, before the instruction it stands at, called LOCK.acquire() on
 * a local or an attribute of a local that is lock now (`a.acquire()`, `self.lock.acquire()`)
 * and no release() on it after: the line of that call (-1 if unknown), or 0 when not. Read
 * from the bytecode in order, not from what ran: a branch or loop can make it wrong, so a
 * caller says "by its code", never "holds". */
int py_frame_acquired(const struct rmem *m, struct py_state *st, const struct py_frame *f,
		      uint64_t lock);
/* 3.11, 3.12: whether a suspended coroutine's frame f stands in an await (the RESUME after its
 * yield says so), so that the top of its stack is what it awaits. */
bool py_frame_awaits(const struct rmem *m, const struct py_state *st, const struct py_frame *f);
/* Every asyncio Task of the process (asyncio.tasks' registry of tasks: the WeakSet
 * _all_tasks on 3.11, _scheduled_tasks and the set _eager_tasks from 3.12 on) with its coroutine
 * chain, into st->tasks. Pure and bounded; nothing when asyncio was never imported. */
void py_read_tasks(const struct rmem *m, struct py_state *st);
/* One task at obj (an _asyncio.Task, else nothing), appended to st->tasks (py_read_tasks'
 * step; the fuzzer's entry). */
void py_read_task(const struct rmem *m, struct py_state *st, uint64_t obj);
/* A bool object's value; false if obj is not a bool. */
bool py_read_bool(const struct rmem *m, const struct py_layout *L, uint64_t obj, bool *ret);
/* An int or float object's value as text ("3600", "0.5") into buf; false if neither. */
bool py_number_text(const struct rmem *m, const struct py_layout *L, uint64_t obj, char *buf,
		    size_t len);
/* The attribute-holding object a bound method (type "method") is bound to, and its function's
 * qualified name (malloc'ed) into *ret_qualname; 0 if obj is not a bound method. */
uint64_t py_method_self(const struct rmem *m, const struct py_layout *L, uint64_t obj,
			char **ret_qualname);

/* A string object's text, UTF-8, at most PY_MAX_STR bytes; NULL if addr is not a readable str. */
char *py_read_str(const struct rmem *m, const struct py_layout *L, uint64_t addr);
/* The name of an object's type (cut at 63 bytes) into buf; false if unreadable. */
bool py_type_name(const struct rmem *m, const struct py_layout *L, uint64_t obj, char *buf,
		  size_t len);
/* An int object's value (at most 64 bits); false if unreadable or too large. */
bool py_read_long(const struct rmem *m, const struct py_layout *L, uint64_t obj, uint64_t *ret);
/* dict lookup by str key; 0 if absent or unreadable. */
uint64_t py_dict_get_str(const struct rmem *m, const struct py_layout *L, uint64_t dict,
			 const char *key);
/* Walk a dict: calls fn(key, value, arg) for each entry (bounded); stops when fn returns
 * false. */
void py_dict_each(const struct rmem *m, const struct py_layout *L, uint64_t dict,
		  bool (*fn)(uint64_t key, uint64_t value, void *arg), void *arg);
/* An instance's attribute from its __dict__ (managed or not); 0 if absent. */
uint64_t py_instance_attr(const struct rmem *m, const struct py_layout *L, uint64_t obj,
			  const char *name);
/* Thread names from threading._active, into st->threads[].name. */
void py_read_thread_names(const struct rmem *m, struct py_state *st);
/* Line of instruction index lasti in a code object's location table (PEP 626/657). */
int py_line_for(const uint8_t *table, size_t len, int firstlineno, int lasti);
/* When f stands at a `with` statement's entry (BEFORE_WITH) whose object is a plain name or
 * attribute chain, "with NAME:" into f->with_text, read back from the bytecode. */
void py_frame_with_text(const struct rmem *m, const struct py_state *st, struct py_frame *f);
