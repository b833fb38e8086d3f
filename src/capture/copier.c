/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "base/sched.h"
#include "base/timeutil.h"
#include "base/util.h"
#include "capture/copier.h"
#include "freeze/guard.h"

#define MAX_WORKERS 64
/* The workers copy at real-time priority for the first this much of a copy in the freeze, then
 * at their own: a copy of gigabytes in the pause must not take every CPU of the machine from its
 * other services for seconds (the freezing thread keeps its one CPU: base/sched.h). */
#define COPY_RT_NS (50ull * 1000000ull)
/*
 * While the targets run, a run smaller than this is copied by the calling thread alone. Waking
 * a worker costs two context switches and, on a CPU the targets keep busy, a preemption of
 * whatever runs there; a worker woken for a few jobs runs on the caller's CPU as often as not
 * (a synchronous wakeup), and takes turns with the caller there while the CPU's other tasks
 * wait. Seen in a scheduler trace of a PostgreSQL snapshot: the caller and its one worker took
 * 85% of one CPU for 107 ms during the rounds of 26 backends of a few MiB each, three backends
 * waiting on that CPU's run queue all along. A run of gigabytes still takes every worker.
 */
#define PARALLEL_MIN_BYTES (8ull << 20)

struct copier {
	pthread_t threads[MAX_WORKERS];
	unsigned n_threads, ready; /* ready: workers started */
	size_t page_size;

	pthread_mutex_t lock;
	pthread_cond_t start, done;
	uint64_t generation;  /* bumped for every run */
	bool frozen;	      /* this run copies out of frozen targets: workers at real-time */
	uint64_t rt_until_ns; /* ... until then (CLOCK_MONOTONIC) */
	unsigned busy;	      /* workers inside the current run */
	bool open; /* the current run takes workers still (copier_run's caller not done) */
	bool quit;

	struct copy_job *jobs;
	size_t n_jobs;
	atomic_size_t next;
	atomic_bool abort;
	/* this run calls fn(ctx, i) for every i < n_jobs instead of copying (copier_each_frozen) */
	void (*fn)(void *ctx, size_t i);
	void *ctx;
};

/* Read [remote, remote+len) page by page from /proc/PID/mem; zero what it refuses. */
static void copy_slow(struct copy_job *j, uint64_t done, size_t page_size)
{
	while (done < j->len) {
		uint64_t chunk = MIN(page_size - ((j->remote + done) % page_size), j->len - done);
		ssize_t n = -1;

		if (j->memfd >= 0)
			n = pread(j->memfd, j->dest + done, chunk, (off_t)(j->remote + done));
		if (n != (ssize_t)chunk) {
			memset(j->dest + done, 0, chunk);
			j->unreadable += chunk;
		}
		done += chunk;
	}
}

