/* SPDX-License-Identifier: MIT */
/*
 * Reading CPython's threads and frames out of a process's memory. Pure: every byte comes
 * through a struct rmem (a core, or a fuzzer's input), nothing is trusted. Every pointer is
 * checked before use (non-zero, aligned, in user space), every count is capped (PY_MAX_*), a
 * frame chain or thread list that comes back on itself stops, strings are cut. What stops a
 * walk is said in the thread's or the state's error and what was read so far is kept.
 *
 * The walk: _PyRuntime -> interpreters (next) -> thread states (next) -> the current frame ->
 * previous frames. A frame's code object gives the function (co_qualname), the file and, from
 * the instruction it stands at and the location table (co_linetable), the line. Frames that
 * mark where a native call entered the evaluation loop (3.11: is_entry; 3.12 on: a frame owned
 * by the C stack) end a run of Python frames, which python.c merges at the native
 * _PyEval_EvalFrameDefault frames.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analyze/runtime/python.h"
#include "analyze/runtime/python_opcodes.h"
#include "base/util.h"

#define FRAME_OWNED_BY_CSTACK 3
#define TPFLAGS_INLINE_VALUES (1ul << 2)
#define TPFLAGS_MANAGED_DICT  (1ul << 4)

struct py_code {
	uint64_t addr;
	bool ok;
	char *name, *file;
	int firstlineno;
	uint8_t *linetable;
	size_t lt_len;
	int nlocalsplus, stacksize;
};

static void utf8_put(char *out, size_t *o, size_t cap, uint32_t c)
{
	char b[4];
	size_t n;
	if (c < 0x80) {
		b[0] = (char)c;
		n = 1;
	} else if (c < 0x800) {
		b[0] = (char)(0xc0 | (c >> 6));
		b[1] = (char)(0x80 | (c & 0x3f));
		n = 2;
	} else if (c < 0x10000) {
		b[0] = (char)(0xe0 | (c >> 12));
		b[1] = (char)(0x80 | ((c >> 6) & 0x3f));
		b[2] = (char)(0x80 | (c & 0x3f));
		n = 3;
	} else if (c < 0x110000) {
		b[0] = (char)(0xf0 | (c >> 18));
		b[1] = (char)(0x80 | ((c >> 12) & 0x3f));
		b[2] = (char)(0x80 | ((c >> 6) & 0x3f));
		b[3] = (char)(0x80 | (c & 0x3f));
		n = 4;
	} else {
		b[0] = '?';
		n = 1;
	}
	if (*o + n >= cap)
		return;
	memcpy(out + *o, b, n);
	*o += n;
}

bool py_type_name(const struct rmem *m, const struct py_layout *L, uint64_t obj, char *buf,
		  size_t len)
{
	uint64_t type, name;
	size_t n;

	if (!len || !rmem_plausible(obj) || !rmem_readptr(m, obj + L->ob_type, &type) ||
	    !rmem_read64(m, type + L->tp_name, &name) || !name)
		return false;
	n = m->read(m->ctx, name, buf, len - 1);
	buf[n] = 0;
	if (strnlen(buf, len) == n && n == len - 1)
		buf[len - 1] = 0; /* cut */
	return buf[0] != 0;
}

char *py_read_str(const struct rmem *m, const struct py_layout *L, uint64_t addr)
{
	uint8_t raw[PY_MAX_STR * 4];
	char out[PY_MAX_STR + 8];
	char tn[16];
	uint64_t len, data;
	uint32_t state;
	unsigned kind;
	size_t o = 0, n;

	if (!rmem_plausible(addr) || !py_type_name(m, L, addr, tn, sizeof(tn)) ||
	    strcmp(tn, "str") || !rmem_read64(m, addr + L->u_length, &len) ||
	    !rmem_read(m, addr + L->u_state, &state, 4))
		return NULL;
	kind = (state >> 2) & 7;
	if (!((state >> 5) & 1)) /* not compact: a legacy string, never a name or a path */
		return NULL;
	if ((state >> 6) & 1) { /* ascii */
		kind = 1;
		data = addr + L->u_ascii_size;
	} else {
		data = addr + L->u_compact_size;
	}
	if (kind != 1 && kind != 2 && kind != 4)
		return NULL;
	if (len > PY_MAX_STR)
		len = PY_MAX_STR;
	n = (size_t)len * kind;
	if (!rmem_read(m, data, raw, n))
		return NULL;
	for (size_t i = 0; i < len; i++) {
		uint32_t c =
		    kind == 1	? raw[i]
		    : kind == 2 ? (uint32_t)(raw[2 * i] | raw[2 * i + 1] << 8)
				: (uint32_t)(raw[4 * i] | raw[4 * i + 1] << 8 |
					     raw[4 * i + 2] << 16 | (uint32_t)raw[4 * i + 3] << 24);
		if (c == 0)
			c = '?';
		utf8_put(out, &o, PY_MAX_STR, c);
	}
	out[o] = 0;
	return strdup(out);
}

