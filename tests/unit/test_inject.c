/* SPDX-License-Identifier: MIT */
/* Syscall injection on real children held with real ptrace: the syscall runs in the child, its
 * registers come back as they were (with an interrupted syscall restarted), and the child goes
 * on as if nothing happened. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "arch.h"
#include "base/fs.h"
#include "inject/inject.h"

struct held {
	pid_t pid;
	int procfd, memfd;
	char *auxv;
	size_t auxv_len;
};

static void hold(pid_t pid, struct held *h)
{
	char path[64];
	int status;

	h->pid = pid;
	assert_int_equal(ptrace(PTRACE_SEIZE, pid, 0, PTRACE_O_TRACECLONE), 0);
	assert_int_equal(ptrace(PTRACE_INTERRUPT, pid, 0, 0), 0);
	assert_int_equal(waitpid(pid, &status, __WALL), pid);
	assert_true(WIFSTOPPED(status));
	snprintf(path, sizeof(path), "/proc/%d/mem", pid);
	h->memfd = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(h->memfd >= 0);
	snprintf(path, sizeof(path), "/proc/%d", pid);
	h->procfd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
	assert_true(h->procfd >= 0);
	snprintf(path, sizeof(path), "/proc/%d/auxv", pid);
	assert_int_equal(read_file_at(AT_FDCWD, path, &h->auxv, &h->auxv_len), 0);
}

static void release(struct held *h)
{
	assert_int_equal(ptrace(PTRACE_DETACH, h->pid, 0, 0), 0);
	close(h->memfd);
	close(h->procfd);
	free(h->auxv);
}

static void finish(pid_t pid)
{
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
}

static bool maps_contain(pid_t pid, uint64_t addr)
{
	char path[64], *text = NULL, key[32];
	bool found;
	snprintf(path, sizeof(path), "/proc/%d/maps", pid);
	if (read_file_at(AT_FDCWD, path, &text, NULL) < 0)
		return false;
	snprintf(key, sizeof(key), "%llx-", (unsigned long long)addr);
	found = strstr(text, key) != NULL;
	free(text);
	return found;
}

/* A child blocked in read() on req[0]; it writes back the byte it gets to ans[1]. Our copy of
 * ans[1] is closed, so that a lost read makes our read see end of file rather than hang. */
/* Until pid sits in system call nr (/proc/PID/syscall), at most 30 s: on a loaded machine a
 * child may wait long for a CPU before it gets there. */
static void wait_in_syscall(pid_t pid, long nr)
{
	char path[64], buf[64];

	snprintf(path, sizeof(path), "/proc/%d/syscall", (int)pid);
	for (int i = 0; i < 30000; i++) {
		FILE *f = fopen(path, "r");
		long got = -2;
		if (f && fgets(buf, sizeof(buf), f))
			got = strtol(buf, NULL, 10);
		if (f)
			fclose(f);
		if (got == nr && strchr(buf, ' '))
			return;
		usleep(1000);
	}
	fail_msg("pid %d never entered system call %ld", (int)pid, nr);
}

static pid_t fork_reader(int req[2], int ans[2])
{
	char c;
	pid_t pid;

	assert_int_equal(pipe(req), 0);
	assert_int_equal(pipe(ans), 0);
	pid = fork();
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		close(ans[0]);
		if (read(req[0], &c, 1) == 1) /* blocked here while we inject */
			(void)!write(ans[1], &c, 1);
		_exit(0);
	}
	close(ans[1]);
	wait_in_syscall(pid, SYS_read);
	return pid;
}

