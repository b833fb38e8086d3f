/* SPDX-License-Identifier: MIT */
/*
 * The bundled demo workload: a small service with healthy threads and two problems for
 * osmosis analyze to find.
 *
 * Healthy:
 *   - "pool-N": an idle worker pool waiting on a condition variable;
 *   - "sleeper": a timer thread in nanosleep;
 *   - "listener": waits on a pipe for commands.
 * Problem 1, a deadlock: "transfer-a" locks accounts[0] then accounts[1]; "transfer-b" locks
 *   accounts[1] then accounts[0]. Each holds one and waits for the other, forever.
 * Problem 2, a wait chain across two processes: "client" sends a request down a pipe to the
 *   child process "demo-backend" and waits for the answer; the backend's main thread waits for
 *   the cache lock, which "cache-refresh" holds while it sleeps.
 *
 * It prints "ready <pid> <backend pid>" on stdout once every thread is in place, then runs until
 * killed. "In place" is checked, not waited for: each thread's /proc/PID/task/TID/syscall must
 * show it blocked in the syscall it should be in, on the object it should wait on (the futex word
 * of its mutex or condition variable, its pipe), in both processes; a fixed sleep would print
 * "ready" too early on a loaded machine.
 */
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* ---- waiting until a thread is blocked where it should be ------------------------------------ */

#define READY_TIMEOUT_S 120
#define NR_SLEEP	(-2) /* nanosleep or clock_nanosleep */

static int read_small(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;
	if (fd < 0)
		return -1;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n < 0)
		return -1;
	buf[n] = 0;
	return 0;
}

/* How many threads of pid named name are blocked in syscall nr with the first argument in
 * [lo, hi). */
static int count_blocked(pid_t pid, const char *name, long nr, uint64_t lo, uint64_t hi)
{
	char path[96], buf[256], *end;
	struct dirent *de;
	int found = 0;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/task", pid);
	if (!(d = opendir(path)))
		return 0;
	while ((de = readdir(d))) {
		long tid = strtol(de->d_name, NULL, 10), n;
		if (tid <= 0)
			continue;
		snprintf(path, sizeof(path), "/proc/%d/task/%ld/comm", pid, tid);
		if (read_small(path, buf, sizeof(buf)) < 0)
			continue;
		buf[strcspn(buf, "\n")] = 0;
		if (strcmp(buf, name))
			continue;
		snprintf(path, sizeof(path), "/proc/%d/task/%ld/syscall", pid, tid);
		if (read_small(path, buf, sizeof(buf)) < 0)
			continue;
		n = strtol(buf, &end, 10);
		if (end == buf) /* running */
			continue;
		if (nr == NR_SLEEP ? n != SYS_nanosleep && n != SYS_clock_nanosleep : n != nr)
			continue;
		uint64_t a0 = strtoull(end, NULL, 0);
		if (a0 < lo || a0 >= hi)
			continue;
		found++;
	}
	closedir(d);
	return found;
}

static void wait_blocked(pid_t pid, const char *name, long nr, uint64_t lo, uint64_t hi, int count)
{
	struct timespec t0, now;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (count_blocked(pid, name, nr, lo, hi) < count) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec - t0.tv_sec > READY_TIMEOUT_S) {
			fprintf(stderr, "demo: thread %s of %d never blocked in syscall %ld\n",
				name, pid, nr);
			exit(3);
		}
		usleep(1000);
	}
}

#define ANY   0, UINT64_MAX
#define ON(p) (uint64_t)(uintptr_t)(p), (uint64_t)(uintptr_t)(p) + 1
#define IN(p) (uint64_t)(uintptr_t)(p), (uint64_t)(uintptr_t)(p) + sizeof(*(p))
#define FD(f) (uint64_t)(f), (uint64_t)(f) + 1

static pthread_mutex_t accounts[2] = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER};
static pthread_barrier_t both_hold_one;
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pool_cv = PTHREAD_COND_INITIALIZER;
static int command_pipe[2];

static void __attribute__((noinline)) transfer(int from, int to)
{
	pthread_mutex_lock(&accounts[from]);
	pthread_barrier_wait(&both_hold_one); /* the other transfer holds its first lock too */
	pthread_mutex_lock(&accounts[to]);    /* deadlock */
	pthread_mutex_unlock(&accounts[to]);
	pthread_mutex_unlock(&accounts[from]);
}

static void *transfer_a(void *arg)
{
	prctl(PR_SET_NAME, "transfer-a");
	transfer(0, 1);
	return arg;
}

static void *transfer_b(void *arg)
{
	prctl(PR_SET_NAME, "transfer-b");
	transfer(1, 0);
	return arg;
}

