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


def snap_once(osm, args, out):
    t0 = time.time()
    p = subprocess.run([osm, "snap", "-q", "--sample", "0", "-o", out] + args,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        raise RuntimeError("osmosis failed: %s" % p.stderr)
    with open(os.path.join(out, "manifest.json")) as f:
        m = json.load(f)
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
        self.p = subprocess.Popen([victim, kind, str(size_mib), str(procs), "1"],
                                  stdout=subprocess.PIPE, text=True)
        line = self.p.stdout.readline()
        if not line.startswith("ready"):
            raise RuntimeError("victim: %r" % line)
        self.pid = int(line.split()[1].split("=")[1])

    def stop(self):
        self.p.terminate()
        self.p.wait()


def bare_fork_ms(size_mib, runs):
    """fork() of this process with size_mib touched, timed in the parent."""
    buf = bytearray(size_mib * MIB)
    for i in range(0, len(buf), 4096):
        buf[i] = 1
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        out.append((time.perf_counter() - t0) * 1000)
        os.waitpid(pid, 0)
    del buf
    return statistics.median(out)


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
    a = ap.parse_args()
    if os.geteuid() != 0:
        print("bench/shared.py runs as root (osmosis reads shared objects through "
              "/proc/PID/map_files)", file=sys.stderr)
        return 2
    tmp = tempfile.mkdtemp(prefix="osmosis-bench-shared-", dir=a.dir)
    rows = []
    load0, st0 = os.getloadavg()[0], steal_ticks()
    try:
        for kind, label in (("anon", "set"), ("private", "private")):
            fam = Family(a.victim, kind, a.size_mib, a.procs)
            try:
                time.sleep(1)
                for m in a.methods.split(","):
                    rs = []
                    for i in range(a.runs):
                        args = ["--method", m] + (["--tree"] if kind == "anon" else [])
                        rs.append(snap_once(a.osmosis, args + [str(fam.pid)],
                                            os.path.join(tmp, "%s-%s-%d" % (label, m, i))))
                    rows.append((label, m, rs))
            finally:
                fam.stop()
        fork = bare_fork_ms(a.size_mib, a.runs)
        floor = floor_ms(3)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    st1 = steal_ticks()
    steal = 100.0 * (st1[0] - st0[0]) / max(st1[1] - st0[1], 1)
    u = os.uname()
    print("osmosis shared-memory bench: %s %s, %d CPUs; load %.1f -> %.1f, steal %.1f%%" %
          (u.nodename, u.release, os.cpu_count(), load0, os.getloadavg()[0], steal))
    print("%d processes sharing %d MiB, each writing its 1 MiB nonstop; private: one process, "
          "%d MiB, %d threads writing 1 MiB each; median of %d runs" %
          (a.procs + 1, a.size_mib, a.size_mib, a.procs, a.runs))
    print("%-8s %-8s %10s %14s %12s %10s %9s  %s" % ("ROW", "METHOD", "PAUSE", "SHARED IN PAUSE",
                                                     "OSM MEMORY", "DISK", "TOTAL", "GOT"))
    for label, m, rs in rows:
        med = lambda k: statistics.median(r[k] for r in rs)
        print("%-8s %-8s %8.1f ms %14s %12s %10s %7.1f s  %s" %
              (label, m, med("pause_ms"), fmt_bytes(med("shared_in_pause")),
               fmt_bytes(med("maxrss")), fmt_bytes(med("disk")), med("total_s"),
               ",".join(rs[0]["methods"]) + " " + rs[0]["kept"]))
    print("%-8s %-8s %8.1f ms" % ("fork", "-", fork))
    pauses = {(label, m): statistics.median(r["pause_ms"] for r in rs) for label, m, rs in rows}
    for m in a.methods.split(","):
        if ("set", m) in pauses and ("private", m) in pauses:
            print("  %-8s set / private %.2fx (goal <= 2x), set / fork %.0f%% (goal <= 20%%)" %
                  (m, pauses[("set", m)] / max(pauses[("private", m)], 0.001),
                   100.0 * pauses[("set", m)] / max(fork, 0.001)))
    for label, m, rs in rows:
        bd = rs[-1]["breakdown"]
        print("  pause breakdown, %s %s (us, last run): %s" % (label, m, " ".join(
            "%s=%d" % kv for kv in sorted(bd.items(), key=lambda kv: -kv[1]) if kv[1] >= 50)))
    print("%-8s %-8s %8.1f ms  (longest gap of a 200 us sleeper over 3 s)" % ("floor", "-", floor))
    return 0


if __name__ == "__main__":
    sys.exit(main())
