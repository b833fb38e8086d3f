/* SPDX-License-Identifier: MIT */
#include <stdio.h>
#include <string.h>

#include "analyze/locks.h"
#include "base/util.h"
#include "snapshot/data_calls.h"

#define FUTEX_WAITERS	 0x80000000u
#define FUTEX_OWNER_DIED 0x40000000u
#define FUTEX_TID_MASK	 0x3fffffffu

#define KIND_TYPE_MASK	3
#define KIND_ROBUST	16
#define KIND_PI		32
#define KIND_PP		64
#define KIND_PSHARED	128
#define KIND_NO_ELISION 512
#define KIND_VALID                                                                                 \
	(KIND_TYPE_MASK | KIND_ROBUST | KIND_PI | KIND_PP | KIND_PSHARED | KIND_NO_ELISION)

/* Whether one of the innermost depth frames names one of names. */
static bool stack_has_within(const struct lock_input *in, const char *const *names, size_t depth)
{
	for (size_t i = 0; i < in->n_functions && i < depth; i++) {
		const char *f = in->functions[i];
		if (!f)
			continue;
		for (size_t k = 0; names[k]; k++)
			if (strstr(f, names[k]))
				return true;
	}
	return false;
}

static bool stack_has(const struct lock_input *in, const char *const *names)
{
	return stack_has_within(in, names, 12);
}

static bool is_tid(const struct lock_input *in, pid_t tid)
{
	for (size_t i = 0; i < in->n_tids; i++)
		if (in->tids[i] == tid)
			return true;
	return false;
}

static const char *const mutex_fns[] = {"pthread_mutex_lock",
					"pthread_mutex_timedlock",
					"pthread_mutex_clocklock",
					"__lll_lock_wait",
					"lll_mutex_lock",
					"__pthread_mutex_lock",
					NULL};
static const char *const cond_fns[] = {"pthread_cond_wait", "pthread_cond_timedwait",
				       "pthread_cond_clockwait", "__pthread_cond_wait", NULL};
static const char *const join_fns[] = {"pthread_join", "pthread_clockjoin", "pthread_timedjoin",
				       "__pthread_clockjoin_ex", NULL};
static const char *const rwlock_fns[] = {"pthread_rwlock", NULL};
static const char *const sem_fns[] = {"sem_wait", "sem_timedwait", "sem_clockwait",
				      "__new_sem_wait", NULL};

static void decode_mutex(const struct lock_input *in, struct lock_info *o)
{
	uint32_t lock = in->words[0], count = in->words[1], owner = in->words[2];
	int kind = (int)in->words[4];
	bool robust_pi = kind >= 0 && (kind & (KIND_ROBUST | KIND_PI));

	o->kind = WAIT_MUTEX;
	o->kind_bits = kind;
	if (!in->have_words) {
		o->verdict = MUTEX_UNKNOWN;
		snprintf(o->text, sizeof(o->text), "mutex 0x%llx (not in the core)",
			 (unsigned long long)o->addr);
		return;
	}
	o->owner = (pid_t)(robust_pi ? (lock & FUTEX_TID_MASK) : owner);
	if (robust_pi)
		o->verdict = (lock & FUTEX_TID_MASK) == 0 ? MUTEX_FREE
			     : (lock & FUTEX_WAITERS)	  ? MUTEX_LOCKED_WAITERS
							  : MUTEX_LOCKED;
	else
		o->verdict = lock == 0	 ? MUTEX_FREE
			     : lock == 2 ? MUTEX_LOCKED_WAITERS
					 : MUTEX_LOCKED;
	/* The invariants a mutex with a waiter must keep (the seed's negative LockCount). */
	if (kind == -1)
		snprintf(o->why, sizeof(o->why),
			 "__kind is -1: the mutex was destroyed while a "
			 "thread waits on it");
	else if (kind & ~KIND_VALID)
		snprintf(o->why, sizeof(o->why), "__kind 0x%x has bits no mutex type uses",
			 (unsigned)kind);
	else if (!robust_pi && lock > 2)
		snprintf(o->why, sizeof(o->why), "__lock is %u; a normal mutex holds 0, 1 or 2",
			 lock);
	else if (!robust_pi && lock == 0 && owner != 0)
		snprintf(o->why, sizeof(o->why), "__lock says free but __owner says TID %u", owner);
	else if ((kind & KIND_TYPE_MASK) != 1 && count > 0)
		snprintf(o->why, sizeof(o->why), "__count is %u on a mutex that is not recursive",
			 count);
	else if (!robust_pi && lock != 0 && owner == 0 && lock != 1)
		snprintf(o->why, sizeof(o->why),
			 "__lock is %u (locked, waiters) but no __owner "
			 "is recorded",
			 lock);
	if (o->why[0]) {
		o->verdict = MUTEX_CORRUPT;
		snprintf(o->text, sizeof(o->text), "mutex 0x%llx, corrupt: %s",
			 (unsigned long long)o->addr, o->why);
		return;
	}
	if (robust_pi && (lock & FUTEX_OWNER_DIED)) {
		o->verdict = MUTEX_ABANDONED;
		snprintf(o->why, sizeof(o->why), "its owner died holding it (FUTEX_OWNER_DIED)");
	} else if (o->owner > 0 && !is_tid(in, o->owner) && !(kind & KIND_PSHARED)) {
		o->verdict = MUTEX_ABANDONED;
		snprintf(o->why, sizeof(o->why),
			 "owner TID %d is not a thread of this process: it exited holding the lock",
			 o->owner);
	}
	if (o->verdict == MUTEX_ABANDONED)
		snprintf(o->text, sizeof(o->text), "mutex 0x%llx, abandoned: %s",
			 (unsigned long long)o->addr, o->why);
	else if (o->owner > 0)
		snprintf(o->text, sizeof(o->text), "mutex 0x%llx locked by TID %d%s",
			 (unsigned long long)o->addr, o->owner,
			 o->verdict == MUTEX_LOCKED_WAITERS ? ", with waiters" : "");
	else
		snprintf(o->text, sizeof(o->text), "mutex 0x%llx (%s, no owner recorded)",
			 (unsigned long long)o->addr, o->verdict == MUTEX_FREE ? "free" : "locked");
}

