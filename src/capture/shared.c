/* SPDX-License-Identifier: MIT */
/*
 * Shared memory, one object one capture. A shared object (SysV shm, MAP_SHARED|MAP_ANONYMOUS
 * inherited over fork, memfd, a /dev/shm file: shmem, named in /proc/PID/maps by device and
 * inode) mapped by N processes of the snapshot is kept once, in one buffer of osmosis, and every
 * mapping's core extent points into it; whatever the method of each process (the clone method
 * keeps private memory only: a fork shares shared mappings, so they would keep changing).
 *
 * Reading: the object itself is read through /proc/PID/map_files/START-END (root), with pread,
 * which walks the object's pages without touching any page table of a target and reads holes as
 * zeroes without allocating them; SEEK_DATA skips the holes. Without it (osmosis not root), the
 * object is read once through one mapper's memory, in the freeze.
 *
 * Tracking (kernel facts checked on this machine, docs/shared-memory.md): userfaultfd async
 * write-protect works on shmem, and it is per mapping: a write through another process's
 * mapping, or another mapping of the same process, is not seen by the protection of this one. So
 * every mapping of the object by a process of the snapshot is registered with that process's
 * userfaultfd (injected once per process, tracker_open) and write-protected. Rounds
 * before the freeze copy the object, then what any mapping wrote since; the freeze copies only
 * what was written since the last round. A write through a mapping that is not tracked cannot be
 * seen: then the object is copied whole in the freeze (once), and the manifest says why:
 *   - a process outside the snapshot maps it (writers_outside: it also writes during the pause);
 *   - a process of the snapshot has it open as a file (write(2) is not a write to a mapping);
 *   - tracking could not start in one mapper (seccomp, no thread to inject into);
 *   - a tracked mapping went away in the freeze itself, or mappers kept going away round after
 *     round (more than MAX_REREADS times);
 *   - the object is small (copying it costs less than tracking it) or not shmem.
 *
 * A tracked mapping that goes away before the freeze (its process exited, or unmapped it) takes
 * its protection with it: what it wrote since the round before is unknown. It is found by the
 * next round (its scan fails, or /proc/PID/map_files no longer names the object at its range),
 * after the remaining mappings were scanned, so re-protected: that round reads the whole object
 * again, outside the freeze, and every write it may miss is one the remaining mappings see in
 * the next scan. Just before the freeze the mappings are checked once more (shared_settle); one
 * lost since the last round costs one more such round, not a copy in the pause. The order that
 * makes it sound, for a mapping lost at instant X: every write through it happened before X; the
 * loss is found after X; the whole read starts after the finding. So the whole read sees them.
 * A process that maps it only since tracking began (a child forked after, a tree member that
 * joined in the freeze) has the pages it touched copied in the freeze: a page it wrote is one
 * present in its page table. Under --tree, a descendant of a member met outside the set when
 * the objects are collected (a backend the postmaster forked after the tree was listed) is such
 * a joiner, not a writer outside: it will be frozen with the tree. Until then its writes are not
 * tracked, so the rounds watch it like a tracked mapping: when it exits before the freeze, the
 * next round reads the whole object again (after its exit, so after its writes); one that is
 * not in the freeze after all (it exited after the last check, or left the tree) makes the
 * object copied whole in the pause.
 *
 * Each process's coredump_filter is honoured: a process whose filter leaves shared memory out
 * still counts as a writer, its core has no bytes for the mapping.
 */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "base/fault.h"
#include "base/fs.h"
#include "base/log.h"
#include "base/parse.h"
#include "base/timeutil.h"
#include "base/util.h"
#include "capture/capture.h"
#include "capture/childwatch.h"
#include "capture/uffd.h"
#include "inject/inject.h"
#include "proc/maps.h"
#include "proc/procfs.h"

#define TRACK_MIN	  (4ull << 20) /* smaller objects are copied in the freeze */
#define MAX_ROUNDS	  8
#define MAX_REREADS	  4 /* whole reads after lost mappings, then copied in the freeze */
#define SETTLE_TRIES	  3 /* checks just before the freeze that found a loss and re-read */
#define SMALL_ENOUGH	  (1u << 20)
#define SCAN_VEC	  4096
#define FROZEN_SCAN_VEC	  1024 /* on each copy thread's stack */
#define UNREGISTER_SLICE  (16ull << 20)
#define MAX_OUTSIDE_NOTED 64
#define MAX_JOINERS	  64
#define MAX_SEEN	  256
#define MAX_TREE_DEPTH	  64
#define JOB_MAX		  (1u << 20)

struct shared_map {
	struct target *t;
	uint64_t start, end, pgoff;
	bool dumped;
	uint64_t vmflags; /* VMF_* of the mapping as read before the freeze */
	bool tracked;	  /* registered and write-protected in t's userfaultfd */
	bool late;	  /* met only in the freeze: not tracked */
	bool gone;	  /* was tracked; its process exited or it was unmapped before the freeze */
	bool in_freeze;	  /* found in its process's layout read in the freeze */
	/* The freeze's scan of it for written pages (find_frozen), on whichever copy thread: */
	bool scan;	     /* to scan in this freeze */
	int scan_rc;	     /* 0 or a negative errno */
	uint64_t scan_bytes; /* bytes it newly marked */
};

/* A descendant of a member mapping the object, outside the set until the freeze (--tree). */
struct joiner {
	pid_t pid;
	uint64_t starttime; /* against a reused pid */
	bool gone;	    /* found gone before the freeze: a whole read came after */
};

struct shared_object {
	unsigned id;
	const char *kind;
	char *path;
	uint32_t dev_major, dev_minor;
	uint64_t inode;
	uint64_t lo, hi; /* object offsets covered by the dumped mappings */
	int fd;		 /* the object, or -1 */
	uint8_t *buf;	 /* image of [lo, hi) */
	struct shared_map *maps;
	size_t n_maps, cap_maps;
	pid_t *outside;
	size_t n_outside, cap_outside;
	struct joiner joiners[MAX_JOINERS];
	size_t n_joiners;
	unsigned exits;	     /* children of its mappers found exited since it was collected */
	unsigned exits_seen; /* exits when it last had a whole read for them */
	bool track;	     /* every writer's mapping is tracked */
	bool readonly;	     /* nothing can write it through a mapping: read once, before */
	bool copy_in_freeze; /* copied whole in the freeze */
	bool prefaulted;     /* its buffer touched before the freeze */
	char *why;	     /* why it is copied in the freeze rather than tracked */
	/* The same, decided in the freeze, which allocates nothing: formatted after the thaw
	 * (shared_describe) from a format naming a pid (%d), then an errno's text (%s). */
	const char *frozen_why;
	pid_t frozen_why_pid;
	int frozen_why_err;
	uint64_t copied_before, copied_in_freeze;
	uint64_t *marks; /* one bit per page of [lo, hi): written, to copy (mark()) */
	size_t n_marks;	 /* words */
	unsigned page_shift;
	uint64_t round_end_ns, round_ns; /* the last round: when it ended, how long it took */
	unsigned rereads;		 /* whole reads after a tracked mapping went away */
	pid_t last_gone;		 /* the last mapper whose mapping went away */
	bool last_gone_reaped; /* last_gone is the parent of a child that exited, reaped */
	/* Children seen to their exit by the watch (childwatch.h), what they touched marked: */
	unsigned children;	 /* atomic: the watch's thread adds */
	uint64_t children_bytes; /* atomic */
	pid_t children_of;	 /* atomic: the member whose children they were (the last) */
};

/* A member of the set, watched for the children it forks and reaps while the rounds run. */
struct parent {
	pid_t pid;
	uint64_t cfaults; /* its reaped children's faults, as last read */
	bool forks;	  /* seen with a child, or reaping one: looked at again in the freeze */
	bool reaped;	  /* found in the freeze to have reaped a child since the last look */
	/* Held by the watch (every child it forks is seen to its exit): a rise of cfaults is
	 * explained by the children it accounted for and that are reaped since. */
	bool watched;
	struct watched_child *pending; /* accounted for, not yet known reaped */
	size_t n_pending, cap_pending;
};

struct shared_set {
	struct shared_object *v;
	size_t n, cap;
	struct parent *parents; /* the members mapping an object when they were collected */
	size_t n_parents;
	pid_t seen[MAX_SEEN]; /* children met outside the set since: joiners, exited, outside */
	size_t n_seen;
	struct child_watch *watch; /* from the tracking's start to the end of shared_settle */
};

static bool candidate(const struct osm_mapping *m)
{
	return m->shared && m->inode != 0 && m->path &&
	       !(m->vmflags & (VMF_HUGETLB | VMF_IO | VMF_PFNMAP));
}

static const char *kind_of(const char *path)
{
	if (!strncmp(path, "/SYSV", 5))
		return "sysv";
	if (!strncmp(path, "/dev/zero", 9))
		return "anonymous";
	if (!strncmp(path, "/memfd:", 7))
		return "memfd";
	if (!strncmp(path, "/dev/shm/", 9))
		return "posix";
	return "file";
}

