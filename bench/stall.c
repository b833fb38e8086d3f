/* SPDX-License-Identifier: MIT */
/*
 * osmosis-bench-stall: how long does a snapshot stall the target, as the target itself sees it?
 *
 * For each size, a victim process (this program with --victim) fills that much memory with
 * records like a service's heap (fill_records) and runs a heartbeat thread that sleeps 100 us in a
 * loop and records the longest gap between two beats. The bench resets the record, takes a snapshot
 * of the victim with osmosis, with gcore, and with the kernel's bare fork() (the victim forks a
 * child that exits at once: the floor for any copy-on-write method), and reads the longest gap
 * back. All in one run, side by side, on the same victim.
 *
 * With --scale, the victims are a process with 1,000 idle threads and a tree of 500 processes,
 * and the rows are osmosis snap, osmosis snap --tree and osmosis snap --all --state-only (with the
 * 500-process tree on the machine), beside gcore where it applies.
 *
 * The victims write while they are snapshotted: --writes all (every page of their memory,
 * nonstop), 16m (the first 16 MiB nonstop), none; each capture method is a row (--methods).
 *
 * Usage: osmosis-bench-stall [--osmosis PATH] [--sizes MiB,MiB,...] [--runs N] [--dir DIR]
 *                            [--writes all,16m,none] [--methods copy,clone,precopy,auto]
 *                            [--no-gcore] [--scale] [--args "OSMOSIS SNAP OPTIONS"]
 *
 * Every gap of the victim's heartbeat over 1 ms is recorded with its CLOCK_MONOTONIC start, and
 * laid beside the timeline of osmosis's manifest (same clock): each row shows the longest gap
 * outside the pause and the phase of osmosis it fell in, and after each size, per method, the
 * longest gap seen in each phase.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <dirent.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/resource.h>
#include <sys/prctl.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- the victim ---------------------------------------------------------------------------- */

static _Atomic uint64_t max_gap_ns;

/* Every gap longer than GAP_NS, with when it began (CLOCK_MONOTONIC, as osmosis's timeline):
 * the bench lays them beside the phases of osmosis's manifest. */
#define GAP_NS	 1000000ull
#define MAX_GAPS 65536
static uint64_t gap_at[MAX_GAPS], gap_len[MAX_GAPS];
static _Atomic size_t n_gaps;

static void *heartbeat(void *arg)
{
	struct timespec ts = {0, 100000};
	uint64_t last = now_ns();
	(void)arg;
	for (;;) {
		nanosleep(&ts, NULL);
		uint64_t t = now_ns(), gap = t - last;
		if (gap > atomic_load(&max_gap_ns))
			atomic_store(&max_gap_ns, gap);
		if (gap > GAP_NS) {
			size_t i = atomic_load(&n_gaps);
			if (i < MAX_GAPS) {
				gap_at[i] = last;
				gap_len[i] = gap;
				atomic_store(&n_gaps, i + 1);
			}
		}
		last = t;
	}
	return NULL;
}

static int threads_in_children;
static bool kernel_core; /* core_pattern lets the bench take the kernel's own core */

/* The victim's writer: none, all of its memory nonstop, or its first 16 MiB nonstop. */
enum { WRITE_NONE, WRITE_ALL, WRITE_16M };
static int write_kind;
static uint8_t *wmem;
static size_t wlen;

static void *writer(void *arg)
{
	size_t len = write_kind == WRITE_16M ? (wlen < (16u << 20) ? wlen : 16u << 20) : wlen;
	(void)arg;
	for (uint64_t g = 1;; g++)
		for (size_t i = 0; i < len; i += 4096)
			__atomic_store_n((uint64_t *)(wmem + i), g, __ATOMIC_RELAXED);
	return NULL;
}
static pthread_mutex_t idle_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t idle_cv = PTHREAD_COND_INITIALIZER;

static void *idle_thread(void *arg)
{
	pthread_mutex_lock(&idle_lock);
	for (;;)
		pthread_cond_wait(&idle_cv, &idle_lock);
	return arg;
}

/* What a service's heap looks like, more or less: small records of a few kinds, with ids that
 * count up, names from a small vocabulary, timestamps, pointers to their neighbours, and a few
 * free (zeroed) slots. Not random bytes (nothing compresses those) and not one byte repeated
 * (everything compresses that). */
struct record {
	uint64_t id;
	uint32_t kind, flags;
	char name[24];
	uint64_t created_ns;
	double balance;
	uint64_t next, prev;
};

static void fill_records(uint8_t *p, size_t len)
{
	static const char *const words[] = {"user",    "order",	  "session", "invoice",
					    "account", "payment", "cart",    "item"};
	struct record *r = (struct record *)p;
	size_t n = len / sizeof(*r);
	uint64_t seed = 0x9e3779b97f4a7c15ull;

	for (size_t i = 0; i < n; i++) {
		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		if ((seed >> 60) == 0) { /* one in 16 slots free */
			memset(&r[i], 0, sizeof(r[i]));
			continue;
		}
		r[i].id = 1000000 + i;
		r[i].kind = (uint32_t)(seed >> 61);
		r[i].flags = (uint32_t)((seed >> 40) & 0x7);
		/* "word-NNNNNN", without snprintf (gigabytes of records are filled) */
		size_t wl = strlen(words[r[i].kind]), num = i % 250000;
		memset(r[i].name, 0, sizeof(r[i].name));
		memcpy(r[i].name, words[r[i].kind], wl);
		r[i].name[wl] = '-';
		for (int d = 6; d >= 1; d--, num /= 10)
			r[i].name[wl + (size_t)d] = (char)('0' + num % 10);
		r[i].created_ns = 1764547200000000000ull + i * 1000ull + ((seed >> 20) & 0xff);
		r[i].balance = (double)((seed >> 32) % 5000) / 100.0;
		r[i].next = (uint64_t)(uintptr_t)&r[i + 1];
		r[i].prev = i ? (uint64_t)(uintptr_t)&r[i - 1] : 0;
	}
	memset(p + n * sizeof(*r), 0x5a, len - n * sizeof(*r));
}

