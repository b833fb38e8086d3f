/* SPDX-License-Identifier: MIT */
#include <elf.h>
#include <fcntl.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/fs.h"
#include "base/timeutil.h"
#include "base/util.h"
#include "freeze/guard.h"
#include "inject/inject.h"

#define VDSO_SCAN_MAX  16384
#define MAX_STOPS      64		     /* stops met by one injected syscall, at most */
#define FINISH_WAIT_NS (500ull * 1000000ull) /* a syscall under way, after a stop request */
#define FINISH_POLL_US 1000

#define ERESTARTSYS_	512 /* the kernel's restart codes: never seen by programs */
#define ERESTART_BLOCK_ 516

#ifndef PTRACE_GET_SYSCALL_USER_DISPATCH_CONFIG
#define PTRACE_GET_SYSCALL_USER_DISPATCH_CONFIG 0x4211
#endif
#ifndef PR_SET_SYSCALL_USER_DISPATCH
#define PR_SET_SYSCALL_USER_DISPATCH 59
#endif
struct sud_config {
	uint64_t mode, selector, offset, len;
};

/* PROCMAP_QUERY (Linux 6.11): one mapping's flags by address, from /proc/PID/maps. */
struct procmap_query_ {
	uint64_t size, query_flags, query_addr, vma_start, vma_end, vma_flags, vma_page_size,
	    vma_offset, inode;
	uint32_t dev_major, dev_minor, vma_name_size, build_id_size;
	uint64_t vma_name_addr, build_id_addr;
};
#define PROCMAP_QUERY_		_IOWR('f', 17, struct procmap_query_)
#define PROCMAP_QUERY_VMA_EXEC_ 0x04

static bool is_syscall_insn(int memfd, uint64_t addr)
{
	char buf[ARCH_SYSCALL_INSN_LEN];
	return pread(memfd, buf, sizeof(buf), (off_t)addr) == (ssize_t)sizeof(buf) &&
	       !memcmp(buf, ARCH_SYSCALL_INSN, sizeof(buf));
}

/* Whether [addr, addr + len) lies in one executable mapping of the target now. /proc/PID/mem
 * reads any mapping whatever its protection, so finding the bytes proves nothing: the map must
 * say PROT_EXEC. PROCMAP_QUERY asks for one address; older kernels get the text scanned. */
static bool executable_at(int procfd, uint64_t addr, uint64_t len)
{
	_cleanup_close_ int fd = openat(procfd, "maps", O_RDONLY | O_CLOEXEC);
	struct procmap_query_ q = {.size = sizeof(q), .query_addr = addr};
	_cleanup_free_ char *text = NULL;

	if (fd < 0)
		return false;
	if (ioctl(fd, PROCMAP_QUERY_, &q) == 0)
		return q.vma_start <= addr && addr + len <= q.vma_end &&
		       (q.vma_flags & PROCMAP_QUERY_VMA_EXEC_);
	if (errno != ENOTTY && errno != EINVAL)
		return false; /* ENOENT: no mapping there */
	if (read_file_at(procfd, "maps", &text, NULL) < 0)
		return false;
	for (char *line = text; line && *line;) {
		unsigned long long lo, hi;
		char perms[8];
		char *next = strchr(line, '\n');
		if (sscanf(line, "%llx-%llx %7s", &lo, &hi, perms) == 3 && lo <= addr &&
		    addr + len <= hi)
			return perms[2] == 'x';
		line = next ? next + 1 : NULL;
	}
	return false;
}

static uint64_t find_in_vdso(int procfd, int memfd, const uint8_t *auxv, size_t len)
{
	static char buf[VDSO_SCAN_MAX];
	uint64_t base = 0;
	ssize_t n;

	for (size_t i = 0; i + 16 <= len; i += 16) {
		uint64_t type, val;
		memcpy(&type, auxv + i, 8);
		memcpy(&val, auxv + i + 8, 8);
		if (type == AT_SYSINFO_EHDR)
			base = val;
	}
	if (!base)
		return 0;
	n = pread(memfd, buf, sizeof(buf), (off_t)base);
	for (ssize_t i = 0; i + ARCH_SYSCALL_INSN_LEN <= n; i++)
		if (!memcmp(buf + i, ARCH_SYSCALL_INSN, ARCH_SYSCALL_INSN_LEN))
			return executable_at(procfd, base + (uint64_t)i, ARCH_SYSCALL_INSN_LEN)
				   ? base + (uint64_t)i
				   : 0;
	return 0;
}

