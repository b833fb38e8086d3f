#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""osmosis bench for shared memory, side by side in one run:

  set      20 processes sharing one SIZE object (MAP_SHARED|MAP_ANONYMOUS), each writing its own
           1 MiB of it nonstop: osmosis snap --tree, per method
  private  one process with SIZE of private memory, 20 threads each writing 1 MiB of it
           nonstop: osmosis snap, per method (the goal: the set pauses at most twice this)
  fork     the kernel's bare fork() of a process with SIZE touched (the floor of any
           copy-on-write method; the goal: the set pauses at most 20% of it)
  floor    the machine's own longest scheduling gap over the same time (nothing snapshotted)

Columns: pause (osmosis's manifest), bytes copied in the pause, osmosis's peak memory, disk used
by the snapshot. Each row is the median of --runs runs. The machine's load (loadavg and steal
over the run) is printed beside the table.

Usage: bench/shared.py [--osmosis build/osmosis] [--victim build/tests/shm-victim]
                       [--size-mib 1024] [--procs 20] [--runs 3] [--methods auto,clone,...]
                       [--dir DIR]
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

MIB = 1 << 20


def steal_ticks():
    with open("/proc/stat") as f:
        v = f.readline().split()[1:]
    return int(v[7]), sum(int(x) for x in v)


def print_header(title, script, t_start, load0, st0):
    """The lines every bench table starts with: the machine, when, the command, the load and
    the steal over the run (st0: steal_ticks() at the start)."""
    st1 = steal_ticks()
    steal = 100.0 * (st1[0] - st0[0]) / max(st1[1] - st0[1], 1)
    u = os.uname()
    print("%s: %s %s, %d CPUs; %s -> %s UTC (%.0f s)" %
          (title, u.nodename, u.release, os.cpu_count(),
           time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t_start)),
           time.strftime("%H:%M:%S", time.gmtime()), time.time() - t_start))
    print("command: %s" % " ".join([script] + sys.argv[1:]))
    print("load average %s at the start, %s at the end; steal %.1f%%" %
          ("/".join("%.1f" % x for x in load0),
           "/".join("%.1f" % x for x in os.getloadavg()), steal))


