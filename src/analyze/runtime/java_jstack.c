/* SPDX-License-Identifier: MIT */
/*
 * The parser of `jhsdb jstack` output (JDK 9 on; docs/java.md shows a sample). Pure: bytes in,
 * a struct jstack out. The text is untrusted (thread names come from the target's memory), so:
 * lines longer than JSTACK_MAX_LINE are skipped, counts stop at the named limits, strings are
 * cut at JSTACK_MAX_NAME and keep only printable UTF-8 (anything else becomes '?'), and a line
 * the parser does not know is counted and ignored. Nothing here trusts a number it did not
 * parse whole.
 *
 * What it reads, in the order jhsdb prints it:
 *   JVM version is 17.0.21.1+2-1-deb12u1-Debian
 *   Deadlock Detection:
 *   No deadlocks found.                 | Found one Java-level deadlock:
 *                                         =============================
 *                                         "osm-right":
 *                                           waiting to lock Monitor@0x.. (Object@0x.., a
 * java/lang/Object), which is held by "osm-left"
 *                                         ...
 *                                         Found a total of 1 deadlock.
 *   "NAME" #12 daemon prio=5 tid=0x.. nid=0x3760 waiting for monitor entry [0x..]
 *      java.lang.Thread.State: BLOCKED (on object monitor)
 *    - Deadlock.hold(java.lang.Object, java.lang.Object) @bci=25, line=34 (Interpreted frame)
 *   	- locked <0x00000000ffd1ae98> (a java.lang.Object)
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analyze/runtime/java.h"
#include "base/util.h"

/* Copy at most n bytes of s into a new string of at most JSTACK_MAX_NAME bytes, printable
 * UTF-8 only. */
static char *clean_strndup(const char *s, size_t n)
{
	size_t cap = MIN(n, (size_t)JSTACK_MAX_NAME), k = 0;
	char *out = malloc(cap + 1);

	if (!out)
		return NULL;
	for (size_t i = 0; i < n && k < cap;) {
		unsigned char c = (unsigned char)s[i];
		size_t len = c < 0x80		  ? 1
			     : (c & 0xe0) == 0xc0 ? 2
			     : (c & 0xf0) == 0xe0 ? 3
			     : (c & 0xf8) == 0xf0 ? 4
						  : 0;
		bool ok = len > 0 && i + len <= n && k + len <= cap;
		for (size_t j = 1; ok && j < len; j++)
			ok = ((unsigned char)s[i + j] & 0xc0) == 0x80;
		if (ok && len == 1 && (c < 0x20 || c == 0x7f))
			ok = false;
		if (ok && len == 2 && c < 0xc2)
			ok = false; /* overlong */
		if (!ok) {
			out[k++] = '?';
			i++;
			continue;
		}
		memcpy(out + k, s + i, len);
		k += len;
		i += len;
	}
	out[k] = 0;
	return out;
}

static void copy_field(char *dst, size_t cap, const char *s, size_t n)
{
	char *c = clean_strndup(s, n);
	snprintf(dst, cap, "%s", c ? c : "");
	free(c);
}

static bool starts(const char *line, size_t len, const char *prefix)
{
	size_t n = strlen(prefix);
	return len >= n && !memcmp(line, prefix, n);
}

/* Find needle in line[0, len), or NULL. */
static const char *find(const char *line, size_t len, const char *needle)
{
	size_t n = strlen(needle);
	for (size_t i = 0; n <= len && i <= len - n; i++)
		if (!memcmp(line + i, needle, n))
			return line + i;
	return NULL;
}

static const char *find_last(const char *line, size_t len, const char *needle)
{
	size_t n = strlen(needle);
	for (size_t i = len >= n ? len - n + 1 : 0; i-- > 0;)
		if (!memcmp(line + i, needle, n))
			return line + i;
	return NULL;
}

/* An unsigned number at p (hex with 0x, else decimal), up to end; false unless it has digits
 * and fits in 64 bits. *ret_end is set past it. */
