/* SPDX-License-Identifier: MIT */
/*
 * The clone method: inside the freeze, one held thread of the target runs an injected clone()
 * (src/inject), so the kernel gives osmosis a copy-on-write copy of the target's memory at the
 * freeze instant for the cost of copying its page tables. The target resumes at once; the core is
 * read from the clone after the thaw, while the target runs and its writes break the sharing.
 *
 * The clone:
 *  - never runs user code: it is attached at birth (the injecting thread carries
 *    PTRACE_O_TRACECLONE), held in its first stop, and given PTRACE_O_EXITKILL at once so that
 *    it dies with osmosis. The clone() runs from a trampoline page (arch trampoline.S): if
 *    osmosis dies during it (it lasts as long as the kernel copies page tables: ms per GiB),
 *    the thread restores its own registers, and the clone, finding 0 in rax, exits at once;
 *  - shares the target's descriptor table (CLONE_FILES): no peer sees an extra reference to a
 *    socket, pipe or lock, and since it never runs it never closes one;
 *  - is never a child of the target: the injected clone() makes an intermediate sharing the
 *    target's memory, which makes the clone and exits at once, reaped inside the pause by the
 *    injecting thread's own wait4 from the trampoline (trampoline.S), whether osmosis lives or
 *    not; the clone is then the child of init (or of a subreaper), which reaps it when osmosis
 *    kills it. No zombie is left in the target at any moment osmosis may die. (A target that
 *    is itself a subreaper or a namespace's init gets the orphan: it is reaped from inside it
 *    by an injected wait4(__WALL), as is its business with orphans anyway.) Exit signal 0:
 *    the target gets no SIGCHLD from the intermediate;
 *  - is read with pread on /proc/CLONE/mem, which does not unshare copy-on-write pages
 *    (process_vm_readv pins them and so copies every page: docs/design/kernel-facts.md).
 * What fork does not carry (MADV_DONTFORK, MADV_WIPEONFORK) and shared mappings (which the clone
 * shares, so they would keep changing) are copied during the freeze as the copy method does.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/fault.h"
#include "base/fs.h"
#include "base/util.h"
#include "base/log.h"
#include "base/timeutil.h"
#include "capture/capture.h"
#include "inject/inject.h"
#include "proc/maps.h"
#include "proc/procfs.h"

#define CLONE_BOGUS_SP 16 /* a stack pointer in the never-mapped first page */

/* The method's state for one target (t->method_priv). */
struct clone_target {
	pid_t pid, vpid; /* the clone, in our pid namespace and in the target's; 0: none */
	int pidfd, memfd, pagemap_fd;
};

static void clone_priv_init(void *priv)
{
	struct clone_target *ct = priv;

	ct->pidfd = ct->memfd = ct->pagemap_fd = -1;
}

/* t's clone state, or NULL when t's method is not the clone. */
static struct clone_target *ct_of(const struct target *t)
{
	return t->method == &capture_clone ? t->method_priv : NULL;
}

#ifndef PTRACE_GET_RSEQ_CONFIGURATION
#define PTRACE_GET_RSEQ_CONFIGURATION 0x420f
#endif
struct rseq_config {
	uint64_t rseq_abi_pointer;
	uint32_t rseq_abi_size, signature, flags, pad;
};
#define RSEQ_SAVE_MAX 256

/*
 * The one write the injection makes to the target's memory: returning to user mode to run the
 * syscall instruction, the kernel refreshes the thread's rseq area (the CPU it now runs on).
 * The clone is made after that, so its copy of the area is put back as it was at the freeze.
 */
struct rseq_save {
	uint64_t addr;
	uint32_t len;
	uint8_t bytes[RSEQ_SAVE_MAX];
};

