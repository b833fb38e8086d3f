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
 *   scatter PAGES    a thread writing PAGES pages nonstop in random order (a hash table's
 *                    pattern: as many runs of written pages as pages)
 *   rotoggle PAGES   PAGES read-only pages (a library's RELRO: written once, then read-only)
 *                    and a thread that makes them writable, writes a generation into each in
 *                    order, and makes them read-only again, every 200 us; "gen" is the
 *                    generation last written whole (in a writable page)
 *   churn            threads created and exiting continuously
 *   signals N        expects N SIGRTMIN+1 (queued) and at least one SIGUSR1 (coalescing)
 *   maps N           about N separate mappings (alternating protections)
 *   dontdump         a MADV_DONTDUMP region of 0xAA bytes and a normal region of 0xBB bytes
 *   nondumpable      basic, after prctl(PR_SET_DUMPABLE, 0)
 *   busy N           N threads spinning on the CPU
 *   pingpong         a parent and a child exchanging messages through two pipes as fast as they
 *                    can, each counting what it sent and received (struct at "counters")
 *   sockpong N       a server and a client process over N non-blocking unix socket pairs, each
 *                    in epoll_wait, then reading what came and answering it (redis and
 *                    redis-benchmark's shape): N requests always in flight
 *   factory N        forks N children that sleep (a process tree of N+1)
 *   threads N        N idle threads (blocked on a condition variable)
 *   fds              one of each kind of descriptor: pipe, unix socketpair, TCP loopback pair,
 *                    eventfd, epoll, timerfd, memfd; oom_score_adj 500; one thread spinning
 * Pattern victims (each exhibits one analysis pattern; names in "ready" say who should be named):
 *   deadlock N [chained]  N threads (2 or 3) locking mutexes in a cycle; chained: a third
 *                    thread waits on the cycle
 *   deadlock-procs   a parent and child each reading a pipe the other would write after (the
 *                    parent's main thread joins its waiting thread)
 *   coupled          deadlock-procs with a spinning thread in the parent: not all blocked
 *   chain3           three processes: a unix socket request, a mutex, a pipe that is never written
 *   contention N     N threads waiting on one mutex whose owner sleeps
 *   abandoned        a thread exits holding a mutex another waits on
 *   corrupt          a waited-on mutex whose __owner and __count are overwritten
 *   zombies N        N children that exited and are never reaped
 *   fdleak N         N descriptors with RLIMIT_NOFILE just above
 *   alloc MiB        touches MiB of memory (for a cgroup near memory.max)
 *   deepstack        a thread with a 64 KiB stack recursing to its last 6 KiB
 *   pagedout         a blocked thread whose stack is pushed to swap (MADV_PAGEOUT)
 *   dlopen PATH      loads the shared library PATH
 *   healthy          idle pool on a condition variable, epoll server, sleeping timer
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
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
#include <sys/resource.h>
#include <dirent.h>
#include <dlfcn.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/rseq.h>
#include <sys/stat.h>
#include <sys/syscall.h>
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

/* ---- "ready" means the state is in place -------------------------------------------------
 * A victim prints "ready" only once each thread it names is blocked where the mode says: in the
 * syscall it should be in, on the object it should wait on (the futex word, the descriptor), as
 * /proc/PID/task/TID/syscall shows. A fixed sleep would do on an idle machine and fail on a
 * loaded one; this waits as long as it takes (up to READY_TIMEOUT_S, then the victim exits with
 * the reason, so a test fails saying why instead of analyzing a half-built state). */
#define READY_TIMEOUT_S 120
#define ARG_ANY		0, UINT64_MAX
#define NR_SLEEP	(-2) /* nanosleep or clock_nanosleep */
#define NR_EPOLL	(-3) /* epoll_wait or epoll_pwait */

static bool read_small(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;
	if (fd < 0)
		return false;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n < 0)
		return false;
	buf[n] = 0;
	return true;
}

/* Is task tid of pid blocked in syscall nr with its first argument in [lo, hi)? */
static bool task_blocked_in(pid_t pid, pid_t tid, long nr, uint64_t lo, uint64_t hi)
{
	char path[96], buf[256], *end;
	long n;
	uint64_t a0;

	snprintf(path, sizeof(path), "/proc/%d/task/%d/syscall", pid, tid);
	if (!read_small(path, buf, sizeof(buf))) {
		char *p;
		/* Not ours to read (another user's, non-dumpable): sleeping is the best sign. */
		if (errno != EACCES && errno != EPERM)
			return false;
		snprintf(path, sizeof(path), "/proc/%d/task/%d/stat", pid, tid);
		return read_small(path, buf, sizeof(buf)) && (p = strrchr(buf, ')')) && p[1] &&
		       p[2] == 'S';
	}
	n = strtol(buf, &end, 10);
	if (end == buf) /* "running" */
		return false;
	if (nr == NR_SLEEP   ? n != SYS_nanosleep && n != SYS_clock_nanosleep
	    : nr == NR_EPOLL ? n != SYS_epoll_wait && n != SYS_epoll_pwait
			     : n != nr)
		return false;
	a0 = strtoull(end, NULL, 0);
	return a0 >= lo && a0 < hi;
}

static int count_blocked(pid_t pid, const char *name, long nr, uint64_t lo, uint64_t hi)
{
	char path[64], comm[32];
	struct dirent *de;
	int found = 0;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/task", pid);
	if (!(d = opendir(path)))
		return 0;
	while ((de = readdir(d))) {
		pid_t tid = (pid_t)strtol(de->d_name, NULL, 10);
		if (tid <= 0)
			continue;
		if (name) {
			snprintf(path, sizeof(path), "/proc/%d/task/%d/comm", pid, tid);
			if (!read_small(path, comm, sizeof(comm)))
				continue;
			comm[strcspn(comm, "\n")] = 0;
			if (strcmp(comm, name))
				continue;
		}
		found += task_blocked_in(pid, tid, nr, lo, hi);
	}
	closedir(d);
	return found;
}

/* Wait until count threads of pid (0: this process) named name (NULL: any) are blocked in
 * syscall nr with the first argument in [lo, hi). */
static void wait_blocked(pid_t pid, const char *name, long nr, uint64_t lo, uint64_t hi, int count)
{
	struct timespec t0, now;

	if (!pid)
		pid = getpid();
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (count_blocked(pid, name, nr, lo, hi) < count) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec - t0.tv_sec > READY_TIMEOUT_S) {
			fprintf(stderr,
				"victim: %d thread(s) %s of %d never blocked in syscall %ld on "
				"[0x%llx, 0x%llx)\n",
				count, name ? name : "(any)", pid, nr, (unsigned long long)lo,
				(unsigned long long)hi);
			exit(3);
		}
		usleep(1000);
	}
}

