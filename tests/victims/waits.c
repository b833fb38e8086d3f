/* SPDX-License-Identifier: MIT */
/*
 * Victims of the wait graph: waits with several possible wakers, file locks, full pipes. Each
 * mode sets up processes whose waits are known, checks in /proc that every process named is in
 * the syscall it should be in, then prints "ready pid=N key=value ..." and stays so until killed.
 * Children die with the parent (PR_SET_PDEATHSIG); nothing outlives the test.
 *
 * Modes:
 *   wakers        A (main thread "v-a") reads a unix socket from B; B's main thread ("v-b")
 *                 waits on a mutex held by B's worker ("v-worker"), which reads a pipe whose
 *                 write end A, B and C all inherited; C ("v-c") sleeps and could write: a
 *                 cycle A -> B -> worker -> A that is no deadlock
 *   wakers-stuck  the same, but C reads a pipe only A could write: now every waker is stuck
 *   flock-chain   P1 holds flock(F1) and sleeps; P2 holds flock(F2) and waits for F1; P3 waits
 *                 for F2: a chain P3 -> P2 -> P1
 *   flock-deadlock  P1 holds F1 and waits for F2, P2 holds F2 and waits for F1
 *   fcntl-range   P1 write-locks bytes 100-199 of F (fcntl) and sleeps; P2 waits (F_SETLKW)
 *                 for bytes 150-159
 *   pipe-full     two processes each writing a full pipe the other would read after
 *   jit           a thread ("v-anon") looping in pause() from code copied to anonymous
 *                 executable memory, another ("v-memfd") from code in a memfd named "jit-code"
 *   same-code     two threads ("v-same") blocked in one function on two different mutexes
 *   pairs N       N socket pairs and N pipes, both ends kept and never used (a leak)
 *   files N DIR   N different files of DIR open at once (a checkpointer at work: no leak)
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what)
{
	fprintf(stderr, "waits: %s: %s\n", what, strerror(errno));
	_exit(2);
}

static void child_setup(const char *name)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	prctl(PR_SET_NAME, name);
}

/* The syscall number a thread is in, from /proc (-1: running or unknown). */
static long syscall_of(pid_t pid, pid_t tid)
{
	char path[64], buf[64] = "";
	FILE *f;
	snprintf(path, sizeof(path), "/proc/%d/task/%d/syscall", pid, tid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	if (!fgets(buf, sizeof(buf), f))
		buf[0] = 0;
	fclose(f);
	if (buf[0] < '0' || buf[0] > '9')
		return -1;
	return strtol(buf, NULL, 10);
}

/* Wait (up to 20 s) until thread tid of pid is in syscall nr. */
static void wait_in_syscall(pid_t pid, pid_t tid, long nr)
{
	for (int i = 0; i < 4000; i++) {
		if (syscall_of(pid, tid) == nr)
			return;
		usleep(5000);
	}
	fprintf(stderr, "waits: thread %d of %d never entered syscall %ld\n", tid, pid, nr);
	exit(3);
}

/* The thread of pid other than its main thread (waits until there is one). */
static pid_t other_thread(pid_t pid)
{
	for (int i = 0; i < 4000; i++) {
		char path[64];
		pid_t found = 0;
		struct dirent *d;
		DIR *dir;
		snprintf(path, sizeof(path), "/proc/%d/task", pid);
		if ((dir = opendir(path))) {
			while ((d = readdir(dir)))
				if (atoi(d->d_name) > 0 && atoi(d->d_name) != pid)
					found = atoi(d->d_name);
			closedir(dir);
		}
		if (found)
			return found;
		usleep(5000);
	}
	fprintf(stderr, "waits: pid %d never started a second thread\n", pid);
	exit(3);
}

/* The main thread goes on to block; a helper thread says ready once it has, then joins it (so
 * the helper itself waits only on the main thread). */
struct ready_arg {
	pthread_t main;
	long nr;
	char line[256];
};

static void *t_ready(void *arg)
{
	struct ready_arg *r = arg;
	prctl(PR_SET_NAME, "v-ready");
	wait_in_syscall(getpid(), getpid(), r->nr);
	printf("%s\n", r->line);
	fflush(stdout);
	pthread_join(r->main, NULL);
	return NULL;
}

static void ready_when_main_in(long nr, const char *line)
{
	static struct ready_arg r;
	pthread_t t;
	r.main = pthread_self();
	r.nr = nr;
	snprintf(r.line, sizeof(r.line), "%s", line);
	pthread_create(&t, NULL, t_ready, &r);
}

/* ---- wakers ------------------------------------------------------------------------------- */

static pthread_mutex_t b_lock = PTHREAD_MUTEX_INITIALIZER;
static int b_pipe_rd;

static void *t_worker(void *arg)
{
	char c;
	prctl(PR_SET_NAME, "v-worker");
	pthread_mutex_lock(&b_lock);
	while (read(b_pipe_rd, &c, 1) > 0) /* nobody writes, though A, B and C could */
		;
	return arg;
}

static void __attribute__((noinline)) serve_one(int sock)
{
	char req[16];
	if (read(sock, req, sizeof(req)) <= 0)
		return;
	pthread_mutex_lock(&b_lock); /* held by the worker */
	(void)!write(sock, "ok", 2);
}

static void __attribute__((noinline)) ask(int sock)
{
	char ans[16];
	(void)!read(sock, ans, sizeof(ans)); /* waits for B */
}

static void setup_wakers(bool stuck)
{
	int sv[2], p[2], q[2];
	pid_t b, c;
	char line[256];

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0 || pipe(p) < 0 || pipe(q) < 0)
		die("socketpair/pipe");
	c = fork();
	if (c == 0) {
		char x;
		child_setup("v-c");
		close(sv[0]);
		close(sv[1]);
		close(q[1]);
		if (!stuck) {
			close(q[0]);
			for (;;)
				pause(); /* could write p[1] at any moment */
		}
		while (read(q[0], &x, 1) > 0) /* only A could write q */
			;
		_exit(0);
	}
	b = fork();
	if (b == 0) {
		pthread_t t;
		child_setup("v-b");
		close(sv[0]);
		close(q[0]);
		close(q[1]);
		b_pipe_rd = p[0]; /* and keeps p[1]: inherited, not closed */
		pthread_create(&t, NULL, t_worker, NULL);
		while (pthread_mutex_trylock(&b_lock) == 0) /* until the worker holds it */
			pthread_mutex_unlock(&b_lock), usleep(1000);
		serve_one(sv[1]);
		_exit(0);
	}
	prctl(PR_SET_NAME, "v-a");
	close(sv[1]);
	close(q[0]); /* keeps q[1]: C waits on it */
	pid_t worker = other_thread(b);
	wait_in_syscall(b, worker, SYS_read);
	wait_in_syscall(c, c, stuck ? SYS_read : SYS_pause);
	(void)!write(sv[0], "req", 3);
	wait_in_syscall(b, b, SYS_futex);
	snprintf(line, sizeof(line), "ready pid=%d b=%d worker=%d c=%d pipe_w=%d", getpid(), b,
		 worker, c, p[1]);
	ready_when_main_in(SYS_read, line);
	ask(sv[0]);
	for (;;)
		pause();
}

