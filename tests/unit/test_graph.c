/* SPDX-License-Identifier: MIT */
/* The wait graph's logic on graphs built by hand: who can go on, which cycles are deadlocks,
 * where chains start and end. No snapshot, no cores: threads and processes are made here and
 * their waits added through the graph's API, as the loader and a language runtime add them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analyze/analysis.h"
#include "proc/locks.h"

#define MAX_PROCS   8
#define MAX_THREADS 4

/* A small world: processes 100, 200, ... each with up to four threads (pid, pid+1, ...). */
struct world {
	struct analysis a;
	struct aprocess procs[MAX_PROCS];
	struct osm_process p[MAX_PROCS];
	struct athread threads[MAX_PROCS][MAX_THREADS];
	struct osm_thread t[MAX_PROCS][MAX_THREADS];
};

static struct world *world_new(size_t n_procs, const size_t *threads)
{
	struct world *w = calloc(1, sizeof(*w));
	assert_non_null(w);
	w->a.procs = w->procs;
	w->a.n_procs = n_procs;
	for (size_t i = 0; i < n_procs; i++) {
		struct aprocess *ap = &w->procs[i];
		w->p[i].pid = (pid_t)(100 * (i + 1));
		snprintf(w->p[i].comm, sizeof(w->p[i].comm), "p%zu", i);
		ap->p = &w->p[i];
		ap->threads = w->threads[i];
		ap->n_threads = threads[i];
		for (size_t j = 0; j < threads[i]; j++) {
			struct athread *t = &w->threads[i][j];
			w->t[i][j].tid = w->p[i].pid + (pid_t)j;
			w->t[i][j].captured = true;
			w->t[i][j].state = 'S';
			w->t[i][j].syscall_nr = -1;
			t->t = &w->t[i][j];
			t->proc = ap;
			t->wait.kind = WAIT_SLEEP;
			t->wait.fd = -1;
		}
	}
	return w;
}

static void world_free(struct world *w)
{
	for (size_t i = 0; i < w->a.n_procs; i++)
		for (size_t j = 0; j < w->procs[i].n_threads; j++)
			graph_free_edges(&w->threads[i][j]);
	for (size_t i = 0; i < w->a.n_cycles; i++) {
		free(w->a.cycles[i].steps);
		free(w->a.cycles[i].others);
	}
	free(w->a.cycles);
	for (size_t i = 0; i < w->a.n_chains; i++)
		free(w->a.chains[i].steps);
	free(w->a.chains);
	free(w);
}

static struct athread *T(struct world *w, size_t proc, size_t thread)
{
	return &w->threads[proc][thread];
}

static struct aprocess *P(struct world *w, size_t proc)
{
	return &w->procs[proc];
}

/* thread waits on one thread ("this one": a mutex owner, a joined thread) */
static void waits_on_thread(struct athread *from, struct athread *to, enum wait_kind kind)
{
	struct edge *e = graph_add_wait(from, EDGE_MUTEX, WAIT_THIS_ONE, "mutex");
	assert_non_null(e);
	assert_int_equal(edge_add_waker(e, to, NULL, -1, "owner"), 0);
	from->wait.kind = kind;
}

/* thread waits on any of several processes (a pipe read: every holder of a write end) */
static void waits_on_procs(struct athread *from, enum wait_mode mode, struct aprocess **procs,
			   size_t n)
{
	struct edge *e = graph_add_wait(from, EDGE_PIPE, mode, "reads a pipe");
	assert_non_null(e);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(edge_add_waker(e, NULL, procs[i], 6, "holds a write end"), 0);
	from->wait.kind = WAIT_READ;
}

static size_t deadlocks(const struct analysis *a)
{
	size_t n = 0;
	for (size_t i = 0; i < a->n_cycles; i++)
		n += a->cycles[i].deadlock;
	return n;
}

/* The false deadlock: A reads a socket from B; B's main thread waits on a mutex held by
 * B's worker; the worker reads a pipe whose write end A, B and C hold; C sleeps. */
static struct world *false_deadlock_world(void)
{
	static const size_t threads[] = {1, 2, 1};
	struct world *w = world_new(3, threads);
	struct aprocess *b[] = {P(w, 1)};
	struct aprocess *writers[] = {P(w, 0), P(w, 1), P(w, 2)};
	waits_on_procs(T(w, 0, 0), WAIT_ANY_OF, b, 1);
	waits_on_thread(T(w, 1, 0), T(w, 1, 1), WAIT_MUTEX);
	waits_on_procs(T(w, 1, 1), WAIT_ANY_OF, writers, 3);
	return w;
}

