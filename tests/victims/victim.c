/* SPDX-License-Identifier: MIT */
/*
 * The test victim: a process with a fixed life. It sets itself up according to its mode, prints
 * one line "ready pid=N key=value ..." on stdout, and waits. On SIGUSR2 it checks its own state
 * (memory intact, every thread still making progress after the snapshot, signals delivered as
 * sent), prints "verify ok" or "verify FAIL: why" and exits 0 or 1. SIGTERM ends it quietly.
 *
 * Modes:
 *   basic            threads blocked in known functions (mutex, pipe read, sleep, condvar, join)
 *                    and 4 MiB of known heap contents (xorshift stream) plus a known global
 *   writer PAGES     a thread writing a generation number into PAGES pages nonstop, in order
 *   churn            threads created and exiting continuously
 *   signals N        expects N SIGRTMIN+1 (queued) and at least one SIGUSR1 (coalescing)
 *   maps N           about N separate mappings (alternating protections)
 *   dontdump         a MADV_DONTDUMP region of 0xAA bytes and a normal region of 0xBB bytes
 *   nondumpable      basic, after prctl(PR_SET_DUMPABLE, 0)
 *   busy N           N threads spinning on the CPU
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#define HEAP_LEN (4u << 20)

static volatile sig_atomic_t verify_requested, quit_requested;
static atomic_int usr1_count, rt_count;
static pthread_mutex_t held = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t cv_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int pipefd[2];
static uint8_t *heap;
uint64_t victim_global[512];
static atomic_ulong beats[64];
static int n_beats;

static uint64_t xorshift(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void fill_known(uint8_t *p, size_t len, uint64_t seed)
{
	for (size_t i = 0; i < len; i += 8) {
		uint64_t v = xorshift(&seed);
		memcpy(p + i, &v, 8);
	}
}

static int check_known(const uint8_t *p, size_t len, uint64_t seed)
{
	for (size_t i = 0; i < len; i += 8) {
		uint64_t v = xorshift(&seed);
		if (memcmp(p + i, &v, 8))
			return -1;
	}
	return 0;
}

static void on_usr1(int s)
{
	(void)s;
	atomic_fetch_add(&usr1_count, 1);
}
static void on_rt(int s)
{
	(void)s;
	atomic_fetch_add(&rt_count, 1);
}
static void on_usr2(int s)
{
	(void)s;
	verify_requested = 1;
}
static void on_term(int s)
{
	(void)s;
	quit_requested = 1;
}

/* Each thread in basic mode blocks in a function of its own, so stacks are recognisable. */
static void __attribute__((noinline)) victim_blocked_on_mutex(void)
{
	pthread_mutex_lock(&held);
	pthread_mutex_unlock(&held);
}
static void __attribute__((noinline)) victim_blocked_in_read(void)
{
	char c;
	while (read(pipefd[0], &c, 1) > 0)
		;
}
static void __attribute__((noinline)) victim_blocked_in_sleep(void)
{
	for (;;)
		sleep(1000);
}
static void __attribute__((noinline)) victim_blocked_on_condvar(void)
{
	pthread_mutex_lock(&cv_lock);
	for (;;)
		pthread_cond_wait(&cv, &cv_lock);
}
static void *t_mutex(void *a)
{
	prctl(PR_SET_NAME, "v-mutex");
	victim_blocked_on_mutex();
	return a;
}
static void *t_read(void *a)
{
	prctl(PR_SET_NAME, "v-read");
	victim_blocked_in_read();
	return a;
}
static void *t_sleep(void *a)
{
	prctl(PR_SET_NAME, "v-sleep");
	victim_blocked_in_sleep();
	return a;
}
static void *t_condvar(void *a)
{
	prctl(PR_SET_NAME, "v-condvar");
	victim_blocked_on_condvar();
	return a;
}

/* A heartbeat thread: verify checks that it kept beating after the snapshot. */
static void *t_beat(void *a)
{
	int i = (int)(intptr_t)a;
	for (;;) {
		atomic_fetch_add(&beats[i], 1);
		usleep(1000);
	}
	return NULL;
}

static void start_beats(int n)
{
	pthread_t t;
	for (int i = 0; i < n; i++)
		pthread_create(&t, NULL, t_beat, (void *)(intptr_t)i);
	n_beats = n;
}

static int check_beats(void)
{
	unsigned long before[64];
	for (int i = 0; i < n_beats; i++)
		before[i] = atomic_load(&beats[i]);
	usleep(200000);
	for (int i = 0; i < n_beats; i++)
		if (atomic_load(&beats[i]) == before[i])
			return -1;
	return 0;
}

static void setup_basic(void)
{
	pthread_t t;
	uint64_t seed = 0x5eed;

	if (pipe(pipefd) < 0)
		exit(2);
	heap = malloc(HEAP_LEN);
	fill_known(heap, HEAP_LEN, 0x1234567);
	for (size_t i = 0; i < 512; i++)
		victim_global[i] = xorshift(&seed);
	pthread_mutex_lock(&held);
	pthread_create(&t, NULL, t_mutex, NULL);
	pthread_create(&t, NULL, t_read, NULL);
	pthread_create(&t, NULL, t_sleep, NULL);
	pthread_create(&t, NULL, t_condvar, NULL);
	usleep(100000);
	printf("ready pid=%d heap=%p heap_len=%u heap_seed=%u global=%p threads=5\n", getpid(),
	       (void *)heap, HEAP_LEN, 0x1234567u, (void *)victim_global);
}