/* ---- file locks --------------------------------------------------------------------------- */

static int open_file(const char *dir, const char *name)
{
	char path[512];
	int fd;
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		die(path);
	return fd;
}

/* A child that takes flock(hold) (if hold is given) and then waits for flock(want), or
 * sleeps. Returns its pid once it holds what it should. */
static pid_t flocker(const char *name, const char *dir, const char *hold, const char *want,
		     int pipe_ready[2])
{
	pid_t c = fork();
	if (c == 0) {
		child_setup(name);
		close(pipe_ready[0]);
		if (hold && flock(open_file(dir, hold), LOCK_EX) < 0)
			die("flock");
		(void)!write(pipe_ready[1], "x", 1);
		close(pipe_ready[1]);
		if (want && flock(open_file(dir, want), LOCK_EX) < 0)
			die("flock");
		for (;;)
			pause();
	}
	char x;
	if (read(pipe_ready[0], &x, 1) != 1)
		die("flocker did not start");
	return c;
}

static void setup_flock_chain(const char *dir)
{
	int pr[2];
	pid_t p1, p2, p3;

	if (pipe(pr) < 0)
		die("pipe");
	p1 = flocker("v-p1", dir, "F1", NULL, pr);
	p2 = flocker("v-p2", dir, "F2", "F1", pr);
	wait_in_syscall(p2, p2, SYS_flock);
	p3 = flocker("v-p3", dir, NULL, "F2", pr);
	wait_in_syscall(p3, p3, SYS_flock);
	wait_in_syscall(p1, p1, SYS_pause);
	printf("ready pid=%d p1=%d p2=%d p3=%d\n", getpid(), p1, p2, p3);
}

