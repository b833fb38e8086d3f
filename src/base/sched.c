/* SPDX-License-Identifier: MIT */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <linux/capability.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/eventfd.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "base/log.h"
#include "base/sched.h"
#include "base/timeutil.h"
#include "base/util.h"

static bool may_take_policy_back(void)
{
	struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3};
	struct __user_cap_data_struct d[2] = {{0}};
	struct rlimit rl;
	int nice;

	errno = 0;
	nice = getpriority(PRIO_PROCESS, 0);
	if (errno == 0 && getrlimit(RLIMIT_NICE, &rl) == 0 &&
	    (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= (rlim_t)(20 - nice)))
		return true;
	if (syscall(SYS_capget, &h, d) < 0)
		return false;
	return d[CAP_SYS_NICE / 32].effective & (1u << (CAP_SYS_NICE % 32));
}

#define WINDOW_NS (100ull * 1000000ull)

/* /proc/self/task/TID/name into buf (NUL-terminated); false if it cannot be read. */
static bool read_task_file(pid_t tid, const char *name, char *buf, size_t len)
{
	char path[64];
	int fd;
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/task/%d/%s", (int)tid, name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	n = fd < 0 ? -1 : read(fd, buf, len - 1);
	if (fd >= 0)
		close(fd);
	if (n <= 0)
		return false;
	buf[n] = 0;
	return true;
}

/* Nanoseconds thread tid of osmosis has run on a CPU and waited on a run queue; false if the
 * kernel does not say. */
static bool run_queue_ns(pid_t tid, uint64_t *run, uint64_t *wait)
{
	char buf[128];

	return read_task_file(tid, "schedstat", buf, sizeof(buf)) &&
	       sscanf(buf, "%" SCNu64 " %" SCNu64, run, wait) == 2;
}

/* Whether thread tid of osmosis is runnable (R: running or waiting for a CPU). */
static bool runnable(pid_t tid)
{
	char buf[512];
	const char *p;

	if (!read_task_file(tid, "stat", buf, sizeof(buf)))
		return false;
	p = strrchr(buf, ')');
	return p && p[1] == ' ' && p[2] == 'R';
}

/* Brings the thread aside back (its policy, nice 10) when it waited for a CPU more than half
 * of a window. The thread aside cannot notice it itself: at SCHED_IDLE on CPUs kept busy, it
 * ran a few microseconds a second and took 3-5 s to reach its first check (a 16 MiB core beside
 * eight busy writers took 6 s to write instead of 0.2 s). The watcher sleeps at the normal
 * policy, so it runs when its window ends. The kernel adds to a thread's wait when it gets a
 * CPU: a thread that waited all the window and still waits shows none, so a window in which
 * it wanted a CPU (runnable at its end) and ran not at all counts as waited whole. */
static void *aside_watcher(void *arg)
{
	struct sched_aside *a = arg;
	struct pollfd pfd = {.fd = a->stop_fd, .events = POLLIN};
	uint64_t waited = a->waited_ns, ran = a->ran_ns, start = now_ns(), w = 0, r = 0, now;

	for (;;) {
		int n = poll(&pfd, 1, (int)(WINDOW_NS / 1000000ull));

		if (n > 0 || (n < 0 && errno != EINTR))
			return NULL;
		now = now_ns();
		if (!run_queue_ns(a->tid, &r, &w))
			w = waited +
			    (now - start); /* cannot tell: as if it had waited throughout */
		else if (r == ran && runnable(a->tid))
			w = MAX(w, waited + (now - start));
		if ((w - waited) * 2 > now - start)
			break;
		start = now;
		waited = w;
		ran = r;
	}
	log_debug("waited for a CPU %.0f ms of the last %.0f ms at SCHED_IDLE: back, at nice 10",
		  (double)(w - waited) / 1e6, (double)(now - start) / 1e6);
	if (sched_setscheduler(a->tid, a->policy, &a->sp) < 0)
		log_warn("cannot take scheduling policy %d back: %m", a->policy);
	errno = 0;
	int nice = getpriority(PRIO_PROCESS, (id_t)a->tid);
	if (errno == 0)
		setpriority(PRIO_PROCESS, (id_t)a->tid, MAX(nice, 10));
	atomic_store(&a->starved, true);
	return NULL;
}

