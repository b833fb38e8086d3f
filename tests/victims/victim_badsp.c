/* SPDX-License-Identifier: MIT */
/*
 * A thread whose stack pointer points nowhere, as green-thread runtimes, JITs and hand-written
 * context switches briefly have (and as a corrupted program can have for long). The leader
 * blocks every signal, loads a stack pointer in the never-mapped first page and waits in a raw
 * futex syscall, written in assembly so that nothing touches the stack; the waiter thread wakes
 * it at verify. Anything that made the kernel push a frame on that stack (a signal, an injected
 * call that uses the stack) would kill the process with SIGSEGV.
 *
 * verify checks the leader's callee-saved registers and stack pointer come back as they were,
 * and the signal state of both threads.
 */
#include <linux/futex.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/syscall.h>

#include "hostile.h"

uint32_t badsp_word;
uint64_t badsp_saved_sp, badsp_back_sp, badsp_r12, badsp_r13, badsp_r14, badsp_r15, badsp_wakes;
static sigset_t leader_mask;

/* Whether the leader waits in the futex with the bad stack pointer (/proc's "syscall" file:
 * number, six arguments, stack pointer, instruction pointer). */
static bool leader_in_place(void)
{
	char path[64], buf[256];
	unsigned long nr, a[6], sp;
	FILE *f;
	bool yes = false;

	snprintf(path, sizeof(path), "/proc/self/task/%d/syscall", getpid());
	f = fopen(path, "re");
	if (f && fgets(buf, sizeof(buf), f) &&
	    sscanf(buf, "%lu %lx %lx %lx %lx %lx %lx %lx", &nr, &a[0], &a[1], &a[2], &a[3], &a[4],
		   &a[5], &sp) == 8)
		yes = nr == SYS_futex && sp == 0x10;
	if (f)
		fclose(f);
	return yes;
}

static void *waiter(void *arg)
{
	(void)arg;
	while (!leader_in_place())
		usleep(1000);
	printf("ready pid=%d badsp=0x10\n", getpid());
	fflush(stdout);
	hostile_wait_verify();
	__atomic_store_n(&badsp_word, 1, __ATOMIC_SEQ_CST);
	/* Wake until the leader has left the futex (a wake can precede its wait). */
	while (__atomic_load_n(&badsp_back_sp, __ATOMIC_SEQ_CST) == 0) {
		syscall(SYS_futex, &badsp_word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
		usleep(1000);
	}
	return NULL;
}

int main(void)
{
	sigset_t all;
	pthread_t w;

	hostile_block_control_signals();
	pthread_create(&w, NULL, waiter, NULL);
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	pthread_sigmask(SIG_BLOCK, NULL, &leader_mask);
	/* The waiter says "ready" once /proc shows the leader in the futex with the bad stack. */
	__asm__ volatile("mov %%rsp, badsp_saved_sp(%%rip)\n\t"
			 "mov $0x1212121212121212, %%r12\n\t"
			 "mov $0x1313131313131313, %%r13\n\t"
			 "mov $0x1414141414141414, %%r14\n\t"
			 "mov $0x1515151515151515, %%r15\n\t"
			 "mov $0x10, %%rsp\n\t"
			 "1: cmpl $0, badsp_word(%%rip)\n\t"
			 "jne 2f\n\t"
			 "mov $202, %%eax\n\t" /* futex(&word, FUTEX_WAIT_PRIVATE, 0, NULL) */
			 "lea badsp_word(%%rip), %%rdi\n\t"
			 "mov $128, %%esi\n\t"
			 "xor %%edx, %%edx\n\t"
			 "xor %%r10, %%r10\n\t"
			 "syscall\n\t"
			 "incq badsp_wakes(%%rip)\n\t"
			 "jmp 1b\n\t"
			 "2: mov %%rsp, %%rax\n\t"
			 "mov badsp_saved_sp(%%rip), %%rsp\n\t"
			 "mov %%r12, badsp_r12(%%rip)\n\t"
			 "mov %%r13, badsp_r13(%%rip)\n\t"
			 "mov %%r14, badsp_r14(%%rip)\n\t"
			 "mov %%r15, badsp_r15(%%rip)\n\t"
			 "mov %%rax, badsp_back_sp(%%rip)\n\t"
			 :
			 :
			 : "rax", "rcx", "rdx", "rsi", "rdi", "r10", "r11", "r12", "r13", "r14",
			   "r15", "memory", "cc");
	pthread_join(w, NULL);

	const char *why = NULL;
	if (badsp_back_sp != 0x10)
		why = "the leader's stack pointer changed";
	else if (badsp_r12 != 0x1212121212121212ull || badsp_r13 != 0x1313131313131313ull ||
		 badsp_r14 != 0x1414141414141414ull || badsp_r15 != 0x1515151515151515ull)
		why = "the leader's registers changed";
	else
		why = hostile_signal_state_changed(&leader_mask);
	return hostile_verdict(why);
}
