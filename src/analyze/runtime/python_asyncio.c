/* SPDX-License-Identifier: MIT */
/*
 * asyncio Tasks read from a process's memory. A coroutine suspended in an await is on no
 * thread's stack: its frame lives inside the coroutine object, so the tasks are found from
 * asyncio's own registry of them, as the interpreter keeps it:
 *   sys.modules["asyncio.tasks"]._all_tasks        (3.11: a weakref.WeakSet)
 *   sys.modules["asyncio.tasks"]._scheduled_tasks  (3.12, 3.13: a WeakSet)
 *                           and ._eager_tasks      (3.12, 3.13: a set)
 * A WeakSet keeps its members in `data`, a set of weak references; each reference's object is
 * an _asyncio.Task (the C task; a pure-Python task is not read). From the task: its loop, its
 * name (a str; 3.12 on keep a number until get_name() makes "Task-N" of it), its state, the
 * future it waits on (fut_waiter) and its coroutine. The coroutine chain is walked as
 * cr_await walks it: a coroutine's frame is embedded in the coroutine object; when it is
 * suspended in an await (3.11, 3.12: the instruction after its yield is a RESUME with an oparg
 * of 2 or more; 3.13: its frame state says FRAME_SUSPENDED_YIELD_FROM) the top of its value
 * stack is what it awaits: another coroutine (or generator) to follow, or an _asyncio.FutureIter
 * whose future is the one the task waits on, or something else, named by its type.
 *
 * Pure: every byte comes through a struct rmem; sets, chains and counts are bounded
 * (PY_MAX_TASKS, PY_MAX_TASK_FRAMES), cycles stop. python_locks.c says what each task waits on.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analyze/runtime/python.h"
#include "base/util.h"

#define MAX_SET_SLOTS (1u << 16)

static bool type_is(const struct rmem *m, const struct py_layout *L, uint64_t obj, const char *want)
{
	char tn[48];
	return py_type_name(m, L, obj, tn, sizeof(tn)) && !strcmp(tn, want);
}

bool py_read_bool(const struct rmem *m, const struct py_layout *L, uint64_t obj, bool *ret)
{
	uint64_t size;
	if (!type_is(m, L, obj, "bool") || !rmem_read64(m, obj + L->var_size, &size))
		return false;
	*ret = (L->long_tagged ? size >> 3 : size) != 0;
	return true;
}

bool py_number_text(const struct rmem *m, const struct py_layout *L, uint64_t obj, char *buf,
		    size_t len)
{
	uint64_t v;
	double d;
	if (py_read_long(m, L, obj, &v)) {
		snprintf(buf, len, "%llu", (unsigned long long)v);
		return true;
	}
	if (type_is(m, L, obj, "float") && rmem_read(m, obj + L->float_value, &d, 8)) {
		snprintf(buf, len, "%g", d);
		return true;
	}
	return false;
}

uint64_t py_method_self(const struct rmem *m, const struct py_layout *L, uint64_t obj,
			char **ret_qualname)
{
	uint64_t func, self, qn;

	*ret_qualname = NULL;
	if (!type_is(m, L, obj, "method") || !rmem_readptr(m, obj + L->method_func, &func) ||
	    !rmem_readptr(m, obj + L->method_self, &self))
		return 0;
	if (type_is(m, L, func, "function") && rmem_readptr(m, func + L->func_qualname, &qn))
		*ret_qualname = py_read_str(m, L, qn);
	return self;
}

/* The task's name: a str, or (3.12 on, before get_name() was called) the number N of
 * "Task-N". */
static char *task_name(const struct rmem *m, const struct py_layout *L, uint64_t obj)
{
	char buf[32];
	uint64_t n;
	char *s = py_read_str(m, L, obj);

	if (s)
		return s;
	if (!py_read_long(m, L, obj, &n))
		return NULL;
	snprintf(buf, sizeof(buf), "Task-%llu", (unsigned long long)n);
	return strdup(buf);
}

/* Follow the coroutine chain from coro: the frames outermost first into t. */
static void walk_coroutine(const struct rmem *m, struct py_state *st, struct py_task *t,
			   uint64_t coro)
{
	const struct py_layout *L = &st->L;
	size_t cap = 0;

	for (size_t depth = 0; coro; depth++) {
		struct py_frame f;
		int8_t state = 1;
		uint64_t next;
		char tn[48] = "";

		if (depth >= PY_MAX_TASK_FRAMES) {
			snprintf(t->error, sizeof(t->error),
				 "more than %d coroutines await each other: the rest is not shown",
				 PY_MAX_TASK_FRAMES);
			return;
		}
		if (!py_type_name(m, L, coro, tn, sizeof(tn)))
			return;
		if (!strcmp(tn, "_asyncio.FutureIter")) {
			uint64_t fut;
			if (rmem_readptr(m, coro + L->futiter_future, &fut)) {
				t->awaited = fut;
				(void)py_type_name(m, L, fut, t->awaited_type,
						   sizeof(t->awaited_type));
			}
			return;
		}
		if (strcmp(tn, "coroutine") && strcmp(tn, "generator")) {
			t->awaited = coro;
			snprintf(t->awaited_type, sizeof(t->awaited_type), "%s", tn);
			return;
		}
		for (size_t i = 0; i < t->n_frames; i++)
			if (t->frames[i].addr == coro + L->gen_iframe) {
				snprintf(t->error, sizeof(t->error),
					 "its chain of awaits loops back");
				return;
			}
		if (!rmem_read(m, coro + L->gen_frame_state, &state, 1) || state >= 0) {
			t->running = state == 0 && !t->n_frames;
			return; /* running (on a thread's stack), finished or cleared */
		}
		if (!py_frame_at(m, st, coro + L->gen_iframe, &f))
			return;
		if (grow_array((void **)&t->frames, &cap, t->n_frames + 1, sizeof(*t->frames)))
			return;
		t->frames[t->n_frames++] = f;
		if (state != L->gen_state_yield_from || f.stacktop <= 0 ||
		    (L->gen_check_resume && !py_frame_awaits(m, st, &f)))
			return; /* not started, or at a plain yield */
		if (!rmem_read64(m, f.localsplus + (uint64_t)(f.stacktop - 1) * 8, &next) ||
		    !rmem_plausible(next))
			return;
		coro = next;
	}
}