static void setup_flock_deadlock(const char *dir)
{
	int pr[2], go[2];
	pid_t p[2];

	if (pipe(pr) < 0 || pipe(go) < 0)
		die("pipe");
	for (int i = 0; i < 2; i++) {
		p[i] = fork();
		if (p[i] == 0) {
			char x;
			child_setup(i ? "v-p2" : "v-p1");
			if (flock(open_file(dir, i ? "F2" : "F1"), LOCK_EX) < 0)
				die("flock");
			(void)!write(pr[1], "x", 1);
			if (read(go[0], &x, 1) != 1) /* until both hold theirs */
				die("go");
			if (flock(open_file(dir, i ? "F1" : "F2"), LOCK_EX) < 0)
				die("flock");
			_exit(0);
		}
	}
	char x;
	for (int i = 0; i < 2; i++)
		if (read(pr[0], &x, 1) != 1)
			die("lockers did not start");
	(void)!write(go[1], "xx", 2);
	wait_in_syscall(p[0], p[0], SYS_flock);
	wait_in_syscall(p[1], p[1], SYS_flock);
	printf("ready pid=%d p1=%d p2=%d\n", getpid(), p[0], p[1]);
}

static void setup_fcntl_range(const char *dir)
{
	int pr[2];
	pid_t p1, p2;
	char x;

	if (pipe(pr) < 0)
		die("pipe");
	p1 = fork();
	if (p1 == 0) {
		struct flock fl = {
		    .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 100, .l_len = 100};
		child_setup("v-p1");
		if (fcntl(open_file(dir, "F"), F_SETLK, &fl) < 0)
			die("fcntl");
		(void)!write(pr[1], "x", 1);
		for (;;)
			pause();
	}
	if (read(pr[0], &x, 1) != 1)
		die("p1");
	p2 = fork();
	if (p2 == 0) {
		struct flock fl = {
		    .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 150, .l_len = 10};
		child_setup("v-p2");
		if (fcntl(open_file(dir, "F"), F_SETLKW, &fl) < 0)
			die("fcntl");
		_exit(0);
	}
	wait_in_syscall(p2, p2, SYS_fcntl);
	wait_in_syscall(p1, p1, SYS_pause);
	printf("ready pid=%d p1=%d p2=%d\n", getpid(), p1, p2);
}

/* ---- full pipes --------------------------------------------------------------------------- */

static void __attribute__((noinline)) write_all_then_read(int wr, int rd)
{
	static char buf[1 << 20];
	size_t done = 0;
	/* Write 1 MiB (far more than a pipe holds) before reading anything: both block. */
	while (done < sizeof(buf)) {
		ssize_t n = write(wr, buf + done, sizeof(buf) - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			_exit(4);
		done += (size_t)n;
	}
	while (read(rd, buf, sizeof(buf)) > 0)
		;
}

static void setup_pipe_full(void)
{
	int a[2], b[2];
	pid_t c;

	if (pipe(a) < 0 || pipe(b) < 0)
		die("pipe");
	c = fork();
	if (c == 0) {
		child_setup("v-p2");
		close(a[1]);
		close(b[0]);
		write_all_then_read(b[1], a[0]);
		_exit(0);
	}
	prctl(PR_SET_NAME, "v-p1");
	close(a[0]);
	close(b[1]);
	char line[128];
	wait_in_syscall(c, c, SYS_write);
	snprintf(line, sizeof(line), "ready pid=%d p2=%d", getpid(), c);
	ready_when_main_in(SYS_write, line);
	write_all_then_read(a[1], b[0]);
	for (;;)
		pause();
}

/* ---- code outside every ELF module -------------------------------------------------------- */

/* x86_64: mov eax, 34 (pause); syscall; jmp back to the mov */
static const unsigned char pause_loop[] = {0xb8, 0x22, 0x00, 0x00, 0x00, 0x0f, 0x05, 0xeb, 0xf7};

static void *t_jit(void *code)
{
	prctl(PR_SET_NAME, code == MAP_FAILED ? "v-none" : (const char *)((char *)code + 64));
	((void (*)(void))code)();
	return NULL;
}

static void *jit_page(int fd, const char *name)
{
	void *p;
	if (fd >= 0) {
		if (ftruncate(fd, 4096) < 0)
			die("ftruncate");
		p = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_SHARED, fd, 0);
	} else {
		p = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	}
	if (p == MAP_FAILED)
		die("mmap");
	memcpy(p, pause_loop, sizeof(pause_loop));
	snprintf((char *)p + 64, 16, "%s", name);
	return p;
}