bool py_read_long(const struct rmem *m, const struct py_layout *L, uint64_t obj, uint64_t *ret)
{
	char tn[16];
	uint64_t size, v = 0;
	uint32_t digits[3];
	size_t n;

	if (!py_type_name(m, L, obj, tn, sizeof(tn)) || strcmp(tn, "int") ||
	    !rmem_read64(m, obj + L->var_size, &size))
		return false;
	if (L->long_tagged) {
		if ((size & 3) == 2) /* negative */
			return false;
		n = (size_t)(size >> 3);
	} else {
		if ((int64_t)size < 0)
			return false;
		n = (size_t)size;
	}
	if (n > 3 || !rmem_read(m, obj + L->long_digits, digits, n * 4))
		return false;
	for (size_t i = n; i-- > 0;) {
		if (i == 2 && (digits[i] & 0x3fffffff) >= 16)
			return false; /* above 64 bits */
		v = (v << 30) | (digits[i] & 0x3fffffff);
	}
	*ret = v;
	return true;
}

/* --- dicts --------------------------------------------------------------------------------- */

struct dict_view {
	uint64_t entries;
	uint64_t n;
	bool unicode;
	uint64_t values; /* split table's values array, or 0 */
};

static bool keys_view(const struct rmem *m, uint64_t keys, struct dict_view *v)
{
	uint8_t hdr[32];
	int64_t nentries;

	if (!rmem_plausible(keys) || !rmem_read(m, keys, hdr, sizeof(hdr)))
		return false;
	uint8_t log2_size = hdr[8], log2_index_bytes = hdr[9], kind = hdr[10];
	memcpy(&nentries, hdr + 24, 8);
	if (log2_size > 20 || log2_index_bytes > 24 || nentries < 0 ||
	    (uint64_t)nentries > (1ull << log2_size) || kind > 2)
		return false;
	v->entries = keys + 32 + (1ull << log2_index_bytes);
	v->n = MIN((uint64_t)nentries, (uint64_t)PY_MAX_DICT_ENTRIES);
	v->unicode = kind != 0;
	v->values = 0;
	return true;
}

static bool entry_at(const struct rmem *m, const struct py_layout *L, const struct dict_view *v,
		     uint64_t i, uint64_t *key, uint64_t *value)
{
	uint64_t e = v->entries + i * (v->unicode ? 16 : 24) + (v->unicode ? 0 : 8);
	if (!rmem_read64(m, e, key))
		return false;
	if (v->values)
		return rmem_read64(m, v->values + L->dv_values + i * 8, value);
	return rmem_read64(m, e + 8, value);
}

static bool dict_view(const struct rmem *m, const struct py_layout *L, uint64_t dict,
		      struct dict_view *v)
{
	uint64_t keys, values;
	char tn[16];

	if (!py_type_name(m, L, dict, tn, sizeof(tn)) || strcmp(tn, "dict") ||
	    !rmem_readptr(m, dict + L->dict_keys, &keys) || !keys_view(m, keys, v) ||
	    !rmem_read64(m, dict + L->dict_values, &values))
		return false;
	if (values && !rmem_plausible(values))
		return false;
	v->values = values;
	return true;
}

void py_dict_each(const struct rmem *m, const struct py_layout *L, uint64_t dict,
		  bool (*fn)(uint64_t key, uint64_t value, void *arg), void *arg)
{
	struct dict_view v;
	if (!dict_view(m, L, dict, &v))
		return;
	for (uint64_t i = 0; i < v.n; i++) {
		uint64_t k, val;
		if (!entry_at(m, L, &v, i, &k, &val) || !rmem_plausible(k) || !rmem_plausible(val))
			continue;
		if (!fn(k, val, arg))
			return;
	}
}

static bool str_equals(const struct rmem *m, const struct py_layout *L, uint64_t s,
		       const char *want)
{
	char *got = py_read_str(m, L, s);
	bool eq = got && !strcmp(got, want);
	free(got);
	return eq;
}