static void test_a_sleeping_writer_means_no_deadlock(void **state)
{
	struct world *w = false_deadlock_world();
	(void)state;
	find_cycles_and_chains(&w->a);
	assert_int_equal(deadlocks(&w->a), 0);
	assert_int_equal(w->a.n_cycles, 1); /* the cycle is there, and can unwind */
	assert_int_equal(w->a.cycles[0].n, 3);
	assert_true(w->a.cycles[0].via_process);
	for (size_t i = 0; i < 3; i++)
		assert_false(w->a.cycles[0].steps[i].t->stuck);
	/* the way out: C's waker entry can go on */
	const struct edge *e = &T(w, 1, 1)->edges[0];
	assert_int_equal(e->n_wakers, 3);
	assert_true(waker_can_go_on(&e->wakers[2]));
	assert_int_equal(e->mode, WAIT_ANY_OF);
	world_free(w);
}

static void test_every_writer_stuck_is_a_deadlock(void **state)
{
	struct world *w = false_deadlock_world();
	struct aprocess *a[] = {P(w, 0)};
	(void)state;
	/* now C reads a pipe only A could write */
	waits_on_procs(T(w, 2, 0), WAIT_ANY_OF, a, 1);
	find_cycles_and_chains(&w->a);
	assert_int_equal(deadlocks(&w->a), 1);
	const struct cycle *c = &w->a.cycles[0];
	assert_true(c->deadlock);
	assert_int_equal(c->n + c->n_others, 4); /* A, B main, worker, and C */
	for (size_t i = 0; i < 3; i++)
		for (size_t j = 0; j < P(w, i)->n_threads; j++)
			assert_true(T(w, i, j)->stuck);
	world_free(w);
}

static void test_a_running_thread_of_a_writer_frees_it(void **state)
{
	static const size_t threads[] = {2, 1};
	struct world *w = world_new(2, threads);
	struct aprocess *p0[] = {P(w, 0)}, *p1[] = {P(w, 1)};
	(void)state;
	/* two processes each reading a pipe the other writes: a deadlock... */
	waits_on_procs(T(w, 0, 0), WAIT_ANY_OF, p1, 1);
	waits_on_procs(T(w, 1, 0), WAIT_ANY_OF, p0, 1);
	/* ...unless the second thread of the first can still write */
	T(w, 0, 1)->wait.kind = WAIT_NONE;
	T(w, 0, 1)->t->state = 'R';
	find_cycles_and_chains(&w->a);
	assert_int_equal(deadlocks(&w->a), 0);
	assert_int_equal(w->a.n_cycles, 1);
	/* and when that thread waits on a private condition variable, nobody is left to wake it */
	T(w, 0, 1)->wait.kind = WAIT_CONDVAR;
	T(w, 0, 1)->t->syscall_args[1] = 128 | 9; /* FUTEX_WAIT_BITSET_PRIVATE */
	find_cycles_and_chains(&w->a);
	assert_int_equal(deadlocks(&w->a), 1);
	assert_true(T(w, 0, 1)->stuck);
	/* a shared futex may be woken from outside the snapshot: not stuck */
	T(w, 0, 1)->t->syscall_args[1] = 9;
	find_cycles_and_chains(&w->a);
	assert_int_equal(deadlocks(&w->a), 0);
	world_free(w);
}

static void test_mutex_cycle_in_one_process(void **state)
{
	static const size_t threads[] = {3};
	struct world *w = world_new(1, threads);
	(void)state;
	waits_on_thread(T(w, 0, 0), T(w, 0, 1), WAIT_MUTEX);
	waits_on_thread(T(w, 0, 1), T(w, 0, 0), WAIT_MUTEX);
	/* the third thread runs: a mutex can be released only by its owner, so no matter */
	T(w, 0, 2)->wait.kind = WAIT_NONE;
	find_cycles_and_chains(&w->a);
	assert_int_equal(deadlocks(&w->a), 1);
	assert_int_equal(w->a.cycles[0].n, 2);
	assert_false(w->a.cycles[0].via_process);
	assert_false(T(w, 0, 2)->stuck);
	world_free(w);
}