#define ON(obj) (uint64_t)(uintptr_t)(obj), (uint64_t)(uintptr_t)(obj) + 1
#define IN(obj) (uint64_t)(uintptr_t)(obj), (uint64_t)(uintptr_t)(obj) + sizeof(*(obj))
#define FD(fd)	(uint64_t)(fd), (uint64_t)(fd) + 1

/* Wait until pid is a zombie. */
static void wait_zombie(pid_t pid)
{
	char path[64], buf[512], *p;
	for (int i = 0; i < READY_TIMEOUT_S * 1000; i++) {
		snprintf(path, sizeof(path), "/proc/%d/stat", pid);
		if (read_small(path, buf, sizeof(buf)) && (p = strrchr(buf, ')')) && p[1] &&
		    p[2] == 'Z')
			return;
		usleep(1000);
	}
	fprintf(stderr, "victim: child %d never became a zombie\n", pid);
	exit(3);
}

/* still: memory that does not change after "ready", except what a byte written to its FIFO
 * changes: "x" drops a MiB with MADV_DONTNEED and fills another with 0x77 (the same every time),
 * "f" fills the MiB "x" drops.
 * (A signal would not do: its frame and siginfo differ from one time to the next.) */
#define STILL_LEN  (48u << 20)
#define STILL_DROP (32u << 20)
#define STILL_FILL (40u << 20)
static uint8_t *still_big;
static atomic_int sigchld_count;

static void on_usr1(int s)
{
	(void)s;
	atomic_fetch_add(&usr1_count, 1);
}
static void on_chld(int s)
{
	(void)s;
	atomic_fetch_add(&sigchld_count, 1);
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

/* Every heartbeat thread beats again: waited for (up to 10 s: on a loaded machine a runnable
 * thread may wait long for a CPU), not judged after a fixed sleep. A thread left stopped never
 * beats. */
static int check_beats(void)
{
	unsigned long before[64];
	for (int i = 0; i < n_beats; i++)
		before[i] = atomic_load(&beats[i]);
	for (int i = 0; i < n_beats; i++) {
		int waited = 0;
		while (atomic_load(&beats[i]) == before[i]) {
			if (waited++ >= 1000)
				return -1;
			usleep(10000);
		}
	}
	return 0;
}

static void setup_basic_threads(void)
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
	wait_blocked(0, "v-mutex", SYS_futex, ON(&held), 1);
	wait_blocked(0, "v-read", SYS_read, FD(pipefd[0]), 1);
	wait_blocked(0, "v-sleep", NR_SLEEP, ARG_ANY, 1);
	wait_blocked(0, "v-condvar", SYS_futex, IN(&cv), 1);
}

static void setup_basic(bool nondumpable)
{
	setup_basic_threads();
	/* after the threads are seen in place: a non-dumpable process's /proc files are root's */
	if (nondumpable)
		prctl(PR_SET_DUMPABLE, 0);
	printf("ready pid=%d heap=%p heap_len=%u heap_seed=%u global=%p threads=5\n", getpid(),
	       (void *)heap, HEAP_LEN, 0x1234567u, (void *)victim_global);
}

/* writer: page i holds the generation that last passed over it; a consistent snapshot shows
 * one boundary: pages [0,k) at generation g, pages [k,N) at g-1. */
