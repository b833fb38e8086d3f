/* SPDX-License-Identifier: MIT */
/*
 * A process whose memory footprint a snapshot must not change (tests/integration/
 * test_footprint.py): large PROT_NONE reservations, a 1 TiB PROT_NONE|MAP_NORESERVE range,
 * glibc malloc arenas made by 32 threads (each reserves 64 MiB, mostly PROT_NONE), sparse heaps
 * (a 256 MiB read-write mapping with one page in 64 touched), a shrunk arena heap, and a little
 * dense memory. The threads then wait; a writer thread keeps writing its own 4 MiB.
 *
 * Prints "ready pid=P" once all of it exists.
 */
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define MIB	 (1ul << 20)
#define NTHREADS 32

static pthread_barrier_t ready;

static void *arena_thread(void *arg)
{
	/* A malloc from a new thread under contention gets its own arena (a 64 MiB reservation
	 * of which only what is used is read-write). */
	size_t n = (size_t)(uintptr_t)arg;
	char *small = malloc(4096 + n);
	char *big = malloc(200 * 1024);
	memset(small, 1, 4096);
	memset(big, 2, 200 * 1024);
	free(big); /* its top may be trimmed: the heap shrinks back (PROT_NONE again) */
	pthread_barrier_wait(&ready);
	for (;;)
		pause();
	return NULL;
}

static void *writer(void *arg)
{
	volatile char *p = arg;
	for (uint64_t g = 0;; g++)
		for (size_t off = 0; off < 4 * MIB; off += 4096)
			p[off] = (char)g;
	return NULL;
}

int main(void)
{
	pthread_t t[NTHREADS + 1];
	char *res, *tib, *sparse, *dense;

	setvbuf(stdout, NULL, _IOLBF, 0);
	mallopt(M_ARENA_MAX, 64);
	/* 4 GiB reserved, nothing accessible */
	res = mmap(NULL, 4096 * MIB, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	/* 1 TiB reserved */
	tib = mmap(NULL, 1ul << 40, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	/* 256 MiB read-write, one page in 64 touched */
	sparse = mmap(NULL, 256 * MIB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	dense = mmap(NULL, 8 * MIB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (res == MAP_FAILED || tib == MAP_FAILED || sparse == MAP_FAILED || dense == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	for (size_t off = 0; off < 256 * MIB; off += 64 * 4096)
		sparse[off] = 1;
	memset(dense, 3, 8 * MIB);
	pthread_barrier_init(&ready, NULL, NTHREADS + 1);
	for (int i = 0; i < NTHREADS; i++)
		pthread_create(&t[i], NULL, arena_thread, (void *)(uintptr_t)i);
	pthread_barrier_wait(&ready);
	pthread_create(&t[NTHREADS], NULL, writer, dense);
	printf("ready pid=%d\n", getpid());
	for (;;)
		pause();
}
