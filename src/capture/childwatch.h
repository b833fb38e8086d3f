/* SPDX-License-Identifier: MIT */
/*
 * The children of members while the shared objects' rounds run (a postmaster forking a backend
 * per connection). A child forked after tracking began maps the shared objects untracked, and at
 * its exit its page tables go: what it wrote is then unknown, and the object had to be read whole
 * again. The watch holds the members that fork with ptrace (PTRACE_SEIZE, which stops nothing)
 * and the options that attach every task they fork or clone, and stops each such task at its
 * exit (PTRACE_EVENT_EXIT), while its memory still exists: the callback then finds what the child
 * touched of each object (a superset of what it wrote) and marks it to copy. Every other stop
 * (signals, job control) is passed on at once, as the task would have seen it.
 *
 * One thread, which is the tracer: ptrace requests come from it alone. It lets every task go
 * (PTRACE_DETACH) when the watch stops, before the freeze seizes them. If osmosis dies, the
 * kernel lets them go the same way.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct child_watch;

/*
 * On the watch's thread, at the exit of a task with its own memory that descends from member
 * (forked after the watch began): tid is the exiting thread, whose /proc/TID still shows its
 * memory. Returns 0 when what it may have written is accounted for, a negative errno when not.
 */
typedef int (*child_exit_fn)(void *arg, pid_t tid, pid_t member);

/* Starts watching the members (each one's every thread is seized); returns NULL when none could
 * be. The callback may run as soon as this returns. */
struct child_watch *child_watch_start(const pid_t *members, size_t n, child_exit_fn fn, void *arg);
/* Whether member's every thread is held: each child it forks since is seen to its exit. */
bool child_watch_holds(const struct child_watch *w, pid_t member);
/* Whether pid is a process seen to its exit and accounted for (*faults: its faults then,
 * minflt + majflt with its reaped children's, which its parent's cfaults grow by when it reaps
 * it). */
bool child_watch_accounted(struct child_watch *w, pid_t pid, uint64_t *faults);

/* The accounted children that member forked itself, not yet looked at by this call: their
 * pids and faults appended to *v (*n of *cap used; grown with grow_array). Returns 0 or
 * -ENOMEM. */
struct watched_child {
	pid_t pid;
	uint64_t faults;
	bool reaped; /* the caller's */
};
int child_watch_take_children(struct child_watch *w, pid_t member, struct watched_child **v,
			      size_t *n, size_t *cap);
/* Exits of member's descendants whose writes are unknown (a child that ran a new program, or
 * whose memory could not be read at its exit) since the last call. */
unsigned child_watch_take_unknown(struct child_watch *w, pid_t member);

/* Stops the watch: every task let go, the thread joined. The callback runs no more. */
void child_watch_stop(struct child_watch *w);
void child_watch_free(struct child_watch *w);