/* mib of touched memory, threads idle threads, children sleeping child processes */
static int victim_main(size_t mib, int threads, int children)
{
	size_t len = mib << 20;
	uint8_t *p =
	    len ? mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
		: NULL;
	pthread_attr_t attr;
	pthread_t t;
	char cmd[4096];

	if (p == MAP_FAILED)
		return 1;
	fill_records(p, len);
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 64 * 1024);
	/* Children first (fork copies only the calling thread); each gets the threads too when
	 * threads_in_children is set. */
	for (int i = 0; i < children; i++) {
		pid_t c = fork();
		if (c == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			for (int j = 0; threads_in_children && j < threads; j++)
				pthread_create(&t, &attr, idle_thread, NULL);
			for (;;)
				pause();
		}
	}
	for (int i = 0; i < threads; i++)
		if (pthread_create(&t, &attr, idle_thread, NULL))
			return 1;
	pthread_create(&t, NULL, heartbeat, NULL);
	wmem = p;
	wlen = len;
	if (write_kind != WRITE_NONE && len)
		pthread_create(&t, NULL, writer, NULL);
	printf("ready %d\n", getpid());
	fflush(stdout);
	while (fgets(cmd, sizeof(cmd), stdin)) {
		if (!strncmp(cmd, "reset", 5)) {
			usleep(20000);
			atomic_store(&max_gap_ns, 0);
			atomic_store(&n_gaps, 0);
			printf("ok\n");
		} else if (!strncmp(cmd, "report", 6)) {
			usleep(20000); /* let the heartbeat notice a stall that just ended */
			printf("%llu\n", (unsigned long long)atomic_load(&max_gap_ns));
		} else if (!strncmp(cmd, "gaps", 4)) {
			size_t n = atomic_load(&n_gaps);
			printf("%zu\n", n);
			for (size_t i = 0; i < n; i++)
				printf("%llu %llu\n", (unsigned long long)gap_at[i],
				       (unsigned long long)gap_len[i]);
		} else if (!strncmp(cmd, "kcore ", 6)) {
			/* The kernel's own core of this memory: a forked child (the same pages)
			 * dumps core in the directory named, as core_pattern "core" says. The
			 * time is the fork's start to the child reaped: the core written. */
			cmd[strcspn(cmd, "\n")] = 0;
			uint64_t t0 = now_ns();
			pid_t c = fork();
			if (c == 0) {
				struct rlimit rl = {RLIM_INFINITY, RLIM_INFINITY};
				if (chdir(cmd + 6) < 0 || setrlimit(RLIMIT_CORE, &rl) < 0)
					_exit(1);
				signal(SIGABRT, SIG_DFL);
				abort();
			}
			int st = 0;
			waitpid(c, &st, 0);
			printf("%llu\n", WIFSIGNALED(st) && WCOREDUMP(st)
					     ? (unsigned long long)(now_ns() - t0)
					     : 0ull);
		} else if (!strncmp(cmd, "fork", 4)) {
			uint64_t t0 = now_ns();
			pid_t c = fork();
			if (c == 0)
				_exit(0);
			uint64_t t1 = now_ns();
			waitpid(c, NULL, 0);
			printf("%llu\n", (unsigned long long)(t1 - t0));
		}
		fflush(stdout);
	}
	return 0;
}

/* ---- the bench ----------------------------------------------------------------------------- */

struct victim {
	pid_t pid;
	FILE *in, *out;
};

static int victim_start(const char *self, size_t mib, int threads, int children, struct victim *v)
{
	int to[2], from[2];
	char line[64], arg[64];

	if (pipe(to) < 0 || pipe(from) < 0)
		return -1;
	snprintf(arg, sizeof(arg), "%zu,%d,%d,%d,%d", mib, threads, children, threads_in_children,
		 write_kind);
	v->pid = fork();
	if (v->pid == 0) {
		/* A session of its own, as a service has: with autogroups (this kernel's default)
		 * the scheduler shares the CPU between sessions first, and a victim in the bench's
		 * session would share its part with osmosis, which no real target does. */
		setsid();
		dup2(to[0], 0);
		dup2(from[1], 1);
		close(to[1]);
		close(from[0]);
		execl(self, self, "--victim", arg, (char *)NULL);
		_exit(127);
	}
	close(to[0]);
	close(from[1]);
	v->in = fdopen(to[1], "w");
	v->out = fdopen(from[0], "r");
	if (!fgets(line, sizeof(line), v->out) || strncmp(line, "ready", 5))
		return -1;
	return 0;
}