static void test_chain_into_a_deadlock_and_to_an_end(void **state)
{
	static const size_t threads[] = {4};
	struct world *w = world_new(1, threads);
	(void)state;
	waits_on_thread(T(w, 0, 0), T(w, 0, 1), WAIT_MUTEX);
	waits_on_thread(T(w, 0, 1), T(w, 0, 0), WAIT_MUTEX);
	waits_on_thread(T(w, 0, 2), T(w, 0, 0), WAIT_MUTEX); /* late: into the deadlock */
	find_cycles_and_chains(&w->a);
	assert_int_equal(w->a.n_chains, 1);
	assert_int_equal(w->a.chains[0].steps[0].t, T(w, 0, 2));
	assert_int_equal(w->a.chains[0].ends_in_cycle, 1);
	assert_true(w->a.chains[0].stuck);
	world_free(w);

	/* a chain of two mutex waits ending in a sleeping thread */
	w = world_new(1, threads);
	waits_on_thread(T(w, 0, 0), T(w, 0, 1), WAIT_MUTEX);
	waits_on_thread(T(w, 0, 1), T(w, 0, 2), WAIT_MUTEX);
	find_cycles_and_chains(&w->a);
	assert_int_equal(w->a.n_cycles, 0);
	assert_int_equal(w->a.n_chains, 1);
	assert_int_equal(w->a.chains[0].n, 2);
	assert_ptr_equal(w->a.chains[0].end_thread, T(w, 0, 2));
	assert_false(w->a.chains[0].stuck);
	assert_true(T(w, 0, 1)->waited_on);
	assert_false(T(w, 0, 0)->waited_on);
	world_free(w);
}

static void test_all_of_and_abandoned(void **state)
{
	static const size_t threads[] = {4};
	struct world *w = world_new(1, threads);
	(void)state;
	/* thread 3 waits on an abandoned mutex: it can never go on */
	T(w, 0, 3)->wait.kind = WAIT_MUTEX;
	T(w, 0, 3)->wait.verdict = MUTEX_ABANDONED;
	/* thread 0 waits for all of 1 (free) and 3 (stuck) */
	struct edge *e = graph_add_wait(T(w, 0, 0), EDGE_RWLOCK, WAIT_ALL_OF, "rwlock readers");
	assert_non_null(e);
	edge_add_waker(e, T(w, 0, 1), NULL, -1, "reader");
	edge_add_waker(e, T(w, 0, 3), NULL, -1, "reader");
	find_cycles_and_chains(&w->a);
	assert_true(T(w, 0, 3)->stuck);
	assert_true(T(w, 0, 0)->stuck);
	assert_false(T(w, 0, 1)->stuck);
	assert_int_equal(deadlocks(&w->a), 0); /* stuck, but no cycle: a dead owner */
	assert_int_equal(w->a.n_chains, 1);
	assert_true(w->a.chains[0].stuck);
	/* any of the same two: free */
	T(w, 0, 0)->edges[0].mode = WAIT_ANY_OF;
	find_cycles_and_chains(&w->a);
	assert_false(T(w, 0, 0)->stuck);
	world_free(w);
}

static void test_waiting_on_its_own_process_alone(void **state)
{
	static const size_t threads[] = {1, 1};
	struct world *w = world_new(2, threads);
	struct aprocess *self[] = {P(w, 0)};
	(void)state;
	/* a single-threaded reader that holds the pipe's only write end: end of file never comes */
	waits_on_procs(T(w, 0, 0), WAIT_ANY_OF, self, 1);
	find_cycles_and_chains(&w->a);
	assert_true(T(w, 0, 0)->stuck);
	assert_int_equal(deadlocks(&w->a), 1);
	assert_int_equal(w->a.cycles[0].n, 1);
	world_free(w);
}

/* A JVM at rest: the launcher joins the main thread, and every thread waits on a private futex
 * with no owner. Untimed waits alone can never end (nothing in the process can wake them): the
 * joiner is stuck. A timed wait (Thread.sleep, pthread_cond_timedwait) ends by itself. */
