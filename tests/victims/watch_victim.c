/* SPDX-License-Identifier: MIT */
/*
 * The victim of osmosis watch's tests: a process that crosses one condition after a delay. It
 * prints "ready pid=N" at once, then, DELAY seconds later, does what its mode says and prints
 * "crossed t=REALTIME b=BOOTTIME" (seconds since the epoch and since boot, the moment the state
 * it claims exists; BOOTTIME is the clock of /proc/uptime and of a manifest's uptime_s) and
 * "start=BOOTTIME" (when it began to cross: touching memory takes a while), then
 * stays so until killed (SIGTERM or SIGKILL).
 *
 *   cpu DELAY              one thread spinning from DELAY on
 *   thread-cpu DELAY       one of four threads spinning from DELAY on (the others idle)
 *   memory DELAY MIB       touches MIB MiB at DELAY
 *   threads DELAY N        starts N idle threads at DELAY (N+1 in all)
 *   fds DELAY N            opens N descriptors at DELAY
 *   leak                   opens a pipe every 50 ms, forever (a descriptor leak)
 *   deadlock DELAY         two threads lock two mutexes in opposite orders at DELAY
 *   blocked DELAY          a thread takes a mutex and sleeps for ever; another waits on it
 *   healthy                an idle pool on a condition variable, an epoll server on a socket
 *                          pair nobody writes, a sleeping timer thread: nothing to report
 *   busy                   a healthy busy server: 4 workers taking a mutex briefly and
 *                          computing, nonstop
 *   exit DELAY             exits with status 0 at DELAY
 *   big DELAY MIB          touches MIB MiB at once, then spins one thread from DELAY on
 *   nodump DELAY           becomes non-dumpable (prctl) at DELAY, then spins
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t m1 = PTHREAD_MUTEX_INITIALIZER, m2 = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pool_cv = PTHREAD_COND_INITIALIZER;
static pthread_barrier_t barrier;
static atomic_ulong work;

static double start_b; /* CLOCK_BOOTTIME when the crossing began (memory is touched over time) */

static double boot_s(void)
{
	struct timespec bt;
	clock_gettime(CLOCK_BOOTTIME, &bt);
	return (double)bt.tv_sec + bt.tv_nsec / 1e9;
}

static void crossed(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	printf("crossed t=%.3f b=%.3f start=%.3f\n", (double)ts.tv_sec + ts.tv_nsec / 1e9, boot_s(),
	       start_b);
	fflush(stdout);
}

static void sleep_s(double s)
{
	struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static void forever(void)
{
	for (;;)
		pause();
}

static void *spin(void *a)
{
	(void)a;
	for (;;)
		atomic_fetch_add(&work, 1);
	return NULL;
}

static void *idle(void *a)
{
	(void)a;
	pthread_mutex_lock(&pool_lock);
	for (;;)
		pthread_cond_wait(&pool_cv, &pool_lock);
	return NULL;
}

static void *lock_12(void *a)
{
	(void)a;
	pthread_mutex_lock(&m1);
	pthread_barrier_wait(&barrier);
	pthread_mutex_lock(&m2);
	return NULL;
}

static void *lock_21(void *a)
{
	(void)a;
	pthread_mutex_lock(&m2);
	pthread_barrier_wait(&barrier);
	pthread_mutex_lock(&m1);
	return NULL;
}

static void *hold_and_sleep(void *a)
{
	(void)a;
	pthread_mutex_lock(&m1);
	pthread_barrier_wait(&barrier);
	for (;;)
		sleep_s(1000);
	return NULL;
}

static void *wait_on_m1(void *a)
{
	(void)a;
	pthread_barrier_wait(&barrier);
	pthread_mutex_lock(&m1);
	return NULL;
}

static void *epoll_server(void *a)
{
	int sv[2], ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event ev = {.events = EPOLLIN}, out;
	(void)a;
	socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
	ev.data.fd = sv[0];
	epoll_ctl(ep, EPOLL_CTL_ADD, sv[0], &ev);
	for (;;)
		epoll_wait(ep, &out, 1, -1);
	return NULL;
}

static void *timer(void *a)
{
	(void)a;
	for (;;)
		sleep_s(3600);
	return NULL;
}

static void *busy_worker(void *a)
{
	(void)a;
	for (;;) {
		pthread_mutex_lock(&pool_lock);
		for (int i = 0; i < 2000; i++)
			atomic_fetch_add(&work, 1);
		pthread_mutex_unlock(&pool_lock);
		for (int i = 0; i < 20000; i++)
			atomic_fetch_add(&work, 1);
		sched_yield();
	}
	return NULL;
}

static void touch(size_t mib)
{
	size_t len = mib << 20;
	char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		exit(3);
	for (size_t i = 0; i < len; i += 4096)
		p[i] = (char)(i >> 12 | 1);
}

static void start(void *(*fn)(void *))
{
	pthread_t t;
	if (pthread_create(&t, NULL, fn, NULL))
		exit(3);
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "";
	double delay = argc > 2 ? strtod(argv[2], NULL) : 0;
	long n = argc > 3 ? strtol(argv[3], NULL, 10) : 0;

	signal(SIGTERM, SIG_DFL);
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!strcmp(mode, "big"))
		touch((size_t)n);
	printf("ready pid=%d\n", getpid());
	fflush(stdout);
	if (!strcmp(mode, "healthy")) {
		for (int i = 0; i < 4; i++)
			start(idle);
		start(epoll_server);
		start(timer);
		forever();
	}
	if (!strcmp(mode, "busy")) {
		for (int i = 0; i < 4; i++)
			start(busy_worker);
		forever();
	}
	if (!strcmp(mode, "leak")) {
		for (;;) {
			int p[2];
			if (pipe(p) < 0)
				forever();
			sleep_s(0.05);
		}
	}
	if (!strcmp(mode, "thread-cpu"))
		for (int i = 0; i < 3; i++)
			start(idle);
	sleep_s(delay);
	start_b = boot_s();
	if (!strcmp(mode, "cpu") || !strcmp(mode, "thread-cpu") || !strcmp(mode, "big")) {
		start(spin);
		crossed();
		forever();
	}
	if (!strcmp(mode, "nodump")) {
		prctl(PR_SET_DUMPABLE, 0);
		crossed();
		spin(NULL);
	}
	if (!strcmp(mode, "memory")) {
		touch((size_t)n);
		crossed();
		forever();
	}
	if (!strcmp(mode, "threads")) {
		for (long i = 0; i < n; i++)
			start(idle);
		crossed();
		forever();
	}
	if (!strcmp(mode, "fds")) {
		for (long i = 0; i < n; i++)
			if (open("/dev/null", O_RDONLY) < 0)
				exit(3);
		crossed();
		forever();
	}
	if (!strcmp(mode, "deadlock") || !strcmp(mode, "blocked")) {
		bool dl = !strcmp(mode, "deadlock");
		pthread_barrier_init(&barrier, NULL, 3);
		start(dl ? lock_12 : hold_and_sleep);
		start(dl ? lock_21 : wait_on_m1);
		pthread_barrier_wait(&barrier);
		/* Both are in (or a few instructions from) their final lock now. */
		sleep_s(0.05);
		crossed();
		forever();
	}
	if (!strcmp(mode, "exit")) {
		crossed();
		return 0;
	}
	fprintf(stderr, "unknown mode '%s'\n", mode);
	return 2;
}
