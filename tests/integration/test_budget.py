# SPDX-License-Identifier: MIT
"""Snapshots within a budget: the timeline of a snapshot, compressed cores (read directly by
osmosis analyze, made plain by osmosis core, opened by gdb), what a truncated or full-disk
compressed write leaves, and osmosis's memory bounded by --max-memory."""

import json
import os
import struct
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
from osmtest import (VICTIM, Core, TempDir, Victim, check, gdb_backtraces, main,  # noqa: E402
                     manifest, one_line_error, osmosis, snap)

PHASES = ("sample", "state", "freeze", "copy", "resume", "write-out", "release", "commit")


def test_timeline_in_the_manifest_and_in_show():
    with Victim("writer", 16384) as v, TempDir() as tmp:
        out = os.path.join(tmp, "s")
        snap("--method", "precopy", "-o", out, v.pid)
        tl = manifest(out)["timeline"]
        check(tl["clock"] == "CLOCK_MONOTONIC" and tl["start_ns"] > 0, tl)
        names = [p["name"] for p in tl["phases"]]
        for name in PHASES + ("register", "reserve", "rounds", "unregister"):
            check(name in names, "phase %s missing from %s" % (name, names))
        # in order of start, none ending before it starts, the pause inside freeze..resume
        starts = [p["start_us"] for p in tl["phases"]]
        check(starts == sorted(starts), "phases out of order: %s" % tl["phases"])
        by = {p["name"]: p for p in tl["phases"]}
        check(by["freeze"]["start_us"] <= tl["pause_start_us"] <= tl["pause_end_us"]
              <= by["resume"]["start_us"] + by["resume"]["duration_us"] + 1, tl)
        check(tl["pause_end_us"] - tl["pause_start_us"] == manifest(out)["pause_us"] or
              abs(tl["pause_end_us"] - tl["pause_start_us"] - manifest(out)["pause_us"]) <= 1,
              "the timeline's pause differs from pause_us")
        check("duration_us" not in by["commit"], "the commit cannot hold its own end")
        check(tl["peak_rss"] > 0 and tl["peak_buffers"] > 0 and tl["max_memory"] > 0, tl)
        r = osmosis("show", out)
        check(r.returncode == 0, r.stderr)
        check("timeline" in r.stdout and "rounds (pid %d)" % v.pid in r.stdout and
              "peak memory of osmosis" in r.stdout, r.stdout)
        # the clock is the one a process beside it reads: the pause lies in the past, close by
        now = int(open("/proc/uptime").read().split()[0].split(".")[0])
        check(tl["start_ns"] // 10**9 <= now + 1, "start_ns is not CLOCK_MONOTONIC")
        v.verify()


def compressed_snapshot(v, tmp, *extra):
    out = os.path.join(tmp, "s")
    snap("--compress", *extra, "-o", out, v.pid)
    m = manifest(out)
    (p,) = [p for p in m["processes"] if p["pid"] == v.pid]
    check(p["core"] == "core.%d.zst" % v.pid, p["core"])
    check(not os.path.exists(os.path.join(out, "core.%d" % v.pid)), "a plain core too")
    return out, os.path.join(out, p["core"])


def test_compressed_core_reads_like_the_plain_one():
    with Victim("basic") as v, TempDir() as tmp:
        out, zst = compressed_snapshot(v, tmp)
        plain = os.path.join(tmp, "core.plain")
        r = osmosis("core", out, v.pid, "-o", plain)
        check(r.returncode == 0, r.stderr)
        # zstd itself reads it (frames plus a skippable index) and gives the same bytes
        z = subprocess.run(["zstd", "-d", "-c", zst], capture_output=True, timeout=120)
        check(z.returncode == 0, z.stderr)
        with open(plain, "rb") as f:
            check(f.read() == z.stdout, "osmosis core and zstd -d disagree")
        st = os.stat(plain)
        check(st.st_blocks * 512 < st.st_size, "zero pages are not holes in the plain core")
        check(os.path.getsize(zst) * 3 < st.st_size, "compressed %d of %d" %
              (os.path.getsize(zst), st.st_size))
        # gdb opens the plain core
        ours, text = gdb_backtraces(VICTIM, plain)
        check(set(ours) == set(v.tasks()), "gdb threads %s, victim %s" % (sorted(ours), v.tasks()))
        for fn in ("victim_blocked_on_mutex", "victim_blocked_in_read"):
            check(any(fn in frames for frames in ours.values()), "%s not in gdb's stacks" % fn)
        # the analysis reads the compressed core directly: the same stacks as from the plain
        r = osmosis("analyze", "--json", out)
        check(r.returncode in (0, 1) and "Traceback" not in r.stderr, r.stderr)
        rep = json.loads(r.stdout)
        (p,) = [p for p in rep["processes"] if p["pid"] == v.pid]
        funcs = {f["function"] for t in p["threads"] for f in t["frames"] if f.get("function")}
        for fn in ("victim_blocked_on_mutex", "victim_blocked_in_read",
                   "victim_blocked_in_sleep", "victim_blocked_on_condvar"):
            check(fn in funcs, "%s not unwound from the compressed core: %s" % (fn, funcs))
        check(not [f for f in rep["findings"] if f["pattern"] == "truncated-dump"],
              "a whole compressed core reported as damaged")
        # osmosis core refuses to overwrite, and says why
        line = one_line_error(osmosis("core", out, v.pid, "-o", plain))
        check("exists" in line, line)
        line = one_line_error(osmosis("core", out, "1", "-o", os.path.join(tmp, "x")))
        check("no core of pid 1" in line, line)
        v.verify()


def test_truncated_zst_is_reported_and_the_rest_analyzed():
    with Victim("basic") as a, Victim("basic") as b, TempDir() as tmp:
        out = os.path.join(tmp, "s")
        snap("--compress", "-o", out, a.pid, b.pid)
        za, zb = (os.path.join(out, "core.%d.zst" % p) for p in (a.pid, b.pid))
        os.truncate(za, os.path.getsize(za) * 2 // 3)
        r = osmosis("analyze", "--json", out)
        check(r.returncode in (0, 1) and "Traceback" not in r.stderr, r.stderr)
        rep = json.loads(r.stdout)
        lines = " ".join(l for f in rep["findings"] if f["pattern"] == "truncated-dump"
                         for l in f["evidence"]["lines"])
        check("core.%d.zst" % a.pid in lines and "no index" in lines, lines)
        check("core.%d.zst" % b.pid not in lines, "the whole core reported: %s" % lines)
        # both processes analyzed: the truncated one keeps its first frames
        for pid in (a.pid, b.pid):
            (p,) = [p for p in rep["processes"] if p["pid"] == pid]
            check(all(t["frames"] for t in p["threads"]), "pid %d: a thread without frames" % pid)
        # osmosis core writes what there is and says it is incomplete
        r = osmosis("core", out, a.pid, "-o", os.path.join(tmp, "cut"))
        check(r.returncode == 0 and "incomplete" in r.stderr, r.stderr)


def test_full_disk_during_a_compressed_write_leaves_no_partial_core():
    with Victim("basic") as v, TempDir() as tmp:
        small = os.path.join(tmp, "small")
        os.mkdir(small)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", small], check=True)
        try:
            r = osmosis("snap", "--compress", "-o", os.path.join(small, "s"), v.pid)
            line = one_line_error(r)
            check("No space left on device" in line and "core.%d.zst" % v.pid in line, line)
            check(os.listdir(small) == [], "left %s on the full disk" % os.listdir(small))
            st = os.statvfs(small)
            check(st.f_bfree == st.f_blocks, "space still used after cleanup")
            # osmosis core on a full disk: nothing under the final name either
            out = os.path.join(tmp, "s")
            snap("--compress", "-o", out, v.pid)
            r = osmosis("core", out, v.pid, "-o", os.path.join(small, "core"))
            line = one_line_error(r)
            check("No space left" in line, line)
            check(os.listdir(small) == [], "osmosis core left %s" % os.listdir(small))
        finally:
            subprocess.run(["umount", small], check=True)
        v.verify()


def memory_cgroup(limit):
    """A fresh memory cgroup (v1 here, or v2) limited to limit bytes: (path, enter function)."""
    root = None
    for line in open("/proc/mounts"):
        dev, mnt, typ, opts = line.split()[:4]
        if typ == "cgroup" and "memory" in opts.split(","):
            root, knob = mnt, "memory.limit_in_bytes"
        elif typ == "cgroup2" and root is None and "memory" in open(
                os.path.join(mnt, "cgroup.controllers")).read().split():
            root, knob = mnt, "memory.max"
    if root is None:
        print("skipped: no cgroup hierarchy has the memory controller")
        sys.exit(77)
    cg = os.path.join(root, "osmosis-budget-%d" % os.getpid())
    os.mkdir(cg)
    with open(os.path.join(cg, knob), "w") as f:
        f.write(str(limit))

    def enter():
        with open(os.path.join(cg, "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))
    return cg, enter


def test_precopy_within_a_memory_cgroup_smaller_than_the_target():
    """osmosis limited to 96 MiB by its cgroup snapshots a 384 MiB process that writes 8 MiB
    nonstop: pre-copy writes the pages into the core file, not into memory, so it neither
    refuses nor falls back to a clone; its peak memory stays within the limit; the core holds
    the memory."""
    limit = 96 << 20
    cg, enter = memory_cgroup(limit)
    try:
        with Victim("writer", 98304, 2048) as v, TempDir() as tmp:
            for extra in ([], ["--compress"]):
                out = os.path.join(tmp, "s%d" % len(extra))
                cmd = [os.environ.get("OSMOSIS", "build/osmosis"), "snap", "--sample", "0",
                       "--method", "precopy", "-o", out] + extra + [str(v.pid)]
                r = subprocess.run(cmd, capture_output=True, text=True, preexec_fn=enter,
                                   timeout=300)
                check(r.returncode == 0, "precopy in %d MiB failed: %s" % (limit >> 20, r.stderr))
                check("peak memory of osmosis" in r.stdout, r.stdout)
                m = manifest(out)
                tl = m["timeline"]
                check(0 < tl["max_memory"] <= limit, "budget %d above the cgroup's" %
                      tl["max_memory"])
                check(tl["peak_rss"] < limit, "peak %d MiB" % (tl["peak_rss"] >> 20))
                check(tl["peak_buffers"] < 64 << 20, "buffers %d MiB" % (tl["peak_buffers"] >> 20))
                (p,) = m["processes"]
                check(p["method"] == "precopy", p["method_reason"])
                core = os.path.join(out, p["core"])
                if extra:
                    plain = os.path.join(tmp, "plain")
                    r = osmosis("core", out, v.pid, "-o", plain)
                    check(r.returncode == 0, r.stderr)
                    core = plain
                # the unchanging part: a counter per 64 bytes, at its address
                c = Core(core)
                base = v.hexinfo("pages")
                for page in (2048, 5000, 98303):
                    off = page * 4096 + 64
                    data = c.read(base + off, 8)
                    check(struct.unpack("<Q", data)[0] == off // 8,
                          "page %d: %r" % (page, data))
                if extra:
                    os.unlink(core)
            v.verify()
    finally:
        os.rmdir(cg)


if __name__ == "__main__":
    main(globals())
