/* SPDX-License-Identifier: MIT */
/*
 * What osmosis watch costs: the CPU time the watcher (and the health checks it runs) uses while
 * it watches, with every condition on and thresholds no process reaches, so that no snapshot is
 * taken and the figure is the watching alone.
 *
 *   osmosis-bench-watch-cost --osmosis build/osmosis [--seconds 60]
 *
 * Rows, side by side in one run:
 *   idle floor       nothing watched: the machine's steal and load over the same time
 *   one process      a victim of 9 threads (8 idle on a condition variable), every condition
 *   machine (PIDs)   every process of the machine (PIDs from /proc, kernel threads aside)
 *   --cgroup /       every process of the machine, the cgroup tree walked at each tick
 * The figure is the watcher's utime+stime plus its reaped children's (the --check shell), over
 * the wall time, in % of one CPU. The bounds: 1% for one process, 3% for the machine.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* utime+stime+cutime+cstime of pid, in seconds */
static double cpu_s(pid_t pid)
{
	char path[64], buf[4096];
	unsigned long long v[60] = {0};
	FILE *f;
	char *p;
	int field = 3;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	p = strrchr(buf, ')');
	if (!p)
		return -1;
	p += 2;
	while (*p && field < 55) {
		char *end;
		field++;
		while (*p == ' ')
			p++;
		v[field] = strtoull(p, &end, 10);
		if (end == p)
			v[field] = 0, end = strchr(p, ' ') ? strchr(p, ' ') : p + strlen(p);
		p = end;
	}
	return (double)(v[14] + v[15] + v[16] + v[17]) / (double)sysconf(_SC_CLK_TCK);
}

/* total and steal ticks from /proc/stat's cpu line */
static void stat_ticks(unsigned long long *total, unsigned long long *steal)
{
	unsigned long long t[10] = {0};
	FILE *f = fopen("/proc/stat", "r");
	*total = *steal = 0;
	if (!f)
		return;
	if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &t[0], &t[1], &t[2], &t[3],
		   &t[4], &t[5], &t[6], &t[7]) == 8) {
		for (int i = 0; i < 8; i++)
			*total += t[i];
		*steal = t[7];
	}
	fclose(f);
}

static double loadavg(void)
{
	double l = 0;
	FILE *f = fopen("/proc/loadavg", "r");
	if (f) {
		if (fscanf(f, "%lf", &l) != 1)
			l = 0;
		fclose(f);
	}
	return l;
}

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;

static void *idle(void *a)
{
	(void)a;
	pthread_mutex_lock(&lock);
	for (;;)
		pthread_cond_wait(&cv, &lock);
	return NULL;
}

static pid_t start_victim(void)
{
	pid_t pid = fork();
	if (pid == 0) {
		pthread_t t;
		for (int i = 0; i < 8; i++)
			pthread_create(&t, NULL, idle, NULL);
		for (;;)
			pause();
	}
	return pid;
}

static int all_pids(pid_t *out, int max)
{
	DIR *d = opendir("/proc");
	struct dirent *de;
	int n = 0;

	while (d && (de = readdir(d)) && n < max) {
		char path[300], buf[512];
		FILE *f;
		pid_t pid;
		if (!isdigit((unsigned char)de->d_name[0]))
			continue;
		pid = atoi(de->d_name);
		if (pid == getpid())
			continue;
		/* kernel threads have an empty cmdline */
		snprintf(path, sizeof(path), "/proc/%d/cmdline", pid);
		f = fopen(path, "r");
		if (!f)
			continue;
		size_t len = fread(buf, 1, sizeof(buf), f);
		fclose(f);
		if (len)
			out[n++] = pid;
	}
	if (d)
		closedir(d);
	return n;
}

struct row {
	const char *what;
	int targets;
	double seconds, cpu_pct, steal_pct, load;
	int rc;
};