static void *pool_worker(void *arg)
{
	char name[16];
	snprintf(name, sizeof(name), "pool-%d", (int)(long)arg);
	prctl(PR_SET_NAME, name);
	pthread_mutex_lock(&pool_lock);
	for (;;)
		pthread_cond_wait(&pool_cv, &pool_lock);
	return arg;
}

static void *sleeper(void *arg)
{
	prctl(PR_SET_NAME, "sleeper");
	for (;;)
		sleep(1000);
	return arg;
}

static void __attribute__((noinline)) wait_for_command(void)
{
	char buf[64];
	while (read(command_pipe[0], buf, sizeof(buf)) > 0)
		;
}

static void *listener(void *arg)
{
	prctl(PR_SET_NAME, "listener");
	wait_for_command();
	return arg;
}

/* ---- the backend process ------------------------------------------------------------------- */

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;

static void *cache_refresh(void *arg)
{
	prctl(PR_SET_NAME, "cache-refresh");
	pthread_mutex_lock(&cache_lock);
	for (;;)
		sleep(1000); /* holds the cache lock while it sleeps */
	return arg;
}

static void __attribute__((noinline)) lookup_in_cache(void)
{
	pthread_mutex_lock(&cache_lock);
	pthread_mutex_unlock(&cache_lock);
}

static void __attribute__((noinline)) serve(int requests, int answers)
{
	char req[64];
	while (read(requests, req, sizeof(req)) > 0) {
		lookup_in_cache(); /* waits for cache-refresh */
		if (write(answers, "ok", 2) != 2)
			break;
	}
}

static void backend(int requests, int answers)
{
	pthread_t t;
	prctl(PR_SET_NAME, "demo-backend");
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	pthread_create(&t, NULL, cache_refresh, NULL);
	/* cache-refresh has the lock (and sleeps) before a request can come */
	wait_blocked(getpid(), "cache-refresh", NR_SLEEP, ANY, 1);
	serve(requests, answers);
	_exit(0);
}

static int request_pipe[2], answer_pipe[2];

static void __attribute__((noinline)) ask_backend(void)
{
	char answer[8];
	if (write(request_pipe[1], "lookup", 6) != 6)
		return;
	if (read(answer_pipe[0], answer, sizeof(answer)) < 0) /* waits for the backend */
		return;
}

static void *client(void *arg)
{
	prctl(PR_SET_NAME, "client");
	ask_backend();
	return arg;
}

int main(void)
{
	pthread_t t;
	pid_t child;

	if (pipe(command_pipe) < 0 || pipe(request_pipe) < 0 || pipe(answer_pipe) < 0)
		return 1;
	child = fork();
	if (child < 0)
		return 1;
	if (child == 0) {
		close(request_pipe[1]);
		close(answer_pipe[0]);
		close(command_pipe[0]);
		close(command_pipe[1]);
		backend(request_pipe[0], answer_pipe[1]);
	}
	close(request_pipe[0]);
	close(answer_pipe[1]);

	pthread_barrier_init(&both_hold_one, NULL, 2);
	for (long i = 0; i < 3; i++)
		pthread_create(&t, NULL, pool_worker, (void *)i);
	pthread_create(&t, NULL, sleeper, NULL);
	pthread_create(&t, NULL, listener, NULL);
	pthread_create(&t, NULL, transfer_a, NULL);
	pthread_create(&t, NULL, transfer_b, NULL);
	pthread_create(&t, NULL, client, NULL);
	/* Every thread at its wait (a condition variable's futex word lies inside it). */
	wait_blocked(getpid(), "pool-0", SYS_futex, IN(&pool_cv), 1);
	wait_blocked(getpid(), "pool-1", SYS_futex, IN(&pool_cv), 1);
	wait_blocked(getpid(), "pool-2", SYS_futex, IN(&pool_cv), 1);
	wait_blocked(getpid(), "sleeper", NR_SLEEP, ANY, 1);
	wait_blocked(getpid(), "listener", SYS_read, FD(command_pipe[0]), 1);
	wait_blocked(getpid(), "transfer-a", SYS_futex, ON(&accounts[1]), 1);
	wait_blocked(getpid(), "transfer-b", SYS_futex, ON(&accounts[0]), 1);
	wait_blocked(getpid(), "client", SYS_read, FD(answer_pipe[0]), 1);
	/* the backend got the request and waits for the cache lock that cache-refresh holds */
	wait_blocked(child, "demo-backend", SYS_futex, ON(&cache_lock), 1);
	wait_blocked(child, "cache-refresh", NR_SLEEP, ANY, 1);
	printf("ready %d %d\n", getpid(), child);
	fflush(stdout);
	for (;;)
		pause();
	return 0;
}