static bool is_shmem(const struct shared_object *o)
{
	return strcmp(o->kind, "file") != 0;
}

static struct shared_object *find_object(struct shared_set *ss, const struct osm_mapping *m)
{
	for (size_t i = 0; i < ss->n; i++) {
		struct shared_object *o = &ss->v[i];
		if (o->inode == m->inode && o->dev_major == m->dev_major &&
		    o->dev_minor == m->dev_minor)
			return o;
	}
	return NULL;
}

__attribute__((format(printf, 2, 3))) static void copy_whole(struct shared_object *o,
							     const char *fmt, ...)
{
	va_list ap;

	if (o->copy_in_freeze)
		return;
	o->copy_in_freeze = true;
	o->track = false;
	free(o->why);
	va_start(ap, fmt);
	if (vasprintf(&o->why, fmt, ap) < 0)
		o->why = NULL;
	va_end(ap);
}

/* copy_whole for the freeze: the reason is kept as its format and arguments. */
static void copy_whole_frozen(struct shared_object *o, const char *fmt, pid_t pid, int err)
{
	if (o->copy_in_freeze)
		return;
	o->copy_in_freeze = true;
	o->track = false;
	o->frozen_why = fmt;
	o->frozen_why_pid = pid;
	o->frozen_why_err = err;
}

static int add_map(struct shared_object *o, struct target *t, const struct osm_mapping *m,
		   bool late)
{
	if (grow_array((void **)&o->maps, &o->cap_maps, o->n_maps + 1, sizeof(*o->maps)))
		return -ENOMEM;
	o->maps[o->n_maps++] = (struct shared_map){.t = t,
						   .start = m->start,
						   .end = m->end,
						   .pgoff = m->pgoff,
						   .dumped = m->dump_len > 0,
						   .vmflags = m->vmflags,
						   .late = late};
	return 0;
}

/* Whether a line of a maps text naming the object (needle: " MAJ:MIN INODE ") maps it
 * writable. A read-only shared mapping cannot write the object (a mapping of a file opened
 * read-only can never be made writable; one opened for writing could be, with mprotect, which
 * outside mappers are not watched for: their permissions as read are what counts). */
static bool maps_text_writable(const char *text, const char *needle)
{
	for (const char *hit = strstr(text, needle); hit; hit = strstr(hit + 1, needle)) {
		const char *line = hit;
		while (line > text && line[-1] != '\n')
			line--;
		const char *perms = memchr(line, ' ', (size_t)(hit - line));
		if (perms && hit - perms > 3 && perms[2] == 'w')
			return true;
	}
	return false;
}

/* A process outside the snapshot that maps o writable: named in the manifest (at most
 * MAX_OUTSIDE_NOTED). */
static void note_outside(struct shared_object *o, pid_t pid)
{
	if (o->n_outside < MAX_OUTSIDE_NOTED && !grow_array((void **)&o->outside, &o->cap_outside,
							    o->n_outside + 1, sizeof(*o->outside)))
		o->outside[o->n_outside++] = pid;
}

/* Whether a maps text maps object o writable (its lines name o's device and inode). */
static bool maps_writable(const char *text, const struct shared_object *o)
{
	char needle[64];

	snprintf(needle, sizeof(needle), " %02x:%02x %llu ", o->dev_major, o->dev_minor,
		 (unsigned long long)o->inode);
	return maps_text_writable(text, needle);
}

/* Whether pid descends from a live member of the set, and its start time. */
static bool joins_the_tree(const struct capture *c, pid_t pid, uint64_t *ret_start)
{
	struct proc_stat st;
	char path[48];

	for (int depth = 0; depth < MAX_TREE_DEPTH && pid > 1; depth++) {
		snprintf(path, sizeof(path), "/proc/%d/stat", pid);
		if (proc_read_stat(AT_FDCWD, path, &st) < 0 || st.state == 'Z')
			return false;
		if (depth == 0)
			*ret_start = st.starttime;
		const struct target *t = target_set_find(c->set, st.ppid);
		if (t && target_live(t))
			return true;
		pid = st.ppid;
	}
	return false;
}

/* Whether a joiner still runs as the process met (not exited, not a zombie). */
static bool joiner_runs(const struct joiner *j)
{
	struct proc_stat st;
	char path[48];

	snprintf(path, sizeof(path), "/proc/%d/stat", j->pid);
	return proc_read_stat(AT_FDCWD, path, &st) == 0 && st.state != 'Z' &&
	       st.starttime == j->starttime;
}

/* Every process outside the set (or in it but not frozen) that maps one of the objects
 * writable (read from /proc/PID/maps); under --tree, those that descend from a member are
 * joiners instead (as room allows). */
static void find_outside(struct capture *c, struct shared_set *ss)
{
	_cleanup_free_ pid_t *all = NULL;
	size_t n_all = 0;

	if (targets_all(&all, &n_all) < 0)
		return;
	for (size_t i = 0; i < n_all; i++) {
		_cleanup_free_ char *text = NULL;
		char path[64];

		const struct target *t = target_set_find(c->set, all[i]);
		/* A member not frozen (skipped: another tracer, no permission) runs during the
		 * pause like any process outside. */
		if (t && target_live(t))
			continue;
		snprintf(path, sizeof(path), "/proc/%d/maps", all[i]);
		if (read_file_at(AT_FDCWD, path, &text, NULL) < 0)
			continue;
		for (size_t k = 0; k < ss->n; k++) {
			struct shared_object *o = &ss->v[k];
			if (!maps_writable(text, o))
				continue;
			uint64_t start = 0;
			if (c->tree && !t && o->n_joiners < MAX_JOINERS &&
			    joins_the_tree(c, all[i], &start)) {
				o->joiners[o->n_joiners++] =
				    (struct joiner){.pid = all[i], .starttime = start};
				continue;
			}
			note_outside(o, all[i]);
		}
	}
}

/*
 * The members' children while the rounds run (a postmaster forking and reaping backends). A
 * child forked from a mapper after tracking began maps the object untracked: fork does not carry
 * the registration. One still running is a joiner under --tree, a writer outside otherwise; one
 * that exited wrote what it wrote before it did, so a whole read from then on sees it. An exit
 * shows as a zombie child, or once reaped as a rise of its parent's cfaults (its reaped
 * children's faults). Each object counts the exits of its own mappers' children (o->exits): a
 * child inherits its parent's mappings only, so a member that maps nothing (a shell running
 * commands beside the service, any process under --all) is not watched, and its children's
 * exits cost the objects nothing.
 */
static bool seen_before(const struct shared_set *ss, pid_t pid)
{
	for (size_t i = 0; i < ss->n_seen; i++)
		if (ss->seen[i] == pid)
			return true;
	for (size_t k = 0; k < ss->n; k++)
		for (size_t i = 0; i < ss->v[k].n_joiners; i++)
			if (ss->v[k].joiners[i].pid == pid)
				return true;
	return false;
}

static void note_seen(struct shared_set *ss, pid_t pid)
{
	if (ss->n_seen < MAX_SEEN)
		ss->seen[ss->n_seen++] = pid;
}

/* Calls fn for each child of each thread of t (/proc/PID/task/TID/children). */
static void for_each_child(const struct target *t, void (*fn)(void *, pid_t), void *arg)
{
	for (size_t i = 0; i < t->proc->n_threads; i++) {
		_cleanup_free_ char *text = NULL;
		char path[64];

		snprintf(path, sizeof(path), "task/%d/children", t->proc->threads[i]->tid);
		if (read_file_at(t->ref.procfd, path, &text, NULL) < 0)
			continue;
		for (char *p = text, *end; *p; p = end) {
			long pid = strtol(p, &end, 10);
			if (end == p)
				break;
			if (pid > 0)
				fn(arg, (pid_t)pid);
		}
	}
}

static bool maps_object(const struct shared_object *o, pid_t pid)
{
	for (size_t i = 0; i < o->n_maps; i++)
		if (o->maps[i].t->proc->pid == pid)
			return true;
	return false;
}

/* An exit of a child of parent: who is the child (a zombie), or the parent when it was reaped.
 * It counts for the objects the parent maps. */
static void count_exit(struct shared_set *ss, pid_t parent, pid_t who, bool reaped)
{
	for (size_t k = 0; k < ss->n; k++) {
		struct shared_object *o = &ss->v[k];
		if (!maps_object(o, parent))
			continue;
		o->exits++;
		o->last_gone = who;
		o->last_gone_reaped = reaped;
	}
}

struct child_look {
	struct capture *c;
	struct parent *parent;
};

static void seen_child(void *arg, pid_t pid)
{
	struct child_look *cl = arg;
	struct shared_set *ss = cl->c->shared;
	cl->parent->forks = true;
	if (!seen_before(ss, pid))
		note_seen(ss, pid);
}

/* Before the objects are looked at by find_outside: the members that map an object, what they
 * reaped so far, and the children they have now (find_outside sorts those). */