static uint64_t *wpages;
static size_t n_wpages, n_written_pages; /* mapped; written nonstop (the first ones) */
static void *t_writer(void *a)
{
	prctl(PR_SET_NAME, "v-writer");
	for (uint64_t g = 1;; g++)
		for (size_t i = 0; i < n_written_pages; i++)
			__atomic_store_n(&wpages[i * 512], g, __ATOMIC_RELAXED);
	return a;
}

static void *t_block(void *a)
{
	prctl(PR_SET_NAME, "v-block");
	pthread_mutex_lock(&cv_lock);
	for (;;)
		pthread_cond_wait(&cv, &cv_lock);
	return a;
}

static uint8_t *map_filled(size_t len, int flags, uint64_t seed)
{
	uint8_t *p = mmap(NULL, len, PROT_READ | PROT_WRITE, flags | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		exit(2);
	fill_known(p, len, seed);
	return p;
}

static int still_fifo = -1;
static void *t_still_change(void *a)
{
	char c;

	prctl(PR_SET_NAME, "v-change");
	for (;;) {
		if (read(still_fifo, &c, 1) != 1)
			continue;
		if (c == 'f') { /* fill what 'x' drops, so that a snapshot sees the drop */
			memset(still_big + STILL_DROP, 0x55, 1u << 20);
		} else {
			madvise(still_big + STILL_DROP, 1u << 20, MADV_DONTNEED);
			memset(still_big + STILL_FILL, 0x77, 1u << 20);
		}
	}
	return a;
}

/* A FIFO a test writes to, open for reading and writing; its path (through /proc/PID/fd: the
 * name in /tmp is gone) in path. */
static int open_fifo(char *path, size_t len)
{
	int fd;

	snprintf(path, len, "/tmp/osmosis-victim-%d.fifo", getpid());
	unlink(path);
	if (mkfifo(path, 0600) < 0 || (fd = open(path, O_RDWR)) < 0)
		exit(2);
	unlink(path);
	snprintf(path, len, "/proc/%d/fd/%d", getpid(), fd);
	return fd;
}

/* grower: a 1 GiB mapping of which 8 MiB is used, that grows by 256 MiB on a byte from its FIFO
 * (a service filling its cache): the pages in order, page k of the growth holding k + 1 in its
 * first word; in huge pages, so that it grows within milliseconds. */
#define GROW_MAP  (1ull << 30)
#define GROW_USED (8u << 20)
#define GROW_BY	  (256u << 20)
static uint8_t *grow_map;
static int grow_fifo = -1;

static void *t_grow(void *a)
{
	char c;

	prctl(PR_SET_NAME, "v-grow");
	while (read(grow_fifo, &c, 1) != 1)
		;
	for (uint64_t k = 0; k < GROW_BY / 4096; k++)
		__atomic_store_n((uint64_t *)(grow_map + GROW_USED + k * 4096), k + 1,
				 __ATOMIC_RELEASE);
	for (;;)
		pause();
	return a;
}

static void setup_grower(void)
{
	pthread_t t;
	char fifo[64];

	grow_fifo = open_fifo(fifo, sizeof(fifo));
	grow_map = mmap(NULL, GROW_MAP, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (grow_map == MAP_FAILED)
		exit(2);
	madvise(grow_map, GROW_MAP, MADV_HUGEPAGE);
	memset(grow_map, 0x61, GROW_USED);
	pthread_create(&t, NULL, t_grow, NULL);
	wait_blocked(0, "v-grow", SYS_read, FD(grow_fifo), 1);
	printf("ready pid=%d map=%p used=%u by=%u fifo=%s\n", getpid(), (void *)grow_map, GROW_USED,
	       GROW_BY, fifo);
}

static void setup_still(void)
{
	pthread_t t;
	uint8_t *sh, *df, *wf;
	char fifo[64];

	still_fifo = open_fifo(fifo, sizeof(fifo));

	still_big = map_filled(STILL_LEN, MAP_PRIVATE, 0x51111);
	madvise(still_big + (16u << 20), 4u << 20, MADV_DONTNEED); /* a hole */
	sh = map_filled(1u << 20, MAP_SHARED, 0x5a);
	df = map_filled(1u << 20, MAP_PRIVATE, 0x5b);
	madvise(df, 1u << 20, MADV_DONTFORK);
	wf = map_filled(1u << 20, MAP_PRIVATE, 0x5c);
	madvise(wf, 1u << 20, MADV_WIPEONFORK);
	for (int i = 0; i < 2; i++)
		pthread_create(&t, NULL, t_block, NULL);
	pthread_create(&t, NULL, t_still_change, NULL);
	wait_blocked(0, "v-block", SYS_futex, IN(&cv), 2);
	wait_blocked(0, "v-change", SYS_read, FD(still_fifo), 1);
	/* The kernel rewrites each thread's rseq area (its CPU) whenever the thread returns to
	 * user mode: the one part of this memory that changes. */
	printf("ready pid=%d big=%p shared=%p dontfork=%p wipeonfork=%p rseq_offset=%ld fifo=%s\n",
	       getpid(), (void *)still_big, (void *)sh, (void *)df, (void *)wf, (long)__rseq_offset,
	       fifo);
}

/* seccomp: the basic victim, then every thread under a filter that kills the process for
 * clone() or userfaultfd() (as systemd's SystemCallFilter= kills for what it does not allow). */
static void setup_seccomp(void)
{
	struct sock_filter f[] = {
	    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
	    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_clone, 2, 0),
	    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_userfaultfd, 1, 0),
	    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
	};
	struct sock_fprog prog = {.len = sizeof(f) / sizeof(f[0]), .filter = f};

	setup_basic_threads();
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
	    syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &prog) != 0)
		exit(2);
	printf("ready pid=%d\n", getpid());
}