static void setup_jit(void)
{
	pthread_t t[2];
	void *anon = jit_page(-1, "v-anon");
	int mfd = (int)syscall(SYS_memfd_create, "jit-code", 0);
	void *mem;
	if (mfd < 0)
		die("memfd_create");
	mem = jit_page(mfd, "v-memfd");
	pthread_create(&t[0], NULL, t_jit, anon);
	pthread_create(&t[1], NULL, t_jit, mem);
	char line[128];
	snprintf(line, sizeof(line), "ready pid=%d anon=%p memfd=%p", getpid(), anon, mem);
	/* both threads in pause(): */
	for (int i = 0; i < 4000; i++) {
		int in_pause = 0;
		DIR *d = opendir("/proc/self/task");
		struct dirent *de;
		while (d && (de = readdir(d)))
			if (atoi(de->d_name) > 0 && atoi(de->d_name) != getpid())
				in_pause += syscall_of(getpid(), atoi(de->d_name)) == SYS_pause;
		if (d)
			closedir(d);
		if (in_pause == 2)
			break;
		usleep(5000);
	}
	printf("%s\n", line);
}

static pthread_mutex_t same[2] = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER};

static void __attribute__((noinline)) lock_one(pthread_mutex_t *m)
{
	pthread_mutex_lock(m);
}

static void *t_same(void *arg)
{
	prctl(PR_SET_NAME, "v-same");
	lock_one(arg);
	return NULL;
}

static void setup_same_code(void)
{
	pthread_t t;
	pthread_mutex_lock(&same[0]);
	pthread_mutex_lock(&same[1]);
	pthread_create(&t, NULL, t_same, &same[0]);
	pthread_create(&t, NULL, t_same, &same[1]);
	for (int i = 0; i < 4000; i++) {
		int n = 0;
		DIR *d = opendir("/proc/self/task");
		struct dirent *de;
		while (d && (de = readdir(d)))
			if (atoi(de->d_name) > 0 && atoi(de->d_name) != getpid())
				n += syscall_of(getpid(), atoi(de->d_name)) == SYS_futex;
		if (d)
			closedir(d);
		if (n == 2)
			break;
		usleep(5000);
	}
	printf("ready pid=%d m0=%p m1=%p\n", getpid(), (void *)&same[0], (void *)&same[1]);
}

static void raise_nofile(int n)
{
	struct rlimit rl = {.rlim_cur = (rlim_t)n, .rlim_max = (rlim_t)n};
	struct rlimit cur;
	if (getrlimit(RLIMIT_NOFILE, &cur) == 0 && cur.rlim_max != RLIM_INFINITY &&
	    cur.rlim_max < rl.rlim_max)
		rl.rlim_cur = rl.rlim_max = cur.rlim_max;
	setrlimit(RLIMIT_NOFILE, &rl);
}

static void setup_pairs(int n)
{
	raise_nofile(8 * n + 100);
	for (int i = 0; i < n; i++) {
		int sv[2], p[2];
		if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0 || pipe(p) < 0)
			die("socketpair/pipe");
	}
	printf("ready pid=%d\n", getpid());
}

static void setup_files(int n, const char *dir)
{
	raise_nofile(4 * n + 100);
	for (int i = 0; i < n; i++) {
		char name[32];
		snprintf(name, sizeof(name), "rel.%d", i);
		(void)open_file(dir, name);
	}
	printf("ready pid=%d\n", getpid());
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "";
	const char *dir = argc > 2 ? argv[2] : "/tmp";

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!strcmp(mode, "wakers") || !strcmp(mode, "wakers-stuck")) {
		setup_wakers(!strcmp(mode, "wakers-stuck"));
	} else if (!strcmp(mode, "flock-chain")) {
		setup_flock_chain(dir);
	} else if (!strcmp(mode, "flock-deadlock")) {
		setup_flock_deadlock(dir);
	} else if (!strcmp(mode, "fcntl-range")) {
		setup_fcntl_range(dir);
	} else if (!strcmp(mode, "pipe-full")) {
		setup_pipe_full();
	} else if (!strcmp(mode, "pairs")) {
		setup_pairs(argc > 2 ? atoi(argv[2]) : 100);
	} else if (!strcmp(mode, "files")) {
		setup_files(argc > 2 ? atoi(argv[2]) : 300, argc > 3 ? argv[3] : "/tmp");
	} else if (!strcmp(mode, "jit")) {
		setup_jit();
	} else if (!strcmp(mode, "same-code")) {
		setup_same_code();
	} else {
		fprintf(stderr, "waits: unknown mode '%s'\n", mode);
		return 2;
	}
	for (;;)
		pause();
}