static uint64_t view_get(const struct rmem *m, const struct py_layout *L, const struct dict_view *v,
			 const char *key)
{
	for (uint64_t i = 0; i < v->n; i++) {
		uint64_t k, val;
		if (!entry_at(m, L, v, i, &k, &val) || !rmem_plausible(k))
			continue;
		if (str_equals(m, L, k, key))
			return rmem_plausible(val) ? val : 0;
	}
	return 0;
}

uint64_t py_dict_get_str(const struct rmem *m, const struct py_layout *L, uint64_t dict,
			 const char *key)
{
	struct dict_view v;
	if (!dict_view(m, L, dict, &v))
		return 0;
	return view_get(m, L, &v, key);
}

uint64_t py_instance_attr(const struct rmem *m, const struct py_layout *L, uint64_t obj,
			  const char *name)
{
	uint64_t type, flags, dict = 0, values = 0, keys;
	struct dict_view v;

	if (!rmem_plausible(obj) || !rmem_readptr(m, obj + L->ob_type, &type) ||
	    !rmem_read64(m, type + L->tp_flags, &flags))
		return 0;
	if (!(flags & TPFLAGS_MANAGED_DICT))
		return 0; /* threading.Thread's instances have managed dicts from 3.11 on */
	switch (L->managed_dict_style) {
	case 311:
		if (!rmem_read64(m, obj - 24, &dict) || !rmem_read64(m, obj - 32, &values))
			return 0;
		break;
	case 312:
		if (!rmem_read64(m, obj - 24, &dict))
			return 0;
		if (dict & 1) { /* 3.12 tags an inline values pointer by storing it minus one */
			values = dict + 1;
			dict = 0;
		}
		break;
	default: {
		uint64_t basic;
		uint8_t valid;
		if (!rmem_read64(m, obj - 24, &dict))
			return 0;
		if (!dict && (flags & TPFLAGS_INLINE_VALUES) &&
		    rmem_read64(m, type + L->tp_basicsize, &basic) && basic < 4096 &&
		    rmem_read(m, obj + basic + 3, &valid, 1) && valid)
			values = obj + basic;
		break;
	}
	}
	if (dict)
		return rmem_plausible(dict) ? py_dict_get_str(m, L, dict, name) : 0;
	if (!values || !rmem_readptr(m, type + L->ht_cached_keys, &keys) || !keys_view(m, keys, &v))
		return 0;
	v.values = values;
	return view_get(m, L, &v, name);
}

/* --- code objects and lines ---------------------------------------------------------------- */

static int read_varint(const uint8_t *t, size_t len, size_t *i, unsigned *ret)
{
	unsigned v = 0, shift = 0;
	for (;;) {
		if (*i >= len || shift > 28)
			return -1;
		uint8_t b = t[(*i)++];
		v |= (unsigned)(b & 63) << shift;
		shift += 6;
		if (!(b & 64))
			break;
	}
	*ret = v;
	return 0;
}

static int read_svarint(const uint8_t *t, size_t len, size_t *i, int *ret)
{
	unsigned u;
	if (read_varint(t, len, i, &u) < 0)
		return -1;
	*ret = (u & 1) ? -(int)(u >> 1) : (int)(u >> 1);
	return 0;
}

/* The location table (3.11+): entries of 1..8 code units; the first byte's bits 3-6 say the
 * form (15 none, 14 long, 13 no column, 10-12 one line with a delta of code-10, 0-9 short). */
int py_line_for(const uint8_t *t, size_t len, int firstlineno, int lasti)
{
	size_t i = 0;
	int64_t line = firstlineno;
	int addr = 0;

	if (lasti < 0)
		return firstlineno;
	while (i < len) {
		uint8_t first = t[i++];
		int code, units, delta = 0;
		unsigned skip;

		if (!(first & 0x80))
			return 0; /* not at an entry's start: a damaged table */
		code = (first >> 3) & 15;
		units = (first & 7) + 1;
		switch (code) {
		case 15:
			break;
		case 14:
			if (read_svarint(t, len, &i, &delta) < 0 ||
			    read_varint(t, len, &i, &skip) || read_varint(t, len, &i, &skip) ||
			    read_varint(t, len, &i, &skip))
				return 0;
			break;
		case 13:
			if (read_svarint(t, len, &i, &delta) < 0)
				return 0;
			break;
		case 10:
		case 11:
		case 12:
			delta = code - 10;
			i += 2;
			break;
		default:
			i += 1;
			break;
		}
		line += delta;
		if (line < 0 || line > 10000000)
			return 0; /* no source file has that many lines: a damaged table */
		if (lasti >= addr && lasti < addr + units)
			return code == 15 ? 0 : (int)line;
		addr += units;
	}
	return 0;
}