/* Whether this kernel has Syscall User Dispatch (probed once on osmosis itself: turning it off
 * where it is off is harmless). */
static bool kernel_has_sud(void)
{
	static int has = -1;

	if (has < 0)
		has = prctl(PR_SET_SYSCALL_USER_DISPATCH, 0, 0, 0, 0) == 0;
	return has == 1;
}

const char *inject_thread_refusal(int procfd, pid_t tid)
{
	struct sud_config conf = {0};

	if (inject_thread_filtered(procfd, tid))
		return "it runs under a seccomp filter";
	if (ptrace(PTRACE_GET_SYSCALL_USER_DISPATCH_CONFIG, tid, sizeof(conf), &conf) == 0)
		return conf.mode ? "it uses Syscall User Dispatch (as Wine does)" : NULL;
	if (errno == ESRCH)
		return "it exited";
	if (kernel_has_sud())
		return "this kernel cannot tell whether it uses Syscall User Dispatch";
	return NULL;
}

int inject_begin(struct inject *in, pid_t tid, int procfd, int memfd, const uint8_t *auxv,
		 size_t auxv_len)
{
	uint64_t pc;
	int r;

	memset(in, 0, sizeof(*in));
	in->tid = tid;
	in->procfd = procfd;
	r = arch_gregs_get(tid, &in->saved);
	if (r < 0)
		return r;
	if (ptrace(PTRACE_GETSIGMASK, tid, sizeof(in->saved_mask), &in->saved_mask) < 0)
		return -errno;
	/* A thread stopped in a syscall sits just after a syscall instruction. */
	pc = arch_gregs_pc(&in->saved);
	if (arch_gregs_syscall_nr(&in->saved) >= 0 && pc >= ARCH_SYSCALL_INSN_LEN &&
	    is_syscall_insn(memfd, pc - ARCH_SYSCALL_INSN_LEN) &&
	    executable_at(procfd, pc - ARCH_SYSCALL_INSN_LEN, ARCH_SYSCALL_INSN_LEN))
		in->insn = pc - ARCH_SYSCALL_INSN_LEN;
	else
		in->insn = find_in_vdso(procfd, memfd, auxv, auxv_len);
	in->plain_insn = in->insn;
	return in->insn ? 0 : -ENOEXEC;
}

/* A signal the injected instruction itself raised (a fault, a trap, a SIGSYS from seccomp or
 * Syscall User Dispatch), as opposed to one sent from outside meanwhile. */
static bool raised_by_insn(const siginfo_t *si)
{
	switch (si->si_signo) {
	case SIGSEGV:
	case SIGBUS:
	case SIGILL:
	case SIGTRAP:
	case SIGFPE:
	case SIGSYS:
		return si->si_code > 0; /* kernel-generated; SI_USER, SI_TKILL... are <= 0 */
	default:
		return false;
	}
}

/* waitpid for tid. When osmosis is told to stop (a signal, the watchdog): with finish set (the
 * thread runs injected registers) keep waiting up to FINISH_WAIT_NS and note it in
 * in->interrupted; otherwise return the request at once. */
static int wait_for(struct inject *in, int *status, bool finish)
{
	uint64_t deadline = 0;

	for (;;) {
		pid_t w = waitpid(in->tid, status, __WALL | (deadline ? WNOHANG : 0));
		if (w == in->tid)
			return 0;
		if (w < 0 && errno != EINTR)
			return -errno;
		int g = guard_check();
		if (g < 0 && !finish)
			return g;
		if (g < 0 && !deadline) {
			in->interrupted = g;
			deadline = now_ns() + FINISH_WAIT_NS;
		}
		if (deadline && now_ns() >= deadline)
			return g;
		if (deadline)
			usleep(FINISH_POLL_US);
	}
}

/* Resume with PTRACE_SYSCALL and wait for the next syscall stop, handling what else stops it.
 * Bounded: MAX_STOPS stops at most. */
