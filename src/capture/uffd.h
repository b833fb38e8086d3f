/* SPDX-License-Identifier: MIT */
/*
 * Kernel interfaces pre-copy needs that Debian 12's headers (linux-libc-dev 6.1) lack: async
 * write-protect userfaultfd (Linux 6.7) and the PAGEMAP_SCAN ioctl (Linux 6.7). Values from the
 * kernel's uapi (linux/userfaultfd.h, linux/fs.h); whether the running kernel has them is probed
 * at run time (precopy_supported).
 */
#pragma once

#include <linux/userfaultfd.h>
#include <stdint.h>
#include <sys/ioctl.h>

#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif
#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13)
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif

#include "base/pagemap.h"