static uint64_t victim_ask(struct victim *v, const char *cmd)
{
	char line[64];
	fprintf(v->in, "%s\n", cmd);
	fflush(v->in);
	if (!fgets(line, sizeof(line), v->out))
		return 0;
	return strtoull(line, NULL, 10);
}

/* The gaps the victim recorded since the last reset (after a "report"). */
struct gaps {
	uint64_t at[MAX_GAPS], len[MAX_GAPS];
	size_t n;
};

static void victim_gaps(struct victim *v, struct gaps *g)
{
	char line[128];

	g->n = 0;
	fprintf(v->in, "gaps\n");
	fflush(v->in);
	if (!fgets(line, sizeof(line), v->out))
		return;
	size_t n = strtoull(line, NULL, 10);
	for (size_t i = 0; i < n && fgets(line, sizeof(line), v->out); i++) {
		unsigned long long a, l;
		if (sscanf(line, "%llu %llu", &a, &l) == 2 && g->n < MAX_GAPS) {
			g->at[g->n] = a;
			g->len[g->n++] = l;
		}
	}
}

/* osmosis's timeline, from its manifest, in absolute CLOCK_MONOTONIC ns. */
#define MAX_PHASES 64
struct timeline {
	uint64_t pause_start, pause_end;
	struct {
		char name[16];
		uint64_t start, end;
	} ph[MAX_PHASES];
	int n;
	bool valid;
};

static uint64_t json_u64_after(const char *p, const char *key, const char *limit)
{
	const char *k = strstr(p, key);
	if (!k || (limit && k > limit))
		return UINT64_MAX;
	return strtoull(k + strlen(key), NULL, 10);
}

static void manifest_timeline(const char *dir, struct timeline *tl)
{
	static char buf[1 << 20];
	char path[4096];
	const char *p, *end;
	uint64_t t0;
	FILE *f;
	size_t n;

	memset(tl, 0, sizeof(*tl));
	snprintf(path, sizeof(path), "%s/manifest.json", dir);
	f = fopen(path, "r");
	if (!f)
		return;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	p = strstr(buf, "\"timeline\"");
	if (!p || (t0 = json_u64_after(p, "\"start_ns\":", NULL)) == UINT64_MAX)
		return;
	tl->pause_start = t0 + json_u64_after(p, "\"pause_start_us\":", NULL) * 1000;
	tl->pause_end = t0 + json_u64_after(p, "\"pause_end_us\":", NULL) * 1000;
	p = strstr(p, "\"phases\"");
	end = p ? strchr(p, ']') : NULL;
	while (p && end && tl->n < MAX_PHASES && (p = strstr(p, "\"name\": \"")) && p < end) {
		const char *close = strchr(p, '}');
		uint64_t st = json_u64_after(p, "\"start_us\":", close),
			 du = json_u64_after(p, "\"duration_us\":", close);
		snprintf(tl->ph[tl->n].name, sizeof(tl->ph[0].name), "%.*s",
			 (int)strcspn(p + 9, "\""), p + 9);
		tl->ph[tl->n].start = t0 + st * 1000;
		/* an open phase (the commit) lasts to the end of the command */
		tl->ph[tl->n].end = du == UINT64_MAX ? UINT64_MAX : t0 + (st + du) * 1000;
		tl->n++;
		p = close ? close : end;
	}
	tl->valid = true;
}

/* Per method, over its runs: the longest gap in each phase of osmosis. */
#define MAX_STATS 24
struct phase_stats {
	struct {
		char name[16];
		uint64_t max_gap, n_gaps, time;
	} v[MAX_STATS];
	int n;
};

static void stat_add(struct phase_stats *ps, const char *name, uint64_t gap)
{
	int i;
	for (i = 0; i < ps->n && strcmp(ps->v[i].name, name); i++)
		;
	if (i == ps->n) {
		if (ps->n == MAX_STATS)
			return;
		snprintf(ps->v[ps->n++].name, sizeof(ps->v[0].name), "%s", name);
	}
	ps->v[i].n_gaps++;
	if (gap > ps->v[i].max_gap)
		ps->v[i].max_gap = gap;
}

static uint64_t overlap(uint64_t a0, uint64_t a1, uint64_t b0, uint64_t b1)
{
	uint64_t s = a0 > b0 ? a0 : b0, e = a1 < b1 ? a1 : b1;
	return e > s ? e - s : 0;
}

/* The phase a gap fell in: "pause" if it overlaps the pause, else the phase it overlaps most
 * (the innermost on a tie), "before" / "after" / "between" when none. */
static const char *gap_phase(const struct timeline *tl, uint64_t at, uint64_t len)
{
	uint64_t best = 0, best_len = UINT64_MAX;
	const char *name = NULL;

	if (!tl->valid)
		return "idle";
	if (overlap(at, at + len, tl->pause_start, tl->pause_end))
		return "pause";
	for (int i = 0; i < tl->n; i++) {
		uint64_t o = overlap(at, at + len, tl->ph[i].start, tl->ph[i].end);
		uint64_t l = tl->ph[i].end - tl->ph[i].start;
		if (o > best || (o == best && o && l < best_len)) {
			best = o;
			best_len = l;
			name = tl->ph[i].name;
		}
	}
	if (name)
		return name;
	if (tl->n && at + len <= tl->ph[0].start)
		return "before";
	if (tl->n && at >= tl->ph[tl->n - 1].start)
		return "after";
	return "between";
}

