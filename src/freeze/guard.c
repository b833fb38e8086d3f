/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/log.h"
#include "base/timeutil.h"
#include "freeze/guard.h"

#define WATCHDOG_GRACE_NS (3ull * 1000000000ull)

#define DEFAULT_HOLD_NS (10ull * 1000000000ull)

static volatile sig_atomic_t got_signal;
static uint64_t hold_limit_ns = DEFAULT_HOLD_NS;
static atomic_bool watchdog_fired;
static pthread_t main_thread;

static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	pthread_t thread;
	bool running, armed, started;
	uint64_t deadline; /* CLOCK_MONOTONIC ns */
} wd = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void on_signal(int sig)
{
	if (sig != SIGALRM && !got_signal)
		got_signal = sig;
}

int guard_install(void)
{
	static const int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGALRM};
	struct sigaction sa;

	main_thread = pthread_self();
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal; /* no SA_RESTART: blocking waits return EINTR */
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		if (sigaction(sigs[i], &sa, NULL) < 0)
			return -errno;
	signal(SIGPIPE, SIG_IGN);
	return 0;
}

int guard_check(void)
{
	if (got_signal)
		return -EINTR;
	if (atomic_load(&watchdog_fired))
		return -ETIMEDOUT;
	return 0;
}

int guard_signal(void)
{
	return got_signal;
}

static void *watchdog_main(void *arg)
{
	(void)arg;
	/* Above the freeze's real-time threads (base/sched.h), so that it fires on one CPU too;
	 * it sleeps but for a few microseconds. Left as it is where not permitted. */
	struct sched_param sp = {.sched_priority = sched_get_priority_min(SCHED_FIFO) + 1};
	(void)pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp);
	pthread_mutex_lock(&wd.lock);
	wd.started = true; /* guard_watchdog_arm waits for this */
	pthread_cond_broadcast(&wd.cond);
	while (wd.armed) {
		uint64_t now = now_ns();
		struct timespec ts;
		uint64_t until;

		if (now >= wd.deadline + WATCHDOG_GRACE_NS) {
			/* The freezing thread did not thaw in time: let the kernel do it. */
			static const char msg[] =
			    "osmosis: error: the freeze did not end within the "
			    "--max-pause grace period; killing osmosis so that "
			    "the kernel resumes the targets\n";
			(void)!write(STDERR_FILENO, msg, sizeof(msg) - 1);
			kill(getpid(), SIGKILL);
		}
		if (now >= wd.deadline) {
			atomic_store(&watchdog_fired, true);
			pthread_kill(main_thread, SIGALRM); /* break a blocking wait */
			until = now + 100000000ull;	    /* and again every 100 ms */
		} else {
			until = wd.deadline;
		}
		/* The condition variable uses CLOCK_MONOTONIC (set in guard_watchdog_arm). */
		ts.tv_sec = (time_t)(until / 1000000000ull);
		ts.tv_nsec = (long)(until % 1000000000ull);
		pthread_cond_timedwait(&wd.cond, &wd.lock, &ts);
	}
	pthread_mutex_unlock(&wd.lock);
	return NULL;
}

int guard_watchdog_arm(uint64_t max_pause_ns)
{
	static bool cond_ready;
	int r;

	pthread_mutex_lock(&wd.lock);
	if (!cond_ready) {
		pthread_condattr_t ca;
		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&wd.cond, &ca);
		pthread_condattr_destroy(&ca);
		cond_ready = true;
	}
	atomic_store(&watchdog_fired, false);
	wd.deadline = now_ns() + max_pause_ns;
	wd.armed = true;
	pthread_mutex_unlock(&wd.lock);
	if (wd.running)
		return 0;
	/* The thread starts with every signal blocked, so signals to osmosis reach the freezing
	 * thread and interrupt its waits. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	r = pthread_create(&wd.thread, NULL, watchdog_main, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r) {
		wd.armed = false;
		return -r;
	}
	wd.running = true;
	/* Watching from the moment this returns, and its start (which may allocate: a thread's
	 * first steps) done before any freeze. */
	pthread_mutex_lock(&wd.lock);
	while (!wd.started)
		pthread_cond_wait(&wd.cond, &wd.lock);
	pthread_mutex_unlock(&wd.lock);
	return 0;
}

void guard_watchdog_disarm(void)
{
	if (!wd.running)
		return;
	pthread_mutex_lock(&wd.lock);
	wd.armed = false;
	pthread_cond_signal(&wd.cond);
	pthread_mutex_unlock(&wd.lock);
	pthread_join(wd.thread, NULL);
	wd.running = false;
	wd.started = false;
}

void guard_set_max_pause(uint64_t max_pause_ns)
{
	hold_limit_ns = max_pause_ns;
}

int guard_hold_begin(bool *ret_armed)
{
	bool armed;
	int r;

	*ret_armed = false;
	pthread_mutex_lock(&wd.lock);
	armed = wd.armed;
	pthread_mutex_unlock(&wd.lock);
	if (armed)
		return guard_check();
	r = guard_watchdog_arm(hold_limit_ns);
	if (r < 0)
		return r;
	*ret_armed = true;
	return 0;
}

void guard_hold_end(bool armed)
{
	if (armed)
		guard_watchdog_disarm();
}