static int note_parents(struct capture *c, struct shared_set *ss)
{
	ss->parents = calloc(MAX(c->set->n, (size_t)1), sizeof(*ss->parents));
	if (!ss->parents)
		return -ENOMEM;
	for (size_t i = 0; i < c->set->n; i++) {
		const struct target *t = c->set->v[i];
		struct proc_stat st;
		bool mapper = false;
		for (size_t k = 0; k < ss->n && !mapper; k++)
			mapper = maps_object(&ss->v[k], t->proc->pid);
		if (!mapper || !target_live(t) || proc_read_stat(t->ref.procfd, "stat", &st) < 0)
			continue;
		struct child_look cl = {c, &ss->parents[ss->n_parents]};
		ss->parents[ss->n_parents++] =
		    (struct parent){.pid = t->proc->pid, .cfaults = st.cfaults};
		for_each_child(t, seen_child, &cl);
	}
	return 0;
}

/* A child met since: exited (counted), or running and mapping objects. */
static void look_at_child(void *arg, pid_t pid)
{
	struct child_look *cl = arg;
	struct shared_set *ss = cl->c->shared;
	_cleanup_free_ char *text = NULL;

	cl->parent->forks = true;
	struct proc_stat st;
	char path[64];

	if (target_set_find(cl->c->set, pid) || seen_before(ss, pid))
		return;
	if (child_watch_accounted(ss->watch, pid, NULL))
		return; /* seen to its exit: what it touched is marked */
	note_seen(ss, pid);
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	if (proc_read_stat(AT_FDCWD, path, &st) < 0 || st.state == 'Z') {
		count_exit(ss, cl->parent->pid, pid, false);
		return;
	}
	snprintf(path, sizeof(path), "/proc/%d/maps", pid);
	if (read_file_at(AT_FDCWD, path, &text, NULL) < 0) {
		count_exit(ss, cl->parent->pid, pid, false);
		return;
	}
	for (size_t k = 0; k < ss->n; k++) {
		struct shared_object *o = &ss->v[k];
		if (!o->track || !maps_writable(text, o))
			continue;
		if (cl->c->tree && o->n_joiners < MAX_JOINERS)
			o->joiners[o->n_joiners++] =
			    (struct joiner){.pid = pid, .starttime = st.starttime};
		else {
			note_outside(o, pid); /* it runs through the pause */
			copy_whole(o,
				   "pid %d, forked by pid %d as the rounds ran, maps it writable "
				   "outside the snapshot",
				   pid, cl->parent->pid);
		}
	}
}

/* The faults of pa's accounted children that are reaped (their /proc entry gone), each such
 * one flagged. Allocates nothing: also in the freeze. */
static uint64_t reaped_faults(struct parent *pa)
{
	uint64_t sum = 0;

	for (size_t i = 0; i < pa->n_pending; i++) {
		char path[32];
		snprintf(path, sizeof(path), "/proc/%d", pa->pending[i].pid);
		pa->pending[i].reaped = access(path, F_OK) < 0 && errno == ENOENT;
		if (pa->pending[i].reaped)
			sum += pa->pending[i].faults;
	}
	return sum;
}

/*
 * A look at a parent the watch holds: each child it forked since the watch began was seen to
 * its exit, and accounted for or not (then counted as an exit). Its cfaults grow as it reaps
 * them; a rise that the accounted children it reaped do not explain is a child the watch did
 * not see (forked before the watch, or adopted), which counts as an exit. Read in the order
 * that makes the sum sound: cfaults, then the accounted children (each is accounted before
 * it can be reaped), then which are reaped, then cfaults again (a reap meanwhile: again).
 */
static void watched_look(struct capture *c, struct parent *pa, const struct target *t)
{
	struct shared_set *ss = c->shared;
	struct proc_stat st, again;
	uint64_t explained = 0;
	unsigned unknown = child_watch_take_unknown(ss->watch, pa->pid);
	int tries = 0;

	if (unknown) {
		log_debug("pid %d: %u children exited unseen as the rounds ran", pa->pid, unknown);
		count_exit(ss, pa->pid, pa->pid, true);
	}
	do {
		if (proc_read_stat(t->ref.procfd, "stat", &st) < 0)
			return;
		if (child_watch_take_children(ss->watch, pa->pid, &pa->pending, &pa->n_pending,
					      &pa->cap_pending) < 0) {
			count_exit(ss, pa->pid, pa->pid, true);
			return;
		}
		explained = reaped_faults(pa);
		if (proc_read_stat(t->ref.procfd, "stat", &again) < 0)
			return;
	} while (again.cfaults != st.cfaults && ++tries < 3);
	if (st.cfaults != pa->cfaults) {
		pa->forks = true;
		if (again.cfaults != st.cfaults || st.cfaults - pa->cfaults != explained) {
			log_debug("pid %d reaped a child the watch did not account for", pa->pid);
			count_exit(ss, pa->pid, pa->pid, true);
		}
		pa->cfaults = again.cfaults;
		for (size_t i = 0; i < pa->n_pending;)
			if (pa->pending[i].reaped)
				pa->pending[i] = pa->pending[--pa->n_pending];
			else
				i++;
	}
}

/* Exits and new children since the last look (each object's exits grow by its own). */
static void watch_children(struct capture *c)
{
	struct shared_set *ss = c->shared;

	for (size_t i = 0; ss && i < ss->n_parents; i++) {
		struct parent *pa = &ss->parents[i];
		const struct target *t = target_set_find(c->set, pa->pid);
		struct child_look cl = {c, pa};
		struct proc_stat st;

		if (!t || !target_live(t))
			continue; /* a member gone: its own mappings say so */
		if (pa->watched) {
			watched_look(c, pa, t);
		} else {
			if (proc_read_stat(t->ref.procfd, "stat", &st) < 0)
				continue;
			if (st.cfaults != pa->cfaults) {
				log_debug("pid %d reaped a child as the rounds ran", pa->pid);
				pa->cfaults = st.cfaults;
				pa->forks = true;
				count_exit(ss, pa->pid, pa->pid, true);
			}
		}
		for_each_child(t, look_at_child, &cl);
	}
}

/* Whether a descriptor of a process of the set is the object itself (writes through write(2)
 * are not tracked). */
static pid_t opened_by(struct capture *c, const struct shared_object *o)
{
	for (size_t i = 0; i < c->set->n; i++) {
		const struct osm_process *p = c->set->v[i]->proc;
		for (size_t k = 0; k < p->n_fds; k++)
			if (p->fds[k].inode == o->inode && p->fds[k].target &&
			    (!strcmp(p->fds[k].type, "memfd") || !strcmp(p->fds[k].type, "file")) &&
			    !strncmp(p->fds[k].target, o->path, strcspn(o->path, " ")))
				return p->pid;
	}
	return 0;
}

/* Whether some mapping of the set, or some descriptor of a process of the set, can write the
 * object: a mapping that may be made writable (smaps' "mw"; unknown counts as yes), a file
 * descriptor opened for writing. */
static bool written_by_set(struct capture *c, const struct shared_object *o)
{
	for (size_t i = 0; i < o->n_maps; i++) {
		uint64_t f = o->maps[i].vmflags;
		if (!(f & VMF_KNOWN) || (f & VMF_MAYWRITE))
			return true;
	}
	for (size_t i = 0; i < c->set->n; i++) {
		const struct osm_process *p = c->set->v[i]->proc;
		for (size_t k = 0; k < p->n_fds; k++)
			if (p->fds[k].inode == o->inode &&
			    (p->fds[k].flags & O_ACCMODE) != O_RDONLY && p->fds[k].target &&
			    !strncmp(p->fds[k].target, o->path, strcspn(o->path, " ")))
				return true;
	}
	return false;
}

static int open_object(struct shared_object *o)
{
	for (size_t i = 0; i < o->n_maps; i++) {
		char path[96];
		const struct shared_map *sm = &o->maps[i];
		snprintf(path, sizeof(path), "map_files/%llx-%llx", (unsigned long long)sm->start,
			 (unsigned long long)sm->end);
		o->fd = openat(sm->t->ref.procfd, path, O_RDONLY | O_CLOEXEC);
		if (o->fd >= 0)
			return 0;
	}
	return -errno;
}

