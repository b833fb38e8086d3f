/* SPDX-License-Identifier: MIT */
#include <elf.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/fs.h"
#include "inject/inject.h"

#define VDSO_SCAN_MAX 16384

static bool is_syscall_insn(int memfd, uint64_t addr)
{
	char buf[ARCH_SYSCALL_INSN_LEN];
	return pread(memfd, buf, sizeof(buf), (off_t)addr) == (ssize_t)sizeof(buf) &&
	       !memcmp(buf, ARCH_SYSCALL_INSN, sizeof(buf));
}

static uint64_t find_in_vdso(int memfd, const uint8_t *auxv, size_t len)
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
			return base + (uint64_t)i;
	return 0;
}

int inject_begin(struct inject *in, pid_t tid, int memfd, const uint8_t *auxv, size_t auxv_len)
{
	int r;

	memset(in, 0, sizeof(*in));
	in->tid = tid;
	r = arch_gregs_get(tid, &in->saved);
	if (r < 0)
		return r;
	/* A thread stopped in a syscall sits just after a syscall instruction. */
	if (arch_gregs_syscall_nr(&in->saved) >= 0 &&
	    is_syscall_insn(memfd, arch_gregs_pc(&in->saved) - ARCH_SYSCALL_INSN_LEN))
		in->insn = arch_gregs_pc(&in->saved) - ARCH_SYSCALL_INSN_LEN;
	else
		in->insn = find_in_vdso(memfd, auxv, auxv_len);
	in->plain_insn = in->insn;
	return in->insn ? 0 : -ENOEXEC;
}

/* Resume with PTRACE_SYSCALL and wait for the next syscall stop, handling what else stops it. */
static int step_to_syscall_stop(struct inject *in)
{
	int sig = 0;

	for (;;) {
		int status;
		if (ptrace(PTRACE_SYSCALL, in->tid, 0, sig) < 0)
			return -errno;
		sig = 0;
		if (waitpid(in->tid, &status, __WALL) < 0)
			return -errno;
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
		if (event == 0 && WSTOPSIG(status) != SIGTRAP) {
			/* A signal arrived: hold it back now, re-send it after the thaw. */
			in->lost_signal = WSTOPSIG(status);
			continue;
		}
	}
}

int inject_syscall(struct inject *in, long nr, const uint64_t args[6], int64_t *ret)
{
	arch_gregs_t r = in->saved;
	int e;

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

int inject_end(struct inject *in)
{
	arch_gregs_t r = in->saved;
	int e;

	if (!in->active)
		return 0;
	arch_gregs_restart_fixup(&r);
	e = arch_gregs_set(in->tid, &r);
	ptrace(PTRACE_SETOPTIONS, in->tid, 0, PTRACE_O_TRACECLONE);
	if (e == 0)
		in->active = false;
	return e;
}

int inject_seize(pid_t tid)
{
	int status;

	if (ptrace(PTRACE_SEIZE, tid, 0, 0) < 0)
		return -errno;
	if (ptrace(PTRACE_INTERRUPT, tid, 0, 0) < 0) {
		int e = -errno;
		ptrace(PTRACE_DETACH, tid, 0, 0);
		return e;
	}
	int r = inject_wait_stop(tid, &status);
	if (r < 0)
		return r;
	if ((status >> 16) == PTRACE_EVENT_STOP && WSTOPSIG(status) == SIGTRAP)
		return 0;
	/* A signal-delivery-stop (give the signal back) or a group stop (stay stopped). */
	inject_release(tid, (status >> 16) == 0 ? WSTOPSIG(status) : 0);
	return -EAGAIN;
}

int inject_wait_stop(pid_t tid, int *status)
{
	while (waitpid(tid, status, __WALL) < 0)
		if (errno != EINTR)
			return -errno;
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
	char path[64], *text = NULL, *p;
	bool filtered = true; /* unknown counts as filtered */

	snprintf(path, sizeof(path), "task/%d/status", tid);
	if (read_file_at(procfd, path, &text, NULL) == 0 && (p = strstr(text, "\nSeccomp:")))
		filtered = strtol(p + 9, NULL, 10) != 0;
	free(text);
	return filtered;
}