static struct py_code *code_get(const struct rmem *m, struct py_state *st, uint64_t addr)
{
	const struct py_layout *L = &st->L;
	struct py_code *c;
	uint64_t p;
	int32_t v32;
	char tn[16];

	for (size_t i = 0; i < st->n_codes; i++)
		if (st->codes[i].addr == addr)
			return &st->codes[i];
	if (st->n_codes >= 65536 ||
	    grow_array((void **)&st->codes, &st->cap_codes, st->n_codes + 1, sizeof(*st->codes)))
		return NULL;
	c = &st->codes[st->n_codes++];
	memset(c, 0, sizeof(*c));
	c->addr = addr;
	if (!py_type_name(m, L, addr, tn, sizeof(tn)) || strcmp(tn, "code"))
		return c;
	if (rmem_read64(m, addr + L->co_qualname, &p))
		c->name = py_read_str(m, L, p);
	if (!c->name && rmem_read64(m, addr + L->co_name, &p))
		c->name = py_read_str(m, L, p);
	if (rmem_read64(m, addr + L->co_filename, &p))
		c->file = py_read_str(m, L, p);
	if (rmem_read(m, addr + L->co_firstlineno, &v32, 4))
		c->firstlineno = v32 > 0 ? v32 : 0;
	if (rmem_read(m, addr + L->co_nlocalsplus, &v32, 4) && v32 >= 0)
		c->nlocalsplus = v32;
	if (rmem_read(m, addr + L->co_stacksize, &v32, 4) && v32 >= 0)
		c->stacksize = v32;
	if (rmem_read64(m, addr + L->co_linetable, &p) && rmem_plausible(p)) {
		uint64_t n;
		if (rmem_read64(m, p + L->var_size, &n) && n <= PY_MAX_LINETABLE) {
			c->linetable = malloc(n ? n : 1);
			if (c->linetable && rmem_read(m, p + L->bytes_sval, c->linetable, n))
				c->lt_len = n;
		}
	}
	c->ok = c->name != NULL;
	return c;
}

static void codes_free(struct py_state *st)
{
	for (size_t i = 0; i < st->n_codes; i++) {
		free(st->codes[i].name);
		free(st->codes[i].file);
		free(st->codes[i].linetable);
	}
	free(st->codes);
	st->codes = NULL;
	st->n_codes = st->cap_codes = 0;
}

/* --- threads and frames -------------------------------------------------------------------- */

/* One frame from its code object: function, file, line, where its locals and value stack lie.
 * A frame whose stacktop is saved (it called Python code, or is a suspended coroutine's)
 * scans only the live part of its stack; the frame a native call runs in has a stale one: its
 * whole capacity is taken (python_locks.c checks every object it finds there). */
static void frame_fill(const struct rmem *m, struct py_state *st, uint64_t frame, uint64_t code,
		       int32_t stacktop, bool stacktop_valid, struct py_frame *f)
{
	const struct py_layout *L = &st->L;
	struct py_code *c = rmem_plausible(code) ? code_get(m, st, code) : NULL;
	uint64_t instr;

	memset(f, 0, sizeof(*f));
	f->addr = frame;
	f->code = code;
	f->lasti = -1;
	f->stacktop = -1;
	f->localsplus = frame + L->fr_localsplus;
	if (!c || !c->ok)
		return;
	f->function = c->name;
	f->file = c->file;
	if (rmem_read64(m, frame + L->fr_instr, &instr) &&
	    instr >= code + L->co_code_adaptive - 2 &&
	    instr - (code + L->co_code_adaptive) < (1u << 24)) {
		int64_t li = ((int64_t)instr - (int64_t)(code + L->co_code_adaptive)) / 2;
		f->lasti = (int)li;
		f->line = py_line_for(c->linetable, c->lt_len, c->firstlineno, f->lasti);
	}
	unsigned cap_slots = (unsigned)MIN((int64_t)c->nlocalsplus + c->stacksize, PY_MAX_SLOTS);
	if (stacktop_valid && stacktop > 0 && (unsigned)stacktop <= cap_slots) {
		f->n_slots = (unsigned)stacktop;
		f->stacktop = stacktop;
	} else {
		f->n_slots = cap_slots;
	}
}

