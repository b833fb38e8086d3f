#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""How long `osmosis analyze` takes, and how much memory, on two snapshots, side by side for one
or more osmosis binaries (a build before a change and one after), in one run:

  native   --procs processes of the test victim (`victim threads N`: N idle threads on a
           condition variable, plus its main and heartbeat threads), 1,000 threads by default,
           with the machine's libc (and its debug symbols where libc6-dbg is installed)
  python   --py-procs processes of Debian's python3 (tests/victims/python/pyvictim.py
           contention: threads blocked on one threading.Lock), 200 threads by default, with
           python3.11-dbg's debug info where installed
  floor    a fixed amount of CPU work (hashing 64 MiB) in a child: its wall time over its CPU
           time says how much the machine's load stretches every wall time in the table

Each snapshot is taken once (with the first binary) and analyzed --runs times by each binary,
the binaries taking turns so that they share the machine's load. Columns: median wall and CPU
(user + system) seconds of `osmosis analyze --json`, the largest peak RSS of its runs, and the
frames it printed. "same frames" compares every thread's frames with the first binary's. The
machine's load average and steal over the runs are printed beside the table.

    bench/analyze.py [--osmosis [LABEL=]PATH ...] [--victim build/tests/victim]
                     [--python /usr/bin/python3] [--procs 20] [--threads 48]
                     [--py-procs 4] [--py-threads 48] [--runs 5] [--only native|python]
"""
import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, ".."))
PYVICTIM = os.path.join(ROOT, "tests", "victims", "python", "pyvictim.py")


def steal():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return v[7], sum(v)


def start_victims(cmds, env=None):
    """Start each command; return the processes once each said "ready pid=N"."""
    procs = []
    try:
        for c in cmds:
            procs.append(subprocess.Popen(c, stdout=subprocess.PIPE, text=True, env=env))
        for p in procs:
            line = p.stdout.readline()
            if "ready" not in line:
                raise RuntimeError("victim %s did not get ready: %r" % (p.args, line))
        return procs
    except BaseException:
        stop_victims(procs)
        raise


def stop_victims(procs):
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()


def snap(osmosis, pids, out):
    subprocess.run([osmosis, "snap", "-q", "--sample", "0", "-o", out] + [str(x) for x in pids],
                   check=True)


TIME = shutil.which("time", path="/usr/bin:/bin")


def analyze_once(osmosis, snapdir, tmp):
    """One `osmosis analyze --json`: wall, CPU, peak RSS, the report. The peak RSS comes from
    /usr/bin/time, whose child is forked from a small process: a child forked from this script
    would count the script's own pages in its peak (the kernel keeps the peak across exec)."""
    stats = os.path.join(tmp, "time.out")
    cmd = [osmosis, "analyze", "--json", snapdir]
    if TIME:
        cmd = [TIME, "-o", stats, "-f", "%M"] + cmd
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    out = p.stdout.read()
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.monotonic() - t0
    code = os.waitstatus_to_exitcode(status)
    rep = json.loads(out) if out else None
    if rep is None:
        raise RuntimeError("%s analyze %s: exit %d, no report" % (osmosis, snapdir, code))
    rss = ru.ru_maxrss * 1024
    if TIME:
        with open(stats) as f:
            rss = int(f.read().split()[-1]) * 1024
    return wall, ru.ru_utime + ru.ru_stime, rss, frames_of(rep), summary(rep)


def frames_of(rep):
    """A digest of every thread's frames, comparable across builds."""
    h = hashlib.sha256()
    for p in sorted(rep["processes"], key=lambda p: p["pid"]):
        for t in sorted(p["threads"], key=lambda t: t["tid"]):
            h.update(json.dumps([p["pid"], t["tid"], t.get("frames")], sort_keys=True).encode())
    return h.hexdigest()


def summary(rep):
    """Processes, threads, frames, Python frames of a report."""
    frames = [f for p in rep["processes"] for t in p["threads"] for f in t.get("frames") or []]
    return (len(rep["processes"]), sum(len(p["threads"]) for p in rep["processes"]), len(frames),
            sum(1 for f in frames if f.get("kind") == "python"))