/* writer: page i holds the generation that last passed over it; a consistent snapshot shows
 * one boundary: pages [0,k) at generation g, pages [k,N) at g-1. */
static uint64_t *wpages;
static size_t n_wpages;
static void *t_writer(void *a)
{
	prctl(PR_SET_NAME, "v-writer");
	for (uint64_t g = 1;; g++)
		for (size_t i = 0; i < n_wpages; i++)
			__atomic_store_n(&wpages[i * 512], g, __ATOMIC_RELAXED);
	return a;
}

static void setup_writer(size_t pages)
{
	pthread_t t;
	n_wpages = pages;
	wpages =
	    mmap(NULL, pages * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	memset(wpages, 0, pages * 4096);
	pthread_create(&t, NULL, t_writer, NULL);
	start_beats(1);
	usleep(50000);
	printf("ready pid=%d pages=%p npages=%zu\n", getpid(), (void *)wpages, pages);
}

static void *t_short(void *a)
{
	usleep(500);
	return a;
}
static void *t_spawner(void *a)
{
	prctl(PR_SET_NAME, "v-spawner");
	for (;;) {
		pthread_t t;
		if (pthread_create(&t, NULL, t_short, NULL) == 0)
			pthread_detach(t);
		usleep(200);
	}
	return a;
}

static void *t_spin(void *a)
{
	prctl(PR_SET_NAME, "v-spin");
	for (volatile uint64_t x = 0;; x++)
		;
	return a;
}

static void setup_maps(long n)
{
	size_t len = (size_t)n * 4096;
	uint8_t *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		perror("mmap");
		exit(2);
	}
	for (long i = 0; i < n; i++)
		p[i * 4096] = (uint8_t)(i * 7 + 1);
	for (long i = 1; i < n; i += 2)
		if (mprotect(p + i * 4096, 4096, PROT_READ) < 0) {
			perror("mprotect");
			exit(2);
		}
	printf("ready pid=%d region=%p pages=%ld\n", getpid(), (void *)p, n);
}

static void setup_dontdump(void)
{
	size_t len = 1u << 20;
	uint8_t *a = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint8_t *b = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	memset(a, 0xAA, len);
	memset(b, 0xBB, len);
	madvise(a, len, MADV_DONTDUMP);
	printf("ready pid=%d dontdump=%p normal=%p len=%zu\n", getpid(), (void *)a, (void *)b, len);
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "basic";
	struct sigaction sa = {0};
	pthread_t t;

	sa.sa_handler = on_usr1;
	sigaction(SIGUSR1, &sa, NULL);
	sa.sa_handler = on_rt;
	sigaction(SIGRTMIN + 1, &sa, NULL);
	sa.sa_handler = on_usr2;
	sigaction(SIGUSR2, &sa, NULL);
	sa.sa_handler = on_term;
	sigaction(SIGTERM, &sa, NULL);
	setvbuf(stdout, NULL, _IOLBF, 0);

	if (!strcmp(mode, "basic") || !strcmp(mode, "nondumpable")) {
		if (!strcmp(mode, "nondumpable"))
			prctl(PR_SET_DUMPABLE, 0);
		setup_basic();
	} else if (!strcmp(mode, "writer")) {
		setup_writer(argc > 2 ? strtoul(argv[2], NULL, 10) : 16384);
	} else if (!strcmp(mode, "churn")) {
		pthread_create(&t, NULL, t_spawner, NULL);
		pthread_create(&t, NULL, t_spawner, NULL);
		start_beats(1);
		printf("ready pid=%d\n", getpid());
	} else if (!strcmp(mode, "signals")) {
		start_beats(1);
		printf("ready pid=%d\n", getpid());
	} else if (!strcmp(mode, "maps")) {
		setup_maps(argc > 2 ? strtol(argv[2], NULL, 10) : 1000);
	} else if (!strcmp(mode, "dontdump")) {
		setup_dontdump();
	} else if (!strcmp(mode, "busy")) {
		int n = argc > 2 ? atoi(argv[2]) : 2;
		for (int i = 0; i < n; i++)
			pthread_create(&t, NULL, t_spin, NULL);
		start_beats(1);
		printf("ready pid=%d\n", getpid());
	} else {
		fprintf(stderr, "victim: unknown mode %s\n", mode);
		return 2;
	}

	/* The signals may reach any thread: poll rather than pause() in this one. */
	while (!verify_requested && !quit_requested)
		usleep(5000);
	if (quit_requested)
		return 0;

	/* verify: memory intact, threads alive, signals delivered */
	if (heap && check_known(heap, HEAP_LEN, 0x1234567) < 0) {
		printf("verify FAIL: heap contents changed\n");
		return 1;
	}
	if (check_beats() < 0) {
		printf("verify FAIL: a heartbeat thread stopped beating after the snapshot\n");
		return 1;
	}
	/* Real-time signals queue: each one sent must arrive. Standard ones sent while the
	 * process cannot run coalesce, as the kernel defines: at least one must arrive. */
	if (!strcmp(mode, "signals") && argc > 2 && atomic_load(&rt_count) != atoi(argv[2])) {
		printf("verify FAIL: %d SIGRTMIN+1 delivered, %s sent\n", atomic_load(&rt_count),
		       argv[2]);
		return 1;
	}
	if (!strcmp(mode, "signals") && atomic_load(&usr1_count) < 1) {
		printf("verify FAIL: the SIGUSR1 sent during the freeze never arrived\n");
		return 1;
	}
	printf("verify ok\n");
	return 0;
}