static void rseq_save(struct target *t, pid_t tid, struct rseq_save *rs)
{
	struct rseq_config conf = {0};

	rs->len = 0;
	if (ptrace(PTRACE_GET_RSEQ_CONFIGURATION, tid, sizeof(conf), &conf) < 0 ||
	    !conf.rseq_abi_pointer || !conf.rseq_abi_size || conf.rseq_abi_size > RSEQ_SAVE_MAX)
		return;
	if (pread(t->ref.memfd, rs->bytes, conf.rseq_abi_size, (off_t)conf.rseq_abi_pointer) !=
	    (ssize_t)conf.rseq_abi_size)
		return;
	rs->addr = conf.rseq_abi_pointer;
	rs->len = conf.rseq_abi_size;
}

static void rseq_restore(struct target *t, const struct rseq_save *rs)
{
	struct clone_target *ct = ct_of(t);
	char path[64];
	int fd;

	if (!rs->len)
		return;
	snprintf(path, sizeof(path), "/proc/%d/mem", ct->pid);
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0 || pwrite(fd, rs->bytes, rs->len, (off_t)rs->addr) != (ssize_t)rs->len)
		log_debug("pid %d: cannot restore the rseq area in the clone", t->proc->pid);
	if (fd >= 0)
		close(fd);
}

/* The new task's first stop, then EXITKILL: from here it cannot outlive osmosis. */
static int hold_clone(struct target *t)
{
	struct clone_target *ct = ct_of(t);
	char path[64];
	int status;

	int r = inject_wait_stop(ct->pid, &status);
	if (r < 0)
		return r;
	if (ptrace(PTRACE_SETOPTIONS, ct->pid, 0, PTRACE_O_EXITKILL) < 0)
		return -errno;
	ct->pidfd = (int)syscall(SYS_pidfd_open, ct->pid, 0);
	snprintf(path, sizeof(path), "/proc/%d/mem", ct->pid);
	ct->memfd = open(path, O_RDONLY | O_CLOEXEC);
	snprintf(path, sizeof(path), "/proc/%d/pagemap", ct->pid);
	ct->pagemap_fd = open(path, O_RDONLY | O_CLOEXEC);
	return ct->memfd < 0 ? -errno : 0;
}

/* The clone, run in the thread inject_in_safe_thread chose: the trampoline page mapped, the
 * clone() run from it, the page unmapped. */
struct clone_run {
	struct target *t;
	int64_t ret; /* the clone's result: the clone's pid in the target, or -errno */
	int fault;   /* the fault point's answer */
	int lost;    /* a signal from outside met while injecting */
};

/* Let the intermediate, held by us, run to its exit (the trampoline's exit(0)); it is then the
 * target's zombie until the target's thread reaps it. Bounded; SIGKILL as the last word. */
static void finish_intermediate(pid_t mid)
{
	for (int n = 0; n < 16; n++) {
		int status;
		if (ptrace(PTRACE_CONT, mid, 0, 0) < 0 && errno == ESRCH)
			break;
		if (waitpid(mid, &status, __WALL) < 0 && errno != EINTR)
			return;
		if (WIFEXITED(status) || WIFSIGNALED(status))
			return;
	}
	kill(mid, SIGKILL);
	while (waitpid(mid, NULL, __WALL) < 0 && errno == EINTR)
		;
}

/* The intermediate I (trampoline.S) is in its first stop: it dies with osmosis from here on,
 * and so does the clone it makes (options are inherited). Step it through its clone(): the
 * clone C is held; then I exits. Returns 0 or a negative errno of the machinery; the clone's own
 * failure (such as -EAGAIN under pids.max) goes to *ret_clone. */
