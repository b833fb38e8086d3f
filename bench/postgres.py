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

With --connect, pgbench opens a new connection for every transaction (-C): the postmaster
forks a backend per transaction and reaps it, the connection churn of a front end without a
pool; the table then says how the shared buffers were kept with backends coming and going
during the rounds.

Every cluster is stopped at the end, whatever happened.

Usage: bench/postgres.py [--osmosis build/osmosis] [--rows 128MB:10,1GB:20,...] [--runs 3]
                         [--scale 4] [--dir DIR] [--gcore-max 4G] [--connect]
"""

import argparse
import glob
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
import test_postgres as tp  # noqa: E402  (the test's cluster: one way to start one)
from osmtest import Fail  # noqa: E402
from shared import floor_ms, fmt_bytes, print_header, steal_ticks  # noqa: E402

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


class Cluster(tp.Cluster):
    """The test's cluster, stopped also when its start fails half-way (the postmaster runs
    before the cluster answers)."""

    def __init__(self, **kw):
        try:
            super().__init__(**kw)
        except BaseException:
            if getattr(self, "pm", None) is not None:
                self.stop()
            elif getattr(self, "dir", None):
                shutil.rmtree(self.dir, ignore_errors=True)
            raise


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

    def __init__(self, pg, clients, seconds, logdir, connect=False):
        self.logdir = logdir
        os.makedirs(logdir)
        os.chown(logdir, tp.USER, tp.USER)
        self.t0 = time.time()
        self.p = pg.pgbench("-n", "-N", "-c", clients, "-j", 2, "-T", seconds, "-l",
                            "--log-prefix=" + os.path.join(logdir, "tx"),
                            *(["-C"] if connect else []))
        self.seconds = seconds
        deadline = time.time() + 300
        # with -C the backends come and go: one serving is enough
        while len(pg.backends()) < (1 if connect else clients):
            if self.p.poll() is not None or time.time() > deadline:
                self.kill()
                raise RuntimeError("pgbench clients did not connect: %s" %
                                   (self.p.communicate()[1][-2000:],))
            time.sleep(0.1)

    def kill(self):
        """Ends pgbench at once (on a failure: no figures are read from it)."""
        if self.p.poll() is None:
            self.p.kill()
        self.p.communicate()
        shutil.rmtree(self.logdir, ignore_errors=True)

    def finish(self):
        try:
            so, se = self.p.communicate(timeout=self.seconds + 900)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RuntimeError("pgbench did not end")
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


def phase_windows(tl, off):
    """The timeline's phases as (name, start, end) in wall-clock seconds, the pause among
    them, in order; phases of one name and no gap between them (one per process) merged."""
    t0 = tl["start_ns"] / 1e9 + off
    out = [("pause", t0 + tl["pause_start_us"] / 1e6, t0 + tl["pause_end_us"] / 1e6)]
    for ph in tl.get("phases", []):
        if "duration_us" not in ph or ph["name"] in ("freeze", "copy", "resume"):
            continue  # the pause's own parts are the pause
        s = t0 + ph["start_us"] / 1e6
        out.append((ph["name"], s, s + ph["duration_us"] / 1e6))
    out.sort(key=lambda w: w[1])
    merged = []
    for w in out:
        if merged and merged[-1][0] == w[0] and w[1] - merged[-1][2] < 0.001:
            merged[-1] = (w[0], merged[-1][1], max(merged[-1][2], w[2]))
        else:
            merged.append(w)
    return merged


def beside_phases(tx, tl, off, p1):
    """What the clients saw, laid beside osmosis's phases: the time after the thaw until every
    transaction running at the thaw had ended, and per phase, the longest latency of a
    transaction that began in it."""
    drain = max((e for s, e, _ in tx if s <= p1 <= e), default=p1) - p1
    per = []
    for name, a, b in phase_windows(tl, off):
        worst = max((lat for s, e, lat in tx if a <= s < b), default=None)
        per.append((name, (b - a) * 1000, None if worst is None else worst * 1000))
    return drain * 1000, per


def longest_beside(tx, tl, off, a, b, n=5):
    """The n longest transactions begun in [a, b], each with the phases of osmosis it ran
    beside (a per-process phase with its pid, repeats counted): [(latency ms, start - a ms,
    "phase, phase x3, ...")]."""
    t0 = tl["start_ns"] / 1e9 + off
    ph = [("pause", t0 + tl["pause_start_us"] / 1e6, t0 + tl["pause_end_us"] / 1e6)]
    for p in tl.get("phases", []):
        if "duration_us" in p and p["name"] not in ("freeze", "copy", "resume"):
            s = t0 + p["start_us"] / 1e6
            ph.append((p["name"] + ("(%d)" % p["pid"] if p.get("pid") else ""), s,
                       s + p["duration_us"] / 1e6))
    ph.sort(key=lambda w: w[1])
    out = []
    for s, e, lat in sorted((t for t in tx if a <= t[0] < b), key=lambda t: -t[2])[:n]:
        names = []
        for name, ps, pe in ph:
            if ps < e and pe > s:
                base = name.split("(")[0]
                if names and names[-1][0] == base:
                    names[-1][1] += 1
                else:
                    names.append([base, 1, name])
        out.append((lat * 1000, (s - a) * 1000, ", ".join(
            (nm if k == 1 else "%s x%d" % (base, k)) for base, k, nm in names) or "none"))
    return out


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


def osmosis_run(a, pg, clients, tmp, i, seconds):
    b = Bench(pg, clients, seconds, os.path.join(tmp, "log%d" % i), a.connect)
    try:
        time.sleep(BASELINE_S)
        t_snap = time.time()
        m, disk, off = snap(a.osmosis, pg.pm.pid, os.path.join(tmp, "snap%d" % i))
    except BaseException:
        b.kill()
        raise
    finally:
        shutil.rmtree(os.path.join(tmp, "snap%d" % i), ignore_errors=True)
    tx, failed = b.finish()
    tl = m["timeline"]
    p0 = tl["start_ns"] / 1e9 + tl["pause_start_us"] / 1e6 + off
    p1 = tl["start_ns"] / 1e9 + tl["pause_end_us"] / 1e6 + off
    objs = sorted(m.get("shared_objects", []), key=lambda o: -o["size"])
    big = objs[0] if objs else {}
    captured = sum(1 for p in m["processes"] if p.get("capture") == "memory")
    # pgbench's clock starts once its clients are connected: b.t0 + seconds is the earliest
    # it can end. A pause after that measured nothing of pgbench.
    return {"pause": m["pause_us"] / 1000, "breakdown": tl.get("pause_breakdown_us", {}),
            "stall": worst_during(tx, p0, p1),
            "base": worst_during(tx, b.t0 + 1.0, t_snap),
            "failed": failed, "rss": tl["peak_rss"], "disk": disk,
            "in_pause": sum(o["copied_in_pause_bytes"] for o in objs),
            "seg": big.get("size", 0), "seg_maps": len(big.get("mapped_by", [])),
            "kept": big.get("kept", "-"), "reason": big.get("kept_reason"),
            "procs": len(m["processes"]), "captured": captured,
            "in_run": p1 < b.t0 + seconds, "to_pause": p1 - t_snap,
            "total": m["total_ms"] / 1000, "tx": len(tx),
            "after": beside_phases(tx, tl, off, p1),
            "longest": longest_beside(tx, tl, off, t_snap, p1),
            "longest_before": longest_beside(tx, tl, off, b.t0 + 1.0, t_snap)}


def gcore_run(a, pg, clients, tmp, seconds):
    b = Bench(pg, clients, seconds, os.path.join(tmp, "logg"), a.connect)
    out = os.path.join(tmp, "gcore")
    try:
        time.sleep(BASELINE_S)
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
    except BaseException:
        b.kill()
        raise
    finally:
        shutil.rmtree(out, ignore_errors=True)
    tx, failed = b.finish()
    return {"total": t1 - t0, "longest": longest * 1000, "stall": worst_during(tx, t0, t1),
            "base": worst_during(tx, b.t0 + 1.0, t0), "failed": failed, "disk": disk,
            "procs": len(pids), "in_run": t1 < b.t0 + seconds}


def gcore_estimate(sb, pg, clients):
    """Bytes of the tree's gcore cores with `clients` backends serving pgbench: each core holds
    the whole segment (gcore reads the untouched pages as zeroes and writes them) and the
    process's own memory. Read between pgbench runs: the client backends are counted, not
    listed (those of the last run may be exiting still)."""
    seg = parse_size(sb) + (16 << 20)
    serving = set(pg.backends())
    own, aux = 0, 0
    for pid in tree(pg.pm.pid):
        if pid in serving:
            continue
        aux += 1
        try:
            with open("/proc/%d/status" % pid) as f:
                st = dict(line.split(":", 1) for line in f)
            own += int(st["RssAnon"].split()[0]) * 1024
        except (OSError, KeyError):
            pass
    return (aux + clients) * seg + own + clients * (own // max(aux, 1))


def row(a, sb, clients, tmp):
    """(osmosis runs, gcore result or None, why gcore was not run, failures)."""
    pg = Cluster(shared_buffers=sb, max_connections=clients + 10)
    runs, failures, g, why = [], [], None, None
    try:
        r = subprocess.run(tp.as_user([tp.PGBIN + "/pgbench", "-i", "-q", "-s", str(a.scale)]),
                           capture_output=True, text=True, env=pg.env, timeout=1800)
        if r.returncode != 0:
            raise RuntimeError("pgbench -i: %s" % r.stderr)
        seconds = a.seconds
        for i in range(a.runs):
            for attempt in range(3):
                try:
                    res = osmosis_run(a, pg, clients, tmp, i, seconds)
                except RuntimeError as e:
                    failures.append("run %d: %s" % (i + 1, e))
                    break
                # the next pgbench lasts long enough for the pause to fall inside it, with room
                seconds = max(seconds, int(BASELINE_S + 2 * res["to_pause"] + 10))
                if res["in_run"]:
                    runs.append(res)
                    break
                print("    %s:%d run %d: the pause fell after pgbench ended (load %.1f); "
                      "again with -T %d" % (sb, clients, i + 1, os.getloadavg()[0], seconds),
                      file=sys.stderr, flush=True)
            else:
                failures.append("run %d: the pause never fell inside pgbench's run" % (i + 1))
        est = gcore_estimate(sb, pg, clients)
        st = os.statvfs(tmp)
        free = st.f_bavail * st.f_frsize
        if est > a.gcore_max:
            why = "the tree's cores would take ~%s, more than --gcore-max %s" % (
                fmt_bytes(est), fmt_bytes(a.gcore_max))
        elif est > free - (8 << 30):
            why = "the tree's cores would take ~%s; the disk has %s free (8 GiB kept)" % (
                fmt_bytes(est), fmt_bytes(free))
        else:
            try:
                g = gcore_run(a, pg, clients, tmp, max(4 * a.seconds, seconds))
            except RuntimeError as e:
                failures.append("gcore: %s" % e)
        return runs, g, why, failures
    finally:
        pg.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--osmosis", default="build/osmosis")
    ap.add_argument("--rows", default=ROWS)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--seconds", type=int, default=25,
                    help="each pgbench run, at first (longer when a pause fell after its end)")
    ap.add_argument("--gcore-max", default="4G",
                    help="run gcore only when the tree's cores would take at most this")
    ap.add_argument("--dir", default=None)
    ap.add_argument("--connect", action="store_true",
                    help="pgbench -C: a new connection, so a new backend, per transaction")
    a = ap.parse_args()
    a.gcore_max = parse_size(a.gcore_max)
    a.osmosis = os.path.abspath(a.osmosis)
    if os.geteuid() != 0 or not os.path.exists(tp.PGBIN + "/postgres"):
        print("bench/postgres.py runs as root with PostgreSQL 15 installed", file=sys.stderr)
        return 2

    def on_term(sig, frame):
        raise SystemExit(128 + sig)  # the clusters are stopped in `finally`
    signal.signal(signal.SIGTERM, on_term)
    tmp = tempfile.mkdtemp(prefix="osmosis-bench-pg-", dir=a.dir)
    os.chmod(tmp, 0o755)
    results = []
    load0, st0, t_start = os.getloadavg(), steal_ticks(), time.time()
    floor0 = floor_ms(3)
    try:
        for spec in a.rows.split(","):
            sb, clients = spec.split(":")
            try:
                runs, g, why, failures = row(a, sb, int(clients), tmp)
            except (RuntimeError, Fail) as e:
                runs, g, why, failures = [], None, "the row failed", [str(e)]
            results.append((sb, int(clients), runs, g, why, failures))
            print("  done %s:%s (%.0f s, load %.1f)%s" % (
                sb, clients, time.time() - t_start, os.getloadavg()[0],
                "".join("\n    FAILED: " + f for f in failures)), file=sys.stderr, flush=True)
        floor1 = floor_ms(3)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print_header("osmosis PostgreSQL bench", "bench/postgres.py", t_start, load0, st0)
    print("PostgreSQL 15, pgbench -n -N -s %d -j 2 -l%s, osmosis snap --tree (auto) %d times per "
          "row, one pgbench run each: the median, the maximum in brackets; stall: the longest "
          "latency of a transaction running during the pause (gcore: during the whole tree's "
          "dump), against the longest of the %.0f s before it in the same run (no snapshot)" %
          (a.scale, " -C" if a.connect else "", a.runs, BASELINE_S - 1))
    print()
    print("| shared_buffers | clients | what | pause ms | stall ms / before | segment in pause "
          "| failed tx | osmosis peak RSS | disk | captured / processes | segment kept |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for sb, clients, runs, g, why, failures in results:
        if runs:
            med = lambda k: statistics.median(r[k] for r in runs)
            mx = lambda k: max(r[k] for r in runs)
            kept = ",".join(sorted({r["kept"] for r in runs}))
            print("| %s | %d | osmosis | %.1f [%.1f] | %.1f [%.1f] / %.1f | %s | %d | %s | %s "
                  "| %s | %s of %s, %d maps |" %
                  (sb, clients, med("pause"), mx("pause"), med("stall"), mx("stall"),
                   med("base"), fmt_bytes(med("in_pause")), sum(r["failed"] for r in runs),
                   fmt_bytes(med("rss")), fmt_bytes(med("disk")),
                   "/".join(sorted({"%d/%d" % (r["captured"], r["procs"]) for r in runs})),
                   kept, fmt_bytes(runs[-1]["seg"]), runs[-1]["seg_maps"]))
        else:
            print("| %s | %d | osmosis | failed | - | - | - | - | - | - | - |" % (sb, clients))
        if g:
            print("| %s | %d | gcore | %.1f (one process) | %.1f / %.1f | - | %d | - | %s | "
                  "%d | - |" % (sb, clients, g["longest"], g["stall"], g["base"], g["failed"],
                                fmt_bytes(g["disk"]), g["procs"]))
        else:
            print("| %s | %d | gcore | not run: %s | | | | | | | |" % (sb, clients, why))
    fl = max(floor0, floor1)
    print("| floor | - | nothing | %.1f | | | | | | | |" % fl)
    print()
    print("floor: the longest gap of a 200 us sleeper over 3 s, nothing snapshotted: %.1f ms "
          "before the rows, %.1f ms after" % (floor0, floor1))
    for sb, clients, runs, g, why, failures in results:
        for i, r in enumerate(runs):
            bd = " ".join("%s=%d" % kv for kv in sorted(r["breakdown"].items(),
                                                         key=lambda kv: -kv[1]) if kv[1] >= 100)
            print("  %s:%d run %d: pause %.1f ms (%s us); %d transactions logged; osmosis "
                  "%.1f s in all%s" % (sb, clients, i + 1, r["pause"], bd, r["tx"], r["total"],
                                       "; kept_reason: %s" % r["reason"] if r["reason"] else ""))
            drain, per = r["after"]
            print("    every transaction running at the thaw ended %.1f ms after it; the "
                  "longest latency of a transaction begun in each phase (phase ms: latency "
                  "ms): %s" % (drain, ", ".join(
                      "%s %.1f: %s" % (n, d, "-" if w is None else "%.1f" % w)
                      for n, d, w in per)))
            for what, k in (("from the snapshot's start to the thaw", "longest"),
                             ("before it", "longest_before")):
                print("    the longest transactions begun %s (ms, begun at ms: beside): %s" %
                      (what, "; ".join("%.1f, %.0f: %s" % x for x in r[k])))
        if g:
            print("  %s:%d gcore: %.1f s for the %d processes one after the other; the longest "
                  "one %.1f ms%s" % (sb, clients, g["total"], g["procs"], g["longest"],
                                     "" if g["in_run"] else " (gcore outlasted pgbench)"))
        for f in failures:
            print("  %s:%d FAILED: %s" % (sb, clients, f))
    return 1 if any(f for *_, f in results) else 0


if __name__ == "__main__":
    sys.exit(main())