/* A job reading a file (a shared object): pread; what it refuses stays zero and is counted. */
static void copy_file(struct copy_job *j)
{
	uint64_t done = 0;

	while (done < j->len) {
		ssize_t n =
		    pread(j->memfd, j->dest + done, j->len - done, (off_t)(j->remote + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			memset(j->dest + done, 0, j->len - done);
			j->unreadable += j->len - done;
			return;
		}
		done += (uint64_t)n;
	}
}

void copy_job_run(struct copy_job *j, size_t page_size)
{
	uint64_t done = 0;

	j->unreadable = 0;
	if (j->pid == 0) {
		copy_file(j);
		return;
	}
	while (done < j->len) {
		struct iovec local = {.iov_base = j->dest + done, .iov_len = j->len - done};
		struct iovec remote = {.iov_base = (void *)(uintptr_t)(j->remote + done),
				       .iov_len = j->len - done};
		ssize_t n = process_vm_readv(j->pid, &local, 1, &remote, 1, 0);

		if (n > 0) {
			done += (uint64_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		/* Refused at done: take one page the slow way, then try the fast way again. */
		uint64_t page_end =
		    MIN(ALIGN_DOWN(j->remote + done, page_size) + page_size, j->remote + j->len);
		struct copy_job one = *j;
		one.remote = j->remote + done;
		one.len = page_end - one.remote;
		one.dest = j->dest + done;
		one.unreadable = 0;
		copy_slow(&one, 0, page_size);
		j->unreadable += one.unreadable;
		done += one.len;
	}
}

/*
 * Consecutive jobs of one process, claimed at once by one thread and read with one
 * process_vm_readv: one call costs more than a page's copy (a call per job of 4-8 KiB took
 * ~10 us in the freeze, a PostgreSQL backend's freeze being hundreds of such jobs: a library's
 * relocated page, a few heap pages), and the jobs of a process are in address order.
 */
#define BATCH_JOBS  64
#define BATCH_BYTES (256u << 10)

/* Claims the next jobs: returns how many (0: none left), the first at *ret_i. */
static size_t claim(struct copier *c, size_t *ret_i)
{
	size_t i = atomic_load(&c->next);

	for (;;) {
		size_t j = i + 1;
		if (i >= c->n_jobs)
			return 0;
		if (!c->fn && c->jobs[i].pid != 0) {
			const struct copy_job *first = &c->jobs[i];
			uint64_t bytes = first->len;
			while (j < c->n_jobs && j - i < BATCH_JOBS &&
			       c->jobs[j].pid == first->pid &&
			       bytes + c->jobs[j].len <= BATCH_BYTES)
				bytes += c->jobs[j++].len;
		}
		if (atomic_compare_exchange_weak(&c->next, &i, j)) {
			*ret_i = i;
			return j - i;
		}
	}
}

/* Jobs of one process in one call; what it does not finish, job by job (copy_job_run). */
static void copy_batch(struct copy_job *jobs, size_t n, size_t page_size)
{
	struct iovec local[BATCH_JOBS] = {0}, remote[BATCH_JOBS] = {0};
	uint64_t total = 0, done;
	ssize_t got;

	if (n == 1) {
		copy_job_run(jobs, page_size);
		return;
	}
	for (size_t k = 0; k < n; k++) {
		local[k] = (struct iovec){.iov_base = jobs[k].dest, .iov_len = jobs[k].len};
		remote[k] = (struct iovec){.iov_base = (void *)(uintptr_t)jobs[k].remote,
					   .iov_len = jobs[k].len};
		jobs[k].unreadable = 0;
		total += jobs[k].len;
	}
	got = process_vm_readv(jobs[0].pid, local, n, remote, n, 0);
	done = got > 0 ? (uint64_t)got : 0;
	if (done == total)
		return;
	for (size_t k = 0; k < n; k++) {
		if (done >= jobs[k].len) {
			done -= jobs[k].len;
			continue;
		}
		/* again from its start, the slow way where refused */
		copy_job_run(&jobs[k], page_size);
		done = 0;
	}
}

/* The claimed jobs: the run's function, or the copy. */
static void run_claimed(struct copier *c, size_t i, size_t n)
{
	if (c->fn)
		c->fn(c->ctx, i);
	else
		copy_batch(&c->jobs[i], n, c->page_size);
}

static void drain(struct copier *c, struct sched_hold *rt)
{
	for (;;) {
		size_t i, n;
		if (atomic_load(&c->abort))
			return;
		/* A long copy: the machine's other work gets its CPUs back. */
		if (rt && rt->held && now_ns() >= c->rt_until_ns)
			sched_hold_end(rt);
		if (!(n = claim(c, &i)))
			return;
		run_claimed(c, i, n);
	}
}

static void *worker_main(void *arg)
{
	struct copier *c = arg;
	uint64_t seen = 0;

	pthread_mutex_lock(&c->lock);
	c->ready++; /* copier_new waits for every worker's start */
	pthread_cond_broadcast(&c->done);
	for (;;) {
		while (!c->quit && c->generation == seen)
			pthread_cond_wait(&c->start, &c->lock);
		if (c->quit)
			break;
		seen = c->generation;
		/* Woken after the calling thread ran out of work (it waits for no worker that
		 * has not joined: on a loaded machine a worker may get a CPU only milliseconds
		 * after its wakeup, and a pause would wait for it doing nothing). */
		if (!c->open)
			continue;
		c->busy++;
		bool frozen = c->frozen;
		pthread_mutex_unlock(&c->lock);
		struct sched_hold h = {0};
		if (frozen)
			sched_hold_begin(&h);
		drain(c, &h);
		sched_hold_end(&h);
		pthread_mutex_lock(&c->lock);
		if (--c->busy == 0)
			pthread_cond_broadcast(&c->done);
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

struct copier *copier_new(unsigned n_workers, size_t page_size)
{
	struct copier *c = calloc(1, sizeof(*c));
	sigset_t all, old;

	if (!c)
		return NULL;
	c->page_size = page_size;
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->start, NULL);
	pthread_cond_init(&c->done, NULL);
	/* Workers take no signals: signals to osmosis must reach the freezing thread. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	for (unsigned i = 0; i < MIN(n_workers, (unsigned)MAX_WORKERS); i++) {
		if (pthread_create(&c->threads[i], NULL, worker_main, c))
			break;
		c->n_threads++;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	/* Each worker started before any freeze: a thread's first steps may allocate, and its
	 * start would otherwise fall in the pause on a loaded machine. */
	pthread_mutex_lock(&c->lock);
	while (c->ready < c->n_threads)
		pthread_cond_wait(&c->done, &c->lock);
	pthread_mutex_unlock(&c->lock);
	return c;
}

static int run_each(struct copier *c, struct copy_job *jobs, size_t n_jobs, bool frozen,
		    void (*fn)(void *ctx, size_t i), void *ctx)
{
	int r;

	uint64_t bytes = 0;
	bool alone = !frozen && !fn;
	for (size_t i = 0; alone && i < n_jobs && bytes < PARALLEL_MIN_BYTES; i++)
		bytes += jobs[i].len;
	alone = alone && bytes < PARALLEL_MIN_BYTES;

	pthread_mutex_lock(&c->lock);
	c->fn = fn;
	c->ctx = ctx;
	c->frozen = frozen;
	c->rt_until_ns = now_ns() + COPY_RT_NS;
	c->jobs = jobs;
	c->n_jobs = n_jobs;
	atomic_store(&c->next, 0);
	atomic_store(&c->abort, false);
	c->busy = 0;
	c->open = !alone;
	if (!alone) {
		c->generation++;
		pthread_cond_broadcast(&c->start);
	}
	pthread_mutex_unlock(&c->lock);

	/* The freezing thread copies too, checking for signals and the watchdog between jobs. */
	for (;;) {
		size_t i, n;
		if ((r = guard_check()) < 0) {
			atomic_store(&c->abort, true);
			break;
		}
		if (!(n = claim(c, &i)))
			break;
		run_claimed(c, i, n);
	}

	pthread_mutex_lock(&c->lock);
	c->open = false;
	while (c->busy > 0)
		pthread_cond_wait(&c->done, &c->lock);
	c->jobs = NULL;
	c->fn = NULL;
	pthread_mutex_unlock(&c->lock);
	return r < 0 ? r : guard_check();
}

static int run(struct copier *c, struct copy_job *jobs, size_t n_jobs, bool frozen)
{
	return run_each(c, jobs, n_jobs, frozen, NULL, NULL);
}

int copier_each(struct copier *c, void (*fn)(void *ctx, size_t i), void *ctx, size_t n)
{
	return run_each(c, NULL, n, false, fn, ctx);
}

int copier_each_frozen(struct copier *c, void (*fn)(void *ctx, size_t i), void *ctx, size_t n)
{
	return run_each(c, NULL, n, true, fn, ctx);
}

int copier_run(struct copier *c, struct copy_job *jobs, size_t n_jobs)
{
	return run(c, jobs, n_jobs, false);
}

int copier_run_frozen(struct copier *c, struct copy_job *jobs, size_t n_jobs)
{
	return run(c, jobs, n_jobs, true);
}

void copier_free(struct copier *c)
{
	if (!c)
		return;
	pthread_mutex_lock(&c->lock);
	c->quit = true;
	pthread_cond_broadcast(&c->start);
	pthread_mutex_unlock(&c->lock);
	for (unsigned i = 0; i < c->n_threads; i++)
		pthread_join(c->threads[i], NULL);
	pthread_mutex_destroy(&c->lock);
	pthread_cond_destroy(&c->start);
	pthread_cond_destroy(&c->done);
	free(c);
}