static int make_clone_in(struct target *t, pid_t mid, int64_t *ret_clone)
{
	struct clone_target *ct = ct_of(t);
	struct inject im = {.tid = mid};
	int64_t ret = -ECHILD;
	int status, r;

	r = inject_wait_stop(mid, &status);
	if (r == 0 && ptrace(PTRACE_SETOPTIONS, mid, 0,
			     PTRACE_O_EXITKILL | PTRACE_O_TRACECLONE | PTRACE_O_TRACESYSGOOD) < 0)
		r = -errno;
	if (r == 0)
		r = fault_point("intermediate");
	if (r == 0)
		r = inject_follow_syscall(&im, &ret);
	if (im.child > 0) {
		ct->pid = im.child;
		ct->vpid = ret > 0 ? (pid_t)ret : 0;
	}
	*ret_clone = ret;
	if (ct->pid) {
		int e = hold_clone(t);
		if (r == 0)
			r = e;
	}
	finish_intermediate(mid);
	return r;
}

/* The clone, run in the thread inject_in_safe_thread chose (see trampoline.S for the dance):
 * the trampoline page mapped, the intermediate made from it, the clone made by the
 * intermediate, the intermediate reaped by the thread's own wait4, the page unmapped. */
static int run_clone(struct inject *in, void *ctx)
{
	struct clone_run *cr = ctx;
	struct target *t = cr->t;
	struct clone_target *ct = ct_of(t);
	uint64_t args[6] = {CLONE_VM | CLONE_FILES, CLONE_BOGUS_SP, 0, 0, 0, 0};
	struct rseq_save rs;
	pid_t mid = 0;
	int r;

	rseq_save(t, in->tid, &rs);
	r = cr->fault = fault_point("injecting");
	int memfd_rw = r == 0 ? openat(t->ref.procfd, "mem", O_RDWR | O_CLOEXEC) : -1;
	if (r == 0 && memfd_rw < 0)
		r = -errno;
	if (r == 0)
		r = inject_trampoline_map(in, memfd_rw);
	if (r == 0)
		r = cr->fault = fault_point("trampoline");
	if (r == 0)
		r = inject_syscall(in, SYS_clone, args, &cr->ret);
	mid = in->child;
	in->child = 0;
	if (mid > 0) {
		int64_t mid_vpid = cr->ret;
		if (r == 0 && cr->ret > 0)
			r = make_clone_in(t, mid, &cr->ret);
		else
			finish_intermediate(mid);
		/* The thread's trampoline waits for the intermediate: follow that wait4. */
		int64_t reaped = 0;
		int e = inject_follow_syscall(in, &reaped);
		if (e == 0 && reaped != mid_vpid)
			log_debug("pid %d: the intermediate %lld not reaped (%lld)", t->proc->pid,
				  (long long)mid_vpid, (long long)reaped);
		if (r == 0)
			r = e;
	}
	int e = inject_end(in);
	if (in->tramp && inject_trampoline_unmap(in) < 0)
		log_debug("pid %d: cannot unmap the trampoline page %#llx", t->proc->pid,
			  (unsigned long long)in->tramp);
	if (memfd_rw >= 0)
		close(memfd_rw);
	if (r == 0 && ct->pid)
		rseq_restore(t, &rs);
	return r ? r : e;
}

static void clone_release(struct target *t);

/* Inside the freeze, after the layout: inject the clone. Returns 0, or a negative errno when
 * this target cannot be cloned (the caller copies it instead); logs at debug level. *why gets a
 * static reason on failure. */
static int clone_frozen(struct capture *c, struct target *t, const char **why)
{
	struct clone_target *ct = ct_of(t);
	struct osm_process *p = t->proc;
	struct clone_run cr = {.t = t};
	pid_t tid = 0;
	int r;

	(void)c;
	r = inject_in_safe_thread(t, run_clone, &cr, &tid, why);
	if (r == -EAGAIN)
		return r; /* *why says why no thread could run it */
	if (r == 0 && cr.ret < 0)
		r = (int)cr.ret;
	if (r == 0 && !ct->pid)
		r = -ECHILD;
	if (r < 0) {
		log_debug("pid %d: injected clone failed: %s", p->pid, strerror(-r));
		*why = "the injected clone failed";
		clone_release(t);
		return cr.fault < 0 ? cr.fault : r;
	}
	log_debug("pid %d: clone %d (%d in its namespace) by thread %d", p->pid, ct->pid, ct->vpid,
		  tid);
	return fault_point("cloned");
}