void py_read_task(const struct rmem *m, struct py_state *st, uint64_t obj)
{
	const struct py_layout *L = &st->L;
	struct py_task *t;
	size_t cap = st->n_tasks;
	uint64_t name = 0;
	int32_t state = 0;

	if (!type_is(m, L, obj, "_asyncio.Task"))
		return;
	for (size_t i = 0; i < st->n_tasks; i++)
		if (st->tasks[i].addr == obj)
			return;
	if (st->n_tasks >= PY_MAX_TASKS) {
		snprintf(st->tasks_error, sizeof(st->tasks_error),
			 "more than %d asyncio tasks: the rest is not shown", PY_MAX_TASKS);
		return;
	}
	if (grow_array((void **)&st->tasks, &cap, st->n_tasks + 1, sizeof(*st->tasks)))
		return;
	t = &st->tasks[st->n_tasks++];
	memset(t, 0, sizeof(*t));
	t->addr = obj;
	(void)rmem_read64(m, obj + L->task_loop, &t->loop);
	(void)rmem_read64(m, obj + L->task_fut_waiter, &t->fut_waiter);
	(void)rmem_read64(m, obj + L->task_coro, &t->coro);
	if (rmem_read64(m, obj + L->task_name, &name))
		t->name = task_name(m, L, name);
	t->done = rmem_read(m, obj + L->task_state, &state, 4) && state != 0;
	if (!rmem_plausible(t->fut_waiter))
		t->fut_waiter = 0;
	if (!t->done && rmem_plausible(t->coro))
		walk_coroutine(m, st, t, t->coro);
	/* innermost first, as a thread's frames */
	for (size_t i = 0; i < t->n_frames / 2; i++) {
		struct py_frame x = t->frames[i];
		t->frames[i] = t->frames[t->n_frames - 1 - i];
		t->frames[t->n_frames - 1 - i] = x;
	}
}

/* Each object of a set; through_weakref: the objects its weak references point to. */
static void set_each_task(const struct rmem *m, struct py_state *st, uint64_t set,
			  bool through_weakref)
{
	const struct py_layout *L = &st->L;
	uint64_t mask, table;

	if (!type_is(m, L, set, "set") || !rmem_read64(m, set + L->set_mask, &mask) ||
	    !rmem_readptr(m, set + L->set_table, &table))
		return;
	if (mask >= MAX_SET_SLOTS) {
		snprintf(st->tasks_error, sizeof(st->tasks_error),
			 "the set of asyncio tasks has %llu slots: only the first %u are read",
			 (unsigned long long)mask + 1, MAX_SET_SLOTS);
		mask = MAX_SET_SLOTS - 1;
	}
	for (uint64_t i = 0; i <= mask && st->n_tasks < PY_MAX_TASKS; i++) {
		uint64_t key, obj;
		if (!rmem_read64(m, table + i * 16, &key) || !rmem_plausible(key))
			continue;
		if (!through_weakref)
			py_read_task(m, st, key);
		else if (type_is(m, L, key, "weakref.ReferenceType") &&
			 rmem_readptr(m, key + L->weakref_object, &obj))
			py_read_task(m, st, obj);
	}
}

void py_read_tasks(const struct rmem *m, struct py_state *st)
{
	const struct py_layout *L = &st->L;
	uint64_t interp, modules, tasks, mdict, ws, data, eager;

	if (!L->task_coro || !rmem_readptr(m, st->runtime + L->rt_interpreters_head, &interp) ||
	    !rmem_readptr(m, interp + L->is_modules, &modules))
		return;
	tasks = py_dict_get_str(m, L, modules, "asyncio.tasks");
	if (!tasks || !rmem_readptr(m, tasks + L->md_dict, &mdict))
		return; /* asyncio never imported */
	ws = py_dict_get_str(m, L, mdict, "_scheduled_tasks");
	if (!ws)
		ws = py_dict_get_str(m, L, mdict, "_all_tasks");
	data = ws ? py_instance_attr(m, L, ws, "data") : 0;
	if (data)
		set_each_task(m, st, data, true);
	else if (ws)
		snprintf(st->tasks_error, sizeof(st->tasks_error),
			 "asyncio's set of tasks is unreadable: its tasks are not shown");
	eager = py_dict_get_str(m, L, mdict, "_eager_tasks");
	if (eager)
		set_each_task(m, st, eager, false);
}
