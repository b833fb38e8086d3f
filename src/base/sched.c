/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <linux/capability.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "base/log.h"
#include "base/sched.h"
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

void sched_step_aside(struct sched_aside *a, bool may_stay)
{
	struct sched_param idle = {0};

	if (a->idle)
		return;
	a->policy = sched_getscheduler(0);
	if (a->policy >= 0 && sched_getparam(0, &a->sp) == 0 && may_take_policy_back() &&
	    sched_setscheduler(0, SCHED_IDLE, &idle) == 0) {
		a->idle = true;
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