static void test_blocked_in_read(void **state)
{
	int req[2], ans[2];
	struct held h;
	struct inject in;
	arch_gregs_t before, after, want;
	int64_t ret;
	char c;
	pid_t pid;
	(void)state;

	pid = fork_reader(req, ans);
	hold(pid, &h);
	assert_int_equal(arch_gregs_get(pid, &before), 0);
	assert_int_equal(inject_begin(&in, pid, h.procfd, h.memfd, (uint8_t *)h.auxv, h.auxv_len),
			 0);
	assert_int_equal(in.insn, arch_gregs_pc(&before) - ARCH_SYSCALL_INSN_LEN);

	uint64_t none[6] = {0};
	assert_int_equal(inject_syscall(&in, SYS_getpid, none, &ret), 0);
	assert_int_equal(ret, pid);
	uint64_t mm[6] = {
	    0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, (uint64_t)-1, 0};
	assert_int_equal(inject_syscall(&in, SYS_mmap, mm, &ret), 0);
	assert_true(ret > 0);
	assert_true(maps_contain(pid, (uint64_t)ret));
	uint64_t um[6] = {(uint64_t)ret, 4096};
	assert_int_equal(inject_syscall(&in, SYS_munmap, um, &ret), 0);
	assert_int_equal(ret, 0);
	assert_int_equal(inject_end(&in), 0);

	/* the registers are the ones before, with the interrupted read set to run again */
	assert_int_equal(arch_gregs_get(pid, &after), 0);
	want = before;
	arch_gregs_restart_fixup(&want);
	assert_memory_equal(&after, &want, sizeof(want));
	release(&h);

	/* the child's read was not lost: it gets the byte and answers */
	assert_int_equal(write(req[1], "x", 1), 1);
	assert_int_equal(read(ans[0], &c, 1), 1);
	assert_int_equal(c, 'x');
	waitpid(pid, NULL, 0);
}

static void test_running_user_code(void **state)
{
	volatile uint64_t *counter =
	    mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	struct held h;
	struct inject in;
	arch_gregs_t before, after;
	int64_t ret;
	pid_t pid;
	(void)state;

	pid = fork();
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		for (;;)
			(*counter)++;
	}
	for (int i = 0; i < 30000 && *counter == 0; i++)
		usleep(1000);
	hold(pid, &h);
	assert_int_equal(arch_gregs_get(pid, &before), 0);
	assert_true(arch_gregs_syscall_nr(&before) < 0);
	assert_int_equal(inject_begin(&in, pid, h.procfd, h.memfd, (uint8_t *)h.auxv, h.auxv_len),
			 0);
	uint64_t none[6] = {0};
	assert_int_equal(inject_syscall(&in, SYS_getpid, none, &ret), 0);
	assert_int_equal(ret, pid);
	assert_int_equal(inject_end(&in), 0);
	assert_int_equal(inject_end(&in), 0); /* idempotent */
	assert_int_equal(arch_gregs_get(pid, &after), 0);
	assert_memory_equal(&after, &before, sizeof(before));
	release(&h);
	uint64_t c0 = *counter;
	for (int i = 0; i < 30000 && *counter == c0; i++)
		usleep(1000);
	assert_true(*counter > c0); /* runs on */
	finish(pid);
}

/* The registers of a stop tell a wait from a return: a blocked read interrupted by the stop has a
 * restart code in its result; a write that had ended still names its syscall, with its result (a
 * stop at the syscall's exit, as PTRACE_SYSCALL makes one, is what a freeze meets when it catches
 * a thread on its way out of a call). */
