/* SPDX-License-Identifier: MIT */
/*
 * A process that made its vDSO inaccessible (mprotect PROT_NONE), as sandboxes and some
 * anti-tamper code do. Its leader computes in user code (never in a syscall), so the only
 * syscall instruction an injector could borrow for it is the vDSO's, which now faults (SIGSEGV).
 * (It also sleeps a millisecond after each stretch of computing, with a raw nanosleep of its own,
 * so as not to take a whole CPU from a small machine: stopped there, it has a syscall instruction
 * of its own.) The waiter thread sits in sigwait(), a syscall made from libc's text, which stays
 * usable.
 *
 * verify checks the leader's callee-saved registers across the snapshot (set in an assembly loop
 * that touches no stack), that the leader kept running, that no SIGSEGV ever reached the handler,
 * and the signal state of both threads.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <time.h>

#include "hostile.h"

uint64_t vdso_spins, vdso_stop, vdso_r12, vdso_r13, vdso_r14, vdso_r15;
struct timespec vdso_ms = {0, 1000000};
static atomic_int segv;
static sigset_t leader_mask;

static void on_segv(int sig)
{
	(void)sig;
	atomic_fetch_add(&segv, 1);
	_exit(3);
}

static uintptr_t ready_start, ready_end;

static void *waiter(void *arg)
{
	(void)arg;
	/* Ready once the vDSO is protected and the leader computes. */
	while (!__atomic_load_n(&vdso_spins, __ATOMIC_SEQ_CST))
		usleep(1000);
	printf("ready pid=%d vdso=%#lx-%#lx prot=none\n", getpid(), (unsigned long)ready_start,
	       (unsigned long)ready_end);
	fflush(stdout);
	hostile_wait_verify();
	__atomic_store_n(&vdso_stop, 1, __ATOMIC_SEQ_CST);
	return NULL;
}

/* The vDSO's extent, from /proc/self/maps. */
static int vdso_range(uintptr_t *start, uintptr_t *end)
{
	char line[512];
	FILE *f = fopen("/proc/self/maps", "re");
	int found = -1;

	while (f && fgets(line, sizeof(line), f))
		if (strstr(line, "[vdso]") && sscanf(line, "%lx-%lx", start, end) == 2)
			found = 0;
	if (f)
		fclose(f);
	return found;
}

int main(void)
{
	uintptr_t start = 0, end = 0;
	pthread_t w;

	signal(SIGSEGV, on_segv);
	hostile_block_control_signals();
	pthread_sigmask(SIG_BLOCK, NULL, &leader_mask);
	pthread_create(&w, NULL, waiter, NULL);
	if (!getauxval(AT_SYSINFO_EHDR) || vdso_range(&start, &end) < 0) {
		fprintf(stderr, "no vDSO\n");
		return 2;
	}
	/* From here nothing may call into the vDSO (no clock_gettime, gettimeofday, time). */
	if (mprotect((void *)start, end - start, PROT_NONE) != 0) {
		perror("mprotect");
		return 2;
	}
	ready_start = start;
	ready_end = end;

	__asm__ volatile("mov $0x1212121212121212, %%r12\n\t"
			 "mov $0x1313131313131313, %%r13\n\t"
			 "mov $0x1414141414141414, %%r14\n\t"
			 "mov $0x1515151515151515, %%r15\n\t"
			 "1: incq vdso_spins(%%rip)\n\t"
			 "mov $1000000, %%ecx\n\t"
			 "2: dec %%ecx\n\t" /* a fraction of a millisecond in user code */
			 "jnz 2b\n\t"
			 "mov $35, %%eax\n\t" /* nanosleep(&ms, NULL): a millisecond asleep */
			 "lea vdso_ms(%%rip), %%rdi\n\t"
			 "xor %%esi, %%esi\n\t"
			 "syscall\n\t"
			 "cmpq $0, vdso_stop(%%rip)\n\t"
			 "je 1b\n\t"
			 "mov %%r12, vdso_r12(%%rip)\n\t"
			 "mov %%r13, vdso_r13(%%rip)\n\t"
			 "mov %%r14, vdso_r14(%%rip)\n\t"
			 "mov %%r15, vdso_r15(%%rip)\n\t"
			 :
			 :
			 : "rax", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12",
			   "r13", "r14", "r15", "memory", "cc");
	pthread_join(w, NULL);

	const char *why = NULL;
	if (vdso_r12 != 0x1212121212121212ull || vdso_r13 != 0x1313131313131313ull ||
	    vdso_r14 != 0x1414141414141414ull || vdso_r15 != 0x1515151515151515ull)
		why = "the leader's registers changed";
	else if (atomic_load(&segv))
		why = "SIGSEGV was delivered";
	else
		why = hostile_signal_state_changed(&leader_mask);
	return hostile_verdict(why);
}