/* pages of private anonymous memory, every byte set to fill (so resident) */
static void *pages_filled(size_t pages, int fill)
{
	void *p =
	    mmap(NULL, pages * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		exit(2);
	memset(p, fill, pages * 4096);
	return p;
}

/* pages of memory, the first written of them rewritten nonstop (all when 0); the rest holds
 * bytes that do not change (a counter per 64 bytes), so that a core shows them. */
static void setup_writer(size_t pages, size_t written, bool split)
{
	pthread_t t;
	n_wpages = pages;
	n_written_pages = written && written < pages ? written : pages;
	wpages = pages_filled(pages, 0);
	/* split: the pages as many adjacent mappings of 61 pages (every other one without huge
	 * pages, so that they do not merge), as a library's RELRO, .data and .bss touch. */
	for (size_t i = 61; split && i < pages; i += 122)
		if (madvise((uint8_t *)wpages + i * 4096, (pages - i < 61 ? pages - i : 61) * 4096,
			    MADV_NOHUGEPAGE) < 0)
			exit(2);
	for (size_t i = n_written_pages * 512; written && i < pages * 512; i += 8)
		wpages[i] = i;
	pthread_create(&t, NULL, t_writer, NULL);
	start_beats(1);
	usleep(50000);
	printf("ready pid=%d pages=%p npages=%zu\n", getpid(), (void *)wpages, pages);
}

static uint8_t *sc_pages;
static size_t n_sc_pages;

static void *t_scatter(void *a)
{
	uint64_t x = 88172645463325252ull;

	prctl(PR_SET_NAME, "v-scatter");
	for (;;) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		sc_pages[(x % n_sc_pages) * 4096] = (uint8_t)x;
		if ((x & 1023) == 0)
			usleep(100);
	}
	return a;
}

static void setup_scatter(size_t pages)
{
	pthread_t t;
	sc_pages = pages_filled((n_sc_pages = pages), 1);
	pthread_create(&t, NULL, t_scatter, NULL);
	printf("ready pid=%d pages=%p\n", getpid(), (void *)sc_pages);
}

static uint64_t *ro_pages;
static size_t n_ro_pages;
static volatile uint64_t ro_gen = 1; /* the generation last written whole, in a writable page */

static void *t_rotoggle(void *a)
{
	prctl(PR_SET_NAME, "v-rotoggle");
	for (uint64_t g = 2;; g++) {
		mprotect(ro_pages, n_ro_pages * 4096, PROT_READ | PROT_WRITE);
		for (size_t i = 0; i < n_ro_pages; i++)
			__atomic_store_n(&ro_pages[i * 512], g, __ATOMIC_RELAXED);
		__atomic_signal_fence(__ATOMIC_SEQ_CST);
		ro_gen = g;
		mprotect(ro_pages, n_ro_pages * 4096, PROT_READ);
		usleep(200);
	}
	return a;
}

static void setup_rotoggle(size_t pages)
{
	pthread_t t;
	n_ro_pages = pages;
	ro_pages = pages_filled(pages, 0);
	for (size_t i = 0; i < pages; i++)
		ro_pages[i * 512] = 1;
	mprotect(ro_pages, pages * 4096, PROT_READ);
	pthread_create(&t, NULL, t_rotoggle, NULL);
	usleep(50000);
	printf("ready pid=%d pages=%p npages=%zu gen=%p\n", getpid(), (void *)ro_pages, pages,
	       (void *)&ro_gen);
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

static void sockpong_loop(const int *fds, int n, bool client);

struct sockpong_ends {
	int fds[16];
	int n;
};

static void *sockpong_thread(void *arg)
{
	const struct sockpong_ends *ends = arg;
	prctl(PR_SET_NAME, "v-server");
	sockpong_loop(ends->fds, ends->n, false);
	return NULL;
}

static void *pingpong_thread(void *arg)
{
	int *fds = arg;
	prctl(PR_SET_NAME, "v-pingpong");
	pingpong_loop(fds[0], fds[1], true);
	return NULL;
}

/* A child connected to the parent by two pipes: the child runs fn(its read end, its write end);
 * the parent's ends come back in ret_rd/ret_wr. */
static pid_t fork_pipe_peer(const char *name, void (*fn)(int rd, int wr), int *ret_rd, int *ret_wr)
{
	int a[2], b[2];
	pid_t c;

	if (pipe(a) < 0 || pipe(b) < 0)
		exit(2);
	c = fork();
	if (c == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		prctl(PR_SET_NAME, name);
		close(a[1]);
		close(b[0]);
		fn(a[0], b[1]);
		_exit(0);
	}
	close(a[0]);
	close(b[1]);
	*ret_rd = b[0];
	*ret_wr = a[1];
	return c;
}

static void pong(int rd, int wr)
{
	pingpong_loop(rd, wr, false);
}

/* sockpong: one side of n connections. Each message read is answered at once; the client
 * starts with one message per connection in flight. */
static void sockpong_loop(const int *fds, int n, bool client)
{
	int ep = epoll_create1(EPOLL_CLOEXEC);
	char buf[256];

	for (int i = 0; i < n; i++) {
		struct epoll_event ev = {.events = EPOLLIN, .data.fd = fds[i]};
		if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev) < 0)
			_exit(2);
		if (client && write(fds[i], "PING\r\n", 6) != 6)
			_exit(3);
	}
	for (;;) {
		struct epoll_event evs[16];
		int k = epoll_wait(ep, evs, 16, -1);
		for (int i = 0; i < k; i++) {
			ssize_t got;
			while ((got = read(evs[i].data.fd, buf, sizeof(buf))) > 0)
				if (write(evs[i].data.fd, client ? "PING\r\n" : "+PONG\r\n",
					  client ? 6 : 7) < 0 &&
				    errno != EAGAIN)
					_exit(0);
			if (got == 0)
				_exit(0);
		}
	}
}