static int emit_fd(struct capture *c, struct target *t, struct osm_mapping *m, uint64_t off,
		   uint64_t len, void *ctx)
{
	(void)c;
	(void)ctx;
	return mapping_add_fd_extent(m, off, len, ct_of(t)->memfd, m->start + off);
}

/* After the thaw: extents read from the clone for mappings not copied in the freeze. */
static int clone_finish(struct capture *c, struct target *t)
{
	struct clone_target *ct = ct_of(t);
	struct osm_process *p = t->proc;
	int r;

	for (size_t i = 0; i < p->n_maps; i++) {
		struct osm_mapping *m = &p->maps[i];
		if (m->dump_len == 0 || clone_copies_in_freeze(m))
			continue;
		r = capture_runs(c, t, m, ct->pagemap_fd, emit_fd, NULL);
		if (r < 0)
			return log_error(r, "out of memory planning the core of pid %d", p->pid);
	}
	return 0;
}

struct wait4_run {
	pid_t vpid;
	int64_t ret;
};

static int run_wait4(struct inject *in, void *ctx)
{
	struct wait4_run *w = ctx;
	uint64_t args[6] = {(uint64_t)w->vpid, 0, __WALL | WNOHANG, 0, 0, 0};

	return inject_syscall(in, SYS_wait4, args, &w->ret);
}

/* Reap the dead clone's zombie from inside the target: wait4(clone, NULL, __WALL | WNOHANG),
 * in a thread the freeze holds, or else in one seized for the purpose. */
static void reap_in_target(struct target *t)
{
	struct clone_target *ct = ct_of(t);
	struct wait4_run w = {.vpid = ct->vpid, .ret = -ESRCH};
	const char *why = NULL;
	int r = inject_in_safe_thread(t, run_wait4, &w, NULL, &why);

	if (r == 0 && w.ret == ct->vpid)
		log_debug("pid %d: clone %d reaped", t->proc->pid, ct->vpid);
	else
		log_debug("pid %d: clone %d not reaped (%s); it stays a zombie until pid %d exits",
			  t->proc->pid, ct->vpid,
			  r == -EAGAIN ? why : strerror(r ? -r : (int)-w.ret), t->proc->pid);
}

/* Whether the clone's parent is the target itself: when the target is a child subreaper (or
 * the init of its pid namespace), the orphaned clone was given to it. */
static bool clone_parent_is_target(const struct target *t)
{
	struct clone_target *ct = ct_of(t);
	struct proc_stat st;
	char path[64];

	snprintf(path, sizeof(path), "/proc/%d/stat", ct->pid);
	return proc_read_stat(AT_FDCWD, path, &st) == 0 && st.ppid == t->proc->pid;
}

/* End the clone and reap it. Never fails. */
static void clone_release(struct target *t)
{
	struct clone_target *ct = ct_of(t);
	int status;

	if (!ct)
		return;
	if (ct->memfd >= 0)
		close(ct->memfd);
	if (ct->pagemap_fd >= 0)
		close(ct->pagemap_fd);
	ct->memfd = ct->pagemap_fd = -1;
	if (!ct->pid)
		return;
	bool reap = clone_parent_is_target(t);
	log_debug("pid %d: clone %d, its parent %s", t->proc->pid, ct->pid,
		  reap ? "the target" : "not the target");
	if (ct->pidfd >= 0)
		syscall(SYS_pidfd_send_signal, ct->pidfd, SIGKILL, NULL, 0);
	else
		kill(ct->pid, SIGKILL);
	/* As its tracer we see it die first; then its parent (init, a subreaper) reaps it. */
	while (waitpid(ct->pid, &status, __WALL) < 0 && errno == EINTR)
		;
	if (ct->pidfd >= 0)
		close(ct->pidfd);
	ct->pidfd = -1;
	if (reap && ct->vpid > 0 && t->ref.memfd >= 0)
		reap_in_target(t);
	ct->pid = ct->vpid = 0;
}

