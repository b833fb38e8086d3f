#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""osmosis bench on a real PostgreSQL 15 (Debian's), side by side in one run.

For each row (shared_buffers, backends): a private cluster (initdb in a mkdtemp as an
unprivileged user, a free port, its own socket directory), `pgbench -i -s SCALE`, then pgbench
running with BACKENDS clients (-N: the simple-update script, so that clients do not queue on a
few branch rows) and its per-transaction log (-l). While it runs:

  osmosis   `osmosis snap --tree POSTMASTER` (auto), --runs times, one pgbench run each: the
            pause (manifest), what it spent in the pause (pause_breakdown_us), the shared
            buffers' bytes copied in the pause and how they were kept, the longest latency of a
            transaction that was running during the pause against the longest in the seconds
            before the snapshot (the same run, nothing snapshotted), failed transactions,
            osmosis's peak RSS and the snapshot's disk use
  gcore     gdb's gcore of every process of the tree, one after the other (each process stopped
            while its core is written: the client of a backend waits that long), where the disk
            allows it (every core holds the shared buffers: see --gcore-max)
  floor     the machine's own longest scheduling gap over a few seconds, in the same run

Every cluster is stopped at the end, whatever happened.

Usage: bench/postgres.py [--osmosis build/osmosis] [--rows 128MB:10,1GB:20,...] [--runs 3]
                         [--scale 4] [--dir DIR] [--gcore-max 4G]