static bool parse_num(const char *p, const char *end, uint64_t *ret, const char **ret_end)
{
	unsigned base = 10;
	uint64_t v = 0;
	size_t digits = 0;

	if (end - p > 2 && p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
		base = 16;
		p += 2;
	}
	for (; p < end; p++, digits++) {
		unsigned d;
		if (*p >= '0' && *p <= '9')
			d = (unsigned)(*p - '0');
		else if (base == 16 && *p >= 'a' && *p <= 'f')
			d = (unsigned)(*p - 'a' + 10);
		else if (base == 16 && *p >= 'A' && *p <= 'F')
			d = (unsigned)(*p - 'A' + 10);
		else
			break;
		if (v > (UINT64_MAX - d) / base)
			return false;
		v = v * base + d;
	}
	if (!digits)
		return false;
	*ret = v;
	if (ret_end)
		*ret_end = p;
	return true;
}

/* The number after key ("nid=", "line=") in line, or false. */
static bool field_num(const char *line, size_t len, const char *key, uint64_t *ret)
{
	const char *p = find(line, len, key);
	return p && parse_num(p + strlen(key), line + len, ret, NULL);
}

static struct jthread *add_thread(struct jstack *st, size_t *cap)
{
	if (st->n_threads >= JSTACK_MAX_THREADS) {
		st->truncated = true;
		return NULL;
	}
	if (grow_array((void **)&st->threads, cap, st->n_threads + 1, sizeof(*st->threads)))
		return NULL;
	memset(&st->threads[st->n_threads], 0, sizeof(st->threads[0]));
	return &st->threads[st->n_threads++];
}

/* "NAME" #12 daemon prio=5 tid=0x... nid=0x3760 state [0x...] */
static int thread_header(struct jstack *st, size_t *cap, const char *line, size_t len)
{
	const char *nid = find_last(line, len, " nid=");
	const char *q = nid ? find_last(line, (size_t)(nid - line), "\"") : NULL;
	struct jthread *t;
	uint64_t v;

	if (!nid || !q || q == line)
		return 1;
	t = add_thread(st, cap);
	if (!t)
		return st->truncated ? 1 : -ENOMEM;
	t->name = clean_strndup(line + 1, (size_t)(q - line - 1));
	if (!t->name)
		return -ENOMEM;
	if (parse_num(nid + 5, line + len, &v, NULL) && v > 0 && v <= INT32_MAX)
		t->nid = (pid_t)v;
	t->daemon = find(q, len - (size_t)(q - line), " daemon ") != NULL;
	return 0;
}

/*  - Deadlock.hold(java.lang.Object) @bci=25, line=34 (Interpreted frame) */
static int frame_line(struct jthread *t, size_t *cap, const char *line, size_t len,
		      struct jstack *st)
{
	const char *p = line + 3, *end = line + len, *bci = find(p, (size_t)(end - p), " @bci=");
	const char *paren = find_last(p, (size_t)(end - p), " (");
	const char *mend = bci ? bci : paren ? paren : end;
	struct jframe *f;
	uint64_t v;

	if (mend == p)
		return 1;
	if (t->n_frames >= JSTACK_MAX_FRAMES) {
		st->truncated = true;
		return 1;
	}
	if (grow_array((void **)&t->frames, cap, t->n_frames + 1, sizeof(*t->frames)))
		return -ENOMEM;
	f = &t->frames[t->n_frames];
	memset(f, 0, sizeof(*f));
	f->method = clean_strndup(p, (size_t)(mend - p));
	if (!f->method)
		return -ENOMEM;
	f->bci = bci && parse_num(bci + 6, end, &v, NULL) && v <= INT32_MAX ? (int)v : -1;
	if (field_num(mend, (size_t)(end - mend), "line=", &v) && v <= INT32_MAX)
		f->line = (int)v;
	if (paren && paren >= mend) {
		const char *tp = paren + 2, *te = tp;
		while (te < end && *te != ' ' && *te != ')' && *te != ';')
			te++;
		copy_field(f->type, sizeof(f->type), tp, (size_t)(te - tp));
	}
	t->n_frames++;
	return 0;
}

/*	- locked <0x00000000ffd1ae98> (a java.lang.Object) */
static void lock_line(struct jthread *t, const char *line, size_t len, struct jstack *st)
{
	const char *lt = find(line, len, "<");
	uint64_t v;

	if (!find(line, len, "- locked <") || !lt)
		return;
	if (!parse_num(lt + 1, line + len, &v, NULL))
		return;
	if (t->n_locked >= JSTACK_MAX_LOCKED) {
		st->truncated = true;
		return;
	}
	t->locked[t->n_locked++] = v;
}