static void read_frames(const struct rmem *m, struct py_state *st, struct py_thread *t,
			uint64_t frame)
{
	const struct py_layout *L = &st->L;
	size_t cap = 0;
	uint64_t seen_first = frame;
	bool after_entry = true;

	for (size_t steps = 0; frame; steps++) {
		uint64_t code, prev;
		uint8_t owner = 0, is_entry = 0;
		int32_t stacktop = -1;
		struct py_frame *f;

		if (!rmem_plausible(frame)) {
			snprintf(t->error, sizeof(t->error), "frame pointer 0x%llx is not valid",
				 (unsigned long long)frame);
			return;
		}
		if (steps >= PY_MAX_FRAMES * 2 || t->n_frames >= PY_MAX_FRAMES) {
			snprintf(t->error, sizeof(t->error),
				 "more than %d Python frames: the rest is not shown",
				 PY_MAX_FRAMES);
			return;
		}
		if (steps && frame == seen_first) {
			snprintf(t->error, sizeof(t->error), "the frame chain loops back");
			return;
		}
		for (size_t i = 0; i < t->n_frames; i++)
			if (t->frames[i].addr == frame) {
				snprintf(t->error, sizeof(t->error), "the frame chain loops back");
				return;
			}
		if (!rmem_read64(m, frame + L->fr_code, &code) ||
		    !rmem_read64(m, frame + L->fr_previous, &prev) ||
		    !rmem_read(m, frame + L->fr_owner, &owner, 1)) {
			snprintf(t->error, sizeof(t->error), "frame 0x%llx is not in the core",
				 (unsigned long long)frame);
			return;
		}
		if (L->fr_is_entry)
			(void)rmem_read(m, frame + L->fr_is_entry, &is_entry, 1);
		(void)rmem_read(m, frame + L->fr_stacktop, &stacktop, 4);
		if (!L->fr_is_entry && owner == FRAME_OWNED_BY_CSTACK) {
			/* 3.12+: the evaluation loop's entry frame: the frame before it was the
			 * first one that native call ran. */
			if (t->n_frames)
				t->frames[t->n_frames - 1].entry = true;
			after_entry = true;
			frame = prev;
			continue;
		}
		if (grow_array((void **)&t->frames, &cap, t->n_frames + 1, sizeof(*t->frames)))
			return;
		f = &t->frames[t->n_frames++];
		frame_fill(m, st, frame, code, stacktop, !after_entry, f);
		f->entry = is_entry != 0;
		after_entry = f->entry;
		frame = prev;
	}
}

bool py_frame_at(const struct rmem *m, struct py_state *st, uint64_t frame, struct py_frame *f)
{
	const struct py_layout *L = &st->L;
	uint64_t code;
	int32_t stacktop = -1;

	if (!rmem_plausible(frame) || !rmem_read64(m, frame + L->fr_code, &code) ||
	    !rmem_read(m, frame + L->fr_stacktop, &stacktop, 4))
		return false;
	frame_fill(m, st, frame, code, stacktop, true, f);
	return f->function != NULL;
}

static void read_thread(const struct rmem *m, struct py_state *st, uint64_t ts)
{
	const struct py_layout *L = &st->L;
	struct py_thread *t;
	uint64_t frame = 0, cf, tid = 0, ident = 0;
	size_t cap = st->n_threads;

	if (grow_array((void **)&st->threads, &cap, st->n_threads + 1, sizeof(*st->threads)))
		return;
	t = &st->threads[st->n_threads++];
	memset(t, 0, sizeof(*t));
	t->tstate = ts;
	(void)rmem_read64(m, ts + L->ts_thread_id, &ident);
	(void)rmem_read64(m, ts + L->ts_native_thread_id, &tid);
	t->ident = ident;
	t->native_id = (int64_t)tid;
	if (L->ts_cframe) {
		if (!rmem_read64(m, ts + L->ts_cframe, &cf)) {
			snprintf(t->error, sizeof(t->error), "its thread state is not in the core");
			return;
		}
		if (cf &&
		    (!rmem_plausible(cf) || !rmem_read64(m, cf + L->cf_current_frame, &frame))) {
			snprintf(t->error, sizeof(t->error),
				 "its frame record 0x%llx is unreadable", (unsigned long long)cf);
			return;
		}
	} else if (!rmem_read64(m, ts + L->ts_current_frame, &frame)) {
		snprintf(t->error, sizeof(t->error), "its thread state is not in the core");
		return;
	}
	read_frames(m, st, t, frame);
}

static void read_gil(const struct rmem *m, struct py_state *st, uint64_t interp)
{
	const struct py_layout *L = &st->L;
	uint64_t gil = 0;
	uint32_t locked;

	if (st->gil.known)
		return;
	if (L->rt_gil)
		gil = st->runtime + L->rt_gil;
	else if (!L->is_gil_ptr || !rmem_readptr(m, interp + L->is_gil_ptr, &gil))
		return;
	if (!rmem_read(m, gil + L->gil_locked, &locked, 4) ||
	    !rmem_read64(m, gil + L->gil_holder, &st->gil.holder))
		return;
	st->gil.known = true;
	st->gil.addr = gil;
	st->gil.locked = locked != 0;
}