/* The longest gap outside the pause, and the phase it fell in; every gap counted in ps. */
static uint64_t gaps_outside(const struct gaps *g, const struct timeline *tl,
			     struct phase_stats *ps, char *phase, size_t len)
{
	uint64_t m = 0;

	snprintf(phase, len, "-");
	for (size_t i = 0; i < g->n; i++) {
		const char *name = gap_phase(tl, g->at[i], g->len[i]);
		if (ps)
			stat_add(ps, name, g->len[i]);
		if (!strcmp(name, "pause"))
			continue;
		if (g->len[i] > m) {
			m = g->len[i];
			snprintf(phase, len, "%s", name);
		}
	}
	return m;
}

static void victim_stop(struct victim *v)
{
	kill(v->pid, SIGKILL);
	waitpid(v->pid, NULL, 0);
	fclose(v->in);
	fclose(v->out);
}

/* CPU time the hypervisor gave to other guests, all CPUs, in ns (/proc/stat "steal"): on a
 * shared host, a victim whose vCPU is not running sees a stall no tool caused. */
static uint64_t steal_ns(void)
{
	unsigned long long f[8] = {0};
	FILE *fp = fopen("/proc/stat", "r");

	if (!fp)
		return 0;
	if (fscanf(fp, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &f[0], &f[1], &f[2], &f[3],
		   &f[4], &f[5], &f[6], &f[7]) != 8)
		f[7] = 0;
	fclose(fp);
	return f[7] * (1000000000ull / (uint64_t)sysconf(_SC_CLK_TCK));
}

static int run(const char *cmd, uint64_t *ret_ns)
{
	uint64_t t0 = now_ns();
	int r = system(cmd);
	*ret_ns = now_ns() - t0;
	return r == 0 ? 0 : -1;
}

