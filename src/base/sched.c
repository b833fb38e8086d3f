/* SPDX-License-Identifier: MIT */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <linux/capability.h>
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

/* Nanoseconds the calling thread has waited on a run queue; false if the kernel does not say. */
static bool run_queue_wait_ns(uint64_t *ret)
{
	char buf[128];
	uint64_t run = 0;
	int fd = open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC);
	ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof(buf) - 1);

	if (fd >= 0)
		close(fd);
	if (n <= 0)
		return false;
	buf[n] = 0;
	return sscanf(buf, "%" SCNu64 " %" SCNu64, &run, ret) == 2;
}

void sched_step_aside(struct sched_aside *a, bool may_stay)
{
	struct sched_param idle = {0};

	if (a->idle || a->starved)
		return;
	a->policy = sched_getscheduler(0);
	if (a->policy >= 0 && sched_getparam(0, &a->sp) == 0 && may_take_policy_back() &&
	    run_queue_wait_ns(&a->waited_ns) && sched_setscheduler(0, SCHED_IDLE, &idle) == 0) {
		a->idle = true;
		a->window_ns = now_ns();
		return;
	}
	if (may_stay)
		setpriority(PRIO_PROCESS, 0, MAX(getpriority(PRIO_PROCESS, 0), 10));
}

void sched_step_back(struct sched_aside *a)
{
	if (a->idle && sched_setscheduler(0, a->policy, &a->sp) < 0)
		log_warn("cannot take scheduling policy %d back: %m", a->policy);
	a->idle = false;
}

void sched_aside_check(struct sched_aside *a)
{
	uint64_t now, waited = a->waited_ns;

	if (!a->idle)
		return;
	now = now_ns();
	if (now - a->window_ns < WINDOW_NS)
		return;
	if (!run_queue_wait_ns(&waited) || (waited - a->waited_ns) * 2 > now - a->window_ns) {
		log_debug("waited for a CPU %.0f ms of the last %.0f ms at SCHED_IDLE: back, at "
			  "nice 10",
			  (double)(waited - a->waited_ns) / 1e6,
			  (double)(now - a->window_ns) / 1e6);
		sched_step_back(a);
		setpriority(PRIO_PROCESS, 0, MAX(getpriority(PRIO_PROCESS, 0), 10));
		a->starved = true;
		return;
	}
	a->window_ns = now;
	a->waited_ns = waited;
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
