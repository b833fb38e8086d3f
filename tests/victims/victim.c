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
 *   pingpong         a parent and a child exchanging messages through two pipes as fast as they
 *                    can, each counting what it sent and received (struct at "counters")
 *   factory N        forks N children that sleep (a process tree of N+1)
 *   threads N        N idle threads (blocked on a condition variable)
 *   fds              one of each kind of descriptor: pipe, unix socketpair, TCP loopback pair,
 *                    eventfd, epoll, timerfd, memfd; oom_score_adj 500; one thread spinning
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
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

/* pingpong: counters the test reads from both cores. Kept in one page-aligned struct. */
struct counters {
	uint64_t magic;
	uint64_t sent, received;
} __attribute__((aligned(4096)));
static struct counters counters = {.magic = 0x6f736d6f73697321ull};

/* A message is counted as sent before write() and as received after read(): at any one instant
 * no process has received more than its peer has counted as sent. */
static void pingpong_loop(int rd, int wr, bool starter)
{
	char buf[8] = "message";
	if (starter) {
		__atomic_store_n(&counters.sent, counters.sent + 1, __ATOMIC_SEQ_CST);
		if (write(wr, buf, sizeof(buf)) != sizeof(buf))
			_exit(3);
	}
	for (;;) {
		if (read(rd, buf, sizeof(buf)) != sizeof(buf))
			_exit(0);
		__atomic_store_n(&counters.received, counters.received + 1, __ATOMIC_SEQ_CST);
		__atomic_store_n(&counters.sent, counters.sent + 1, __ATOMIC_SEQ_CST);
		if (write(wr, buf, sizeof(buf)) != sizeof(buf))
			_exit(0);
	}
}

static pid_t *children;
static int n_children;

static void *pingpong_thread(void *arg)
{
	int *fds = arg;
	prctl(PR_SET_NAME, "v-pingpong");
	pingpong_loop(fds[0], fds[1], true);
	return NULL;
}

static void setup_pingpong2(void)
{
	static int fds[2];
	int a[2], b[2];
	pid_t c;
	pthread_t t;

	if (pipe(a) < 0 || pipe(b) < 0)
		exit(2);
	c = fork();
	if (c == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		prctl(PR_SET_NAME, "v-pong");
		close(a[1]);
		close(b[0]);
		pingpong_loop(a[0], b[1], false);
	}
	children = calloc(1, sizeof(pid_t));
	children[n_children++] = c;
	close(a[0]);
	close(b[1]);
	fds[0] = b[0];
	fds[1] = a[1];
	start_beats(1);
	pthread_create(&t, NULL, pingpong_thread, fds);
	usleep(50000);
	printf("ready pid=%d child=%d counters=%p\n", getpid(), c, (void *)&counters);
}

static void setup_factory(int n)
{
	children = calloc((size_t)n, sizeof(pid_t));
	for (int i = 0; i < n; i++) {
		pid_t c = fork();
		if (c == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			prctl(PR_SET_NAME, "v-child");
			for (;;)
				pause();
		}
		if (c > 0)
			children[n_children++] = c;
	}
	start_beats(1);
	printf("ready pid=%d children=%d\n", getpid(), n_children);
}

static void *t_idle(void *a)
{
	pthread_mutex_lock(&cv_lock);
	for (;;)
		pthread_cond_wait(&cv, &cv_lock);
	return a;
}

static void setup_threads(int n)
{
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 64 * 1024);
	for (int i = 0; i < n; i++) {
		pthread_t t;
		if (pthread_create(&t, &attr, t_idle, NULL) != 0) {
			fprintf(stderr, "victim: thread %d: cannot create\n", i);
			exit(2);
		}
	}
	start_beats(1);
	usleep(100000);
	printf("ready pid=%d threads=%d\n", getpid(), n + 2);
}

static void setup_fds(void)
{
	int p[2], sp[2], ev, ep, tfd, mfd, lsn, cli, srv;
	struct sockaddr_in addr = {.sin_family = AF_INET,
				   .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t alen = sizeof(addr);
	struct epoll_event ee = {.events = EPOLLIN};
	struct itimerspec its = {.it_value = {1000, 0}};
	pthread_t t;
	FILE *f;

	if (pipe(p) < 0 || socketpair(AF_UNIX, SOCK_STREAM, 0, sp) < 0)
		exit(2);
	ev = eventfd(7, 0);
	ep = epoll_create1(0);
	epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ee);
	epoll_ctl(ep, EPOLL_CTL_ADD, sp[0], &ee);
	tfd = timerfd_create(CLOCK_MONOTONIC, 0);
	timerfd_settime(tfd, 0, &its, NULL);
	mfd = memfd_create("victim-memfd", 0);
	lsn = socket(AF_INET, SOCK_STREAM, 0);
	if (bind(lsn, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(lsn, 4) < 0 ||
	    getsockname(lsn, (struct sockaddr *)&addr, &alen) < 0)
		exit(2);
	cli = socket(AF_INET, SOCK_STREAM, 0);
	if (connect(cli, (struct sockaddr *)&addr, sizeof(addr)) < 0)
		exit(2);
	srv = accept(lsn, NULL, NULL);
	f = fopen("/proc/self/oom_score_adj", "w");
	if (f) {
		fputs("500", f);
		fclose(f);
	}
	pthread_create(&t, NULL, t_spin, NULL);
	start_beats(1);
	usleep(300000);
	printf("ready pid=%d pipe_r=%d pipe_w=%d unix_a=%d unix_b=%d eventfd=%d epoll=%d "
	       "timerfd=%d memfd=%d tcp_listen=%d tcp_client=%d tcp_server=%d port=%d\n",
	       getpid(), p[0], p[1], sp[0], sp[1], ev, ep, tfd, mfd, lsn, cli, srv,
	       ntohs(addr.sin_port));
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
	} else if (!strcmp(mode, "pingpong")) {
		setup_pingpong2();
	} else if (!strcmp(mode, "factory")) {
		setup_factory(argc > 2 ? atoi(argv[2]) : 10);
	} else if (!strcmp(mode, "threads")) {
		setup_threads(argc > 2 ? atoi(argv[2]) : 100);
	} else if (!strcmp(mode, "fds")) {
		setup_fds();
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
	/* children must still be alive (and not left stopped) */
	for (int i = 0; i < n_children; i++) {
		char path[64], st = 0;
		FILE *f;
		snprintf(path, sizeof(path), "/proc/%d/stat", children[i]);
		f = fopen(path, "r");
		if (!f || fscanf(f, "%*d (%*[^)]) %c", &st) != 1 || st == 'Z' || st == 'T' ||
		    st == 't') {
			printf("verify FAIL: child %d is %c\n", children[i], st ? st : '?');
			return 1;
		}
		fclose(f);
	}

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