static void test_syscall_of_a_stop_is_one_it_waits_in(void **state)
{
	struct arch_regs regs;
	static uint8_t xstate[ARCH_XSTATE_MAX];
	uint64_t args[6];
	int64_t result;
	int req[2], ans[2], status;
	struct held h;
	pid_t pid;
	(void)state;

	pid = fork_reader(req, ans);
	hold(pid, &h);
	assert_int_equal(arch_get_regs(pid, &regs, xstate), 0);
	assert_int_equal(arch_regs_syscall(&regs, args, &result), SYS_read);
	assert_int_equal(args[0], req[0]);
	assert_true(arch_syscall_interrupted(result));
	release(&h);
	finish(pid);

	pid = fork();
	if (pid == 0) {
		int fd;
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		fd = open("/dev/null", O_WRONLY);
		for (;;)
			(void)!write(fd, "x", 1);
	}
	assert_int_equal(ptrace(PTRACE_SEIZE, pid, 0, PTRACE_O_TRACESYSGOOD), 0);
	assert_int_equal(ptrace(PTRACE_INTERRUPT, pid, 0, 0), 0);
	assert_int_equal(waitpid(pid, &status, __WALL), pid);
	/* to the exit of a write (past the calls of the child's start) */
	for (int i = 0; i < 1000; i++) {
		struct __ptrace_syscall_info si;
		assert_int_equal(ptrace(PTRACE_SYSCALL, pid, 0, 0), 0);
		assert_int_equal(waitpid(pid, &status, __WALL), pid);
		assert_true(WIFSTOPPED(status));
		if (WSTOPSIG(status) != (SIGTRAP | 0x80))
			continue;
		assert_true(ptrace(PTRACE_GET_SYSCALL_INFO, pid, sizeof(si), &si) > 0);
		assert_int_equal(arch_get_regs(pid, &regs, xstate), 0);
		if (si.op == PTRACE_SYSCALL_INFO_EXIT && regs.gp.orig_rax == SYS_write)
			break;
	}
	assert_int_equal(arch_regs_syscall(&regs, args, &result), SYS_write); /* named */
	assert_int_equal(result, 1);					      /* with its result */
	assert_false(arch_syscall_interrupted(result));			      /* not waited in */
	finish(pid);
}

static void test_sleeping_child_sleeps_on(void **state)
{
	int done[2];
	struct held h;
	struct inject in;
	int64_t ret;
	char c;
	pid_t pid;
	(void)state;

	assert_int_equal(pipe(done), 0);
	pid = fork();
	if (pid == 0) {
		struct timespec ts = {0, 400000000}, t0, t1;
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		clock_gettime(CLOCK_MONOTONIC, &t0);
		/* interrupted by us: it must resume through restart_syscall and sleep it all */
		int r = nanosleep(&ts, NULL);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		double slept = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
		(void)!write(done[1], r == 0 && slept >= 0.39 ? "d" : "e", 1);
		_exit(0);
	}
	wait_in_syscall(pid, SYS_clock_nanosleep);
	hold(pid, &h);
	assert_int_equal(inject_begin(&in, pid, h.procfd, h.memfd, (uint8_t *)h.auxv, h.auxv_len),
			 0);
	uint64_t none[6] = {0};
	assert_int_equal(inject_syscall(&in, SYS_getppid, none, &ret), 0);
	assert_int_equal(ret, getpid());
	assert_int_equal(inject_end(&in), 0);
	release(&h);
	assert_int_equal(read(done[0], &c, 1), 1); /* the sleep ended, it did not fail */
	assert_int_equal(c, 'd');
	waitpid(pid, NULL, 0);
}

/* The restart fix-up itself (on this kernel, detaching also restarts the syscall, so the tests
 * above pass with or without it: this one does not). */
static void test_restart_fixup(void **state)
{
	arch_gregs_t r;
	(void)state;
	memset(&r, 0, sizeof(r));
	r.orig_rax = SYS_read;
	r.rax = (uint64_t)-512; /* -ERESTARTSYS */
	r.rip = 0x1002;
	arch_gregs_restart_fixup(&r);
	assert_int_equal(r.rax, SYS_read);
	assert_int_equal(r.rip, 0x1000);
	assert_int_equal((long)r.orig_rax, -1);
	r.orig_rax = SYS_nanosleep;
	r.rax = (uint64_t)-516; /* -ERESTART_RESTARTBLOCK */
	r.rip = 0x2002;
	arch_gregs_restart_fixup(&r);
	assert_int_equal(r.rax, SYS_restart_syscall);
	assert_int_equal(r.rip, 0x2000);
	r.orig_rax = SYS_read;
	r.rax = (uint64_t)-4; /* -EINTR: not restarted */
	r.rip = 0x3002;
	arch_gregs_restart_fixup(&r);
	assert_int_equal(r.rip, 0x3002);
	r.orig_rax = (uint64_t)-1; /* not in a syscall */
	r.rax = (uint64_t)-512;
	arch_gregs_restart_fixup(&r);
	assert_int_equal(r.rip, 0x3002);
}