/* A zombie clone of an earlier run killed with SIGKILL: a dead child of t with exit signal 0 and
 * t's name. Returns its pid in t's namespace (NSpid's last field), or 0. */
static pid_t leftover_zombie(struct target *t, pid_t pid)
{
	struct proc_stat st;
	char path[64], *line = NULL;
	size_t cap = 0;
	pid_t vpid = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	if (proc_read_stat(AT_FDCWD, path, &st) < 0 || st.ppid != t->proc->pid || st.state != 'Z' ||
	    st.exit_signal != 0 || strcmp(st.comm, t->proc->comm))
		return 0;
	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	f = fopen(path, "re");
	while (f && getline(&line, &cap, f) > 0) {
		if (!strncmp(line, "NSpid:", 6)) {
			char *last = strrchr(line, '\t');
			vpid = last ? (pid_t)strtol(last + 1, NULL, 10) : pid;
		}
	}
	free(line);
	if (f)
		fclose(f);
	return vpid;
}

static bool is_tramp_page(struct target *t, uint64_t addr)
{
	size_t len;
	const uint8_t *code = arch_tramp_code(&len);
	uint8_t buf[ARCH_TRAMP_MAX];

	return pread(t->ref.memfd, buf, len, (off_t)addr) == (ssize_t)len &&
	       !memcmp(buf, code, len);
}

struct tidy_run {
	const pid_t *zombies;
	size_t n_zombies;
	const uint64_t *pages;
	size_t n_pages;
	size_t page_size;
};

static int run_tidy(struct inject *in, void *ctx)
{
	struct tidy_run *tr = ctx;
	int64_t ret;
	int r = 0;

	for (size_t k = 0; k < tr->n_zombies && r == 0; k++) {
		uint64_t args[6] = {(uint64_t)tr->zombies[k], 0, __WALL | WNOHANG};
		r = inject_syscall(in, SYS_wait4, args, &ret);
	}
	for (size_t k = 0; k < tr->n_pages && r == 0; k++) {
		uint64_t args[6] = {tr->pages[k], tr->page_size};
		r = inject_syscall(in, SYS_munmap, args, &ret);
	}
	return r;
}

/* Before the freeze: what an earlier osmosis killed with SIGKILL may have left in t (a zombie
 * clone, a trampoline page) is removed. Never fails. */
static void clone_tidy_leftovers(struct capture *c, struct target *t)
{
	struct osm_mapping *maps = NULL;
	size_t n = 0, n_zombies = 0, n_pages = 0;
	pid_t zombies[64];
	uint64_t pages[64];

	if (t->ref.memfd < 0 && pidref_open_mem(&t->ref) < 0)
		return;
	if (capture_read_maps(t, "maps", &maps, &n) == 0) {
		for (size_t i = 0; i < n; i++) {
			struct osm_mapping *m = &maps[i];
			if (m->path || m->shared || m->prot != (PROT_READ | PROT_EXEC) ||
			    m->end - m->start > 64 * c->page_size)
				continue;
			for (uint64_t a = m->start; a < m->end && n_pages < ARRAY_SIZE(pages);
			     a += c->page_size)
				if (is_tramp_page(t, a))
					pages[n_pages++] = a;
		}
		maps_free(maps, n);
	}
	/* Children are listed per thread (task/TID/children): cheap, unlike a walk of /proc. */
	for (size_t i = 0; i < t->proc->n_threads && n_zombies < ARRAY_SIZE(zombies); i++) {
		_cleanup_free_ char *text = NULL;
		char path[64];

		snprintf(path, sizeof(path), "task/%d/children", t->proc->threads[i]->tid);
		if (read_file_at(t->ref.procfd, path, &text, NULL) < 0)
			continue;
		for (char *p = text, *end; *p && n_zombies < ARRAY_SIZE(zombies); p = end) {
			pid_t pid = (pid_t)strtol(p, &end, 10), vpid;
			if (end == p)
				break;
			if (pid > 0 && (vpid = leftover_zombie(t, pid)) > 0)
				zombies[n_zombies++] = vpid;
		}
	}
	if (!n_pages && !n_zombies)
		return;

	struct tidy_run tr = {.zombies = zombies,
			      .n_zombies = n_zombies,
			      .pages = pages,
			      .n_pages = n_pages,
			      .page_size = c->page_size};
	const char *why = NULL;
	if (inject_in_safe_thread(t, run_tidy, &tr, NULL, &why) == 0)
		log_warn("pid %d: removed what a killed osmosis left: %zu zombie clone%s, %zu "
			 "trampoline page%s",
			 t->proc->pid, n_zombies, n_zombies == 1 ? "" : "s", n_pages,
			 n_pages == 1 ? "" : "s");
}

