/* SPDX-License-Identifier: MIT */
/*
 * A family of processes sharing one object, for the shared-memory tests and bench:
 *
 *   shm KIND SIZE_MIB NPROCS WRITE_MIB [touch|sparse]
 *
 * KIND: anon (MAP_SHARED|MAP_ANONYMOUS), sysv (shmget/shmat), memfd, posix (/dev/shm file,
 * unlinked once mapped); private (MAP_PRIVATE|MAP_ANONYMOUS, for comparison: NPROCS threads of
 * the parent write instead of forked processes). The parent maps SIZE_MIB, fills it (touch, the
 * default) or leaves it untouched (sparse), then forks NPROCS writers. Writer i owns slice i
 * (WRITE_MIB at offset i * WRITE_MIB) and loops: g = g + 1; its private page says g; every page of
 * its slice gets g, in order; then its word in the shared header (page 0 is the header, slices
 * start at 1 MiB) says g. So at one instant, for each writer: private = G; slice pages G then G - 1
 * (one boundary); header word G when the slice is done, else G - 1. WRITE_MIB 0: writers sleep.
 *
 * Prints "ready pid=P kids=A,B,.. base=ADDR priv=ADDR" (the same addresses in every process).
 * With SHM_FORK_FIFO=PATH in the environment, each byte read from that FIFO forks one more
 * writer, with the next slice (a service forking a worker while it is snapshotted). With
 * SHM_FLASH=1 as well, the first byte forks a child that writes FLASH_MAGIC into the next slice
 * and its header word, then exits and is reaped (a short-lived worker); later bytes do nothing.
 * With SHM_FORK_KILL=1 instead, the first byte forks a writer, the second kills it (SIGKILL, in
 * the middle of a generation) and reaps it (SHM_FORK_KILL=zombie: leaves it a zombie); later
 * bytes do nothing.
 * With SHM_CREEP=MIB, each writer also has MIB of private memory (filled at its start) that it
 * writes slowly, as a server process does its sorts and caches: one page a millisecond, in order
 * (from its start again once through).
 * Writers die with the parent (PR_SET_PDEATHSIG); SIGTERM to the parent ends all.
 */

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/shm.h>
#include <sys/wait.h>
#include <unistd.h>

#define MIB	    (1ul << 20)
#define PAGE	    4096ul
#define MAX_PROCS   256
#define PRIV_MAGIC  0x70726976ull
#define FLASH_MAGIC 0x666c617368ull

static volatile uint64_t *priv; /* [0] magic, [1] generation: in a private page */

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static uint8_t *map_object(const char *kind, size_t size)
{
	void *p = MAP_FAILED;

	if (!strcmp(kind, "anon") || !strcmp(kind, "private")) {
		int flags = !strcmp(kind, "anon") ? MAP_SHARED : MAP_PRIVATE;
		p = mmap(NULL, size, PROT_READ | PROT_WRITE, flags | MAP_ANONYMOUS, -1, 0);
	} else if (0) {
		p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	} else if (!strcmp(kind, "sysv")) {
		int id = shmget(IPC_PRIVATE, size, IPC_CREAT | 0600);
		if (id < 0)
			die("shmget");
		p = shmat(id, NULL, 0);
		shmctl(id, IPC_RMID, NULL); /* gone once every process detached */
		if (p == (void *)-1)
			p = MAP_FAILED;
	} else if (!strcmp(kind, "memfd") || !strcmp(kind, "posix")) {
		char path[64];
		int fd;
		if (!strcmp(kind, "memfd")) {
			fd = memfd_create("osmosis-shm", MFD_CLOEXEC);
		} else {
			snprintf(path, sizeof(path), "/dev/shm/osmosis-test-%d", getpid());
			fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		}
		if (fd < 0 || ftruncate(fd, (off_t)size) < 0)
			die("shm file");
		p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (!strcmp(kind, "posix"))
			unlink(path);
		close(fd); /* only the mappings hold it */
	} else {
		fprintf(stderr, "unknown kind %s\n", kind);
		exit(2);
	}
	if (p == MAP_FAILED)
		die("map");
	return p;
}

struct thread_arg {
	uint8_t *base;
	unsigned i;
	size_t write;
};

static void writer(uint8_t *base, unsigned i, size_t write);

static void *writer_thread(void *arg)
{
	struct thread_arg *a = arg;
	writer(a->base, a->i, a->write);
	return NULL;
}

static void writer(uint8_t *base, unsigned i, size_t write)
{
	volatile uint64_t *hdr = (volatile uint64_t *)base;
	uint8_t *slice = base + MIB + (size_t)i * write;
	uint64_t g = 0;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	prctl(PR_SET_NAME, "shm-writer");
	if (write == 0 && getenv("SHM_CREEP")) {
		size_t len = strtoul(getenv("SHM_CREEP"), NULL, 10) * MIB;
		uint8_t *p =
		    mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED)
			die("SHM_CREEP");
		memset(p, 1, len);
		for (size_t off = 0;; off = (off + PAGE) % len) {
			*(volatile uint64_t *)(p + off) = ++g;
			usleep(1000);
		}
	}
	if (write == 0)
		for (;;)
			pause();
	for (;;) {
		g++;
		priv[1] = g;
		__atomic_signal_fence(__ATOMIC_SEQ_CST);
		for (size_t off = 0; off < write; off += PAGE)
			*(volatile uint64_t *)(slice + off) = g;
		__atomic_signal_fence(__ATOMIC_SEQ_CST);
		hdr[1 + i] = g;
	}
}

