/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/fs.h"
#include "base/util.h"
#include "proc/procfs.h"
#include "proc/process.h"

static uint64_t ticks_to_us(uint64_t ticks)
{
	static long hz;
	if (!hz)
		hz = sysconf(_SC_CLK_TCK);
	return hz > 0 ? ticks * 1000000ull / (uint64_t)hz : 0;
}

int proc_load_identity(const struct pidref *ref, struct osm_process *p)
{
	struct proc_stat st;
	struct proc_ids ids;
	size_t len;
	int r;

	p->pid = ref->pid;
	r = proc_read_stat(ref->procfd, "stat", &st);
	if (r < 0)
		return r;
	r = proc_read_status_ids(ref->procfd, &ids);
	if (r < 0)
		return r;
	memcpy(p->comm, st.comm, sizeof(p->comm));
	p->state = st.state;
	p->ppid = st.ppid;
	p->pgid = st.pgrp;
	p->sid = st.session;
	p->starttime = st.starttime;
	p->uid = ids.ruid;
	p->euid = ids.euid;
	p->gid = ids.rgid;
	p->egid = ids.egid;
	p->dumpable = ids.euid == 0 || proc_is_dumpable(ref->procfd, ids.euid);

	free(p->cmdline);
	p->cmdline = NULL;
	if (proc_read_cmdline(ref->procfd, &p->cmdline) < 0)
		p->cmdline = strdup("");
	free(p->exe);
	p->exe = NULL;
	if (proc_read_exe(ref->procfd, &p->exe) < 0)
		p->exe = strdup("");
	if (!p->cmdline || !p->exe)
		return -ENOMEM;
	free(p->auxv);
	p->auxv = NULL;
	p->auxv_len = 0;
	if (read_file_at(ref->procfd, "auxv", (char **)&p->auxv, &len) == 0)
		p->auxv_len = len;
	if (proc_read_coredump_filter(ref->procfd, &p->coredump_filter) < 0)
		p->coredump_filter = 0x33;
	return 0;
}

int proc_load_threads(const struct pidref *ref, struct osm_process *p)
{
	_cleanup_free_ pid_t *tids = NULL;
	size_t n = 0;
	int r;

	r = proc_list_tasks(ref->procfd, &tids, &n);
	if (r < 0)
		return r;
	for (size_t i = 0; i < n; i++) {
		struct osm_thread *t = process_find_thread(p, tids[i]);
		char path[64];
		struct proc_stat st;

		snprintf(path, sizeof(path), "task/%d/stat", tids[i]);
		if (proc_read_stat(ref->procfd, path, &st) < 0)
			continue; /* exited meanwhile */
		if (!t && !(t = process_add_thread(p, tids[i])))
			return -ENOMEM;
		memcpy(t->name, st.comm, sizeof(t->name));
		t->state = st.state;
		t->utime_us = ticks_to_us(st.utime);
		t->stime_us = ticks_to_us(st.stime);
	}
	return 0;
}