static void setup_sockpong(int n)
{
	static struct sockpong_ends server;
	int client[16];
	pthread_t t;
	pid_t c;

	n = n < 1 ? 1 : n > 16 ? 16 : n;
	for (int i = 0; i < n; i++) {
		int sv[2];
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) < 0)
			exit(2);
		server.fds[i] = sv[0];
		client[i] = sv[1];
	}
	c = fork();
	if (c == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		prctl(PR_SET_NAME, "v-client");
		for (int i = 0; i < n; i++)
			close(server.fds[i]);
		sockpong_loop(client, n, true);
		_exit(0);
	}
	for (int i = 0; i < n; i++)
		close(client[i]);
	children = calloc(1, sizeof(pid_t));
	children[n_children++] = c;
	start_beats(1);
	server.n = n;
	pthread_create(&t, NULL, sockpong_thread, &server);
	usleep(50000);
	printf("ready pid=%d child=%d\n", getpid(), c);
}

static void setup_pingpong2(void)
{
	static int fds[2];
	pthread_t t;
	pid_t c = fork_pipe_peer("v-pong", pong, &fds[0], &fds[1]);

	children = calloc(1, sizeof(pid_t));
	children[n_children++] = c;
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
	for (int i = 0; i < n_children; i++)
		wait_blocked(children[i], "v-child", SYS_pause, ARG_ANY, 1);
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
	wait_blocked(0, NULL, SYS_futex, IN(&cv), n);
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

/* ---- pattern victims ------------------------------------------------------------------------ */

static pthread_mutex_t cyc[3] = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER,
				 PTHREAD_MUTEX_INITIALIZER};
static pthread_barrier_t cyc_barrier;
static int cyc_n;

static void __attribute__((noinline)) victim_lock_in_cycle(int i)
{
	pthread_mutex_lock(&cyc[i]);
	pthread_barrier_wait(&cyc_barrier);
	pthread_mutex_lock(&cyc[(i + 1) % cyc_n]);
}

static void *t_cycle(void *arg)
{
	char name[16];
	snprintf(name, sizeof(name), "v-cycle%d", (int)(intptr_t)arg);
	prctl(PR_SET_NAME, name);
	victim_lock_in_cycle((int)(intptr_t)arg);
	return NULL;
}

static void *t_joins_the_cycle(void *arg)
{
	prctl(PR_SET_NAME, "v-late");
	pthread_mutex_lock(&cyc[0]); /* held by a thread of the deadlock */
	return arg;
}

static void setup_deadlock(int n, bool chained)
{
	pthread_t t[3], late;
	cyc_n = n < 2 ? 2 : n > 3 ? 3 : n;
	pthread_barrier_init(&cyc_barrier, NULL, (unsigned)cyc_n);
	for (int i = 0; i < cyc_n; i++)
		pthread_create(&t[i], NULL, t_cycle, (void *)(intptr_t)i);
	for (int i = 0; i < cyc_n; i++) {
		char name[16];
		snprintf(name, sizeof(name), "v-cycle%d", i);
		wait_blocked(0, name, SYS_futex, ON(&cyc[(i + 1) % cyc_n]), 1);
	}
	if (chained) {
		/* a third thread waits on the deadlock: a wait chain that runs into it */
		pthread_create(&late, NULL, t_joins_the_cycle, NULL);
		wait_blocked(0, "v-late", SYS_futex, ON(&cyc[0]), 1);
	}
	printf("ready pid=%d\n", getpid());
}

static void __attribute__((noinline)) victim_wait_for_peer(int rd, int wr)
{
	char c;
	if (read(rd, &c, 1) == 1) /* never comes: the peer waits for us first */
		(void)!write(wr, "x", 1);
}

static int dp_fds[2];
static void *t_peer_waiter(void *arg)
{
	prctl(PR_SET_NAME, "v-waiter");
	victim_wait_for_peer(dp_fds[0], dp_fds[1]);
	return arg;
}