int py_read_state(const struct rmem *m, struct py_state *st)
{
	const struct py_layout *L = &st->L;
	uint64_t interp, interps[PY_MAX_INTERPRETERS];
	size_t n_interps = 0;

	if (!rmem_read64(m, st->runtime + L->rt_interpreters_head, &interp)) {
		snprintf(st->error, sizeof(st->error), "_PyRuntime at 0x%llx is not in the core",
			 (unsigned long long)st->runtime);
		return -EINVAL;
	}
	if (!interp) {
		snprintf(st->error, sizeof(st->error),
			 "no interpreter (not started yet, or finalized)");
		return -ENOENT;
	}
	while (interp) {
		uint64_t ts;
		size_t first = st->n_threads;

		if (!rmem_plausible(interp) || n_interps >= PY_MAX_INTERPRETERS) {
			snprintf(st->error, sizeof(st->error), "interpreter list damaged at 0x%llx",
				 (unsigned long long)interp);
			break;
		}
		for (size_t i = 0; i < n_interps; i++)
			if (interps[i] == interp)
				goto out;
		interps[n_interps++] = interp;
		read_gil(m, st, interp);
		if (!rmem_read64(m, interp + L->is_threads_head, &ts)) {
			snprintf(st->error, sizeof(st->error),
				 "interpreter 0x%llx is not in the core",
				 (unsigned long long)interp);
			break;
		}
		while (ts) {
			bool again = false;
			if (!rmem_plausible(ts) || st->n_threads >= PY_MAX_THREADS) {
				snprintf(st->error, sizeof(st->error),
					 "thread list damaged at 0x%llx (after %zu threads)",
					 (unsigned long long)ts, st->n_threads);
				break;
			}
			for (size_t i = first; i < st->n_threads && !again; i++)
				again = st->threads[i].tstate == ts;
			if (again) {
				snprintf(st->error, sizeof(st->error),
					 "the thread list loops back");
				break;
			}
			read_thread(m, st, ts);
			if (!rmem_read64(m, ts + L->ts_next, &ts))
				break;
		}
		if (!rmem_read64(m, interp + L->is_next, &interp))
			break;
	}
out:
	return 0;
}

/* --- thread names -------------------------------------------------------------------------- */

struct names_ctx {
	const struct rmem *m;
	struct py_state *st;
	size_t left;
};

static bool name_one(uint64_t key, uint64_t thread, void *arg)
{
	struct names_ctx *c = arg;
	uint64_t ident, name;

	if (!c->left--)
		return false;
	if (!py_read_long(c->m, &c->st->L, key, &ident))
		return true;
	for (size_t i = 0; i < c->st->n_threads; i++) {
		struct py_thread *t = &c->st->threads[i];
		if (t->ident != ident || t->name)
			continue;
		name = py_instance_attr(c->m, &c->st->L, thread, "_name");
		if (name)
			t->name = py_read_str(c->m, &c->st->L, name);
	}
	return true;
}

void py_read_thread_names(const struct rmem *m, struct py_state *st)
{
	const struct py_layout *L = &st->L;
	uint64_t interp, modules, threading, mdict, active;
	struct names_ctx c = {.m = m, .st = st, .left = PY_MAX_THREADS};

	if (!rmem_readptr(m, st->runtime + L->rt_interpreters_head, &interp) ||
	    !rmem_readptr(m, interp + L->is_modules, &modules))
		return;
	threading = py_dict_get_str(m, L, modules, "threading");
	if (!threading || !rmem_readptr(m, threading + L->md_dict, &mdict))
		return;
	active = py_dict_get_str(m, L, mdict, "_active");
	if (active)
		py_dict_each(m, L, active, name_one, &c);
}

void py_state_done(struct py_state *st)
{
	for (size_t i = 0; i < st->n_threads; i++) {
		free(st->threads[i].frames);
		free(st->threads[i].name);
	}
	free(st->threads);
	st->threads = NULL;
	st->n_threads = 0;
	for (size_t i = 0; i < st->n_tasks; i++) {
		free(st->tasks[i].frames);
		free(st->tasks[i].name);
	}
	free(st->tasks);
	st->tasks = NULL;
	st->n_tasks = 0;
	codes_free(st);
}

/* --- `with` statements read back from the bytecode ----------------------------------------- */