static int step_to_syscall_stop(struct inject *in)
{
	for (int n = 0; n < MAX_STOPS; n++) {
		int status, r;

		if (ptrace(PTRACE_SYSCALL, in->tid, 0, 0) < 0)
			return -errno;
		r = wait_for(in, &status, true);
		if (r < 0)
			return r;
		if (!WIFSTOPPED(status))
			return -ESRCH; /* killed meanwhile */
		if (WSTOPSIG(status) == (SIGTRAP | 0x80))
			return 0;
		int event = status >> 16;
		if (event == PTRACE_EVENT_CLONE || event == PTRACE_EVENT_FORK ||
		    event == PTRACE_EVENT_VFORK) {
			unsigned long child = 0;
			if (ptrace(PTRACE_GETEVENTMSG, in->tid, 0, &child) == 0)
				in->child = (pid_t)child;
			continue;
		}
		if (event != 0)
			continue; /* a group stop or an interrupt: resume the syscall */
		/* A signal-delivery-stop (with TRACESYSGOOD, syscall stops are told apart). */
		siginfo_t si;
		if (ptrace(PTRACE_GETSIGINFO, in->tid, 0, &si) < 0)
			return -errno;
		if (raised_by_insn(&si)) {
			/* Ours: the syscall did not run. Keep the thread in this stop; inject_end
			 * restores it and throws the signal away. */
			in->fault_signal = si.si_signo;
			in->in_sigstop = true;
			return -EFAULT;
		}
		/* From outside: hold it back now (resuming with 0 discards it), re-send it after.
		 * Only one can be kept; a later one of another number replaces it. */
		in->lost_signal = si.si_signo;
	}
	return -EIO;
}

int inject_syscall(struct inject *in, long nr, const uint64_t args[6], int64_t *ret)
{
	arch_gregs_t r = in->saved;
	int e;

	if (in->in_sigstop)
		return -EFAULT; /* a previous syscall faulted: restore first */
	if (ptrace(PTRACE_SETOPTIONS, in->tid, 0, PTRACE_O_TRACECLONE | PTRACE_O_TRACESYSGOOD) < 0)
		return -errno;
	arch_gregs_setup_syscall(&r, in->insn, nr, args);
	e = arch_gregs_set(in->tid, &r);
	if (e < 0)
		return e;
	in->active = true;
	e = step_to_syscall_stop(in); /* entry */
	if (e == 0)
		e = step_to_syscall_stop(in); /* exit */
	if (e == 0)
		e = arch_gregs_get(in->tid, &r);
	if (e < 0)
		return e;
	*ret = arch_gregs_syscall_result(&r);
	return 0;
}

int inject_follow_syscall(struct inject *in, int64_t *ret)
{
	for (int n = 0; n < MAX_STOPS; n++) {
		struct __ptrace_syscall_info info;
		int r = step_to_syscall_stop(in);

		if (r < 0)
			return r;
		if (ptrace(PTRACE_GET_SYSCALL_INFO, in->tid, sizeof(info), &info) < 0)
			return -errno;
		if (info.op != PTRACE_SYSCALL_INFO_EXIT)
			continue;
		/* A syscall the kernel restarts (a signal met it) shows its exit, then its entry.
		 */
		if (info.exit.rval <= -ERESTARTSYS_ && info.exit.rval >= -ERESTART_BLOCK_)
			continue;
		*ret = info.exit.rval;
		return 0;
	}
	return -EIO;
}

/* The thread is in the signal-delivery-stop of a signal the injection raised, its registers
 * restored: discard the signal and bring it to an interrupt stop without letting it run. With
 * an interrupt pending, the kernel's signal loop traps into PTRACE_EVENT_STOP before it
 * dequeues anything else or returns to user mode. */
static int leave_sigstop(struct inject *in)
{
	int status;

	if (ptrace(PTRACE_INTERRUPT, in->tid, 0, 0) < 0 || ptrace(PTRACE_CONT, in->tid, 0, 0) < 0)
		return -errno;
	for (int n = 0; n < MAX_STOPS; n++) {
		int r = wait_for(in, &status, true);
		if (r < 0)
			return r;
		if (!WIFSTOPPED(status))
			return -ESRCH;
		if ((status >> 16) == PTRACE_EVENT_STOP)
			break;
		if ((status >> 16) == 0) {
			/* Another signal was already on its way: keep the last one from outside. */
			siginfo_t si;
			if (ptrace(PTRACE_GETSIGINFO, in->tid, 0, &si) == 0 && !raised_by_insn(&si))
				in->lost_signal = si.si_signo;
		}
		if (ptrace(PTRACE_CONT, in->tid, 0, 0) < 0)
			return -errno;
	}
	in->in_sigstop = false;
	return 0;
}