static void setup_deadlock_procs2(void)
{
	pthread_t t;
	pid_t c = fork_pipe_peer("v-peer", victim_wait_for_peer, &dp_fds[0], &dp_fds[1]);

	pthread_create(&t, NULL, t_peer_waiter, NULL);
	wait_blocked(0, "v-waiter", SYS_read, FD(dp_fds[0]), 1);
	wait_blocked(c, "v-peer", SYS_read, ARG_ANY, 1);
	printf("ready pid=%d child=%d\n", getpid(), c);
	/* The main thread waits too (joining the waiter): a sleeping thread of the parent could
	 * still write the pipe the child reads, and the cycle would be no deadlock. */
	pthread_join(t, NULL);
}

/* chain3: P1 "v-asker" -> unix -> P2 main -> mutex -> P2 "v-holder" -> pipe -> P3 (sleeps) */
static pthread_mutex_t chain_lock = PTHREAD_MUTEX_INITIALIZER;
static int chain_pipe_rd;

static void *t_chain_holder(void *arg)
{
	char c;
	prctl(PR_SET_NAME, "v-holder");
	pthread_mutex_lock(&chain_lock);
	while (read(chain_pipe_rd, &c, 1) > 0) /* P3 never writes */
		;
	return arg;
}

static void __attribute__((noinline)) victim_serve_request(int sock)
{
	char req[16];
	if (read(sock, req, sizeof(req)) <= 0)
		return;
	pthread_mutex_lock(&chain_lock); /* held by v-holder */
	(void)!write(sock, "ok", 2);
}

static void __attribute__((noinline)) victim_ask_peer(int sock)
{
	char ans[16];
	(void)!write(sock, "req", 3);
	(void)!read(sock, ans, sizeof(ans)); /* waits for P2 */
}

static int chain_sock;
static void *t_asker(void *arg)
{
	prctl(PR_SET_NAME, "v-asker");
	victim_ask_peer(chain_sock);
	return arg;
}

static void setup_chain3(void)
{
	int sv[2], p[2];
	pid_t p2, p3;
	pthread_t t;

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0 || pipe(p) < 0)
		exit(2);
	p3 = fork();
	if (p3 == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		prctl(PR_SET_NAME, "v-p3");
		close(p[0]);
		close(sv[0]);
		close(sv[1]);
		for (;;)
			pause(); /* holds the pipe's write end, never writes */
	}
	p2 = fork();
	if (p2 == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		prctl(PR_SET_NAME, "v-p2");
		close(p[1]);
		close(sv[0]);
		chain_pipe_rd = p[0];
		pthread_create(&t, NULL, t_chain_holder, NULL);
		/* the holder has the lock before a request can come */
		wait_blocked(0, "v-holder", SYS_read, FD(chain_pipe_rd), 1);
		victim_serve_request(sv[1]);
		for (;;)
			pause();
	}
	close(p[0]);
	close(p[1]);
	close(sv[1]);
	chain_sock = sv[0];
	pthread_create(&t, NULL, t_asker, NULL);
	wait_blocked(0, "v-asker", SYS_read, FD(chain_sock), 1);
	wait_blocked(p2, "v-p2", SYS_futex, ON(&chain_lock), 1);
	wait_blocked(p2, "v-holder", SYS_read, ARG_ANY, 1);
	wait_blocked(p3, "v-p3", SYS_pause, ARG_ANY, 1);
	printf("ready pid=%d p2=%d p3=%d\n", getpid(), p2, p3);
}

static pthread_mutex_t contended = PTHREAD_MUTEX_INITIALIZER;
static void *t_contender(void *arg)
{
	prctl(PR_SET_NAME, "v-contender");
	pthread_mutex_lock(&contended);
	pthread_mutex_unlock(&contended);
	return arg;
}
static void *t_owner_sleeps(void *arg)
{
	prctl(PR_SET_NAME, "v-owner");
	pthread_mutex_lock(&contended);
	for (;;)
		sleep(1000);
	return arg;
}

static void setup_contention(int n)
{
	pthread_t t;
	pthread_create(&t, NULL, t_owner_sleeps, NULL);
	wait_blocked(0, "v-owner", NR_SLEEP, ARG_ANY, 1);
	for (int i = 0; i < n; i++)
		pthread_create(&t, NULL, t_contender, NULL);
	wait_blocked(0, "v-contender", SYS_futex, ON(&contended), n);
	printf("ready pid=%d owner_name=v-owner\n", getpid());
}

static pthread_mutex_t orphan = PTHREAD_MUTEX_INITIALIZER;
static void *t_exits_holding(void *arg)
{
	pthread_mutex_lock(&orphan);
	return arg; /* exits without unlocking */
}
static void *t_orphan_waiter(void *arg)
{
	prctl(PR_SET_NAME, "v-orphaned");
	pthread_mutex_lock(&orphan);
	return arg;
}