int shared_collect(struct capture *c)
{
	struct shared_set *ss = calloc(1, sizeof(*ss));
	const char *why;

	if (!ss)
		return log_error(ENOMEM, "out of memory");
	c->shared = ss;
	/* Objects: a shared mapping some process of the set dumps. */
	for (size_t i = 0; i < c->set->n; i++) {
		struct target *t = c->set->v[i];
		if (!target_live(t))
			continue;
		for (size_t j = 0; j < t->n_pre_maps; j++) {
			struct osm_mapping *m = &t->pre_maps[j];
			struct shared_object *o;
			if (!candidate(m) || m->dump_len == 0)
				continue;
			o = find_object(ss, m);
			if (!o) {
				if (grow_array((void **)&ss->v, &ss->cap, ss->n + 1,
					       sizeof(*ss->v)))
					return log_error(ENOMEM, "out of memory");
				o = &ss->v[ss->n++];
				*o = (struct shared_object){.id = (unsigned)ss->n,
							    .kind = kind_of(m->path),
							    .path = strdup(m->path),
							    .dev_major = m->dev_major,
							    .dev_minor = m->dev_minor,
							    .inode = m->inode,
							    .lo = m->pgoff,
							    .hi = m->pgoff + m->dump_len,
							    .fd = -1};
				if (!o->path)
					return log_error(ENOMEM, "out of memory");
			}
			o->lo = MIN(o->lo, m->pgoff);
			o->hi = MAX(o->hi, m->pgoff + m->dump_len);
		}
	}
	if (ss->n == 0)
		return 0;
	/* Mappers: every mapping of an object by a process of the set, dumped or not. */
	for (size_t i = 0; i < c->set->n; i++) {
		struct target *t = c->set->v[i];
		if (!target_live(t))
			continue;
		for (size_t j = 0; j < t->n_pre_maps; j++) {
			struct osm_mapping *m = &t->pre_maps[j];
			struct shared_object *o = candidate(m) ? find_object(ss, m) : NULL;
			if (!o)
				continue;
			if (add_map(o, t, m, false) < 0)
				return log_error(ENOMEM, "out of memory");
			m->shared_object = o->id;
		}
	}
	if (note_parents(c, ss) < 0)
		return log_error(ENOMEM, "out of memory");
	find_outside(c, ss);
	for (size_t k = 0; k < ss->n; k++) {
		struct shared_object *o = &ss->v[k];
		uint64_t size = o->hi - o->lo;
		pid_t opener;
		char a[32];

		o->buf = mmap(NULL, MAX(size, (uint64_t)1), PROT_READ | PROT_WRITE,
			      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (o->buf == MAP_FAILED) {
			o->buf = NULL;
			return log_error(errno, "cannot map %s to hold a shared object: %m",
					 format_bytes(size, a, sizeof(a)));
		}
		madvise(o->buf, size, MADV_HUGEPAGE);
		o->page_shift = (unsigned)__builtin_ctzl(c->page_size);
		o->n_marks = (size_t)(((size >> o->page_shift) + 63) / 64);
		o->marks = calloc(MAX(o->n_marks, (size_t)1), sizeof(*o->marks));
		if (!o->marks)
			return log_error(ENOMEM, "out of memory");
		if (open_object(o) < 0)
			log_debug("shared object %u (%s): not readable as a file: %m", o->id,
				  o->path);
		if (o->n_outside)
			copy_whole(o,
				   "%zu process%s outside the snapshot map%s it writable (pid %d)",
				   o->n_outside, o->n_outside == 1 ? "" : "es",
				   o->n_outside == 1 ? "s" : "", o->outside[0]);
		else if (!c->state_only && o->fd >= 0 && !written_by_set(c, o)) {
			/* Nothing can write it through a mapping: one read before the freeze is
			 * the object at the freeze (a CDS archive, a JDK's modules, locale data).
			 */
			o->readonly = true;
			o->why = strdup("no mapping can write it: read once before the freeze");
		} else if (!is_shmem(o))
			copy_whole(o, "a shared file mapping: write tracking covers shared "
				      "memory only");
		else if (size < TRACK_MIN)
			copy_whole(o, "%s: copying it costs less than tracking its writes",
				   format_bytes(size, a, sizeof(a)));
		else if (c->state_only || !tracker_supported(&why))
			copy_whole(o, "%s", c->state_only ? "state only" : why);
		else if (o->fd < 0)
			copy_whole(o, "it cannot be read as a file (/proc/PID/map_files needs "
				      "root)");
		else if ((opener = opened_by(c, o)))
			copy_whole(o,
				   "pid %d has it open as a file: write(2) to it is not a "
				   "tracked write",
				   opener);
		else
			o->track = true;
	}
	return 0;
}

bool shared_tracks(const struct capture *c, const struct target *t)
{
	for (size_t k = 0; c->shared && k < c->shared->n; k++) {
		const struct shared_object *o = &c->shared->v[k];
		for (size_t i = 0; o->track && i < o->n_maps; i++)
			if (o->maps[i].t == t)
				return true;
	}
	return false;
}

uint64_t shared_joiners_bytes(const struct capture *c)
{
	const struct shared_set *ss = c->shared;
	pid_t seen[MAX_JOINERS];
	size_t n_seen = 0;
	uint64_t sum = 0;

	for (size_t k = 0; ss && k < ss->n; k++)
		for (size_t i = 0; i < ss->v[k].n_joiners; i++) {
			const struct joiner *j = &ss->v[k].joiners[i];
			bool dup = false;
			for (size_t x = 0; x < n_seen && !dup; x++)
				dup = seen[x] == j->pid;
			if (dup || j->gone || n_seen == MAX_JOINERS || !joiner_runs(j))
				continue;
			seen[n_seen++] = j->pid;
			_cleanup_free_ char *text = NULL;
			char path[40];
			unsigned long long size, resident, shared;
			snprintf(path, sizeof(path), "/proc/%d/statm", j->pid);
			if (read_file_at(AT_FDCWD, path, &text, NULL) == 0 &&
			    sscanf(text, "%llu %llu %llu", &size, &resident, &shared) == 3 &&
			    resident > shared)
				sum += (resident - shared) * c->page_size;
		}
	return sum;
}

size_t shared_jobs_bound(const struct capture *c)
{
	const struct shared_set *ss = c->shared;
	size_t n = 0;

	/* Each object's data runs (holes skipped) or its written runs: at most one per two
	 * pages, bounded; an object needing more grows the job array (counted in the manifest's
	 * allocations_in_freeze). */
	for (size_t i = 0; ss && i < ss->n; i++) {
		uint64_t len = ss->v[i].hi - ss->v[i].lo;
		n += len / JOB_MAX + 2 + MIN(len / c->page_size / 2, (uint64_t)65536);
	}
	return n;
}

uint64_t shared_buffer_bytes(const struct capture *c)
{
	uint64_t n = 0;

	for (size_t k = 0; c->shared && k < c->shared->n; k++)
		n += c->shared->v[k].hi - c->shared->v[k].lo;
	return n;
}

uint64_t shared_planned_bytes(const struct target *t)
{
	uint64_t n = 0;

	for (size_t i = 0; i < t->n_pre_maps; i++)
		if (t->pre_maps[i].shared_object)
			n += capture_planned_size(&t->pre_maps[i]);
	return n;
}

static int track_map(struct shared_map *sm)
{
	struct target *t = sm->t;
	struct uffdio_register reg = {.range = {.start = sm->start, .len = sm->end - sm->start},
				      .mode = UFFDIO_REGISTER_MODE_WP};
	struct uffdio_writeprotect wp = {.range = reg.range, .mode = UFFDIO_WRITEPROTECT_MODE_WP};
	bool had = t->uffd >= 0;
	int r;

	if (inject_thread_filtered(t->ref.procfd, t->proc->pid))
		return -EPERM;
	r = tracker_open(t);
	if (r < 0) {
		if (!had)
			tracker_close(t);
		return r;
	}
	if (ioctl(t->uffd, UFFDIO_REGISTER, &reg) < 0)
		return -errno;
	/*
	 * Write-protect only the pages present in this process's page table. Protecting a page
	 * that is not present would leave a marker in a page table the kernel allocates for it
	 * (2 MiB of page tables per GiB, kept after tracking ends: measured here), growing the
	 * target. A page that becomes present later carries no protection, and a scan reports
	 * it as written: what a process touched since tracking began is copied, a superset of
	 * what it wrote.
	 */
	static struct page_region vec[SCAN_VEC];
	for (uint64_t start = sm->start; start < sm->end;) {
		struct pm_scan_arg a = {.size = sizeof(a),
					.start = start,
					.end = sm->end,
					.vec = (uintptr_t)vec,
					.vec_len = SCAN_VEC,
					.category_mask = PAGE_IS_PRESENT,
					.return_mask = PAGE_IS_PRESENT};
		int n = ioctl(t->pagemap_fd, PAGEMAP_SCAN, &a);
		if (n < 0)
			return -errno;
		for (int i = 0; i < n; i++) {
			wp.range.start = vec[i].start;
			wp.range.len = vec[i].end - vec[i].start;
			if (ioctl(t->uffd, UFFDIO_WRITEPROTECT, &wp) < 0)
				return -errno;
		}
		if (a.walk_end <= start)
			return -EIO;
		start = a.walk_end;
	}
	sm->tracked = true;
	return 0;
}

/* Queue the pread of object bytes [off, off + len) into the buffer. */
static int queue_object(struct capture *c, struct shared_object *o, uint64_t off, uint64_t len)
{
	if (off < o->lo) {
		len -= MIN(len, o->lo - off);
		off = o->lo;
	}
	if (off >= o->hi || len == 0)
		return 0;
	len = MIN(len, o->hi - off);
	while (len > 0) {
		uint64_t n = MIN(len, (uint64_t)JOB_MAX);
		if (grow_array((void **)&c->jobs, &c->cap_jobs, c->n_jobs + 1, sizeof(*c->jobs)))
			return -ENOMEM;
		c->jobs[c->n_jobs++] = (struct copy_job){.pid = 0,
							 .memfd = o->fd,
							 .remote = off,
							 .len = n,
							 .dest = o->buf + (off - o->lo)};
		off += n;
		len -= n;
	}
	return 0;
}

/* Every data run of the object (holes skipped). */
static int queue_whole(struct capture *c, struct shared_object *o, uint64_t *bytes)
{
	uint64_t off = o->lo;

	if (o->fd < 0) {
		/* Through one mapper's memory: its mapping that covers the most. */
		for (size_t i = 0; i < o->n_maps; i++) {
			struct shared_map *sm = &o->maps[i];
			uint64_t a = MAX(sm->pgoff, o->lo),
				 b = MIN(sm->pgoff + sm->end - sm->start, o->hi);
			if (!target_live(sm->t) || sm->late || a >= b || sm->t->ref.memfd < 0)
				continue;
			*bytes += b - a;
			int r = capture_add_job(c, sm->t, sm->start + (a - sm->pgoff), b - a,
						o->buf + (a - o->lo));
			if (r < 0)
				return r;
			if (a == o->lo && b == o->hi)
				break;
		}
		return 0;
	}
	while (off < o->hi) {
		off_t d = lseek(o->fd, (off_t)off, SEEK_DATA), h;
		if (d < 0)
			break; /* ENXIO: no data past off */
		h = lseek(o->fd, d, SEEK_HOLE);
		if (h < 0)
			h = (off_t)o->hi;
		if ((uint64_t)d >= o->hi)
			break;
		uint64_t end = MIN((uint64_t)h, o->hi);
		*bytes += end - (uint64_t)d;
		int r = queue_object(c, o, (uint64_t)d, end - (uint64_t)d);
		if (r < 0)
			return r;
		off = end;
	}
	return 0;
}

/*
 * Pages found written through several mappings (PostgreSQL's hot pages: every backend writes
 * the buffer descriptors, the lock tables, the WAL buffers) are copied once: scans mark them in
 * the object's bitmap, and queue_marked() turns the marks into copy jobs. *bytes counts pages
 * newly marked.
 */
static void mark(struct shared_object *o, uint64_t off, uint64_t len, uint64_t *bytes)
{
	uint64_t first, last;

	if (off < o->lo) {
		len -= MIN(len, o->lo - off);
		off = o->lo;
	}
	if (off >= o->hi || len == 0)
		return;
	len = MIN(len, o->hi - off);
	first = (off - o->lo) >> o->page_shift;
	last = (off - o->lo + len - 1) >> o->page_shift;
	for (uint64_t p = first; p <= last;) {
		uint64_t *w = &o->marks[p / 64];
		unsigned bit = (unsigned)(p % 64);
		uint64_t n = MIN(64 - bit, last - p + 1);
		uint64_t m = (n == 64 ? ~0ull : ((1ull << n) - 1)) << bit;
		/* atomic: the freeze's scans of several mappings run on several threads */
		uint64_t was = __atomic_fetch_or(w, m, __ATOMIC_RELAXED);
		*bytes += (uint64_t)__builtin_popcountll(m & ~was) << o->page_shift;
		p += n;
	}
}

static void clear_marks(struct shared_object *o)
{
	/* atomic: the watch's thread marks what exiting children touched (child_exited) */
	for (size_t i = 0; i < o->n_marks; i++)
		__atomic_store_n(&o->marks[i], 0, __ATOMIC_RELAXED);
}

/* Every run of marked pages queued for the copy threads; the marks taken (each word swapped
 * for zero: a mark made meanwhile by another thread stays for the next round). */
static int queue_marked(struct capture *c, struct shared_object *o)
{
	uint64_t pages = (o->hi - o->lo) >> o->page_shift, run = 0, n = 0;
	int r;

	for (uint64_t wi = 0; wi < o->n_marks; wi++) {
		uint64_t word = __atomic_load_n(&o->marks[wi], __ATOMIC_RELAXED)
				    ? __atomic_exchange_n(&o->marks[wi], 0, __ATOMIC_RELAXED)
				    : 0;
		if (!word && !n)
			continue; /* a word without a mark */
		for (unsigned b = 0; b < 64; b++) {
			uint64_t p = wi * 64 + b;
			if (p >= pages)
				break;
			if (word >> b & 1) {
				if (n++ == 0)
					run = p;
			} else if (n) {
				r = queue_object(c, o, o->lo + (run << o->page_shift),
						 n << o->page_shift);
				if (r < 0)
					return r;
				n = 0;
			}
		}
	}
	if (n && (r = queue_object(c, o, o->lo + (run << o->page_shift), n << o->page_shift)) < 0)
		return r;
	return 0;
}

/*
 * Holes. A page of a shmem mapping that is not in a process's page table (never touched by it,
 * or dropped from it) carries no write-protect bit, and PAGEMAP_SCAN reports it as written;
 * protecting it (PM_SCAN_WP_MATCHING) installs a marker, which allocates page tables over the
 * whole mapping. Measured: a process that had touched 1 MiB of a 1 GiB object went from 48 kB to
 * 2,088 kB of page tables, kept after the tracking ended, and each later scan of the mapping took
 * 1 ms instead of 10 us (docs/design/kernel-facts.md). A write reaches the object through a page
 * mapped in the writer (write(2) to it makes the object copied in the freeze: opened_by), and a
 * page that becomes present after the protection is present and unprotected: written. What a
 * hole can hide is a page written and then dropped from the writer's page table between two
 * scans: by reclaim, which for shmem needs swap, or by the process itself (MADV_DONTNEED on its
 * shared mapping). So without swap the scans for written pages look at present pages only and
 * leave holes alone; with swap, holes are protected as the kernel reports them (correct, and the
 * page tables grow). docs/shared-memory.md, Known limits.
 */
static uint64_t written_anyof(void)
{
	static int swap = -1;

	if (swap < 0) {
		_cleanup_free_ char *text = NULL;
		/* a header line, then one line per swap area */
		swap = read_file_at(AT_FDCWD, "/proc/swaps", &text, NULL) < 0 ||
		       (strchr(text, '\n') && strchr(text, '\n')[1] != '\0');
	}
	return swap ? 0 : PAGE_IS_PRESENT | PAGE_IS_SWAPPED;
}

/* One PAGEMAP_SCAN pass over a mapping, the regions found read into vec (n_vec of them at a
 * time); each is marked (object offsets). A scan for written pages sees holes only where
 * written_anyof says so. */
/* The pages of [start, end) in the pagemap fd that match, marked in o (start maps o's offset
 * pgoff). */
static int scan_range_into(struct shared_object *o, int pagemap_fd, uint64_t start, uint64_t end,
			   uint64_t pgoff, uint64_t flags, uint64_t category_mask, uint64_t *bytes,
			   struct page_region *vec, size_t n_vec)
{
	uint64_t first = start;
	uint64_t anyof = category_mask == PAGE_IS_WRITTEN ? written_anyof() : 0;

	while (start < end) {
		struct pm_scan_arg a = {.size = sizeof(a),
					.flags = flags,
					.start = start,
					.end = end,
					.vec = (uintptr_t)vec,
					.vec_len = n_vec,
					.category_mask = category_mask,
					.category_anyof_mask = anyof,
					.return_mask = category_mask | anyof};
		int n = ioctl(pagemap_fd, PAGEMAP_SCAN, &a);
		if (n < 0)
			return -errno;
		for (int i = 0; i < n; i++)
			mark(o, pgoff + (vec[i].start - first), vec[i].end - vec[i].start, bytes);
		if (a.walk_end <= start)
			return -EIO;
		start = a.walk_end;
	}
	return 0;
}

static int scan_map_into(struct shared_object *o, struct shared_map *sm, uint64_t flags,
			 uint64_t category_mask, uint64_t *bytes, struct page_region *vec,
			 size_t n_vec)
{
	return scan_range_into(o, sm->t->pagemap_fd, sm->start, sm->end, sm->pgoff, flags,
			       category_mask, bytes, vec, n_vec);
}

/*
 * On the watch's thread, at the exit of a child of member with its own memory (childwatch.h):
 * the pages of each tracked object present in its page tables, where it inherited member's
 * mappings, are marked (fork copies no page table of a shared mapping, so what it touched
 * since it was forked, which holds what it wrote). The next round, or the freeze, copies them.
 * A mapping it no longer has there (unmapped, or mapped again) makes its writes unknown.
 */
static int child_exited(void *arg, pid_t tid, pid_t member)
{
	struct shared_set *ss = arg;
	struct page_region vec[FROZEN_SCAN_VEC];
	char path[96];
	bool maps = false;
	int r = 0;

	snprintf(path, sizeof(path), "/proc/%d/pagemap", tid);
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	for (size_t k = 0; k < ss->n; k++) {
		struct shared_object *o = &ss->v[k];
		uint64_t bytes = 0;
		bool mapped = false; /* by member: the child inherited it */

		for (size_t i = 0; i < o->n_maps; i++) {
			const struct shared_map *sm = &o->maps[i];
			struct stat st;

			if (sm->t->proc->pid != member || sm->late)
				continue;
			maps = mapped = true;
			if (!__atomic_load_n(&o->track, __ATOMIC_RELAXED))
				continue; /* copied whole in the freeze anyway */
			snprintf(path, sizeof(path), "/proc/%d/map_files/%llx-%llx", tid,
				 (unsigned long long)sm->start, (unsigned long long)sm->end);
			if (stat(path, &st) < 0 || st.st_ino != o->inode ||
			    major(st.st_dev) != o->dev_major || minor(st.st_dev) != o->dev_minor) {
				r = -ENOENT;
				continue;
			}
			int s = scan_range_into(o, fd, sm->start, sm->end, sm->pgoff, 0,
						PAGE_IS_PRESENT, &bytes, vec, FROZEN_SCAN_VEC);
			if (s < 0)
				r = s;
		}
		if (mapped) {
			__atomic_store_n(&o->children_of, member, __ATOMIC_RELAXED);
			__atomic_fetch_add(&o->children, 1, __ATOMIC_RELAXED);
			__atomic_fetch_add(&o->children_bytes, bytes, __ATOMIC_RELAXED);
		}
	}
	return maps ? r : -ENOENT;
}

static int run_jobs(struct capture *c)
{
	int r = copier_run(c->copier, c->jobs, c->n_jobs);
	c->n_jobs = 0;
	return r;
}

/* The members that map a tracked object and fork (a postmaster): held by the watch from now to
 * the end of shared_settle, so that each child they fork is seen to its exit (childwatch.h). */
static void watch_start(struct capture *c)
{
	struct shared_set *ss = c->shared;
	_cleanup_free_ pid_t *pids = NULL;
	size_t n = 0;

	if (!ss || !ss->n_parents || fault_point("child-watch") < 0)
		return;
	pids = calloc(ss->n_parents, sizeof(*pids));
	if (!pids)
		return;
	for (size_t i = 0; i < ss->n_parents; i++) {
		struct parent *pa = &ss->parents[i];
		bool tracked = false;
		for (size_t k = 0; k < ss->n && !tracked; k++)
			tracked = ss->v[k].track && maps_object(&ss->v[k], pa->pid);
		if (pa->forks && tracked)
			pids[n++] = pa->pid;
	}
	if (!n)
		return;
	ss->watch = child_watch_start(pids, n, child_exited, ss);
	for (size_t i = 0; ss->watch && i < ss->n_parents; i++) {
		struct parent *pa = &ss->parents[i];
		pa->watched = child_watch_holds(ss->watch, pa->pid);
		if (pa->watched)
			log_debug("pid %d: its children are watched to their exits", pa->pid);
	}
}

/* The watch's end, just before the freeze: every task let go (the freeze seizes them). A child
 * whose exit it saw but could not account for since the last look makes the objects its parent
 * maps copied whole in the freeze. The parents' accounted children not yet reaped stay pending:
 * the freeze's look at cfaults (shared_frozen_reaped) counts them. */
static void watch_stop(struct capture *c)
{
	struct shared_set *ss = c->shared;

	if (!ss || !ss->watch)
		return;
	child_watch_stop(ss->watch);
	for (size_t i = 0; i < ss->n_parents; i++) {
		struct parent *pa = &ss->parents[i];
		if (!pa->watched)
			continue;
		int r = child_watch_take_children(ss->watch, pa->pid, &pa->pending, &pa->n_pending,
						  &pa->cap_pending);
		if (r < 0 || child_watch_take_unknown(ss->watch, pa->pid))
			for (size_t k = 0; k < ss->n; k++)
				if (ss->v[k].track && maps_object(&ss->v[k], pa->pid))
					copy_whole(&ss->v[k],
						   "a child of pid %d exited as the freeze began, "
						   "and what it wrote is unknown",
						   pa->pid);
	}
	child_watch_free(ss->watch);
	ss->watch = NULL;
}

int shared_track(struct capture *c)
{
	struct shared_set *ss = c->shared;

	(void)written_anyof(); /* read now, not in the freeze */

	for (size_t k = 0; ss && k < ss->n; k++) {
		struct shared_object *o = &ss->v[k];
		for (size_t i = 0; o->track && i < o->n_maps; i++) {
			struct shared_map *sm = &o->maps[i];
			int r = target_live(sm->t) ? track_map(sm) : -ESRCH;
			/* Gone before its tracking began (a member lost in the pre-copy before,
			 * a backend ending under connection churn): it writes no more, and the
			 * whole read that begins the rounds, next, sees all it wrote. */
			if (r < 0 && (r == -ESRCH || capture_target_ended(sm->t))) {
				log_debug(
				    "shared object %u: pid %d ended before its tracking began",
				    o->id, sm->t->proc->pid);
				continue;
			}
			if (r < 0)
				copy_whole(o, "write tracking could not start in pid %d (%s)",
					   sm->t->proc->pid, strerror(-r));
		}
	}
	watch_start(c);
	return 0;
}

/*
 * Whether a tracked mapping is still there: 0 when its process lives and
 * /proc/PID/map_files/START-END names the object (same device and inode), 1 when it is gone
 * (the process exited or is a zombie, ran a new program, or unmapped or split the range), -1
 * when it is there but no longer tracked (its process left the set, its userfaultfd closed).
 */
static int map_state(const struct shared_object *o, const struct shared_map *sm)
{
	char path[96];
	struct stat st;

	snprintf(path, sizeof(path), "map_files/%llx-%llx", (unsigned long long)sm->start,
		 (unsigned long long)sm->end);
	if (sm->t->exited || fstatat(sm->t->ref.procfd, path, &st, 0) < 0 ||
	    st.st_ino != o->inode || major(st.st_dev) != o->dev_major ||
	    minor(st.st_dev) != o->dev_minor)
		return 1;
	return target_live(sm->t) && sm->t->uffd >= 0 ? 0 : -1;
}

/* Each tracked mapping of o checked; those gone are marked so. Returns how many were lost; o
 * becomes copied in the freeze when one is there but untracked. */
static unsigned check_maps(struct capture *c, struct shared_object *o)
{
	unsigned lost = 0;

	for (size_t i = 0; o->track && i < o->n_maps; i++) {
		struct shared_map *sm = &o->maps[i];
		int g;

		if (!sm->tracked)
			continue;
		g = map_state(o, sm);
		if (g > 0) {
			log_debug("shared object %u: the tracked mapping of pid %d went away",
				  o->id, sm->t->proc->pid);
			sm->tracked = false;
			sm->gone = true;
			o->last_gone = sm->t->proc->pid;
			o->last_gone_reaped = false;
			lost++;
		} else if (g < 0) {
			copy_whole(o,
				   "pid %d maps it but is no longer captured: its writes are not "
				   "tracked",
				   sm->t->proc->pid);
		}
	}
	/* A joiner gone: what it wrote is in the object, and a whole read from now sees it. */
	for (size_t i = 0; o->track && i < o->n_joiners; i++) {
		struct joiner *j = &o->joiners[i];
		if (j->gone || joiner_runs(j))
			continue;
		if (child_watch_accounted(c->shared->watch, j->pid, NULL)) {
			/* Seen to its exit, what it touched marked: its room is free again. */
			o->joiners[i--] = o->joiners[--o->n_joiners];
			continue;
		}
		log_debug("shared object %u: pid %d, forked in the tree, exited", o->id, j->pid);
		j->gone = true;
		o->last_gone = j->pid;
		o->last_gone_reaped = false;
		lost++;
	}
	/* A child of a member that exited since the last whole read. */
	if (o->track) {
		watch_children(c);
		if (o->exits_seen != o->exits) {
			o->exits_seen = o->exits;
			lost++;
		}
	}
	return lost;
}

/*
 * One round over a tracked object. whole: read all of it (round 0, or a mapping was found gone
 * before). Otherwise every tracked mapping is scanned (what it wrote since the round before is
 * queued and protected again), then checked: when one went away, the round reads the whole object
 * instead (the file order in shared.c's opening comment). *ret_written: the bytes read, or
 * UINT64_MAX after a whole read (no measure of what is written per round). Returns 0 or a
 * negative errno; o may have become copied in the freeze.
 */
/* One tracked mapping's written pages since the last round, marked and protected again. */
static void scan_round_one(void *ctx, size_t i)
{
	struct shared_object *o = ctx;
	struct shared_map *sm = &o->maps[i];
	struct page_region vec[FROZEN_SCAN_VEC];

	sm->scan_bytes = 0;
	if (sm->tracked)
		sm->scan_rc = scan_map_into(o, sm, PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC,
					    PAGE_IS_WRITTEN, &sm->scan_bytes, vec, FROZEN_SCAN_VEC);
}

static int round_once(struct capture *c, struct shared_object *o, bool whole, uint64_t *ret_written)
{
	uint64_t written = 0, t0 = now_ns();
	int r;

	c->n_jobs = 0;
	if (!whole && o->track) {
		/* Each mapping is another process's page tables: the scans run on every copy
		 * thread (the marks are atomic). Every page a target writes during the last
		 * round, the pause copies. */
		for (size_t i = 0; i < o->n_maps; i++)
			o->maps[i].scan_rc = 0;
		r = 0;
		if (c->copier)
			r = copier_each(c->copier, scan_round_one, o, o->n_maps);
		else
			for (size_t i = 0; i < o->n_maps; i++)
				scan_round_one(o, i);
		if (r < 0)
			return r; /* interrupted: osmosis is asked to stop */
	}
	for (size_t i = 0; !whole && o->track && i < o->n_maps; i++) {
		struct shared_map *sm = &o->maps[i];
		if (!sm->tracked)
			continue;
		r = sm->scan_rc;
		written += sm->scan_bytes;
		if (r == -ENOMEM)
			return r;
		if (r < 0 && map_state(o, sm) == 0)
			copy_whole(o, "the written pages of pid %d could not be read (%s)",
				   sm->t->proc->pid, strerror(-r));
	}
	if (!whole && o->track && check_maps(c, o) > 0) {
		if (o->rereads >= MAX_REREADS) {
			copy_whole(
			    o,
			    "tracked mappings went away %u times during the rounds (the last: "
			    "pid %d's), so it is copied whole in the freeze",
			    o->rereads + 1, o->last_gone);
		} else {
			o->rereads++;
			whole = true;
		}
	}
	if (!o->track && !o->readonly) {
		clear_marks(o);
		c->n_jobs = 0;
		return 0;
	}
	if (whole) {
		/* The exits known now happened before this read: it sees their writes. */
		if (o->track) {
			watch_children(c);
			o->exits_seen = o->exits;
		}
		clear_marks(o);
		c->n_jobs = 0;
		written = 0;
		r = queue_whole(c, o, &written);
	} else {
		r = queue_marked(c, o);
	}
	if (r < 0)
		return r;
	r = run_jobs(c);
	if (r < 0)
		return r;
	o->copied_before += written;
	o->round_end_ns = now_ns();
	o->round_ns = o->round_end_ns - t0;
	log_debug("shared object %u: %s round: %llu bytes copied in %.1f ms", o->id,
		  whole ? "whole" : "tracked", (unsigned long long)written,
		  (double)(now_ns() - t0) / 1e6);
	*ret_written = whole ? UINT64_MAX : written;
	return fault_point("shared-round");
}

/* Rounds until what is written per round stops shrinking (or is small): the first one a whole
 * read when first_whole. */
static int converge(struct capture *c, struct shared_object *o, bool first_whole)
{
	uint64_t written = UINT64_MAX, prev;
	int r;

	if (first_whole && (r = round_once(c, o, true, &written)) < 0)
		return r;
	for (int round = 1; o->track && round <= MAX_ROUNDS; round++) {
		prev = written;
		r = round_once(c, o, false, &written);
		if (r < 0)
			return r;
		if (written != UINT64_MAX && (written <= SMALL_ENOUGH || written * 5 > prev * 4))
			break;
	}
	return 0;
}

/* The buffer of an object copied in the freeze is touched before it (once), not in the pause. */
static void prefault(const struct capture *c, struct shared_object *o)
{
	if (!o->copy_in_freeze || o->prefaulted)
		return;
	o->prefaulted = true;
	if (madvise(o->buf, o->hi - o->lo, MADV_POPULATE_WRITE) < 0)
		for (uint64_t off = 0; off < o->hi - o->lo; off += c->page_size)
			o->buf[off] = 0;
}

int shared_rounds(struct capture *c)
{
	struct shared_set *ss = c->shared;
	int r;

	for (size_t k = 0; ss && k < ss->n; k++) {
		struct shared_object *o = &ss->v[k];
		uint64_t w;
		if (o->track && (r = converge(c, o, true)) < 0)
			return r;
		if (o->readonly && (r = round_once(c, o, true, &w)) < 0)
			return r;
	}
	/* Objects copied in the freeze: their buffer is touched now, not in the pause. */
	for (size_t k = 0; ss && k < ss->n; k++)
		prefault(c, &ss->v[k]);
	return 0;
}

int shared_settle(struct capture *c)
{
	struct shared_set *ss = c->shared;
	int r;

	for (size_t k = 0; ss && k < ss->n; k++) {
		struct shared_object *o = &ss->v[k];
		for (int tries = 0; o->track && tries < SETTLE_TRIES; tries++) {
			if (check_maps(c, o) == 0)
				break;
			if (o->rereads >= MAX_REREADS) {
				copy_whole(
				    o,
				    "tracked mappings went away %u times before the freeze "
				    "(the last: pid %d's), so it is copied whole in the freeze",
				    o->rereads + 1, o->last_gone);
				break;
			}
			o->rereads++;
			r = converge(c, o, true);
			if (r < 0)
				return r;
		}
		/* The layouts read since the last round (a set's, for each of its members) take
		 * time, and what is written meanwhile would be copied in the pause: one more round
		 * when that time is more than twice a round's. */
		uint64_t w;
		if (o->track && !o->copy_in_freeze && o->round_end_ns &&
		    now_ns() - o->round_end_ns > 2 * o->round_ns + 1000000 &&
		    (r = round_once(c, o, false, &w)) < 0)
			return r;
	}
	watch_stop(c);
	for (size_t k = 0; ss && k < ss->n; k++)
		prefault(c, &ss->v[k]);
	return 0;
}

static struct shared_map *find_map(struct shared_object *o, const struct target *t,
				   const struct osm_mapping *m)
{
	for (size_t i = 0; i < o->n_maps; i++) {
		struct shared_map *sm = &o->maps[i];
		if (sm->t == t && sm->start == m->start && sm->end == m->end &&
		    sm->pgoff == m->pgoff)
			return sm;
	}
	return NULL;
}

int shared_frozen_assign(struct capture *c, struct target *t)
{
	struct shared_set *ss = c->shared;
	struct osm_process *p = t->proc;

	for (size_t i = 0; ss && ss->n && i < p->n_maps; i++) {
		struct osm_mapping *m = &p->maps[i];
		struct shared_object *o = candidate(m) ? find_object(ss, m) : NULL;
		struct shared_map *sm;

		if (!o)
			continue;
		sm = find_map(o, t, m);
		if (!sm || !sm->tracked) {
			/* Mapped since tracking began (or never tracked, or mapped again). */
			if (!sm && add_map(o, t, m, true) < 0)
				return -ENOMEM;
			if (!sm)
				sm = &o->maps[o->n_maps - 1];
			sm->late = !sm->tracked;
			sm->gone = false;
			sm->dumped = m->dump_len > 0;
		}
		sm->in_freeze = true;
		if (m->dump_len && (m->pgoff < o->lo || m->pgoff + m->dump_len > o->hi))
			continue; /* beyond what was planned: copied as its own */
		m->shared_object = o->id;
	}
	return 0;
}

/* The members that reaped a child since the last look (their cfaults rose), marked. In the
 * freeze: a stat line read into the stack per member seen forking (a postmaster, not its
 * backends). */
void shared_frozen_reaped(struct capture *c)
{
	struct shared_set *ss = c->shared;
	bool tracking = false;

	for (size_t k = 0; ss && k < ss->n; k++)
		tracking |= ss->v[k].track;
	for (size_t i = 0; tracking && i < ss->n_parents; i++) {
		struct parent *pa = &ss->parents[i];
		const struct target *t = target_set_find(c->set, pa->pid);
		struct proc_stat st;
		pa->reaped = pa->forks && t && target_live(t) &&
			     proc_read_stat(t->ref.procfd, "stat", &st) == 0 &&
			     st.cfaults != pa->cfaults;
		/* Children the watch accounted for, reaped since its end, explain a rise. */
		if (pa->reaped && pa->watched && st.cfaults - pa->cfaults == reaped_faults(pa))
			pa->reaped = false;
	}
}

/* The freeze's scan of the i-th mapping of the set (the objects' mappings in order), on
 * whichever thread: what it found marked in its object's bitmap, its result kept in it. */
static void scan_frozen_one(void *ctx, size_t i)
{
	struct shared_set *ss = ctx;
	struct page_region vec[FROZEN_SCAN_VEC];
	size_t k = 0;

	while (k < ss->n && i >= ss->v[k].n_maps)
		i -= ss->v[k++].n_maps;
	if (k == ss->n || !ss->v[k].maps[i].scan)
		return;
	struct shared_object *o = &ss->v[k];
	struct shared_map *sm = &o->maps[i];
	sm->scan_bytes = 0;
	sm->scan_rc = fault_point("shared-scan");
	if (sm->scan_rc < 0)
		return;
	if (sm->late)
		/* Untracked, mapped since: what it touched, it may have written. */
		sm->scan_rc =
		    scan_map_into(o, sm, 0, PAGE_IS_PRESENT, &sm->scan_bytes, vec, FROZEN_SCAN_VEC);
	else
		sm->scan_rc = scan_map_into(o, sm, PM_SCAN_CHECK_WPASYNC, PAGE_IS_WRITTEN,
					    &sm->scan_bytes, vec, FROZEN_SCAN_VEC);
}

static int find_frozen(struct capture *c)
{
	struct shared_set *ss = c->shared;
	size_t n_maps = 0;
	int r = 0;

	for (size_t k = 0; ss && k < ss->n; k++) {
		struct shared_object *o = &ss->v[k];

		/* A tracked mapping lost since shared_settle's last look (its process exited or
		 * unmapped it as the freeze began, or was lost in the freeze): its writes since the
		 * last round are unknown. */
		for (size_t i = 0; o->track && i < o->n_maps; i++) {
			struct shared_map *sm = &o->maps[i];
			if (sm->tracked &&
			    (sm->t->uffd < 0 || !target_live(sm->t) || !sm->in_freeze))
				copy_whole_frozen(
				    o,
				    "the tracked mapping of pid %d went away after the last "
				    "round, as the freeze began: its last writes are unknown",
				    sm->t->proc->pid, 0);
		}
		for (size_t i = 0; o->track && i < ss->n_parents; i++)
			if (ss->parents[i].reaped && maps_object(o, ss->parents[i].pid))
				copy_whole_frozen(
				    o,
				    "a child of pid %d exited after the last round, as "
				    "the freeze began: its writes are unknown",
				    ss->parents[i].pid, 0);
		/* A joiner not frozen with the tree: its last writes (or those it still makes)
		 * are unknown. One found gone before had a whole read after. */
		for (size_t i = 0; o->track && i < o->n_joiners; i++) {
			const struct joiner *j = &o->joiners[i];
			const struct target *t = target_set_find(c->set, j->pid);
			if (!j->gone && !(t && target_live(t)))
				copy_whole_frozen(
				    o,
				    "pid %d, forked in the tree after it was listed, was not "
				    "in the freeze: its writes are unknown",
				    j->pid, 0);
		}
		for (size_t i = 0; i < o->n_maps; i++) {
			struct shared_map *sm = &o->maps[i];
			sm->scan = !o->copy_in_freeze && target_live(sm->t) && !sm->gone &&
				   sm->in_freeze && !(o->readonly && !sm->late);
			sm->scan_rc = 0;
			sm->scan_bytes = 0;
		}
		n_maps += o->n_maps;
	}
	/* Each mapping's page tables walked on the copy threads at once (26 PostgreSQL backends
	 * mapping 1 GiB: 6-9 ms on one thread); the targets' CPUs are idle in the freeze. */
	if (c->copier)
		r = copier_each_frozen(c->copier, scan_frozen_one, ss, n_maps);
	else
		for (size_t i = 0; i < n_maps; i++)
			scan_frozen_one(ss, i);
	if (r < 0)
		return r;
	for (size_t k = 0; ss && k < ss->n; k++) {
		struct shared_object *o = &ss->v[k];

		for (size_t i = 0; !o->copy_in_freeze && i < o->n_maps; i++) {
			struct shared_map *sm = &o->maps[i];
			if (!sm->scan)
				continue;
			if (sm->scan_rc == -ENOMEM || sm->scan_rc == -EINTR)
				return sm->scan_rc;
			if (sm->scan_rc < 0) {
				copy_whole_frozen(o,
						  "the written pages of pid %d could not be read "
						  "(%s)",
						  sm->t->proc->pid, -sm->scan_rc);
				clear_marks(o);
				o->copied_in_freeze = 0;
				break;
			}
			o->copied_in_freeze += sm->scan_bytes;
		}
		r = o->copy_in_freeze ? queue_whole(c, o, &o->copied_in_freeze)
				      : queue_marked(c, o);
		if (r < 0)
			return r;
	}
	/* Every mapping the cores hold points into its object's one image. */
	for (size_t i = 0; ss && ss->n && i < c->set->n; i++) {
		struct target *t = c->set->v[i];
		if (!target_live(t))
			continue;
		for (size_t j = 0; j < t->proc->n_maps; j++) {
			struct osm_mapping *m = &t->proc->maps[j];
			struct shared_object *o;
			if (!m->shared_object || !m->dump_len)
				continue;
			o = &ss->v[m->shared_object - 1];
			if (mapping_add_extent(m, 0, m->dump_len, o->buf + (m->pgoff - o->lo)) < 0)
				return -ENOMEM;
		}
	}
	return 0;
}

int shared_frozen(struct capture *c)
{
	uint64_t t0 = now_ns();
	int r;

	if (!c->shared || c->shared->n == 0)
		return 0; /* nothing looked at: no "written" time */
	r = find_frozen(c);
	timeline_pause_part(c->tl, PAUSE_WRITTEN, now_ns() - t0);
	log_debug("shared objects: written pages found in %.2f ms", (double)(now_ns() - t0) / 1e6);
	return r;
}

uint64_t shared_frozen_bytes(const struct capture *c)
{
	uint64_t n = 0;

	for (size_t k = 0; c->shared && k < c->shared->n; k++)
		n += c->shared->v[k].copied_in_freeze;
	return n;
}

void shared_untrack(struct capture *c)
{
	struct shared_set *ss = c->shared;

	/* Unregistering clears the protection holding the target's mmap lock: in slices, so a
	 * thread faulting meanwhile waits for one slice (as precopy_stop does). */
	for (size_t k = 0; ss && k < ss->n; k++) {
		for (size_t i = 0; i < ss->v[k].n_maps; i++) {
			struct shared_map *sm = &ss->v[k].maps[i];
			if (!sm->tracked || sm->t->uffd < 0)
				continue;
			for (uint64_t a = sm->start; a < sm->end; a += UNREGISTER_SLICE) {
				struct uffdio_range rg = {
				    .start = a, .len = MIN(UNREGISTER_SLICE, sm->end - a)};
				if (ioctl(sm->t->uffd, UFFDIO_UNREGISTER, &rg) < 0)
					break;
			}
			sm->tracked = false;
		}
	}
}

int shared_describe(struct capture *c, struct osm_snapshot *s)
{
	struct shared_set *ss = c->shared;

	if (!ss || !ss->n || !s)
		return 0;
	s->shared = calloc(ss->n, sizeof(*s->shared));
	if (!s->shared)
		return -ENOMEM;
	for (size_t k = 0; k < ss->n; k++) {
		struct shared_object *o = &ss->v[k];
		struct osm_shared_object *d = &s->shared[s->n_shared++];

		if (!o->why && o->frozen_why &&
		    asprintf(&o->why, o->frozen_why, o->frozen_why_pid,
			     strerror(o->frozen_why_err)) < 0)
			o->why = NULL;
		if (!o->why && o->rereads &&
		    asprintf(
			&o->why,
			"tracked; a mapper went away before the freeze (the last: %s %d), so it "
			"was read whole again before the freeze (%u time%s)",
			o->last_gone_reaped ? "a child of pid" : "pid", o->last_gone, o->rereads,
			o->rereads == 1 ? "" : "s") < 0)
			o->why = NULL;
		char b[32];
		if (!o->why && o->children &&
		    asprintf(
			&o->why,
			"tracked; %u child%s of pid %d seen to %s exit before the freeze: what "
			"%s touched (%s) was copied, not the whole object",
			o->children, o->children == 1 ? "" : "ren", o->children_of,
			o->children == 1 ? "its" : "their", o->children == 1 ? "it" : "they",
			format_bytes(o->children_bytes, b, sizeof(b))) < 0)
			o->why = NULL;

		*d = (struct osm_shared_object){.id = o->id,
						.kind = o->kind,
						.path = TAKE_PTR(o->path),
						.dev_major = o->dev_major,
						.dev_minor = o->dev_minor,
						.inode = o->inode,
						.offset = o->lo,
						.size = o->hi - o->lo,
						.kept = o->copy_in_freeze ? "copied"
							: o->readonly	  ? "read-only"
									  : "tracked",
						.kept_reason = TAKE_PTR(o->why),
						.copied_before = o->copied_before,
						.copied_in_pause = o->copied_in_freeze,
						.writers_outside = TAKE_PTR(o->outside),
						.n_writers_outside = o->n_outside};
		d->mappers = calloc(o->n_maps ? o->n_maps : 1, sizeof(*d->mappers));
		if (!d->mappers)
			return -ENOMEM;
		for (size_t i = 0; i < o->n_maps; i++) {
			struct shared_map *sm = &o->maps[i];
			if (!target_live(sm->t))
				continue;
			d->mappers[d->n_mappers++] =
			    (struct osm_shared_mapper){.pid = sm->t->proc->pid,
						       .start = sm->start,
						       .end = sm->end,
						       .offset = sm->pgoff,
						       .dumped = sm->dumped};
		}
	}
	return 0;
}

void shared_release(struct capture *c)
{
	struct shared_set *ss = c->shared;

	if (!ss)
		return;
	for (size_t k = 0; k < ss->n; k++) {
		struct shared_object *o = &ss->v[k];
		if (o->buf)
			munmap(o->buf, MAX(o->hi - o->lo, (uint64_t)1));
		if (o->fd >= 0)
			close(o->fd);
		free(o->path);
		free(o->why);
		free(o->maps);
		free(o->marks);
		free(o->outside);
	}
	child_watch_free(ss->watch);
	for (size_t i = 0; i < ss->n_parents; i++)
		free(ss->parents[i].pending);
	free(ss->v);
	free(ss->parents);
	free(ss);
	c->shared = NULL;
}