static void decode_rwlock(const struct lock_input *in, struct lock_info *o)
{
	/* Waiters sleep on __readers (+0), __wrphase_futex (+8) or __writers_futex (+12); the
	 * writer's TID is __cur_writer (+24). Try each base the futex word could belong to. */
	static const int rel[] = {0, 8, 12};
	o->kind = WAIT_RWLOCK;
	for (size_t i = 0; i < ARRAY_SIZE(rel); i++) {
		int r = rel[i];
		uint32_t writer, readers;
		/* words[] start at the futex word; before[] are the 16 bytes below it */
		if (r == 0 && in->have_words) {
			writer = in->words[6];
			readers = in->words[0];
		} else if (r && in->have_before && in->have_words) {
			writer = in->words[(24 - r) / 4];
			readers = in->before[4 - r / 4];
		} else {
			continue;
		}
		if (writer && is_tid(in, (pid_t)writer)) {
			o->owner = (pid_t)writer;
			snprintf(o->text, sizeof(o->text), "rwlock 0x%llx write-locked by TID %d",
				 (unsigned long long)(o->addr - (uint64_t)r), o->owner);
			return;
		}
		if ((readers >> 3) > 0 && r == 0) {
			snprintf(o->text, sizeof(o->text),
				 "rwlock 0x%llx held by %u reader%s, identities unknown (readers "
				 "are not recorded)",
				 (unsigned long long)o->addr, readers >> 3,
				 (readers >> 3) == 1 ? "" : "s");
			return;
		}
	}
	snprintf(o->text, sizeof(o->text), "rwlock near 0x%llx (holder not recorded)",
		 (unsigned long long)o->addr);
}

/* A frame's function name without glibc's internal prefixes ("__", "__GI___") and its version
 * ("@@GLIBC_2.3.2"), compared with name. */
static bool frame_is(const char *f, const char *name)
{
	size_t n = strlen(name);

	if (!f)
		return false;
	f += strspn(f, "_");
	if (!strncmp(f, "GI_", 3))
		f += 3 + strspn(f + 3, "_");
	return !strncmp(f, name, n) && (f[n] == 0 || f[n] == '@' || f[n] == '.');
}

const char *lock_resolve_syscall(const struct lock_input *in)
{
	static const char *const futex_fns[] = {
	    "futex",	     "pthread_",       "sem_wait", "sem_timedwait",
	    "sem_clockwait", "__new_sem_wait", "lll_",	   NULL};
	const char *f0 = in->n_functions ? in->functions[0] : NULL;

	if (!in->syscall || strcmp(in->syscall, "restart_syscall"))
		return in->syscall;
	/* Only three calls resume this way on Linux: poll, the nanosleeps and a futex wait with
	 * a timeout. The innermost frame is the libc wrapper; for a futex, a function around it. */
	if (frame_is(f0, "poll"))
		return "poll";
	if (frame_is(f0, "nanosleep") || frame_is(f0, "clock_nanosleep"))
		return "clock_nanosleep";
	if (stack_has_within(in, futex_fns, 6))
		return "futex";
	return in->syscall;
}