/* Inject through the trampoline, then let the thread go while it is still inside the syscall,
 * as the kernel does when osmosis dies: the trampoline must restore it alone. */
static void let_go_inside_the_trampoline(pid_t pid, long nr, uint64_t *ret_page)
{
	struct held h;
	struct inject in;
	char path[64];
	int64_t ret;
	int rw;

	hold(pid, &h);
	snprintf(path, sizeof(path), "/proc/%d/mem", pid);
	rw = open(path, O_RDWR | O_CLOEXEC);
	assert_true(rw >= 0);
	assert_int_equal(inject_begin(&in, pid, h.procfd, h.memfd, (uint8_t *)h.auxv, h.auxv_len),
			 0);
	assert_int_equal(inject_trampoline_map(&in, rw), 0);
	assert_true(in.tramp != 0 && maps_contain(pid, in.tramp));
	uint64_t none[6] = {0};
	assert_int_equal(inject_syscall(&in, nr, none, &ret), 0);
	assert_int_equal(ret, pid);
	*ret_page = in.tramp;
	/* no inject_end: detach with the injected registers, like a tracer that died */
	release(&h);
	close(rw);
}

static void test_trampoline_restores_a_blocked_thread(void **state)
{
	int req[2], ans[2];
	uint64_t page;
	char c;
	pid_t pid;
	(void)state;

	pid = fork_reader(req, ans);
	let_go_inside_the_trampoline(pid, SYS_getpid, &page);
	/* its read was restarted: it gets the byte and answers */
	assert_int_equal(write(req[1], "y", 1), 1);
	assert_int_equal(read(ans[0], &c, 1), 1);
	assert_int_equal(c, 'y');
	waitpid(pid, NULL, 0);
}

static void test_trampoline_restores_every_register(void **state)
{
	volatile int64_t *counter =
	    mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	uint64_t page;
	pid_t pid;
	(void)state;

	pid = fork();
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		/* Known values in the registers the trampoline restores; a wrong one stops the
		 * count and marks it -1. */
		__asm__ volatile(
		    "mov $0x1111, %%rbx\n\tmov $0x2222, %%rdi\n\t"
		    "mov $0x3333, %%rsi\n\tmov $0x4444, %%rdx\n\t"
		    "mov $0x5555, %%r8\n\tmov $0x6666, %%r9\n\t"
		    "mov $0x7777, %%r10\n\tmov $0x8888, %%r12\n\t"
		    "mov $0x9999, %%r13\n\tmov $0xaaaa, %%r14\n\t"
		    "mov $0xbbbb, %%r15\n"
		    "1:\tcmp $0x1111, %%rbx\n\tjne 2f\n\tcmp $0x2222, %%rdi\n\tjne 2f\n\t"
		    "cmp $0x3333, %%rsi\n\tjne 2f\n\tcmp $0x4444, %%rdx\n\tjne 2f\n\t"
		    "cmp $0x5555, %%r8\n\tjne 2f\n\tcmp $0x6666, %%r9\n\tjne 2f\n\t"
		    "cmp $0x7777, %%r10\n\tjne 2f\n\tcmp $0x8888, %%r12\n\tjne 2f\n\t"
		    "cmp $0x9999, %%r13\n\tjne 2f\n\tcmp $0xaaaa, %%r14\n\tjne 2f\n\t"
		    "cmp $0xbbbb, %%r15\n\tjne 2f\n\t"
		    "incq (%0)\n\tjmp 1b\n"
		    "2:\tmovq $-1, (%0)\n3:\tjmp 3b\n"
		    :
		    : "a"(counter)
		    : "rbx", "rdi", "rsi", "rdx", "r8", "r9", "r10", "r12", "r13", "r14", "r15",
		      "memory", "cc");
	}
	/* Counting before, and counting on after (on a loaded machine the child may wait for a CPU
	 * for a long time: waited for, up to 30 s each). */
	for (int i = 0; i < 30000 && *counter == 0; i++)
		usleep(1000);
	assert_true(*counter > 0);
	let_go_inside_the_trampoline(pid, SYS_getpid, &page);
	int64_t c0 = *counter;
	for (int i = 0; i < 30000 && *counter == c0; i++)
		usleep(1000);
	assert_true(c0 > 0 && *counter > c0); /* counts on: every register was as before */
	finish(pid);
}