static void test_timed_ownerless_waits_can_go_on(void **state)
{
	static const size_t threads[] = {3};
	(void)state;
	for (int timed = 0; timed < 2; timed++) {
		struct world *w = world_new(1, threads);
		waits_on_thread(T(w, 0, 0), T(w, 0, 1), WAIT_JOIN);
		for (size_t j = 1; j < 3; j++) {
			T(w, 0, j)->wait.kind = j == 1 ? WAIT_CONDVAR : WAIT_SEMAPHORE;
			w->t[0][j].syscall_nr = 202;
			w->t[0][j].syscall_args[1] = 9 | 128; /* FUTEX_WAIT_BITSET_PRIVATE */
			w->t[0][j].syscall_args[3] = j == 1 && timed ? 0x7ffc0000 : 0;
		}
		find_cycles_and_chains(&w->a);
		assert_int_equal(T(w, 0, 1)->stuck, !timed);
		assert_int_equal(T(w, 0, 2)->stuck, !timed); /* freed by its timed peer */
		assert_int_equal(T(w, 0, 0)->stuck, !timed);
		world_free(w);
	}
}

static void test_reader_and_writer_of_one_pipe_are_not_both_waiting(void **state)
{
	static const size_t threads[] = {1, 1};
	struct world *w = world_new(2, threads);
	/* yes | head: yes in write(1), head in read(0), the same pipe. It cannot be full and empty
	 * at once: one of them was copying at the freeze, so no wait and no deadlock. */
	struct osm_fd wr = {.fd = 1, .type = "pipe", .inode = 7, .flags = 1};
	struct osm_fd rd = {.fd = 0, .type = "pipe", .inode = 7, .flags = 0};
	(void)state;
	w->p[0].fds = &wr;
	w->p[0].n_fds = 1;
	w->p[1].fds = &rd;
	w->p[1].n_fds = 1;
	T(w, 0, 0)->wait.kind = WAIT_WRITE;
	T(w, 0, 0)->wait.fd = 1;
	T(w, 1, 0)->wait.kind = WAIT_READ;
	T(w, 1, 0)->wait.fd = 0;
	build_wait_graph(&w->a);
	find_cycles_and_chains(&w->a);
	assert_int_equal(deadlocks(&w->a), 0);
	assert_int_equal(T(w, 0, 0)->n_edges, 0);
	assert_int_equal(T(w, 1, 0)->n_edges, 0);
	/* two pipes, each read by one and written by the other: a real deadlock stays one */
	struct osm_fd wr2[] = {{.fd = 1, .type = "pipe", .inode = 7, .flags = 1},
			       {.fd = 3, .type = "pipe", .inode = 8, .flags = 0}};
	struct osm_fd rd2[] = {{.fd = 0, .type = "pipe", .inode = 7, .flags = 0},
			       {.fd = 4, .type = "pipe", .inode = 8, .flags = 1}};
	graph_free_edges(T(w, 0, 0));
	graph_free_edges(T(w, 1, 0));
	w->p[0].fds = wr2;
	w->p[0].n_fds = 2;
	w->p[1].fds = rd2;
	w->p[1].n_fds = 2;
	T(w, 0, 0)->wait.kind = WAIT_READ; /* reads pipe 8, written only by p1 */
	T(w, 0, 0)->wait.fd = 3;
	T(w, 1, 0)->wait.kind = WAIT_READ; /* reads pipe 7, written only by p0 */
	T(w, 1, 0)->wait.fd = 0;
	build_wait_graph(&w->a);
	find_cycles_and_chains(&w->a);
	assert_int_equal(deadlocks(&w->a), 1);
	world_free(w);
}

static void test_a_thread_running_in_read_or_write_is_not_waiting(void **state)
{
	static const size_t threads[] = {1, 1};
	struct world *w = world_new(2, threads);
	/* each reads a pipe only the other writes, but both were running (state R) at the freeze:
	 * the calls were moving data (redis and redis-benchmark writing their ends), no wait */
	struct osm_fd a[] = {{.fd = 1, .type = "pipe", .inode = 7, .flags = 1},
			     {.fd = 3, .type = "pipe", .inode = 8, .flags = 0}};
	struct osm_fd b[] = {{.fd = 0, .type = "pipe", .inode = 7, .flags = 0},
			     {.fd = 4, .type = "pipe", .inode = 8, .flags = 1}};
	(void)state;
	w->p[0].fds = a;
	w->p[0].n_fds = 2;
	w->p[1].fds = b;
	w->p[1].n_fds = 2;
	T(w, 0, 0)->wait.kind = WAIT_READ;
	T(w, 0, 0)->wait.fd = 3;
	T(w, 1, 0)->wait.kind = WAIT_READ;
	T(w, 1, 0)->wait.fd = 0;
	T(w, 0, 0)->t->state = 'R';
	T(w, 1, 0)->t->state = 'R';
	build_wait_graph(&w->a);
	find_cycles_and_chains(&w->a);
	assert_int_equal(T(w, 0, 0)->n_edges, 0);
	assert_int_equal(T(w, 1, 0)->n_edges, 0);
	assert_int_equal(w->a.n_cycles, 0);
	/* asleep in the same calls: the deadlock it is */
	T(w, 0, 0)->t->state = 'S';
	T(w, 1, 0)->t->state = 'S';
	build_wait_graph(&w->a);
	find_cycles_and_chains(&w->a);
	assert_int_equal(deadlocks(&w->a), 1);
	world_free(w);
}

