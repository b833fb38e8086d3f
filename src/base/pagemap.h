/* SPDX-License-Identifier: MIT */
/*
 * The PAGEMAP_SCAN ioctl (Linux 6.7), which Debian 12's headers (linux-libc-dev 6.1) lack. Values
 * from the kernel's uapi (linux/fs.h); whether the running kernel has it is found at run time.
 */
#pragma once

#include <stdint.h>
#include <sys/ioctl.h>

#ifndef PAGEMAP_SCAN
#define PAGE_IS_WPALLOWED (1 << 0)
#define PAGE_IS_WRITTEN	  (1 << 1)
#define PAGE_IS_FILE	  (1 << 2)
#define PAGE_IS_PRESENT	  (1 << 3)
#define PAGE_IS_SWAPPED	  (1 << 4)
#define PAGE_IS_PFNZERO	  (1 << 5)
#define PAGE_IS_HUGE	  (1 << 6)

struct page_region {
	uint64_t start, end, categories;
};

#define PM_SCAN_WP_MATCHING   (1 << 0)
#define PM_SCAN_CHECK_WPASYNC (1 << 1)

struct pm_scan_arg {
	uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages;
	uint64_t category_inverted, category_mask, category_anyof_mask, return_mask;
};

#define PAGEMAP_SCAN _IOWR('f', 16, struct pm_scan_arg)
#endif