/* A child counting in user code, with handlers that count SIGSEGV and SIGSYS in shared memory. */
struct spinner {
	volatile uint64_t count;
	volatile int segv, sigsys;
	volatile int sud; /* 1: the child turned Syscall User Dispatch on with selector BLOCK */
	uint8_t insn[16]; /* a syscall instruction in memory that is not executable */
};
static struct spinner *sp;
static void count_segv(int sig)
{
	(void)sig;
	sp->segv++;
	_exit(3);
}
static void count_sigsys(int sig)
{
	(void)sig;
	sp->sigsys++;
}

static pid_t fork_spinner(bool sud)
{
	static __thread volatile char selector;
	pid_t pid;

	sp = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_true(sp != MAP_FAILED);
	memcpy(sp->insn, "\x0f\x05", 2);
	pid = fork();
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		signal(SIGSEGV, count_segv);
		signal(SIGSYS, count_sigsys);
		if (sud) {
			selector = 0;
			if (prctl(59 /* PR_SET_SYSCALL_USER_DISPATCH */, 1, 0, 0, &selector) == 0)
				sp->sud = 1;
			selector = 1; /* BLOCK: from here no syscall of ours may run */
		}
		for (;;)
			sp->count++;
	}
	while (!sp->count)
		usleep(1000);
	return pid;
}

static void assert_restored(pid_t pid, const arch_gregs_t *before, uint64_t mask_before)
{
	arch_gregs_t after;
	uint64_t mask = 0;

	assert_int_equal(arch_gregs_get(pid, &after), 0);
	assert_memory_equal(&after, before, sizeof(after));
	assert_int_equal(ptrace(PTRACE_GETSIGMASK, pid, sizeof(mask), &mask), 0);
	assert_int_equal(mask, mask_before);
}

static void assert_runs_on_untouched(pid_t pid)
{
	uint64_t c0 = sp->count;
	for (int i = 0; i < 30000 && sp->count == c0; i++)
		usleep(1000);
	assert_true(sp->count > c0);
	assert_int_equal(sp->segv, 0);
	assert_int_equal(sp->sigsys, 0);
	finish(pid);
	munmap(sp, 4096);
}

/* A syscall instruction in memory that is not executable faults: the SIGSEGV is caught in the
 * signal-delivery-stop, the thread restored and the signal never delivered. */
static void test_fault_of_the_injected_instruction_is_suppressed(void **state)
{
	struct held h;
	struct inject in;
	arch_gregs_t before;
	uint64_t mask = 0, none[6] = {0};
	int64_t ret = 12345;
	(void)state;

	pid_t pid = fork_spinner(false);
	hold(pid, &h);
	assert_int_equal(arch_gregs_get(pid, &before), 0);
	assert_int_equal(ptrace(PTRACE_GETSIGMASK, pid, sizeof(mask), &mask), 0);
	assert_int_equal(inject_begin(&in, pid, h.procfd, h.memfd, (uint8_t *)h.auxv, h.auxv_len),
			 0);
	in.insn = (uint64_t)(uintptr_t)sp->insn; /* what a careless injector would pick */
	assert_int_equal(inject_syscall(&in, SYS_getpid, none, &ret), -EFAULT);
	assert_int_equal(in.fault_signal, SIGSEGV);
	assert_int_equal(ret, 12345);
	assert_int_equal(inject_end(&in), 0);
	assert_false(in.in_sigstop);
	assert_restored(pid, &before, mask);
	release(&h);
	assert_runs_on_untouched(pid);
}

/* A thread under Syscall User Dispatch is refused; forced anyway, the SIGSYS its dispatcher would
 * get is suppressed and the handler never runs. */