void lock_decode(const struct lock_input *in, struct lock_info *o)
{
	const char *sc = in->syscall;
	const uint64_t *a = in->args;

	o->kind = WAIT_NONE;
	o->fd = -1;
	o->addr = 0;
	o->owner = 0;
	o->verdict = MUTEX_UNKNOWN;
	o->why[0] = o->text[0] = 0;
	o->have_words = in->have_words;
	memcpy(o->words, in->words, sizeof(o->words));
	if (!sc)
		return;
	if (!strcmp(sc, "futex")) {
		unsigned cmd = (unsigned)a[1] & 0x7f;
		uint32_t expected = (uint32_t)a[2];
		o->addr = a[0];
		if (cmd == 6 || cmd == 13) { /* FUTEX_LOCK_PI, LOCK_PI2: a PI mutex */
			decode_mutex(in, o);
		} else if (stack_has(in, mutex_fns)) {
			decode_mutex(in, o);
		} else if (stack_has(in, join_fns) || (is_tid(in, (pid_t)expected) &&
						       expected != 0 && !stack_has(in, cond_fns))) {
			o->kind = WAIT_JOIN;
			o->owner = (pid_t)expected;
			snprintf(o->text, sizeof(o->text), "joins thread %d", o->owner);
		} else if (stack_has(in, cond_fns)) {
			o->kind = WAIT_CONDVAR;
			snprintf(o->text, sizeof(o->text),
				 "condition variable near 0x%llx (no owner by design)",
				 (unsigned long long)o->addr);
		} else if (stack_has(in, rwlock_fns)) {
			decode_rwlock(in, o);
		} else if (stack_has(in, sem_fns)) {
			o->kind = WAIT_SEMAPHORE;
			snprintf(o->text, sizeof(o->text), "semaphore 0x%llx (no owner by design)",
				 (unsigned long long)o->addr);
		} else if (expected == 2 && in->have_words &&
			   (in->words[0] == 2 || in->words[0] == 1) && in->words[2] &&
			   is_tid(in, (pid_t)in->words[2])) {
			/* No symbols: a futex word of 2 with an owner TID 8 bytes on is a mutex. */
			decode_mutex(in, o);
		} else {
			o->kind = WAIT_FUTEX;
			snprintf(o->text, sizeof(o->text), "futex 0x%llx (expected %u)",
				 (unsigned long long)o->addr, expected);
		}
		return;
	}
	if (!strcmp(sc, "wait4") || !strcmp(sc, "waitid")) {
		long who =
		    !strcmp(sc, "wait4") ? (long)(int)a[0] : (a[0] == 1 ? (long)(int)a[1] : -1);
		o->kind = WAIT_CHILD;
		o->child = who > 0 ? (pid_t)who : -1;
		if (who > 0)
			snprintf(o->text, sizeof(o->text), "waits for child %ld to exit", who);
		else
			snprintf(o->text, sizeof(o->text), "waits for any child to exit");
		return;
	}
	static const char *const polls[] = {"poll",	  "ppoll",	 "select",	 "pselect6",
					    "epoll_wait", "epoll_pwait", "epoll_pwait2", NULL};
	static const char *const sleeps[] = {"nanosleep",     "clock_nanosleep", "pause",
					     "rt_sigsuspend", "rt_sigtimedwait", NULL};
	enum data_call dc = data_call_of(sc);
	if (dc != DATA_NONE) {
		o->kind = dc == DATA_READ ? WAIT_READ : WAIT_WRITE;
		o->fd = (int)a[0];
		snprintf(o->text, sizeof(o->text), "%s on fd %d", sc, o->fd);
		return;
	}
	if (!strcmp(sc, "flock") && !(a[1] & 4)) { /* not LOCK_NB */
		o->kind = WAIT_FILE_LOCK;
		o->fd = (int)a[0];
		snprintf(o->text, sizeof(o->text), "flock(%s) on fd %d",
			 (a[1] & 3) == 2 ? "LOCK_EX" : "LOCK_SH", o->fd);
		return;
	}
	if (!strcmp(sc, "fcntl") && (a[1] == 7 || a[1] == 38)) { /* F_SETLKW, F_OFD_SETLKW */
		o->kind = WAIT_FILE_LOCK;
		o->fd = (int)a[0];
		snprintf(o->text, sizeof(o->text), "fcntl(%s) lock wait on fd %d",
			 a[1] == 7 ? "F_SETLKW" : "F_OFD_SETLKW", o->fd);
		return;
	}
	if (!strcmp(sc, "accept") || !strcmp(sc, "accept4")) {
		o->kind = WAIT_ACCEPT;
		o->fd = (int)a[0];
		snprintf(o->text, sizeof(o->text), "accepts connections on fd %d", o->fd);
		return;
	}
	for (size_t i = 0; polls[i]; i++)
		if (!strcmp(sc, polls[i])) {
			o->kind = WAIT_POLL;
			o->fd = strncmp(sc, "epoll", 5) ? -1 : (int)a[0];
			snprintf(o->text, sizeof(o->text), "%s (waits for events)", sc);
			return;
		}
	for (size_t i = 0; sleeps[i]; i++)
		if (!strcmp(sc, sleeps[i])) {
			o->kind = WAIT_SLEEP;
			snprintf(o->text, sizeof(o->text), "sleeps (%s)", sc);
			return;
		}
	o->kind = WAIT_OTHER;
	if (!strcmp(sc, "restart_syscall"))
		snprintf(o->text, sizeof(o->text),
			 "in a call resumed after a stop (restart_syscall), which is not known");
	else
		snprintf(o->text, sizeof(o->text), "in %s", sc);
}
