/* SPDX-License-Identifier: MIT */
/*
 * The write tracker of a target: a userfaultfd with asynchronous write-protect, created inside
 * the target (a userfaultfd acts on the memory of the process that created it) by an injected
 * userfaultfd() in a thread inject_in_safe_thread chose, taken with pidfd_getfd() and the
 * target's copy closed before anything is registered, so the target's descriptor table is as
 * before and the only reference is osmosis's. Closing it (or osmosis dying) unregisters every
 * range and clears every protection: the kernel's userfaultfd release does exactly that.
 * Pre-copy (precopy.c) and the tracking of shared objects (shared.c) register mappings with it;
 * each target has at most one (t->uffd).
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "base/fault.h"
#include "base/log.h"
#include "capture/capture.h"
#include "capture/uffd.h"
#include "inject/inject.h"

bool tracker_supported(const char **why)
{
	static int probed = -1;
	static const char *reason;

	if (probed < 0) {
		struct uffdio_api api = {.api = UFFD_API,
					 .features =
					     UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED};
		int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | UFFD_USER_MODE_ONLY);
		probed = 0;
		if (fd < 0) {
			reason = "this kernel has no userfaultfd";
		} else if (ioctl(fd, UFFDIO_API, &api) < 0) {
			reason =
			    "this kernel lacks asynchronous userfaultfd write-protect (Linux 6.7)";
		} else {
			struct page_region r;
			struct pm_scan_arg a = {.size = sizeof(a),
						.start = (uintptr_t)&r & ~4095ul,
						.end = ((uintptr_t)&r & ~4095ul) + 4096,
						.vec = (uintptr_t)&r,
						.vec_len = 1,
						.return_mask = PAGE_IS_PRESENT};
			int pm = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
			if (pm < 0 || ioctl(pm, PAGEMAP_SCAN, &a) < 0)
				reason = "this kernel lacks the PAGEMAP_SCAN ioctl (Linux 6.7)";
			else
				probed = 1;
			if (pm >= 0)
				close(pm);
		}
		if (fd >= 0)
			close(fd);
	}
	if (why)
		*why = reason;
	return probed == 1;
}

/* Create the userfaultfd inside the target and take it (in a thread inject_in_safe_thread
 * chose). */
static int run_take_uffd(struct inject *in, void *ctx)
{
	struct target *t = ctx;
	uint64_t args[6] = {O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY};
	int64_t fd = -1, closed;
	int r = inject_syscall(in, SYS_userfaultfd, args, &fd);

	if (r == 0 && fd < 0)
		r = (int)fd;
	if (r == 0) {
		t->uffd = (int)syscall(SYS_pidfd_getfd, t->ref.pidfd, (int)fd, 0);
		if (t->uffd < 0)
			r = -errno;
		args[0] = (uint64_t)fd;
		/* Not closed: the target keeps a descriptor it did not have: do not use ours. */
		if (inject_syscall(in, SYS_close, args, &closed) < 0 || closed < 0)
			r = r ? r : -EIO;
	}
	return r;
}

static int take_uffd(struct target *t)
{
	const char *why = NULL;
	int r = inject_in_safe_thread(t, run_take_uffd, t, NULL, &why);

	if (r < 0 && t->uffd >= 0) {
		close(t->uffd);
		t->uffd = -1;
	}
	if (r == -EAGAIN)
		log_debug("pid %d: pre-copy cannot start: %s", t->proc->pid, why);
	return r;
}

int tracker_open(struct target *t)
{
	struct uffdio_api api = {.api = UFFD_API,
				 .features = UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED};
	int r;

	if (t->uffd >= 0)
		return 0;
	if (t->pagemap_fd < 0 || t->ref.memfd < 0 || t->ref.pidfd < 0)
		return -EACCES;
	r = take_uffd(t);
	if (r < 0)
		return r;
	r = fault_point("uffd-taken");
	if (r < 0)
		return r;
	if (ioctl(t->uffd, UFFDIO_API, &api) < 0)
		return -errno;
	return 0;
}

void tracker_close(struct target *t)
{
	if (t->uffd >= 0)
		close(t->uffd);
	t->uffd = -1;
}