static void test_syscall_user_dispatch_is_refused_and_its_sigsys_suppressed(void **state)
{
	struct held h;
	struct inject in;
	arch_gregs_t before;
	uint64_t mask = 0, none[6] = {0};
	int64_t ret;
	(void)state;

	pid_t pid = fork_spinner(true);
	if (!sp->sud) {
		finish(pid);
		skip();
	}
	hold(pid, &h);
	const char *why = inject_thread_refusal(h.procfd, pid);
	assert_non_null(why);
	assert_non_null(strstr(why, "Syscall User Dispatch"));
	assert_int_equal(arch_gregs_get(pid, &before), 0);
	assert_int_equal(ptrace(PTRACE_GETSIGMASK, pid, sizeof(mask), &mask), 0);
	assert_int_equal(inject_begin(&in, pid, h.procfd, h.memfd, (uint8_t *)h.auxv, h.auxv_len),
			 0);
	assert_int_equal(inject_syscall(&in, SYS_getpid, none, &ret), -EFAULT);
	assert_int_equal(in.fault_signal, SIGSYS);
	assert_int_equal(inject_end(&in), 0);
	assert_restored(pid, &before, mask);
	release(&h);
	assert_runs_on_untouched(pid);
}

/* A thread without Syscall User Dispatch or a filter may take an injection. */
static void test_plain_thread_is_not_refused(void **state)
{
	struct held h;
	(void)state;

	pid_t pid = fork_spinner(false);
	hold(pid, &h);
	assert_null(inject_thread_refusal(h.procfd, pid));
	release(&h);
	assert_runs_on_untouched(pid);
}

/* 32-bit (compat) and foreign programs are refused from their ELF header; a 64-bit x86_64 one
 * (this test itself) is not, nor are bytes that do not tell. */
static void test_compat_processes_are_refused(void **state)
{
	Elf64_Ehdr e64 = {
	    .e_ident = {ELFMAG0, ELFMAG1, ELFMAG2, ELFMAG3, ELFCLASS64, ELFDATA2LSB, EV_CURRENT},
	    .e_machine = EM_X86_64};
	Elf32_Ehdr e32 = {
	    .e_ident = {ELFMAG0, ELFMAG1, ELFMAG2, ELFMAG3, ELFCLASS32, ELFDATA2LSB, EV_CURRENT},
	    .e_machine = EM_386};
	const char *why;
	(void)state;

	assert_null(arch_exe_refusal((uint8_t *)&e64, sizeof(e64)));
	why = arch_exe_refusal((uint8_t *)&e32, sizeof(e32));
	assert_non_null(why);
	assert_non_null(strstr(why, "32-bit"));
	e32.e_machine = EM_X86_64; /* x32 */
	why = arch_exe_refusal((uint8_t *)&e32, sizeof(e32));
	assert_non_null(why);
	assert_non_null(strstr(why, "x32"));
	e64.e_machine = EM_AARCH64;
	assert_non_null(arch_exe_refusal((uint8_t *)&e64, sizeof(e64)));
	assert_null(arch_exe_refusal((const uint8_t *)"#!/bin/sh\n", 10));
	assert_null(arch_exe_refusal((uint8_t *)&e64, 8)); /* too short to tell */

	int procfd = open("/proc/self", O_PATH | O_DIRECTORY | O_CLOEXEC);
	assert_true(procfd >= 0);
	assert_null(arch_process_refusal(procfd));
	close(procfd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_restart_fixup),
	    cmocka_unit_test(test_blocked_in_read),
	    cmocka_unit_test(test_running_user_code),
	    cmocka_unit_test(test_syscall_of_a_stop_is_one_it_waits_in),
	    cmocka_unit_test(test_sleeping_child_sleeps_on),
	    cmocka_unit_test(test_trampoline_restores_a_blocked_thread),
	    cmocka_unit_test(test_trampoline_restores_every_register),
	    cmocka_unit_test(test_fault_of_the_injected_instruction_is_suppressed),
	    cmocka_unit_test(test_syscall_user_dispatch_is_refused_and_its_sigsys_suppressed),
	    cmocka_unit_test(test_plain_thread_is_not_refused),
	    cmocka_unit_test(test_compat_processes_are_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