static void test_proc_locks_parse(void **state)
{
	static const char text[] = "1: FLOCK  ADVISORY  WRITE 4118 fe:00:10953883 0 EOF\n"
				   "1: -> FLOCK  ADVISORY  WRITE 4119 fe:00:10953883 0 EOF\n"
				   "2: POSIX  ADVISORY  READ 4136 08:1f:77 100 199\n"
				   "3: OFDLCK ADVISORY  WRITE -1 00:2f:5 0 0\n"
				   "garbage that is not a lock\n"
				   "4: -> -> POSIX ADVISORY WRITE 9 00:01:2 5 EOF";
	struct osm_file_lock *v = NULL;
	size_t n = 0;
	(void)state;
	assert_int_equal(proc_locks_parse(text, &v, &n), 0);
	assert_int_equal(n, 5);
	assert_false(v[0].waiting);
	assert_true(v[1].waiting);
	assert_int_equal(v[1].id, 1);
	assert_int_equal(v[1].pid, 4119);
	assert_string_equal(v[0].type, "FLOCK");
	assert_int_equal(v[0].dev_major, 0xfe);
	assert_int_equal(v[0].inode, 10953883);
	assert_int_equal(v[0].end, -1);
	assert_string_equal(v[2].access, "READ");
	assert_int_equal(v[2].dev_minor, 0x1f);
	assert_int_equal(v[2].start, 100);
	assert_int_equal(v[2].end, 199);
	assert_int_equal(v[3].pid, -1);
	assert_true(v[4].waiting);
	assert_int_equal(v[4].pid, 9);
	file_locks_free(v, n);
	assert_int_equal(proc_locks_parse("", &v, &n), 0);
	assert_int_equal(n, 0);
	free(v);
}

/* fdinfo's lock: lines (ids count per descriptor) name the same lock as /proc/locks's line. */
static void test_fd_locks_parse(void **state)
{
	static const char info[] = "pos:\t0\nflags:\t0100001\nmnt_id:\t27\nino:\t10953883\n"
				   "lock:\t1: FLOCK  ADVISORY  WRITE 4118 fe:00:10953883 0 EOF\n";
	struct osm_file_lock *v = NULL, *all = NULL;
	size_t n = 0, n_all = 0;
	(void)state;
	assert_int_equal(proc_fd_locks_parse(info, &v, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(proc_locks_parse("7: FLOCK  ADVISORY  WRITE 4118 fe:00:10953883 0 EOF\n"
					  "8: FLOCK  ADVISORY  WRITE 4118 fe:00:10953884 0 EOF\n",
					  &all, &n_all),
			 0);
	assert_true(file_lock_same(&v[0], &all[0]));
	assert_false(file_lock_same(&v[0], &all[1])); /* another file */
	file_locks_free(v, n);
	file_locks_free(all, n_all);
	assert_int_equal(proc_fd_locks_parse("pos:\t0\nflags:\t02\n", &v, &n), 0);
	assert_true(!v && !n);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_a_sleeping_writer_means_no_deadlock),
	    cmocka_unit_test(test_every_writer_stuck_is_a_deadlock),
	    cmocka_unit_test(test_a_running_thread_of_a_writer_frees_it),
	    cmocka_unit_test(test_mutex_cycle_in_one_process),
	    cmocka_unit_test(test_chain_into_a_deadlock_and_to_an_end),
	    cmocka_unit_test(test_all_of_and_abandoned),
	    cmocka_unit_test(test_waiting_on_its_own_process_alone),
	    cmocka_unit_test(test_timed_ownerless_waits_can_go_on),
	    cmocka_unit_test(test_reader_and_writer_of_one_pipe_are_not_both_waiting),
	    cmocka_unit_test(test_a_thread_running_in_read_or_write_is_not_waiting),
	    cmocka_unit_test(test_proc_locks_parse),
	    cmocka_unit_test(test_fd_locks_parse),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