static void setup_abandoned(void)
{
	pthread_t t;
	pthread_create(&t, NULL, t_exits_holding, NULL);
	pthread_join(t, NULL);
	pthread_create(&t, NULL, t_orphan_waiter, NULL);
	wait_blocked(0, "v-orphaned", SYS_futex, ON(&orphan), 1);
	printf("ready pid=%d\n", getpid());
}

static pthread_mutex_t smashed = PTHREAD_MUTEX_INITIALIZER;
static void *t_smash_owner(void *arg)
{
	pthread_mutex_lock(&smashed);
	for (;;)
		sleep(1000);
	return arg;
}
static void *t_smash_waiter(void *arg)
{
	prctl(PR_SET_NAME, "v-smashed");
	pthread_mutex_lock(&smashed);
	return arg;
}

static void setup_corrupt(void)
{
	pthread_t t;
	pthread_create(&t, NULL, t_smash_owner, NULL);
	wait_blocked(0, NULL, NR_SLEEP, ARG_ANY, 1); /* the owner holds it and sleeps */
	pthread_create(&t, NULL, t_smash_waiter, NULL);
	wait_blocked(0, "v-smashed", SYS_futex, ON(&smashed), 1);
	/* a stray write over the mutex, as a buffer overrun next to it would do */
	smashed.__data.__owner = 0;
	smashed.__data.__count = 7;
	printf("ready pid=%d mutex=%p\n", getpid(), (void *)&smashed);
}

static void setup_zombies(int n)
{
	for (int i = 0; i < n; i++) {
		pid_t c = fork();
		if (c == 0)
			_exit(0);
		if (c > 0)
			wait_zombie(c);
	}
	printf("ready pid=%d zombies=%d\n", getpid(), n);
}

static void setup_fdleak(int n)
{
	struct rlimit rl = {.rlim_cur = (rlim_t)n + 20, .rlim_max = (rlim_t)n + 20};
	setrlimit(RLIMIT_NOFILE, &rl);
	for (int i = 0; i < n; i++)
		if (eventfd(0, 0) < 0) {
			perror("eventfd");
			exit(2);
		}
	printf("ready pid=%d fds=%d\n", getpid(), n);
}

static uint8_t *volatile alloc_keep; /* so the compiler keeps the allocation */
static void setup_alloc(size_t mib)
{
	uint8_t *p = malloc(mib << 20);
	if (!p)
		exit(2);
	memset(p, 1, mib << 20);
	alloc_keep = p;
	printf("ready pid=%d\n", getpid());
}

static volatile int deep_done;
static void __attribute__((noinline)) victim_recurse(uintptr_t bottom, int depth)
{
	volatile char pad[256];
	pad[0] = (char)depth;
	if ((uintptr_t)&pad[0] - bottom > 6144) {
		victim_recurse(bottom, depth + 1);
	} else {
		deep_done = 1;
		for (;;)
			sleep(1000);
	}
	pad[1] = 0;
}
static void *t_deep(void *arg)
{
	pthread_attr_t attr;
	void *base;
	size_t size;
	prctl(PR_SET_NAME, "v-deep");
	pthread_getattr_np(pthread_self(), &attr);
	pthread_attr_getstack(&attr, &base, &size);
	victim_recurse((uintptr_t)base, 0);
	return arg;
}

static void setup_deepstack(void)
{
	pthread_attr_t attr;
	pthread_t t;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 64 * 1024);
	pthread_create(&t, &attr, t_deep, NULL);
	while (!deep_done)
		usleep(1000);
	wait_blocked(0, "v-deep", NR_SLEEP, ARG_ANY, 1);
	printf("ready pid=%d\n", getpid());
}

static void *stack_top_seen;
static void *t_paged(void *arg)
{
	char c;
	int p[2];
	prctl(PR_SET_NAME, "v-paged");
	stack_top_seen = &c;
	if (pipe(p) < 0)
		return arg;
	(void)!read(p[0], &c, 1); /* blocked forever: its own write end is open */
	return arg;
}

static void setup_pagedout(void)
{
	pthread_t t;
	pthread_attr_t attr;
	void *base;
	size_t size;
	pthread_create(&t, NULL, t_paged, NULL);
	wait_blocked(0, "v-paged", SYS_read, ARG_ANY, 1);
	pthread_getattr_np(t, &attr);
	pthread_attr_getstack(&attr, &base, &size);
	/* push the whole stack out to swap (needs swap, and kernel >= 5.4) */
	if (madvise(base, size, MADV_PAGEOUT) < 0)
		perror("madvise");
	printf("ready pid=%d\n", getpid());
}

static void setup_dlopen(const char *path)
{
	if (!dlopen(path, RTLD_NOW)) {
		fprintf(stderr, "victim: dlopen %s: %s\n", path, dlerror());
		exit(2);
	}
	printf("ready pid=%d\n", getpid());
}