def floor_once():
    """A fixed CPU job in a child: (wall, CPU)."""
    t0 = time.monotonic()
    pid = os.fork()
    if pid == 0:
        h = hashlib.sha256()
        block = b"\x5a" * (1 << 20)
        for _ in range(64):
            h.update(block)
        os._exit(0)
    _, _, ru = os.wait4(pid, 0)
    return time.monotonic() - t0, ru.ru_utime + ru.ru_stime


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--osmosis", action="append",
                    help="[LABEL=]PATH of an osmosis binary (repeat to compare; default build/osmosis)")
    ap.add_argument("--victim", default=os.path.join(ROOT, "build", "tests", "victim"))
    ap.add_argument("--python", default="/usr/bin/python3")
    ap.add_argument("--procs", type=int, default=20)
    ap.add_argument("--threads", type=int, default=48, help="idle threads per native process")
    ap.add_argument("--py-procs", type=int, default=4)
    ap.add_argument("--py-threads", type=int, default=48, help="Lock waiters per Python process")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--only", choices=["native", "python"])
    o = ap.parse_args()
    bins = []
    for spec in o.osmosis or [os.path.join(ROOT, "build", "osmosis")]:
        label, _, path = spec.rpartition("=")
        bins.append((label or path, os.path.abspath(path)))
    tmp = tempfile.mkdtemp(prefix="osmosis-bench-analyze-")
    snaps = []
    try:
        if o.only != "python":
            vs = start_victims([[o.victim, "threads", str(o.threads)]] * o.procs)
            try:
                d = os.path.join(tmp, "native")
                snap(bins[0][1], [p.pid for p in vs], d)
                snaps.append(("native", d))
            finally:
                stop_victims(vs)
        if o.only != "native":
            env = dict(os.environ, PYVICTIM_TIMEOUT="1200")
            vs = start_victims([[o.python, PYVICTIM, "contention", os.path.join(tmp, "r%d" % i),
                                 str(o.py_threads)] for i in range(o.py_procs)], env)
            try:
                d = os.path.join(tmp, "python")
                snap(bins[0][1], [p.pid for p in vs], d)
                snaps.append(("python", d))
            finally:
                stop_victims(vs)
        results = {}
        floors = []
        load0 = open("/proc/loadavg").read().split()[:3]
        s0, t0 = steal()
        for _ in range(o.runs):
            floors.append(floor_once())
            for name, d in snaps:
                for label, path in bins:
                    results.setdefault((name, label), []).append(analyze_once(path, d, tmp))
        s1, t1 = steal()
        load1 = open("/proc/loadavg").read().split()[:3]
        print("machine: %s, %d CPUs, kernel %s; load average %s before, %s after; steal %.1f%% "
              "during the runs" % (os.uname().nodename, os.cpu_count(), os.uname().release,
                                   " ".join(load0), " ".join(load1),
                                   100.0 * (s1 - s0) / max(1, t1 - t0)))
        print("%-8s %-14s %-6s %-8s %-8s %-8s %-8s %-9s %-10s %-6s" %
              ("snapshot", "osmosis", "procs", "threads", "frames", "wall s", "CPU s",
               "RSS MiB", "py frames", "same frames"))
        fw = statistics.median(f[0] for f in floors)
        fc = statistics.median(f[1] for f in floors)
        print("%-8s %-14s %-6s %-8s %-8s %-8.3f %-8.3f %-9s %-10s %-6s" %
              ("floor", "-", "-", "-", "-", fw, fc, "-", "-", "-"))
        for name, _ in snaps:
            ref = None
            for label, _ in bins:
                rs = results[(name, label)]
                fr, (procs, threads, frames, py) = rs[-1][3], rs[-1][4]
                if ref is None:
                    ref = fr
                same = all(r[3] == ref for r in rs)
                print("%-8s %-14s %-6d %-8d %-8d %-8.3f %-8.3f %-9.1f %-10d %-6s" %
                      (name, label[-14:], procs, threads, frames,
                       statistics.median(r[0] for r in rs), statistics.median(r[1] for r in rs),
                       max(r[2] for r in rs) / (1 << 20), py, "yes" if same else "NO"))
        if not TIME:
            print("(no /usr/bin/time: peak RSS includes this script's own pages)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