struct spawner {
	const char *fifo;
	uint8_t *base;
	unsigned next;
	size_t write, size;
	bool flash, flashed;
	bool kill_second; /* SHM_FORK_KILL: the second byte kills the writer the first forked */
	bool zombie;	  /* SHM_FORK_KILL=zombie: and leaves it unreaped */
	pid_t last;
};

/* The short-lived worker: its slice and header word say FLASH_MAGIC, then it is gone. */
static void flash(uint8_t *base, unsigned i, size_t write)
{
	uint8_t *slice = base + MIB + (size_t)i * write;
	for (size_t off = 0; off < write; off += PAGE)
		*(volatile uint64_t *)(slice + off) = FLASH_MAGIC;
	((volatile uint64_t *)base)[1 + i] = FLASH_MAGIC;
	_exit(0);
}

static void *spawn_thread(void *arg)
{
	struct spawner *sp = arg;
	char c;
	int fd = open(sp->fifo, O_RDWR | O_CLOEXEC); /* never end of file */

	if (fd < 0)
		die("SHM_FORK_FIFO");
	while (read(fd, &c, 1) == 1) {
		if (MIB + (sp->next + 1) * sp->write > sp->size || sp->flashed)
			continue; /* no slice left, or the one flash done */
		if (sp->flash) {
			pid_t k = fork();
			if (k == 0)
				flash(sp->base, sp->next, sp->write);
			if (k > 0)
				waitpid(k, NULL, 0);
			sp->flashed = true;
			continue;
		}
		if (sp->kill_second && sp->last > 0) {
			/* a worker that ends, reaped at once (a backend closing its connection) */
			siginfo_t si;
			kill(sp->last, SIGKILL);
			/* SHM_FORK_KILL=zombie: left unreaped (a parent slow to reap) */
			waitid(P_PID, (id_t)sp->last, &si, WEXITED | (sp->zombie ? WNOWAIT : 0));
			sp->last = -1;
			continue;
		}
		if (sp->kill_second && sp->last < 0)
			continue; /* the one fork and kill done */
		pid_t k = fork();
		if (k == 0)
			writer(sp->base, sp->next, sp->write);
		if (k > 0) {
			sp->next++;
			sp->last = k;
		}
	}
	return NULL;
}

static void on_term(int sig)
{
	(void)sig;
	kill(0, SIGKILL);
	_exit(0);
}

int main(int argc, char **argv)
{
	if (argc < 5) {
		fprintf(stderr, "usage: shm KIND SIZE_MIB NPROCS WRITE_MIB [touch|sparse]\n");
		return 2;
	}
	size_t size = strtoul(argv[2], NULL, 10) * MIB;
	unsigned n = (unsigned)strtoul(argv[3], NULL, 10);
	size_t write = strtoul(argv[4], NULL, 10) * MIB;
	bool touch = argc < 6 || strcmp(argv[5], "sparse");
	pid_t kids[MAX_PROCS];
	uint8_t *base;

	if (n > MAX_PROCS || MIB + n * write > size) {
		fprintf(stderr, "the slices do not fit\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	setpgid(0, 0);
	priv = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (priv == MAP_FAILED)
		die("mmap");
	priv[0] = PRIV_MAGIC;
	base = map_object(argv[1], size);
	if (touch)
		memset(base, 0, size);
	((volatile uint64_t *)base)[0] = 0x73686d2d6f736d6full; /* header magic */
	if (!strcmp(argv[1], "private")) {
		static struct thread_arg args[MAX_PROCS];
		pthread_t th;
		for (unsigned i = 0; i < n; i++) {
			args[i] = (struct thread_arg){base, i, write};
			pthread_create(&th, NULL, writer_thread, &args[i]);
		}
		printf("ready pid=%d kids= base=%#lx priv=%#lx\n", getpid(), (unsigned long)base,
		       (unsigned long)priv);
		for (;;)
			pause();
	}
	for (unsigned i = 0; i < n; i++) {
		kids[i] = fork();
		if (kids[i] < 0)
			die("fork");
		if (kids[i] == 0)
			writer(base, i, write);
	}
	signal(SIGTERM, on_term);
	static struct spawner sp;
	sp = (struct spawner){getenv("SHM_FORK_FIFO"),
			      base,
			      n,
			      write,
			      size,
			      getenv("SHM_FLASH") != NULL,
			      false,
			      getenv("SHM_FORK_KILL") != NULL,
			      getenv("SHM_FORK_KILL") && !strcmp(getenv("SHM_FORK_KILL"), "zombie"),
			      0};
	if (sp.fifo) {
		pthread_t th;
		pthread_create(&th, NULL, spawn_thread, &sp);
	}
	printf("ready pid=%d kids=", getpid());
	for (unsigned i = 0; i < n; i++)
		printf("%s%d", i ? "," : "", kids[i]);
	printf(" base=%#lx priv=%#lx\n", (unsigned long)base, (unsigned long)priv);
	for (;;)
		pause();
}