static void run(const char *osmosis, pid_t *pids, int n, double seconds, struct row *r)
{
	char tmp[] = "/tmp/osmosis-bench-watch-XXXXXX", base[64], **argv;
	unsigned long long t0, s0, t1, s1;
	double w0, c = 0;
	int argc = 0, status = 0;
	pid_t w;

	if (!mkdtemp(tmp)) {
		perror("mkdtemp");
		exit(1);
	}
	snprintf(base, sizeof(base), "%s/w", tmp);
	argv = calloc((size_t)(n > 0 ? n : 0) + 64, sizeof(*argv));
	argv[argc++] = (char *)osmosis;
	argv[argc++] = "watch";
	if (n) {
		const char *conds[] = {
		    "--cpu",	 "400:10",  "--thread-cpu", "99:10",	"--memory",    "1000G",
		    "--threads", "1000000", "--fds",	    "10000000", "--hang",      "10",
		    "--check",	 "true",    "--every",	    "1000000",	"--on-signal", "-n",
		    "0",	 "-q",	    "--dry-run",    "-o",	base};
		for (size_t i = 0; i < sizeof(conds) / sizeof(conds[0]); i++)
			argv[argc++] = (char *)conds[i];
		if (!pids) {
			argv[argc++] = "--cgroup";
			argv[argc++] = "/";
		}
		for (int i = 0; pids && i < n; i++) {
			char *s = malloc(16);
			snprintf(s, 16, "%d", pids[i]);
			argv[argc++] = s;
		}
	}
	argv[argc] = NULL;
	stat_ticks(&t0, &s0);
	r->load = loadavg();
	w0 = now_s();
	if (!n) {
		sleep((unsigned)seconds);
		w = 0;
	} else {
		w = fork();
		if (w == 0) {
			execv(osmosis, argv);
			_exit(127);
		}
		while (now_s() - w0 < seconds) {
			struct timespec ts = {0, 200000000};
			nanosleep(&ts, NULL);
			if (waitpid(w, &status, WNOHANG) == w) {
				w = 0;
				break;
			}
			c = cpu_s(w);
		}
	}
	r->seconds = now_s() - w0;
	stat_ticks(&t1, &s1);
	r->rc = 0;
	if (w > 0) {
		c = cpu_s(w);
		kill(w, SIGTERM);
		waitpid(w, &status, 0);
		r->rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
	} else if (n) {
		r->rc = -1; /* ended early */
	}
	r->cpu_pct = n ? 100.0 * c / r->seconds : 0;
	r->steal_pct = t1 > t0 ? 100.0 * (double)(s1 - s0) / (double)(t1 - t0) : 0;
	r->targets = n;
	if (n) {
		char cmd[200];
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp);
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s\n", tmp);
	} else {
		rmdir(tmp);
	}
}

int main(int argc, char **argv)
{
	const char *osmosis = "build/osmosis";
	double seconds = 60;
	static pid_t pids[1024];
	struct row rows[4] = {{.what = "idle floor"},
			      {.what = "one process"},
			      {.what = "machine (PIDs)"},
			      {.what = "--cgroup /"}};
	struct utsname u;
	pid_t victim;
	int n;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--osmosis") && i + 1 < argc)
			osmosis = argv[++i];
		else if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
			seconds = atof(argv[++i]);
		else {
			fprintf(stderr, "usage: %s [--osmosis PATH] [--seconds N]\n", argv[0]);
			return 2;
		}
	}
	if (seconds < 1)
		seconds = 1;
	uname(&u);
	victim = start_victim();
	run(osmosis, NULL, 0, seconds, &rows[0]);
	run(osmosis, &victim, 1, seconds, &rows[1]);
	n = all_pids(pids, 1024);
	run(osmosis, pids, n, seconds, &rows[2]);
	run(osmosis, NULL, -1, seconds, &rows[3]); /* every cgroup, found anew each tick */
	kill(victim, SIGKILL);
	waitpid(victim, NULL, 0);

	printf("osmosis watch: CPU of the watcher with every condition on (nothing fires)\n");
	printf("kernel %s, %ld CPUs; conditions: --cpu --thread-cpu --memory --threads --fds "
	       "--hang 10 --check true (every 5 s) --every --on-signal; tick 1 s\n",
	       u.release, sysconf(_SC_NPROCESSORS_ONLN));
	printf("%-14s %8s %8s %10s %8s %7s %s\n", "ROW", "TARGETS", "SECONDS", "CPU %/1CPU",
	       "STEAL %", "LOAD1", "BOUND");
	for (int i = 0; i < 4; i++)
		printf("%-14s %8d %8.1f %10.3f %8.1f %7.2f %s%s\n", rows[i].what, rows[i].targets,
		       rows[i].seconds, rows[i].cpu_pct, rows[i].steal_pct, rows[i].load,
		       i == 0	? "-"
		       : i == 1 ? (rows[i].cpu_pct <= 1.0 ? "<= 1%: ok" : "> 1%: OVER")
				: (rows[i].cpu_pct <= 3.0 ? "<= 3%: ok" : "> 3%: OVER"),
		       rows[i].rc && i ? " (watch ended early)" : "");
	return 0;
}