static char *tuple_str(const struct rmem *m, const struct py_layout *L, uint64_t code,
		       uint64_t field, uint32_t idx)
{
	uint64_t tuple, n, item;
	if (!rmem_readptr(m, code + field, &tuple) || !rmem_read64(m, tuple + L->var_size, &n) ||
	    idx >= n || !rmem_read64(m, tuple + L->tuple_item + (uint64_t)idx * 8, &item))
		return NULL;
	return py_read_str(m, L, item);
}

static const struct py_opcodes *opcodes_for(const struct py_layout *L)
{
	int minor = (int)((L->version >> 16) & 0xff);
	for (size_t i = 0; i < py_opcodes_count; i++)
		if (py_opcodes[i].minor == minor)
			return &py_opcodes[i];
	return NULL;
}

/* Between `async with X:`'s BEFORE_ASYNC_WITH and the await of X.__aenter__() (where a
 * coroutine suspended in it stands) come only these. */
static bool in_aenter_await(const struct py_opcodes *ops, int op)
{
	return op == ops->get_awaitable || op == ops->load_const || op == ops->send ||
	       op == ops->yield_value || op == ops->resume || op == ops->instrumented_resume;
}

/* The code units of f's code up to and including lasti (+extra units), or NULL. */
static uint8_t *code_units(const struct rmem *m, const struct py_layout *L,
			   const struct py_frame *f, int extra, size_t *ret_n)
{
	uint8_t *code;
	size_t n;

	if (f->lasti < 0 || f->lasti > 32767 || !rmem_plausible(f->code))
		return NULL;
	n = (size_t)(f->lasti + 1 + extra) * 2;
	code = malloc(n);
	if (!code)
		return NULL;
	n = m->read(m->ctx, f->code + L->co_code_adaptive, code, n) & ~(size_t)1;
	if (n < (size_t)(f->lasti + 1) * 2) {
		free(code);
		return NULL;
	}
	*ret_n = n / 2;
	return code;
}

/* A name the instruction loads (a local, a cell, a global, a name), malloc'ed, or NULL. */
static char *loaded_name(const struct rmem *m, const struct py_layout *L,
			 const struct py_opcodes *ops, uint64_t code, int op, uint32_t arg)
{
	if (op == ops->load_fast || op == ops->load_fast_check || op == ops->load_deref)
		return tuple_str(m, L, code, L->co_localsplusnames, arg);
	if (op == ops->load_fast_load_fast)
		return tuple_str(m, L, code, L->co_localsplusnames, arg & 15);
	if (op == ops->load_global)
		return tuple_str(m, L, code, L->co_names, arg >> 1);
	if (op == ops->load_name)
		return tuple_str(m, L, code, L->co_names, arg);
	return NULL;
}

void py_frame_with_text(const struct rmem *m, const struct py_state *st, struct py_frame *f)
{
	const struct py_layout *L = &st->L;
	const struct py_opcodes *ops = opcodes_for(L);
	int minor = (int)((L->version >> 16) & 0xff);
	char expr[80] = "", aexpr[80] = "";
	bool aenter = false;
	uint8_t *code;
	uint32_t ext = 0;
	size_t n;

	if (!ops || !(code = code_units(m, L, f, 0, &n)))
		return;
	for (int i = 0; i <= f->lasti;) {
		int op = ops->deopt[code[2 * i]];
		uint32_t arg = code[2 * i + 1] | ext;
		char *name = NULL;

		if (i == f->lasti) {
			if (op == ops->before_with && expr[0])
				snprintf(f->with_text, sizeof(f->with_text), "with %s:", expr);
			else if (aenter && in_aenter_await(ops, op))
				snprintf(f->with_text, sizeof(f->with_text),
					 "async with %s:", aexpr);
			break;
		}
		if (op == ops->extended_arg) {
			ext = arg << 8;
			i++;
			continue;
		}
		ext = 0;
		if (op == ops->before_async_with && expr[0]) {
			snprintf(aexpr, sizeof(aexpr), "%s", expr);
			aenter = true;
		} else if (aenter && !in_aenter_await(ops, op)) {
			aenter = false;
		}
		name = loaded_name(m, L, ops, f->code, op, arg);
		if (name) {
			snprintf(expr, sizeof(expr), "%s", name);
		} else if (op == ops->load_attr && expr[0] && (minor == 11 || !(arg & 1))) {
			char *attr =
			    tuple_str(m, L, f->code, L->co_names, minor == 11 ? arg : arg >> 1);
			size_t l = strlen(expr);
			if (attr && l + 1 + strlen(attr) < sizeof(expr))
				snprintf(expr + l, sizeof(expr) - l, ".%s", attr);
			else
				expr[0] = 0;
			free(attr);
		} else {
			expr[0] = 0;
		}
		free(name);
		i += 1 + ops->caches[op];
	}
	free(code);
}

