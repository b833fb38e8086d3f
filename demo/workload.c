/* SPDX-License-Identifier: MIT */
/*
 * The bundled demo workload: a small service with threads in the states a snapshot should show:
 *   - "worker-lockN": two threads blocked on a mutex that "holder" keeps locked;
 *   - "holder": holds that mutex and sleeps;
 *   - "reader": blocked reading a pipe nobody writes;
 *   - "sleeper": in nanosleep;
 *   - "idle-cv": waiting on a condition variable;
 *   - the main thread waits for the others (pthread_join).
 * It prints "ready <pid>" on stdout once every thread is in place, then runs until killed.
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

static pthread_mutex_t big_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t cv_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static pthread_barrier_t started;
static int pipefd[2];

static void __attribute__((noinline)) hold_the_lock_forever(void)
{
	pthread_mutex_lock(&big_lock);
	pthread_barrier_wait(&started);
	for (;;)
		sleep(1000);
}

static void *holder(void *arg)
{
	prctl(PR_SET_NAME, "holder");
	hold_the_lock_forever();
	return arg;
}

static void __attribute__((noinline)) update_shared_table(void)
{
	pthread_mutex_lock(&big_lock); /* blocks: holder keeps it */
	pthread_mutex_unlock(&big_lock);
}

static void *worker(void *arg)
{
	char name[16];
	snprintf(name, sizeof(name), "worker-lock%d", (int)(long)arg);
	prctl(PR_SET_NAME, name);
	pthread_barrier_wait(&started);
	usleep(50000); /* let holder take the lock first */
	update_shared_table();
	return arg;
}

static void __attribute__((noinline)) wait_for_request(void)
{
	char buf[64];
	while (read(pipefd[0], buf, sizeof(buf)) > 0)
		;
}

static void *reader(void *arg)
{
	prctl(PR_SET_NAME, "reader");
	pthread_barrier_wait(&started);
	wait_for_request();
	return arg;
}

static void *sleeper(void *arg)
{
	prctl(PR_SET_NAME, "sleeper");
	pthread_barrier_wait(&started);
	for (;;)
		sleep(1000);
	return arg;
}

static void *idle_cv(void *arg)
{
	prctl(PR_SET_NAME, "idle-cv");
	pthread_mutex_lock(&cv_lock);
	pthread_barrier_wait(&started);
	for (;;)
		pthread_cond_wait(&cv, &cv_lock);
	return arg;
}

int main(void)
{
	pthread_t t[6];

	if (pipe(pipefd) < 0)
		return 1;
	pthread_barrier_init(&started, NULL, 7);
	pthread_create(&t[0], NULL, holder, NULL);
	pthread_create(&t[1], NULL, worker, (void *)1L);
	pthread_create(&t[2], NULL, worker, (void *)2L);
	pthread_create(&t[3], NULL, reader, NULL);
	pthread_create(&t[4], NULL, sleeper, NULL);
	pthread_create(&t[5], NULL, idle_cv, NULL);
	pthread_barrier_wait(&started);
	usleep(200000); /* the workers reach the lock */
	printf("ready %d\n", getpid());
	fflush(stdout);
	pthread_join(t[1], NULL);
	return 0;
}