/* Run argv, return its wall time and peak RSS (bytes). */
static int run_argv(char *const argv[], uint64_t *ret_ns, uint64_t *ret_rss)
{
	uint64_t t0 = now_ns();
	struct rusage ru;
	int st;
	pid_t c = fork();

	if (c == 0) {
		int devnull = open("/dev/null", O_WRONLY);
		dup2(devnull, 1);
		execv(argv[0], argv);
		_exit(127);
	}
	if (c < 0 || wait4(c, &st, 0, &ru) < 0)
		return -1;
	*ret_ns = now_ns() - t0;
	*ret_rss = (uint64_t)ru.ru_maxrss * 1024;
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

/* The method the manifest says the (first) process got. */
static void manifest_method(const char *dir, char *out, size_t len)
{
	static char buf[1 << 20];
	char path[4096];
	FILE *f;
	size_t n;
	char *p;

	snprintf(out, len, "?");
	snprintf(path, sizeof(path), "%s/manifest.json", dir);
	f = fopen(path, "r");
	if (!f)
		return;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	p = strstr(buf, "\"processes\"");
	if (p && (p = strstr(p, "\"method\": \"")))
		snprintf(out, len, "%.*s", (int)strcspn(p + 11, "\""), p + 11);
}

static long manifest_pause_us(const char *dir)
{
	char path[4096], buf[8192];
	FILE *f;
	size_t n;
	char *p;

	snprintf(path, sizeof(path), "%s/manifest.json", dir);
	f = fopen(path, "r");
	if (!f)
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	p = strstr(buf, "\"pause_us\":");
	return p ? strtol(p + 11, NULL, 10) : -1;
}

/* Disk space the files of dir take (blocks: holes are free). */
static uint64_t dir_disk_bytes(const char *dir)
{
	char path[4096];
	struct dirent *e;
	struct stat st;
	uint64_t n = 0;
	DIR *d = opendir(dir);

	if (!d)
		return 0;
	while ((e = readdir(d)))
		if (!strncmp(e->d_name, "core.", 5)) {
			snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
			if (stat(path, &st) == 0)
				n += (uint64_t)st.st_blocks * 512;
		}
	closedir(d);
	return n;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return (x > y) - (x < y);
}

struct result {
	uint64_t stall[16], pause[16], total[16], rss[16], steal[16];
	uint64_t outside[16]; /* longest gap outside the pause */
	uint64_t disk[16];    /* bytes the cores take on disk */
	char outside_phase[16][16];
	int n;
	char method[16]; /* what auto chose, from the manifest */
	struct phase_stats ps;
};

/* After a run: every gap the victim saw, laid beside the timeline in dir (NULL: no tool). */
static void collect_gaps(struct victim *v, const char *dir, struct result *r)
{
	static struct gaps g;
	struct timeline tl;

	victim_gaps(v, &g);
	if (dir)
		manifest_timeline(dir, &tl);
	else
		memset(&tl, 0, sizeof(tl));
	r->outside[r->n] = gaps_outside(&g, &tl, dir ? &r->ps : NULL, r->outside_phase[r->n],
					sizeof(r->outside_phase[0]));
}

static uint64_t median(uint64_t *v, int n)
{
	uint64_t tmp[16];
	memcpy(tmp, v, sizeof(uint64_t) * (size_t)n);
	qsort(tmp, (size_t)n, sizeof(uint64_t), cmp_u64);
	return n ? tmp[n / 2] : 0;
}

static uint64_t maximum(uint64_t *v, int n)
{
	uint64_t m = 0;
	for (int i = 0; i < n; i++)
		m = v[i] > m ? v[i] : m;
	return m;
}

static void print_row(size_t mib, const char *what, struct result *r, uint64_t fork_ns,
		      uint64_t gcore_ns, bool outside)
{
	uint64_t st = median(r->stall, r->n);
	bool osm = r->rss[0] != 0;

	printf("| %5zu MiB | %-22s | %9.1f | %9.1f | %7.1fx | %7.1f%% |", mib, what, st / 1e6,
	       maximum(r->stall, r->n) / 1e6, fork_ns ? (double)st / (double)fork_ns : 0,
	       gcore_ns ? 100.0 * (double)st / (double)gcore_ns : 0);
	if (osm)
		printf(" %9.1f | %8.2f | %9.0f |", median(r->pause, r->n) / 1e3,
		       median(r->total, r->n) / 1e9, median(r->rss, r->n) / 1048576.0);
	else
		printf(" %9s | %8.3f | %9s |", "-", median(r->total, r->n) / 1e9, "-");
	printf(" %8.0f |", median(r->steal, r->n) / 1e6);
	if (outside) {
		int worst = 0;
		for (int i = 0; i < r->n; i++)
			if (r->outside[i] > r->outside[worst])
				worst = i;
		printf(" %10.1f | %-10s |", median(r->outside, r->n) / 1e6,
		       r->n ? r->outside_phase[worst] : "-");
	} else {
		printf(" %10s | %-10s |", "-", "-");
	}
	if (r->disk[0])
		printf(" %8.0f |", median(r->disk, r->n) / 1048576.0);
	else
		printf(" %8s |", "-");
	printf("\n");
	fflush(stdout);
}

/* Per method: the longest gap the victim saw in each phase of osmosis, over all runs. */
static void print_phases(const char *what, const struct phase_stats *ps)
{
	if (!ps->n)
		return;
	printf("    %-24s", what);
	for (int i = 0; i < ps->n; i++)
		printf(" %s %.1f (%llu)", ps->v[i].name, ps->v[i].max_gap / 1e6,
		       (unsigned long long)ps->v[i].n_gaps);
	printf("\n");
}

/* One scale row: run cmd (with %d for the pid) runs times against v; stall, pause, total. */
static void scale_row(const char *what, struct victim *v, const char *osmosis, const char *dir,
		      const char *args, int runs)
{
	struct result r = {0};
	char cmd[8192], out[4096];

	for (int i = 0; i < runs; i++) {
		uint64_t t;
		snprintf(out, sizeof(out), "%s/osmosis-bench-scale-%d-%d", dir, getpid(), i);
		snprintf(cmd, sizeof(cmd), "%s snap -q --sample 0 %s -o %s", osmosis, args, out);
		if (strstr(cmd, "%d")) {
			char tmp[8192];
			snprintf(tmp, sizeof(tmp), cmd, v->pid);
			snprintf(cmd, sizeof(cmd), "%s", tmp);
		}
		victim_ask(v, "reset");
		if (run(cmd, &t) < 0) {
			fprintf(stderr, "failed: %s\n", cmd);
			continue;
		}
		r.stall[r.n] = victim_ask(v, "report");
		r.pause[r.n] = (uint64_t)manifest_pause_us(out);
		r.total[r.n++] = t;
		snprintf(cmd, sizeof(cmd), "rm -rf %s", out);
		system(cmd);
	}
	printf("| %-34s | %10.1f | %10.1f | %10.1f | %8.2f |\n", what, median(r.stall, r.n) / 1e6,
	       maximum(r.stall, r.n) / 1e6, median(r.pause, r.n) / 1e3, median(r.total, r.n) / 1e9);
	fflush(stdout);
}

static void scale_gcore_row(const char *what, struct victim *v, const char *dir, int runs)
{
	struct result r = {0};
	char cmd[8192];

	for (int i = 0; i < runs; i++) {
		uint64_t t;
		snprintf(cmd, sizeof(cmd), "gcore -o %s/osmosis-bench-gcore %d >/dev/null 2>&1",
			 dir, v->pid);
		victim_ask(v, "reset");
		if (run(cmd, &t) < 0)
			continue;
		r.stall[r.n] = victim_ask(v, "report");
		r.total[r.n++] = t;
		snprintf(cmd, sizeof(cmd), "rm -f %s/osmosis-bench-gcore.%d", dir, v->pid);
		system(cmd);
	}
	printf("| %-34s | %10.1f | %10.1f | %10s | %8.2f |\n", what, median(r.stall, r.n) / 1e6,
	       maximum(r.stall, r.n) / 1e6, "-", median(r.total, r.n) / 1e9);
	fflush(stdout);
}

static int scale_main(const char *self, const char *osmosis, const char *dir, int runs, int gcore,
		      struct utsname *u)
{
	struct victim v;
	long nprocs = 0;
	char buf[4096];

	printf("osmosis-bench-stall --scale: many threads, many processes\n");
	printf("machine: %s, %ld CPUs, kernel %s; %d runs each (median and max)\n\n", u->machine,
	       sysconf(_SC_NPROCESSORS_ONLN), u->release, runs);
	printf("| %-34s | %10s | %10s | %10s | %8s |\n", "what", "stall ms", "max ms", "pause ms",
	       "total s");
	printf(
	    "|------------------------------------|------------|------------|------------|-------"
	    "---|\n");
	if (victim_start(self, 16, 1000, 0, &v) < 0)
		return 1;
	scale_row("osmosis snap, 1,000 idle threads", &v, osmosis, dir, "%d", runs);
	if (gcore)
		scale_gcore_row("gcore, 1,000 idle threads", &v, dir, runs);
	victim_stop(&v);

	if (victim_start(self, 0, 0, 499, &v) < 0)
		return 1;
	scale_row("osmosis snap --tree, 500 processes", &v, osmosis, dir, "--tree %d", runs);
	scale_row("osmosis snap --tree --state-only", &v, osmosis, dir, "--tree --state-only %d",
		  runs);
	FILE *f = popen("ls /proc | grep -c '^[0-9]'", "r");
	if (f && fgets(buf, sizeof(buf), f))
		nprocs = strtol(buf, NULL, 10);
	if (f)
		pclose(f);
	snprintf(buf, sizeof(buf), "osmosis snap --all --state-only (%ld)", nprocs);
	scale_row(buf, &v, osmosis, dir, "--all --state-only", runs);
	victim_stop(&v);

	/* Analysis: 1,000 threads in 20 processes. */
	if (victim_start(self, 0, -50, 19, &v) < 0)
		return 1;
	snprintf(buf, sizeof(buf), "%s/osmosis-bench-analyze-%d", dir, getpid());
	char cmd[8192];
	snprintf(cmd, sizeof(cmd), "%s snap -q --sample 0 --tree -o %s %d", osmosis, buf, v.pid);
	if (system(cmd) == 0) {
		struct result r = {0};
		long rss_kb = 0;
		for (int i = 0; i < runs; i++) {
			uint64_t t, rss = 0;
			char *av[] = {(char *)osmosis, "analyze", buf, NULL};
			run_argv(av, &t, &rss); /* its exit status says what it found */
			r.total[r.n++] = t;
			rss_kb = (long)(rss / 1024) > rss_kb ? (long)(rss / 1024) : rss_kb;
		}
		printf("| %-34s | %10s | %10s | %10s | %8.2f |\n",
		       "osmosis analyze, 1,000 thr/20 proc", "-", "-", "-",
		       median(r.total, r.n) / 1e9);
		if (gcore) {
			uint64_t t0 = now_ns();
			snprintf(cmd, sizeof(cmd),
				 "for c in %s/core.*; do gdb -nx -batch -ex 'thread apply all bt' "
				 "%s $c >/dev/null 2>&1; done",
				 buf, self);
			system(cmd);
			printf("| %-34s | %10s | %10s | %10s | %8.2f |\n",
			       "gdb thread apply all bt, same cores", "-", "-", "-",
			       (now_ns() - t0) / 1e9);
		}
		printf("\npeak memory of osmosis analyze: %ld MiB (the cores are read on demand)\n",
		       rss_kb / 1024);
	}
	snprintf(cmd, sizeof(cmd), "rm -rf %s", buf);
	system(cmd);
	victim_stop(&v);
	printf(
	    "\nstall: the longest gap the victim's heartbeat thread saw (for --tree and --all,\n"
	    "the victim is the tree's root); pause: osmosis's own measure; total: wall time of\n"
	    "the command, files written and synced. (--all counts kernel threads, which are not\n"
	    "frozen.)\n");
	return 0;
}

int main(int argc, char **argv)
{
	const char *osmosis = "build/osmosis", *dir = "/var/tmp";
	char sizes_buf[256] = "256,1024,4096,8192", self[4096], writes_buf[64] = "all,16m";
	char methods_buf[128] = "copy,clone,precopy,auto", *ksave, *ssave, *methods[8];
	char args_buf[512] = "", *extra[16];
	int runs = 3, gcore = 1, scale = 0, n_methods = 0, n_extra = 0;
	static const struct option opts[] = {
	    {"osmosis", required_argument, NULL, 'o'},
	    {"sizes", required_argument, NULL, 's'},
	    {"runs", required_argument, NULL, 'r'},
	    {"dir", required_argument, NULL, 'd'},
	    {"no-gcore", no_argument, NULL, 'g'},
	    {"victim", required_argument, NULL, 'v'},
	    {"scale", no_argument, NULL, 'S'},
	    {"writes", required_argument, NULL, 'w'},
	    {"methods", required_argument, NULL, 'm'},
	    {"args", required_argument, NULL, 'a'},
	    {},
	};
	struct utsname u;
	int c;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'o':
			osmosis = optarg;
			break;
		case 's':
			snprintf(sizes_buf, sizeof(sizes_buf), "%s", optarg);
			break;
		case 'r':
			runs = atoi(optarg);
			break;
		case 'd':
			dir = optarg;
			break;
		case 'g':
			gcore = 0;
			break;
		case 'v': {
			size_t mib = 0;
			int threads = 0, children = 0;
			sscanf(optarg, "%zu,%d,%d,%d,%d", &mib, &threads, &children,
			       &threads_in_children, &write_kind);
			return victim_main(mib, threads, children);
		}
		case 'S':
			scale = 1;
			break;
		case 'w':
			snprintf(writes_buf, sizeof(writes_buf), "%s", optarg);
			break;
		case 'm':
			snprintf(methods_buf, sizeof(methods_buf), "%s", optarg);
			break;
		case 'a':
			snprintf(args_buf, sizeof(args_buf), "%s", optarg);
			break;
		default:
			fprintf(stderr, "usage: see the comment at the top of bench/stall.c\n");
			return 2;
		}
	}
	if (runs < 1 || runs > 16)
		runs = 3;
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n < 0)
		return 1;
	self[n] = 0;

	for (char *tok = strtok(methods_buf, ","); tok && n_methods < 8; tok = strtok(NULL, ","))
		methods[n_methods++] = tok;
	for (char *tok = strtok(args_buf, " "); tok && n_extra < 16; tok = strtok(NULL, " "))
		extra[n_extra++] = tok;
	if (n_methods == 0 && !scale) {
		/* The "nothing" row watches for as long as the last method took: one is needed. */
		fprintf(stderr, "osmosis-bench-stall: --methods names no method\n");
		return 2;
	}
	/* The kernel's own core is a row when it goes to a file in the dumping process's directory
	 * (core_pattern "core" or "core.%p"-like, no pipe and no path): the machine's settings
	 * are never changed. */
	FILE *cp = fopen("/proc/sys/kernel/core_pattern", "r");
	char pattern[256] = "";
	if (cp && fgets(pattern, sizeof(pattern), cp))
		kernel_core = !strcmp(pattern, "core\n");
	if (cp)
		fclose(cp);
	uname(&u);
	if (scale)
		return scale_main(self, osmosis, dir, runs, gcore, &u);
	printf("osmosis-bench-stall: longest stall seen by the victim's own heartbeat thread\n");
	printf("machine: %s, %ld CPUs, kernel %s; %d runs each (median, and max of the runs)\n",
	       u.machine, sysconf(_SC_NPROCESSORS_ONLN), u.release, runs);

	for (char *ktok = strtok_r(writes_buf, ",", &ksave); ktok;
	     ktok = strtok_r(NULL, ",", &ksave)) {
		char sizes[256];

		write_kind = !strcmp(ktok, "all")   ? WRITE_ALL
			     : !strcmp(ktok, "16m") ? WRITE_16M
						    : WRITE_NONE;
		printf("\nvictims writing %s\n\n",
		       write_kind == WRITE_ALL	 ? "all their memory nonstop"
		       : write_kind == WRITE_16M ? "16 MiB of their memory nonstop"
						 : "nothing");
		printf("| %9s | %-22s | %9s | %9s | %8s | %8s | %9s | %8s | %9s | %8s | %10s | "
		       "%-10s | %8s |\n",
		       "victim", "what", "stall ms", "max ms", "/ fork", "/ gcore", "pause ms",
		       "total s", "RSS MiB", "steal ms", "outside ms", "in phase", "disk MiB");
		printf("|-----------|------------------------|-----------|-----------|----------|--"
		       "----"
		       "----|-----------|----------|-----------|----------|------------|-----------"
		       "-|----------|\n");
		snprintf(sizes, sizeof(sizes), "%s", sizes_buf);
		for (char *tok = strtok_r(sizes, ",", &ssave); tok;
		     tok = strtok_r(NULL, ",", &ssave)) {
			size_t mib = strtoul(tok, NULL, 10);
			struct victim v;
			struct result ro[8] = {0}, rg = {0}, rf = {0}, ri = {0}, rk = {0};
			char out[4096], pidbuf[32], cmd[8192];

			if (victim_start(self, mib, 0, 0, &v) < 0) {
				fprintf(stderr, "cannot start a %zu MiB victim\n", mib);
				return 1;
			}
			snprintf(pidbuf, sizeof(pidbuf), "%d", v.pid);
			for (int i = 0; i < runs; i++) {
				for (int m = 0; m < n_methods; m++) {
					uint64_t t, rss;
					snprintf(out, sizeof(out), "%s/osmosis-bench-%d-%d", dir,
						 getpid(), i);
					char *av[32] = {(char *)osmosis, "snap", "-q",
							"--sample",	 "0",	 "--method",
							methods[m],	 "-o",	 out};
					int ac = 9;
					for (int e = 0; e < n_extra && ac < 30; e++)
						av[ac++] = extra[e];
					av[ac++] = pidbuf;
					av[ac] = NULL;
					victim_ask(&v, "reset");
					uint64_t s0 = steal_ns();
					if (run_argv(av, &t, &rss) < 0) {
						fprintf(stderr, "osmosis --method %s failed\n",
							methods[m]);
						return 1;
					}
					struct result *r = &ro[m];
					r->stall[r->n] = victim_ask(&v, "report");
					collect_gaps(&v, out, r);
					r->disk[r->n] = dir_disk_bytes(out);
					r->pause[r->n] = (uint64_t)manifest_pause_us(out);
					r->total[r->n] = t;
					r->steal[r->n] = steal_ns() - s0;
					r->rss[r->n++] = rss;
					manifest_method(out, r->method, sizeof(r->method));
					snprintf(cmd, sizeof(cmd), "rm -rf %s", out);
					system(cmd);
				}

				victim_ask(&v, "reset");
				uint64_t s0 = steal_ns();
				rf.total[rf.n] = victim_ask(&v, "fork");
				rf.stall[rf.n] = victim_ask(&v, "report");
				rf.steal[rf.n++] = steal_ns() - s0;

				/* The floor: nothing runs, for as long as the last method took. */
				uint64_t idle = ro[n_methods - 1].total[ro[n_methods - 1].n - 1];
				struct timespec ts = {(time_t)(idle / 1000000000ull),
						      (long)(idle % 1000000000ull)};
				victim_ask(&v, "reset");
				s0 = steal_ns();
				nanosleep(&ts, NULL);
				ri.stall[ri.n] = victim_ask(&v, "report");
				collect_gaps(&v, NULL, &ri);
				ri.total[ri.n] = idle;
				ri.steal[ri.n++] = steal_ns() - s0;

				if (gcore) {
					uint64_t t;
					snprintf(out, sizeof(out), "%s/osmosis-bench-gcore-%d", dir,
						 getpid());
					snprintf(cmd, sizeof(cmd), "gcore -o %s %d >/dev/null 2>&1",
						 out, v.pid);
					victim_ask(&v, "reset");
					s0 = steal_ns();
					if (run(cmd, &t) == 0) {
						struct stat gst;
						snprintf(cmd, sizeof(cmd), "%s.%d", out, v.pid);
						rg.disk[rg.n] = stat(cmd, &gst) == 0
								    ? (uint64_t)gst.st_blocks * 512
								    : 0;
						rg.steal[rg.n] = steal_ns() - s0;
						rg.stall[rg.n] = victim_ask(&v, "report");
						rg.total[rg.n++] = t;
					}
					snprintf(cmd, sizeof(cmd), "rm -f %s.%d", out, v.pid);
					system(cmd);
				}

				if (gcore && kernel_core) {
					struct stat kst;
					snprintf(out, sizeof(out), "%s/osmosis-bench-kcore-%d", dir,
						 getpid());
					mkdir(out, 0700);
					snprintf(cmd, sizeof(cmd), "kcore %s", out);
					victim_ask(&v, "reset");
					s0 = steal_ns();
					uint64_t t = victim_ask(&v, cmd);
					snprintf(cmd, sizeof(cmd), "%s/core", out);
					if (t && stat(cmd, &kst) == 0) {
						rk.disk[rk.n] = (uint64_t)kst.st_blocks * 512;
						rk.steal[rk.n] = steal_ns() - s0;
						rk.stall[rk.n] = victim_ask(&v, "report");
						rk.total[rk.n++] = t;
					}
					snprintf(cmd, sizeof(cmd), "rm -rf %s", out);
					system(cmd);
				}
			}
			uint64_t fork_ms = median(rf.stall, rf.n),
				 gcore_ms = median(rg.stall, rg.n);
			for (int m = 0; m < n_methods; m++) {
				char what[64];
				if (strcmp(methods[m], ro[m].method))
					snprintf(what, sizeof(what), "osmosis %s (%s)", methods[m],
						 ro[m].method);
				else
					snprintf(what, sizeof(what), "osmosis %s", methods[m]);
				print_row(mib, what, &ro[m], fork_ms, gcore_ms, true);
			}
			if (gcore && rg.n)
				print_row(mib, "gcore", &rg, fork_ms, gcore_ms, false);
			if (rk.n)
				print_row(mib, "kernel core (fork)", &rk, fork_ms, gcore_ms, false);
			print_row(mib, "bare fork()", &rf, fork_ms, gcore_ms, false);
			snprintf(cmd, sizeof(cmd), "nothing, %s's time", methods[n_methods - 1]);
			print_row(mib, cmd, &ri, fork_ms, gcore_ms, true);
			printf("  %zu MiB, longest gap per phase of osmosis in ms (gaps over 1 "
			       "ms), all "
			       "runs:\n",
			       mib);
			for (int m = 0; m < n_methods; m++)
				print_phases(methods[m], &ro[m].ps);
			victim_stop(&v);
		}
	}
	printf(
	    "\nstall: the longest gap between two heartbeats (100 us sleeps) while the tool ran,\n"
	    "median of the runs; / fork and / gcore: that stall over bare fork()'s and gcore's\n"
	    "medians; pause: osmosis's own measure (first thread stopped to last resumed); total:\n"
	    "the tool's wall time until its files are written and synced (for fork: the fork()\n"
	    "call); RSS: osmosis's peak resident memory. auto's row names the method it chose.\n"
	    "steal: CPU time the hypervisor gave to other guests during the run (all CPUs; a\n"
	    "stalled vCPU stalls the victim whatever the tool does). \"nothing\": no tool runs;\n"
	    "the victim's heartbeat is watched for as long as the last method's run took: the\n"
	    "machine's own floor for a window that long. outside: the longest gap that did not\n"
	    "overlap the pause (median of the runs), in phase: the phase of osmosis it fell in\n"
	    "(the worst run's); for \"nothing\", the longest gap at all: the floor to compare "
	    "with.\n"
	    "disk: what the cores take on disk (holes are free; compressed with --args "
	    "--compress).\n"
	    "kernel core: a child forked by the victim (the same pages) dumps core (core_pattern\n"
	    "\"core\"); total: from the fork to the child reaped, the core written, not synced;\n"
	    "its stall is the fork's.\n");
	return 0;
}