static void *t_epoll_server(void *arg)
{
	int lsn = socket(AF_INET, SOCK_STREAM, 0), ep = epoll_create1(0);
	struct sockaddr_in addr = {.sin_family = AF_INET,
				   .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	struct epoll_event ee = {.events = EPOLLIN}, out[4];
	prctl(PR_SET_NAME, "v-server");
	if (bind(lsn, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(lsn, 4) < 0)
		return arg;
	epoll_ctl(ep, EPOLL_CTL_ADD, lsn, &ee);
	for (;;)
		epoll_wait(ep, out, 4, -1);
	return arg;
}
static void *t_timer(void *arg)
{
	prctl(PR_SET_NAME, "v-timer");
	for (;;)
		sleep(1000);
	return arg;
}

static void setup_healthy(void)
{
	pthread_t t;
	for (int i = 0; i < 4; i++)
		pthread_create(&t, NULL, t_idle, NULL);
	pthread_create(&t, NULL, t_epoll_server, NULL);
	pthread_create(&t, NULL, t_timer, NULL);
	start_beats(1);
	wait_blocked(0, NULL, SYS_futex, IN(&cv), 4);
	wait_blocked(0, "v-server", NR_EPOLL, ARG_ANY, 1);
	wait_blocked(0, "v-timer", NR_SLEEP, ARG_ANY, 1);
	printf("ready pid=%d\n", getpid());
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
	/* SIGUSR2 (verify) and SIGTERM (quit) reach this thread only: every thread made from here
	 * on inherits them blocked, and this one waits for them in sigsuspend. A thread polling
	 * with short sleeps would be runnable at the freeze half the time on a loaded machine, and
	 * a cycle through the process would then not count as a deadlock (not every thread
	 * blocked). */
	sigset_t main_only, unblocked;
	sigemptyset(&main_only);
	sigaddset(&main_only, SIGUSR2);
	sigaddset(&main_only, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &main_only, &unblocked);

	if (!strcmp(mode, "basic") || !strcmp(mode, "nondumpable")) {
		setup_basic(!strcmp(mode, "nondumpable"));
	} else if (!strcmp(mode, "seccomp")) {
		setup_seccomp();
	} else if (!strcmp(mode, "still")) {
		sa.sa_handler = on_chld; /* a clone must never send one */
		sa.sa_flags = SA_RESTART;
		sigaction(SIGCHLD, &sa, NULL);
		setup_still();
	} else if (!strcmp(mode, "grower")) {
		setup_grower();
	} else if (!strcmp(mode, "writer") || !strcmp(mode, "splitwriter")) {
		setup_writer(argc > 2 ? strtoul(argv[2], NULL, 10) : 16384,
			     argc > 3 ? strtoul(argv[3], NULL, 10) : 0,
			     !strcmp(mode, "splitwriter"));
	} else if (!strcmp(mode, "scatter")) {
		setup_scatter(argc > 2 ? strtoul(argv[2], NULL, 10) : 16384);
	} else if (!strcmp(mode, "rotoggle")) {
		setup_rotoggle(argc > 2 ? strtoul(argv[2], NULL, 10) : 256);
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
	} else if (!strcmp(mode, "sockpong")) {
		setup_sockpong(argc > 2 ? atoi(argv[2]) : 4);
	} else if (!strcmp(mode, "factory")) {
		setup_factory(argc > 2 ? atoi(argv[2]) : 10);
	} else if (!strcmp(mode, "threads")) {
		setup_threads(argc > 2 ? atoi(argv[2]) : 100);
	} else if (!strcmp(mode, "fds")) {
		setup_fds();
	} else if (!strcmp(mode, "deadlock")) {
		setup_deadlock(argc > 2 ? atoi(argv[2]) : 2,
			       argc > 3 && !strcmp(argv[3], "chained"));
	} else if (!strcmp(mode, "deadlock-procs")) {
		setup_deadlock_procs2();
	} else if (!strcmp(mode, "coupled")) {
		/* the deadlock-procs cycle, but a thread of the parent still runs */
		pthread_create(&t, NULL, t_spin, NULL);
		setup_deadlock_procs2();
	} else if (!strcmp(mode, "chain3")) {
		setup_chain3();
	} else if (!strcmp(mode, "contention")) {
		setup_contention(argc > 2 ? atoi(argv[2]) : 10);
	} else if (!strcmp(mode, "abandoned")) {
		setup_abandoned();
	} else if (!strcmp(mode, "corrupt")) {
		setup_corrupt();
	} else if (!strcmp(mode, "zombies")) {
		setup_zombies(argc > 2 ? atoi(argv[2]) : 10);
	} else if (!strcmp(mode, "fdleak")) {
		setup_fdleak(argc > 2 ? atoi(argv[2]) : 200);
	} else if (!strcmp(mode, "alloc")) {
		setup_alloc(argc > 2 ? strtoul(argv[2], NULL, 10) : 16);
	} else if (!strcmp(mode, "deepstack")) {
		setup_deepstack();
	} else if (!strcmp(mode, "pagedout")) {
		setup_pagedout();
	} else if (!strcmp(mode, "dlopen")) {
		if (argc < 3)
			return 2;
		setup_dlopen(argv[2]);
	} else if (!strcmp(mode, "healthy")) {
		setup_healthy();
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

	while (!verify_requested && !quit_requested)
		sigsuspend(&unblocked);
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
	if (!strcmp(mode, "still") && atomic_load(&sigchld_count)) {
		printf("verify FAIL: %d SIGCHLD received\n", atomic_load(&sigchld_count));
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