void sched_step_aside(struct sched_aside *a, bool may_stay)
{
	struct sched_param idle = {0};

	if (a->idle || atomic_load(&a->starved))
		return;
	a->tid = gettid();
	a->policy = sched_getscheduler(0);
	errno = 0;
	a->nice = getpriority(PRIO_PROCESS, 0);
	if (errno)
		a->policy = -1;
	/* The watcher is made before the step aside, so that it does not inherit SCHED_IDLE. */
	if (a->policy >= 0 && sched_getparam(0, &a->sp) == 0 && may_take_policy_back() &&
	    run_queue_ns(a->tid, &a->ran_ns, &a->waited_ns) &&
	    (a->stop_fd = eventfd(0, EFD_CLOEXEC)) >= 0) {
		/* It takes no signals: signals to osmosis must reach the writing thread. */
		sigset_t all, old;
		int made;

		sigfillset(&all);
		pthread_sigmask(SIG_BLOCK, &all, &old);
		made = pthread_create(&a->watcher, NULL, aside_watcher, a);
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		if (made == 0) {
			if (sched_setscheduler(0, SCHED_IDLE, &idle) == 0) {
				a->idle = true;
				return;
			}
			eventfd_write(a->stop_fd, 1);
			pthread_join(a->watcher, NULL);
		}
		close(a->stop_fd);
	}
	a->stop_fd = -1;
	if (may_stay)
		setpriority(PRIO_PROCESS, 0, MAX(getpriority(PRIO_PROCESS, 0), 10));
}

void sched_step_back(struct sched_aside *a)
{
	if (!a->idle)
		return;
	eventfd_write(a->stop_fd, 1);
	pthread_join(a->watcher, NULL);
	close(a->stop_fd);
	a->stop_fd = -1;
	a->idle = false;
	if (atomic_load(&a->starved))
		setpriority(PRIO_PROCESS, 0, a->nice); /* the watcher's nice 10 */
	else if (sched_setscheduler(0, a->policy, &a->sp) < 0)
		log_warn("cannot take scheduling policy %d back: %m", a->policy);
}

void sched_freeze_raise(struct sched_freeze *f)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *de;

	f->n = 0;
	while (d && (de = readdir(d)) && f->n < SCHED_FREEZE_MAX) {
		pid_t tid = (pid_t)strtol(de->d_name, NULL, 10);
		int nice;

		if (tid <= 0)
			continue;
		errno = 0;
		nice = getpriority(PRIO_PROCESS, (id_t)tid);
		if (errno || nice <= 0)
			continue;
		if (setpriority(PRIO_PROCESS, (id_t)tid, 0) < 0) {
			log_debug("freezing at nice %d: cannot take nice 0 (%m)", nice);
			continue;
		}
		f->v[f->n].tid = tid;
		f->v[f->n].nice = nice;
		f->n++;
	}
	if (d)
		closedir(d);
	sched_hold_begin(&f->rt);
}

void sched_freeze_lower(struct sched_freeze *f)
{
	sched_hold_end(&f->rt);
	for (size_t i = 0; i < f->n; i++)
		setpriority(PRIO_PROCESS, (id_t)f->v[i].tid, f->v[i].nice);
	f->n = 0;
}

void sched_hold_begin(struct sched_hold *h)
{
	static _Atomic bool refused; /* not permitted once: not tried again (any thread) */
	struct sched_param fifo = {.sched_priority = sched_get_priority_min(SCHED_FIFO)};

	h->held = false;
	if (refused)
		return;
	h->policy = sched_getscheduler(0);
	if (h->policy < 0 || h->policy == SCHED_FIFO || h->policy == SCHED_RR ||
	    sched_getparam(0, &h->sp) < 0)
		return;
	if (sched_setscheduler(0, SCHED_FIFO, &fifo) < 0) {
		if (errno == EPERM)
			refused = true;
		return;
	}
	h->held = true;
}

void sched_hold_end(struct sched_hold *h)
{
	if (h->held && sched_setscheduler(0, h->policy, &h->sp) < 0)
		log_warn("cannot take scheduling policy %d back: %m", h->policy);
	h->held = false;
}