/* Inside a deadlock: "NAME": opens a step, then the wait's lines, then which is held by "X". */
struct dl_parse {
	struct jdeadlock *cur;
	size_t cap_steps;
	char what[400];
	size_t what_len;
};

static int deadlock_name(struct jstack *st, struct dl_parse *d, const char *line, size_t len)
{
	struct jstep *s;

	if (!d->cur)
		return 1;
	if (d->cur->n >= JSTACK_MAX_DEADLOCK_LEN) {
		st->truncated = true;
		return 1;
	}
	if (grow_array((void **)&d->cur->steps, &d->cap_steps, d->cur->n + 1, sizeof(*s)))
		return -ENOMEM;
	s = &d->cur->steps[d->cur->n++];
	memset(s, 0, sizeof(*s));
	s->waiter = clean_strndup(line + 1, len - 3); /* between the quotes of "NAME": */
	d->what_len = 0;
	d->what[0] = 0;
	return s->waiter ? 0 : -ENOMEM;
}

/* The wait's text is whole: pick Monitor@, Object@ and the class out of it. */
static void deadlock_what(struct jstep *s, const char *w, size_t n)
{
	const char *m = find(w, n, "Monitor@"), *o = find(w, n, "Object@"), *a = find(w, n, ", a ");
	uint64_t v;

	if (m && parse_num(m + 8, w + n, &v, NULL))
		s->monitor = v;
	if (o && parse_num(o + 7, w + n, &v, NULL))
		s->object = v;
	if (a) {
		const char *c = a + 4, *e = c;
		while (e < w + n && *e != ')' && *e != ',' && *e != ' ')
			e++;
		copy_field(s->cls, sizeof(s->cls), c, (size_t)(e - c));
		for (char *x = s->cls; *x; x++)
			if (*x == '/')
				*x = '.';
	}
	if (!s->object)
		copy_field(s->what, sizeof(s->what), w, n);
}

static int deadlock_holder(struct dl_parse *d, const char *line, size_t len)
{
	const char *q1 = find(line, len, "\""), *q2 = find_last(line, len, "\"");
	struct jstep *s;

	if (!d->cur || !d->cur->n || !q1 || q2 <= q1)
		return 1;
	s = &d->cur->steps[d->cur->n - 1];
	if (s->holder)
		return 1;
	s->holder = clean_strndup(q1 + 1, (size_t)(q2 - q1 - 1));
	if (!s->holder)
		return -ENOMEM;
	deadlock_what(s, d->what, d->what_len);
	return 0;
}