def snap_once(osm, args, out, want_procs, want_threads):
    t0 = time.time()
    p = subprocess.run([osm, "snap", "-q", "--sample", "0", "-o", out] + args,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        shutil.rmtree(out, ignore_errors=True)
        raise RuntimeError("osmosis %s failed (%d): %s" % (" ".join(args), p.returncode,
                                                           p.stderr.strip()[-600:]))
    with open(os.path.join(out, "manifest.json")) as f:
        m = json.load(f)
    # the row is what it claims: every process of the victim, every thread, each captured
    got = [q for q in m["processes"] if q.get("capture") == "memory"]
    threads = sum(len(q.get("threads", [])) for q in got)
    if len(got) != want_procs or threads != want_threads:
        shutil.rmtree(out, ignore_errors=True)
        raise RuntimeError("osmosis %s captured %d processes, %d threads (expected %d, %d)" %
                           (" ".join(args), len(got), threads, want_procs, want_threads))
    du = 0
    for e in os.scandir(out):
        du += e.stat().st_blocks * 512
    copied = sum(o["copied_in_pause_bytes"] for o in m.get("shared_objects", []))
    kept = ",".join(sorted({o["kept"] for o in m.get("shared_objects", [])})) or "-"
    shutil.rmtree(out)
    return {"pause_ms": m["pause_us"] / 1000, "shared_in_pause": copied,
            "maxrss": m["timeline"]["peak_rss"], "disk": du, "total_s": time.time() - t0,
            "breakdown": m["timeline"].get("pause_breakdown_us", {}), "kept": kept,
            "methods": sorted({p.get("method") or "-" for p in m["processes"]})}


class Family:
    def __init__(self, victim, kind, size_mib, procs):
        # a session of its own, as a service has: with autogroups the scheduler shares the
        # CPU between sessions first, and the writers must not take osmosis's share
        self.p = subprocess.Popen([victim, kind, str(size_mib), str(procs), "1"],
                                  stdout=subprocess.PIPE, text=True, start_new_session=True)
        line = self.p.stdout.readline()
        if not line.startswith("ready"):
            self.stop()
            raise RuntimeError("victim: %r" % line)
        self.pid = int(line.split()[1].split("=")[1])
        kids = line.split()[2].split("=")[1]
        self.kids = [int(k) for k in kids.split(",") if k]

    def memory(self):
        """(processes, threads, anonymous bytes, shared bytes) resident, from /proc."""
        procs, threads, anon, shmem = 0, 0, 0, 0
        for pid in [self.pid] + self.kids:
            with open("/proc/%d/status" % pid) as f:
                st = dict(line.split(":", 1) for line in f)
            procs += 1
            threads += int(st["Threads"])
            anon += int(st["RssAnon"].split()[0]) * 1024
            shmem = max(shmem, int(st["RssShmem"].split()[0]) * 1024)  # one object, mapped by all
        return procs, threads, anon, shmem

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
        self.p.wait()


def rss_anon():
    with open("/proc/self/status") as f:
        st = dict(line.split(":", 1) for line in f)
    return int(st["RssAnon"].split()[0]) * 1024


def bare_fork_ms(size_mib, runs):
    """fork() of this process with size_mib of private memory written (every page), timed in
    the parent from before fork() to its return; the child exits at once. The first fork of a
    range is slower here (the child's page tables are fresh memory the host backs lazily), so
    there is one untimed fork first, as a process that has forked before (a service) would be.
    Returns (median ms, all ms, resident anonymous bytes at the fork)."""
    buf = bytearray(size_mib * MIB)
    for i in range(0, len(buf), 4096):
        buf[i] = 1
    rss = rss_anon()
    out = []
    for i in range(runs + 1):
        t0 = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        dt = (time.perf_counter() - t0) * 1000
        os.waitpid(pid, 0)
        if i:
            out.append(dt)
        else:
            first = dt
    del buf
    return statistics.median(out), [first] + out, rss


def floor_ms(seconds):
    """The longest gap a 200 us sleeper sees over `seconds`, with nothing snapshotted."""
    worst, last, end = 0.0, time.perf_counter(), time.perf_counter() + seconds
    while last < end:
        time.sleep(0.0002)
        t = time.perf_counter()
        worst = max(worst, t - last)
        last = t
    return worst * 1000


def fmt_bytes(n):
    for unit, div in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= div:
            return "%.1f %s" % (n / div, unit)
    return "%d B" % n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--osmosis", default="build/osmosis")
    ap.add_argument("--victim", default="build/tests/shm-victim")
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--procs", type=int, default=20)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--methods", default="auto,copy,clone,precopy")
    ap.add_argument("--dir", default=None)
    ap.add_argument("--copy-max-memory", default="3G",
                    help="--max-memory of the copy rows (set and private alike): the copy "
                    "method holds all of a target's memory, more than the default budget")
    a = ap.parse_args()
    if os.geteuid() != 0:
        print("bench/shared.py runs as root (osmosis reads shared objects through "
              "/proc/PID/map_files)", file=sys.stderr)
        return 2
    methods = a.methods.split(",")
    tmp = tempfile.mkdtemp(prefix="osmosis-bench-shared-", dir=a.dir)
    rows, failures, victims = [], [], []
    load0, st0, t_start = os.getloadavg(), steal_ticks(), time.time()
    floor0 = floor_ms(3)
    try:
        for kind, label in (("anon", "set"), ("private", "private")):
            fam = Family(a.victim, kind, a.size_mib, a.procs)
            try:
                # wait until every writer is in its loop: the header (set) or private page
                # counts need not be read; a writer's first pass over 1 MiB takes well under 1 s
                time.sleep(1)
                procs, threads, anon, shmem = fam.memory()
                victims.append((label, procs, threads, anon, shmem))
                for m in methods:
                    rs = []
                    for i in range(a.runs):
                        args = ["--method", m] + (["--tree"] if kind == "anon" else [])
                        if m == "copy" and a.copy_max_memory:
                            args += ["--max-memory", a.copy_max_memory]
                        try:
                            rs.append(snap_once(a.osmosis, args + [str(fam.pid)],
                                                os.path.join(tmp, "%s-%s-%d" % (label, m, i)),
                                                procs, threads))
                        except RuntimeError as e:
                            failures.append("%s %s run %d: %s" % (label, m, i + 1, e))
                        print("  %s %s run %d done (%.0f s)" % (label, m, i + 1,
                                                                 time.time() - t_start),
                              file=sys.stderr, flush=True)
                    rows.append((label, m, rs))
            finally:
                fam.stop()
        fork, forks, fork_rss = bare_fork_ms(a.size_mib, max(a.runs, 5))
        floor1 = floor_ms(3)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print_header("osmosis shared-memory bench", "bench/shared.py", t_start, load0, st0)
    print("%d processes sharing %d MiB, each writer writing its 1 MiB nonstop; private: one "
          "process, %d MiB, %d threads writing 1 MiB each; median of %d runs" %
          (a.procs + 1, a.size_mib, a.size_mib, a.procs, a.runs))
    if a.copy_max_memory and "copy" in methods:
        print("  copy rows: --max-memory %s (set and private alike); other rows: osmosis's "
              "default budget" % a.copy_max_memory)
    for label, procs, threads, anon, shmem in victims:
        print("  victim %-8s %d processes, %d threads; resident: %s private (all processes), "
              "%s shared" % (label, procs, threads, fmt_bytes(anon), fmt_bytes(shmem)))
    print("  fork     this bench's process with %s of private memory resident; %d forks, the "
          "first (untimed in the median) %.1f ms, then %s ms" %
          (fmt_bytes(fork_rss), len(forks), forks[0], ", ".join("%.1f" % x for x in forks[1:])))
    print()
    print("| %-7s | %-7s | %9s | %9s | %15s | %10s | %9s | %7s | %-15s |" %
          ("row", "method", "pause ms", "max ms", "shared in pause", "osm memory", "disk",
           "total s", "got"))
    print("|---------|---------|-----------|-----------|-----------------|------------|"
          "-----------|---------|-----------------|")
    for label, m, rs in rows:
        if not rs:
            print("| %-7s | %-7s | %9s | %9s | %15s | %10s | %9s | %7s | %-15s |" %
                  (label, m, "failed", "-", "-", "-", "-", "-", "-"))
            continue
        med = lambda k: statistics.median(r[k] for r in rs)
        print("| %-7s | %-7s | %9.1f | %9.1f | %15s | %10s | %9s | %7.1f | %-15s |" %
              (label, m, med("pause_ms"), max(r["pause_ms"] for r in rs),
               fmt_bytes(med("shared_in_pause")), fmt_bytes(med("maxrss")),
               fmt_bytes(med("disk")), med("total_s"),
               ",".join(rs[0]["methods"]) + " " + rs[0]["kept"]))
    print("| %-7s | %-7s | %9.1f | %9.1f | %15s | %10s | %9s | %7s | %-15s |" %
          ("fork", "-", fork, max(forks[1:]), "-", "-", "-", "-", "bare fork()"))
    print("| %-7s | %-7s | %9.1f | %9.1f | %15s | %10s | %9s | %7s | %-15s |" %
          ("floor", "-", max(floor0, floor1), max(floor0, floor1), "-", "-", "-", "-",
           "nothing running"))
    print()
    print("floor: the longest gap of a 200 us sleeper over 3 s, nothing snapshotted: %.1f ms "
          "before the rows, %.1f ms after" % (floor0, floor1))
    pauses = {(label, m): statistics.median(r["pause_ms"] for r in rs)
              for label, m, rs in rows if rs}
    for m in methods:
        if ("set", m) in pauses and ("private", m) in pauses:
            print("  %-8s set / private %.2fx (goal <= 2x), set / fork %.0f%% (goal <= 20%%)" %
                  (m, pauses[("set", m)] / max(pauses[("private", m)], 0.001),
                   100.0 * pauses[("set", m)] / max(fork, 0.001)))
    for label, m, rs in rows:
        for i, r in enumerate(rs):
            bd = r["breakdown"]
            print("  pause breakdown, %s %s run %d, %.1f ms (us): %s" % (
                label, m, i + 1, r["pause_ms"], " ".join(
                    "%s=%d" % kv for kv in sorted(bd.items(), key=lambda kv: -kv[1])
                    if kv[1] >= 50)))
    for f in failures:
        print("  FAILED: " + f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