/* ------------------------------------------------------------------------------------------ */
/* The method's hooks (method.h) */

static int clone_choose(struct capture *c, struct target *t)
{
	bool ok;
	int r = capture_injectable(c, t, &ok);

	if (r < 0 || !ok)
		return r; /* copied, with the reason */
	capture_set_method(t, &capture_clone, "requested with --method clone");
	return 0;
}

/* The clone carries private memory; what fork does not carry is copied in the freeze. */
static uint64_t clone_arena_bytes(const struct capture *c, const struct target *t)
{
	uint64_t n = 0;

	(void)c;
	for (size_t i = 0; i < t->n_pre_maps; i++)
		if (clone_copies_in_freeze(&t->pre_maps[i]))
			n += capture_planned_size(&t->pre_maps[i]);
	return n;
}

static bool clone_whole(const struct target *t, const struct osm_mapping *m)
{
	(void)t;
	return clone_copies_in_freeze(m);
}

static uint64_t clone_freeze_bytes(const struct capture *c, const struct target *t,
				   uint64_t *ret_bounded)
{
	(void)c;
	*ret_bounded = 0;
	return capture_ready_whole_bytes(t, clone_whole);
}

static int clone_keep(struct capture *c, struct target *t)
{
	const char *why = NULL;
	uint64_t t0 = now_ns();
	int r = clone_frozen(c, t, &why);

	timeline_pause_part(c->tl, PAUSE_CLONE, now_ns() - t0);
	if (r == -EINTR || r == -ETIMEDOUT)
		return r;
	if (r == 0)
		return capture_copy_all(c, t, true);
	/* The reservation held only what a clone copies: copy only if the rest fits. */
	bool fits = capture_copy_need(t) <= arena_free_bytes(&c->arena);
	capture_set_method(t, &capture_copy, "%s: %s%s",
			   t->proc->method_reason ? t->proc->method_reason : "clone", why,
			   fits ? ", so copied in the freeze" : "");
	return fits ? capture_copy_all(c, t, false) : -ENOBUFS;
}

static int clone_complete(struct capture *c, struct target *t)
{
	struct clone_target *ct = ct_of(t);

	if (!ct || !ct->pid)
		return 0;
	size_t ph = timeline_begin(c->tl, "clone-map", t->proc->pid);
	int r = clone_finish(c, t);
	timeline_end(c->tl, ph);
	return r;
}

const struct capture_ops capture_clone = {
    .id = METHOD_CLONE,
    .help = "a copy-on-write clone made inside the target",
    .priv_size = sizeof(struct clone_target),
    .priv_init = clone_priv_init,
    .tidy = clone_tidy_leftovers,
    .choose = clone_choose,
    .arena_bytes = clone_arena_bytes,
    .freeze_bytes = clone_freeze_bytes,
    .frozen = clone_keep,
    .finish = clone_complete,
    .release = clone_release,
};