int jstack_parse(const char *buf, size_t len, struct jstack *st)
{
	size_t cap_threads = 0, cap_frames = 0, cap_dl = 0;
	struct jthread *t = NULL;
	struct dl_parse d = {0};
	bool in_deadlock = false;
	int r = 0;

	st->announced_deadlocks = -1;
	for (size_t pos = 0; pos < len && r >= 0;) {
		const char *line = buf + pos, *nl = memchr(line, '\n', len - pos);
		size_t n = nl ? (size_t)(nl - line) : len - pos;
		uint64_t v;

		pos += n + (nl ? 1 : 0);
		if (n && line[n - 1] == '\r')
			n--;
		if (n > JSTACK_MAX_LINE || memchr(line, 0, n)) {
			st->ignored_lines++;
			continue;
		}
		r = 1; /* ignored unless a case below takes it */
		if (starts(line, n, "JVM version is ")) {
			copy_field(st->vm_version, sizeof(st->vm_version), line + 15, n - 15);
			r = 0;
		} else if (starts(line, n, "Debugger attached successfully")) {
			st->attached = true;
			r = 0;
		} else if (starts(line, n, "Deadlock Detection:")) {
			st->deadlock_section = true;
			r = 0;
		} else if (starts(line, n, "No deadlocks found")) {
			st->no_deadlocks = true;
			r = 0;
		} else if (starts(line, n, "Found one Java-level deadlock")) {
			t = NULL;
			in_deadlock = false;
			if (st->n_deadlocks >= JSTACK_MAX_DEADLOCKS) {
				st->truncated = true;
			} else if (grow_array((void **)&st->deadlocks, &cap_dl, st->n_deadlocks + 1,
					      sizeof(*st->deadlocks))) {
				r = -ENOMEM;
				break;
			} else {
				d.cur = &st->deadlocks[st->n_deadlocks++];
				memset(d.cur, 0, sizeof(*d.cur));
				d.cap_steps = 0;
				in_deadlock = true;
			}
			r = 0;
		} else if (starts(line, n, "Found a total of ")) {
			if (parse_num(line + 17, line + n, &v, NULL) && v <= INT32_MAX)
				st->announced_deadlocks = (int)v;
			in_deadlock = false;
			d.cur = NULL;
			r = 0;
		} else if (in_deadlock && starts(line, n, "=")) {
			r = 0;
		} else if (in_deadlock && n >= 3 && line[0] == '"' && line[n - 2] == '"' &&
			   line[n - 1] == ':') {
			r = deadlock_name(st, &d, line, n);
		} else if (in_deadlock && starts(line, n, "  which is held by ")) {
			r = deadlock_holder(&d, line, n);
		} else if (in_deadlock && starts(line, n, "  ") && d.cur && d.cur->n) {
			/* the wait, possibly over several lines, its trailing comma dropped */
			size_t lead = 0, k = n;
			while (lead < n && line[lead] == ' ')
				lead++;
			while (k > lead && (line[k - 1] == ',' || line[k - 1] == ' '))
				k--;
			if (k > lead && d.what_len + (k - lead) + 1 < sizeof(d.what)) {
				if (d.what_len)
					d.what[d.what_len++] = ' ';
				memcpy(d.what + d.what_len, line + lead, k - lead);
				d.what_len += k - lead;
				d.what[d.what_len] = 0;
			}
			r = 0;
		} else if (n && line[0] == '"') {
			in_deadlock = false;
			d.cur = NULL;
			r = thread_header(st, &cap_threads, line, n);
			t = r == 0 ? &st->threads[st->n_threads - 1] : NULL;
			cap_frames = 0;
		} else if (t && starts(line, n, "   java.lang.Thread.State: ")) {
			copy_field(t->state, sizeof(t->state), line + 27, n - 27);
			r = 0;
		} else if (t && starts(line, n, " - ")) {
			r = frame_line(t, &cap_frames, line, n, st);
		} else if (t && (starts(line, n, "\t- ") || starts(line, n, "        - "))) {
			lock_line(t, line, n, st);
			r = 0;
		} else if (t && starts(line, n, "   JavaThread state: ")) {
			r = 0;
		} else if (!n) {
			r = 0;
		}
		if (r > 0) {
			st->ignored_lines++;
			r = 0;
		}
	}
	return r < 0 ? r : 0;
}

void jstack_done(struct jstack *st)
{
	for (size_t i = 0; i < st->n_threads; i++) {
		for (size_t j = 0; j < st->threads[i].n_frames; j++)
			free(st->threads[i].frames[j].method);
		free(st->threads[i].frames);
		free(st->threads[i].name);
	}
	free(st->threads);
	for (size_t i = 0; i < st->n_deadlocks; i++) {
		for (size_t j = 0; j < st->deadlocks[i].n; j++) {
			free(st->deadlocks[i].steps[j].waiter);
			free(st->deadlocks[i].steps[j].holder);
		}
		free(st->deadlocks[i].steps);
	}
	free(st->deadlocks);
	memset(st, 0, sizeof(*st));
}

size_t jstack_find_named(const struct jstack *st, const char *name, const struct jthread **out,
			 size_t max)
{
	size_t k = 0;
	for (size_t i = 0; name && i < st->n_threads; i++)
		if (st->threads[i].name && !strcmp(st->threads[i].name, name)) {
			if (k < max)
				out[k] = &st->threads[i];
			k++;
		}
	return k;
}

bool jthread_locked(const struct jthread *t, uint64_t object)
{
	for (size_t i = 0; i < t->n_locked; i++)
		if (t->locked[i] == object)
			return true;
	return false;
}