bool py_frame_awaits(const struct rmem *m, const struct py_state *st, const struct py_frame *f)
{
	const struct py_opcodes *ops = opcodes_for(&st->L);
	uint8_t *code;
	size_t n;
	bool yes;

	if (!ops || !(code = code_units(m, &st->L, f, 1, &n)))
		return false;
	if (n < (size_t)f->lasti + 2) {
		free(code);
		return false;
	}
	/* the unit after the yield: RESUME with an oparg of 2 or more (after a yield from or an
	 * await) */
	int op = ops->deopt[code[2 * (f->lasti + 1)]];
	yes = (op == ops->resume || op == ops->instrumented_resume) &&
	      code[2 * (f->lasti + 1) + 1] >= 2;
	free(code);
	return yes;
}

/* What an expression of the bytecode stands for: a local (or cell) and a chain of attributes. */
struct expr {
	int local; /* -1: not a local */
	char attrs[3][48];
	int n_attrs;
	bool valid;
};

static uint64_t expr_value(const struct rmem *m, const struct py_layout *L,
			   const struct py_frame *f, const struct expr *e)
{
	uint64_t v;
	if (!e->valid || e->local < 0 || (unsigned)e->local >= f->n_slots ||
	    !rmem_read64(m, f->localsplus + (uint64_t)e->local * 8, &v) || !rmem_plausible(v))
		return 0;
	for (int i = 0; i < e->n_attrs && v; i++)
		v = py_instance_attr(m, L, v, e->attrs[i]);
	return v;
}

int py_frame_acquired(const struct rmem *m, struct py_state *st, const struct py_frame *f,
		      uint64_t lock)
{
	const struct py_layout *L = &st->L;
	const struct py_opcodes *ops = opcodes_for(L);
	int minor = (int)((L->version >> 16) & 0xff);
	struct expr cur = {.local = -1}, call = {.local = -1};
	int pending = 0; /* 1 acquire, 2 release: a method loaded, its call to come */
	int acquired_at = -1;
	uint8_t *code;
	uint32_t ext = 0;
	size_t n;

	if (!ops || !(code = code_units(m, L, f, 0, &n)))
		return 0;
	for (int i = 0; i < f->lasti;) {
		int op = ops->deopt[code[2 * i]];
		uint32_t arg = code[2 * i + 1] | ext;

		if (op == ops->extended_arg) {
			ext = arg << 8;
			i++;
			continue;
		}
		ext = 0;
		if (op == ops->load_fast || op == ops->load_fast_check || op == ops->load_deref) {
			cur = (struct expr){.local = (int)arg, .valid = true};
		} else if ((minor == 11 && op == ops->load_method) ||
			   (minor > 11 && op == ops->load_attr && (arg & 1))) {
			/* a method about to be called: lock.acquire / lock.release */
			char *name =
			    tuple_str(m, L, f->code, L->co_names, minor == 11 ? arg : arg >> 1);
			pending = 0;
			if (name && cur.valid && !strcmp(name, "acquire"))
				pending = 1;
			else if (name && cur.valid && !strcmp(name, "release"))
				pending = 2;
			call = cur;
			cur.valid = false;
			free(name);
		} else if (op == ops->load_attr && cur.valid && cur.n_attrs < 3) {
			char *name =
			    tuple_str(m, L, f->code, L->co_names, minor == 11 ? arg : arg >> 1);
			if (name && strlen(name) < sizeof(cur.attrs[0]))
				snprintf(cur.attrs[cur.n_attrs++], sizeof(cur.attrs[0]), "%s",
					 name);
			else
				cur.valid = false;
			free(name);
		} else if (op == ops->call && pending) {
			if (expr_value(m, L, f, &call) == lock)
				acquired_at = pending == 1 ? i : -1;
			pending = 0;
			cur.valid = false;
		} else if (op != ops->precall && op != ops->load_const && op != ops->cache) {
			/* anything else ends the expression, and a method's call if one was to
			 * come (acquire(timeout=...) passes: its constants load) */
			cur.valid = false;
			pending = 0;
		}
		i += 1 + ops->caches[op];
	}
	free(code);
	if (acquired_at < 0)
		return 0;
	struct py_code *c = code_get(m, st, f->code);
	int line =
	    c && c->ok ? py_line_for(c->linetable, c->lt_len, c->firstlineno, acquired_at) : 0;
	return line > 0 ? line : -1;
}