int inject_end(struct inject *in)
{
	arch_gregs_t r = in->saved;
	int e;

	if (!in->active)
		return 0;
	arch_gregs_restart_fixup(&r);
	e = arch_gregs_set(in->tid, &r);
	/* A fault forced on a thread unblocks the signal: the mask is put back as it was. */
	if (e == 0 &&
	    ptrace(PTRACE_SETSIGMASK, in->tid, sizeof(in->saved_mask), &in->saved_mask) < 0)
		e = -errno;
	if (e == 0 && in->in_sigstop)
		e = leave_sigstop(in);
	ptrace(PTRACE_SETOPTIONS, in->tid, 0, PTRACE_O_TRACECLONE);
	if (e == 0)
		in->active = false;
	return e;
}

int inject_seize(pid_t tid)
{
	struct inject w = {.tid = tid};
	int status;

	if (ptrace(PTRACE_SEIZE, tid, 0, 0) < 0)
		return -errno;
	if (ptrace(PTRACE_INTERRUPT, tid, 0, 0) < 0) {
		int e = -errno;
		ptrace(PTRACE_DETACH, tid, 0, 0);
		return e;
	}
	int r = wait_for(&w, &status, false);
	if (r < 0)
		return r; /* still seized: detached when osmosis exits, which it does now */
	if (!WIFSTOPPED(status))
		return -ESRCH;
	if ((status >> 16) == PTRACE_EVENT_STOP && WSTOPSIG(status) == SIGTRAP)
		return 0;
	/* A signal-delivery-stop (give the signal back) or a group stop (stay stopped). */
	inject_release(tid, (status >> 16) == 0 ? WSTOPSIG(status) : 0);
	return -EAGAIN;
}

int inject_wait_stop(pid_t tid, int *status)
{
	struct inject w = {.tid = tid};
	int r = wait_for(&w, status, false);

	if (r < 0)
		return r;
	return WIFSTOPPED(*status) ? 0 : -ESRCH;
}

void inject_release(pid_t tid, int sig)
{
	ptrace(PTRACE_DETACH, tid, 0, sig);
}

int inject_trampoline_map(struct inject *in, int memfd_rw)
{
	uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
	uint64_t args[6] = {
	    0, page, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, (uint64_t)-1, 0};
	uint8_t blob[ARCH_TRAMP_MAX];
	arch_gregs_t restore = in->saved;
	size_t len;
	int64_t addr;
	int r;

	in->insn = in->plain_insn;
	r = inject_syscall(in, SYS_mmap, args, &addr);
	if (r == 0 && addr < 0)
		r = (int)addr;
	if (r < 0)
		return r;
	in->tramp = (uint64_t)addr;
	r = inject_end(in); /* the thread is itself again until the long syscall */
	if (r < 0)
		return r;
	arch_gregs_restart_fixup(&restore);
	arch_tramp_build(&restore, blob, &len);
	if (pwrite(memfd_rw, blob, len, (off_t)in->tramp) != (ssize_t)len) {
		r = errno ? -errno : -EIO;
		inject_trampoline_unmap(in);
		return r;
	}
	in->insn = in->tramp;
	return 0;
}

int inject_trampoline_unmap(struct inject *in)
{
	uint64_t args[6] = {in->tramp, (uint64_t)sysconf(_SC_PAGESIZE), 0, 0, 0, 0};
	int64_t ret;
	int r;

	if (!in->tramp)
		return 0;
	in->insn = in->plain_insn;
	r = inject_syscall(in, SYS_munmap, args, &ret);
	if (r == 0 && ret < 0)
		r = (int)ret;
	if (r == 0)
		in->tramp = 0;
	int e = inject_end(in);
	return r ? r : e;
}

bool inject_thread_filtered(int procfd, pid_t tid)
{
	/* Read into the stack: this runs inside the freeze, which allocates nothing. A status
	 * longer than the buffer (tens of thousands of groups) without the line counts as
	 * filtered. */
	char path[64], text[32768], *p;
	bool filtered = true; /* unknown counts as filtered */
	size_t len = 0;
	int fd;

	snprintf(path, sizeof(path), "task/%d/status", tid);
	fd = openat(procfd, path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return true;
	for (;;) {
		ssize_t n = read(fd, text + len, sizeof(text) - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
		if (len == sizeof(text) - 1)
			break;
	}
	close(fd);
	text[len] = 0;
	if ((p = strstr(text, "\nSeccomp:")))
		filtered = strtol(p + 9, NULL, 10) != 0;
	return filtered;
}