"""

import argparse
import glob
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
import test_postgres as tp  # noqa: E402  (the test's cluster: one way to start one)
from shared import floor_ms, fmt_bytes, steal_ticks  # noqa: E402

BASELINE_S = 4.0
ROWS = "128MB:10,128MB:50,1GB:10,1GB:20,1GB:50,4GB:10,4GB:50"


def parse_size(s):
    s = s.upper().rstrip("B")
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(s[:-1]) * mult[s[-1]] if s[-1] in mult else int(s)


def tree(pid):
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for t in os.listdir("/proc/%d/task" % p):
                with open("/proc/%d/task/%s/children" % (p, t)) as f:
                    todo.extend(int(x) for x in f.read().split())
        except OSError:
            pass
    return out


def du(path):
    n = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                n += os.lstat(os.path.join(root, f)).st_blocks * 512
            except OSError:
                pass
    return n


class Bench:
    """One pgbench run with its per-transaction log."""

    def __init__(self, pg, clients, seconds, logdir):
        self.logdir = logdir
        os.makedirs(logdir)
        os.chown(logdir, tp.USER, tp.USER)
        self.t0 = time.time()
        self.p = pg.pgbench("-n", "-N", "-c", clients, "-j", 2, "-T", seconds, "-l",
                            "--log-prefix=" + os.path.join(logdir, "tx"))
        deadline = time.time() + 120
        while len(pg.backends()) < clients:
            if self.p.poll() is not None or time.time() > deadline:
                raise RuntimeError("pgbench clients did not connect: %s" %
                                   (self.p.communicate()[1][-2000:],))
            time.sleep(0.1)

    def finish(self):
        so, se = self.p.communicate(timeout=900)
        if self.p.returncode != 0:
            raise RuntimeError("pgbench failed (%d): %s" % (self.p.returncode, se[-2000:]))
        failed = 0
        for line in so.splitlines():
            if line.startswith("number of failed transactions:"):
                failed = int(line.split(":")[1].split()[0])
        tx = []  # (start, end, latency) in seconds, wall clock
        for path in glob.glob(os.path.join(self.logdir, "tx*")):
            with open(path) as f:
                for line in f:
                    v = line.split()
                    if len(v) < 6 or not v[2].isdigit():
                        continue  # "failed" or "skipped": pgbench's summary counts them
                    end = int(v[4]) + int(v[5]) / 1e6
                    lat = int(v[2]) / 1e6
                    tx.append((end - lat, end, lat))
        shutil.rmtree(self.logdir)
        return tx, failed


def worst_during(tx, a, b):
    """The longest latency of a transaction running at some moment of [a, b]."""
    return max((lat for s, e, lat in tx if s <= b and e >= a), default=0.0) * 1000


def snap(osm, pid, out):
    """osmosis snap --tree: (manifest, disk bytes, wall-clock offset of CLOCK_MONOTONIC)."""
    off = time.time() - time.monotonic()
    p = subprocess.run([osm, "snap", "-q", "--tree", "--sample", "0", "-o", out, str(pid)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        raise RuntimeError("osmosis failed: %s" % p.stderr)
    with open(os.path.join(out, "manifest.json")) as f:
        m = json.load(f)
    return m, du(out), off


def osmosis_run(a, pg, clients, tmp, i):
    b = Bench(pg, clients, a.seconds, os.path.join(tmp, "log%d" % i))
    time.sleep(BASELINE_S)
    t_snap = time.time()
    m, disk, off = snap(a.osmosis, pg.pm.pid, os.path.join(tmp, "snap%d" % i))
    shutil.rmtree(os.path.join(tmp, "snap%d" % i))
    tx, failed = b.finish()
    tl = m["timeline"]
    p0 = tl["start_ns"] / 1e9 + tl["pause_start_us"] / 1e6 + off
    p1 = tl["start_ns"] / 1e9 + tl["pause_end_us"] / 1e6 + off
    objs = sorted(m.get("shared_objects", []), key=lambda o: -o["size"])
    big = objs[0] if objs else {}
    captured = sum(1 for p in m["processes"] if p.get("capture") == "memory")
    return {"pause": m["pause_us"] / 1000, "breakdown": tl.get("pause_breakdown_us", {}),
            "stall": worst_during(tx, p0, p1),
            "base": worst_during(tx, b.t0 + 1.0, t_snap),
            "failed": failed, "rss": tl["peak_rss"], "disk": disk,
            "in_pause": sum(o["copied_in_pause_bytes"] for o in objs),
            "kept": big.get("kept", "-"), "reason": big.get("kept_reason"),
            "procs": len(m["processes"]), "captured": captured,
            "in_run": p1 < b.t0 + a.seconds, "total": m["total_ms"] / 1000}


def gcore_run(a, pg, clients, tmp):
    b = Bench(pg, clients, a.seconds * 4, os.path.join(tmp, "logg"))
    time.sleep(BASELINE_S)
    out = os.path.join(tmp, "gcore")
    os.makedirs(out)
    t0 = time.time()
    pids = tree(pg.pm.pid)
    longest = 0.0
    for pid in pids:
        s = time.time()
        subprocess.run(["gcore", "-o", os.path.join(out, "core"), str(pid)],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=1800)
        longest = max(longest, time.time() - s)
    t1 = time.time()
    disk = du(out)
    shutil.rmtree(out)
    tx, failed = b.finish()
    return {"total": t1 - t0, "longest": longest * 1000, "stall": worst_during(tx, t0, t1),
            "base": worst_during(tx, b.t0 + 1.0, t0), "failed": failed, "disk": disk,
            "procs": len(pids), "in_run": t1 < b.t0 + a.seconds * 4}


def row(a, sb, clients, tmp):
    pg = tp.Cluster(shared_buffers=sb, max_connections=clients + 10)
    try:
        r = subprocess.run(tp.as_user([tp.PGBIN + "/pgbench", "-i", "-q", "-s", str(a.scale)]),
                           capture_output=True, text=True, env=pg.env, timeout=1800)
        if r.returncode != 0:
            raise RuntimeError("pgbench -i: %s" % r.stderr)
        runs = [osmosis_run(a, pg, clients, tmp, i) for i in range(a.runs)]
        est = (clients + 8) * (parse_size(sb) + (32 << 20))
        g = gcore_run(a, pg, clients, tmp) if est <= a.gcore_max else None
        return runs, g, est
    finally:
        pg.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--osmosis", default="build/osmosis")
    ap.add_argument("--rows", default=ROWS)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--seconds", type=int, default=25,
                    help="each pgbench run (the pause must fall inside it)")
    ap.add_argument("--gcore-max", default="4G",
                    help="run gcore only when the tree's cores would take at most this")
    ap.add_argument("--dir", default=None)
    a = ap.parse_args()
    a.gcore_max = parse_size(a.gcore_max)
    a.osmosis = os.path.abspath(a.osmosis)
    if os.geteuid() != 0 or not os.path.exists(tp.PGBIN + "/postgres"):
        print("bench/postgres.py runs as root with PostgreSQL 15 installed", file=sys.stderr)
        return 2
    tmp = tempfile.mkdtemp(prefix="osmosis-bench-pg-", dir=a.dir)
    os.chmod(tmp, 0o755)
    results = []
    load0, st0, t_start = os.getloadavg()[0], steal_ticks(), time.time()
    try:
        for spec in a.rows.split(","):
            sb, clients = spec.split(":")
            runs, g, est = row(a, sb, int(clients), tmp)
            results.append((sb, int(clients), runs, g, est))
            print("  done %s:%s (%.0f s)" % (sb, clients, time.time() - t_start),
                  file=sys.stderr, flush=True)
        floor = floor_ms(3)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    st1 = steal_ticks()
    steal = 100.0 * (st1[0] - st0[0]) / max(st1[1] - st0[1], 1)
    u = os.uname()
    print("osmosis PostgreSQL bench: %s %s, %d CPUs; load %.1f -> %.1f, steal %.1f%%; %.0f s" %
          (u.nodename, u.release, os.cpu_count(), load0, os.getloadavg()[0], steal,
           time.time() - t_start))
    print("PostgreSQL 15, pgbench -N -s %d -j 2, osmosis snap --tree (auto) %d times per row "
          "(median; max in brackets); stall: the longest latency of a transaction running "
          "during the pause, against the longest of the %.0f s before (no snapshot)" %
          (a.scale, a.runs, BASELINE_S - 1))
    hdr = ("%-8s %4s %-8s %16s %17s %11s %6s %11s %10s %7s  %s" %
           ("SHBUF", "CLI", "WHAT", "PAUSE ms", "STALL/BEFORE ms", "SHBUF PAUSE", "FAILED",
            "OSM RSS", "DISK", "PROCS", "KEPT / PAUSE BREAKDOWN (us, last run)"))
    print(hdr)
    for sb, clients, runs, g, est in results:
        med = lambda k: statistics.median(r[k] for r in runs)
        mx = lambda k: max(r[k] for r in runs)
        last = runs[-1]
        bd = " ".join("%s=%d" % kv for kv in sorted(last["breakdown"].items(),
                                                     key=lambda kv: -kv[1]) if kv[1] >= 100)
        kept = ",".join(sorted({r["kept"] for r in runs}))
        print("%-8s %4d %-8s %7.1f [%6.1f] %7.1f/%-8.1f %11s %6d %11s %10s %7d  %s; %s%s" %
              (sb, clients, "osmosis", med("pause"), mx("pause"), med("stall"), med("base"),
               fmt_bytes(med("in_pause")), sum(r["failed"] for r in runs), fmt_bytes(med("rss")),
               fmt_bytes(med("disk")), last["procs"], kept, bd,
               "" if all(r["in_run"] for r in runs) else " (a pause fell after pgbench ended)"))
        for r in runs:
            if r["reason"]:
                print("%-8s %4s %-8s   kept_reason: %s" % ("", "", "", r["reason"]))
        if g:
            print("%-8s %4d %-8s %7.1f [%6.0f] %7.1f/%-8.1f %11s %6d %11s %10s %7d  "
                  "%.1f s for the tree; the longest pause is one process's gcore%s" %
                  (sb, clients, "gcore", g["longest"], g["longest"], g["stall"], g["base"], "-",
                   g["failed"], "-", fmt_bytes(g["disk"]), g["procs"], g["total"],
                   "" if g["in_run"] else " (gcore outlasted pgbench)"))
        else:
            print("%-8s %4d %-8s  not run: the tree's cores would take ~%s of disk" %
                  (sb, clients, "gcore", fmt_bytes(est)))
    print("%-8s %4s %-8s %7.1f ms  (longest gap of a 200 us sleeper over 3 s, nothing running)"
          % ("floor", "-", "-", floor))
    return 0


if __name__ == "__main__":
    sys.exit(main())
