#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""How long `osmosis analyze` takes on Python processes: P processes of Debian's python3.11 with
T threads each blocked on one threading.Lock (tests/victims/python/pyvictim.py contention), one
snapshot, then analyze timed R times; beside it the machine's load average and steal over the runs are printed
beside it, and the CPU time analyze used (which a loaded machine does not inflate).

    bench/bench-python-analyze.py [--osmosis build/osmosis] [--procs 4] [--threads 50] [--runs 5]
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
VICTIM = os.path.abspath(os.path.join(HERE, "..", "tests", "victims", "python", "pyvictim.py"))


def steal():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return v[7], sum(v)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--osmosis", default=os.path.join(HERE, "..", "build", "osmosis"))
    ap.add_argument("--python", default="/usr/bin/python3.11")
    ap.add_argument("--procs", type=int, default=4)
    ap.add_argument("--threads", type=int, default=48)
    ap.add_argument("--runs", type=int, default=5)
    o = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="osmosis-bench-py-")
    vs = []
    try:
        for i in range(o.procs):
            p = subprocess.Popen([o.python, VICTIM, "contention", os.path.join(tmp, "r%d" % i),
                                  str(o.threads)], stdout=subprocess.PIPE, text=True,
                                 env=dict(os.environ, PYVICTIM_TIMEOUT="1200"))
            vs.append(p)
        pids = [int(p.stdout.readline().split("pid=")[1]) for p in vs]
        snapdir = os.path.join(tmp, "s")
        subprocess.run([o.osmosis, "snap", "-q", "--sample", "0", "-o", snapdir] +
                       [str(x) for x in pids], check=True)
        times, cpus = [], []
        s0, t0 = steal()
        for _ in range(o.runs):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.monotonic()
            r = subprocess.run([o.osmosis, "analyze", "--json", snapdir], capture_output=True,
                               text=True, check=True)
            times.append(time.monotonic() - start)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        s1, t1 = steal()
        rep = json.loads(r.stdout)
        threads = sum(len(p["threads"]) for p in rep["processes"])
        pyframes = sum(1 for p in rep["processes"] for t in p["threads"] for f in t["frames"]
                       if f.get("kind") == "python")
        print("machine: %s, %d CPUs, load average %s, steal %.1f%% during the runs" %
              (os.uname().nodename, os.cpu_count(), open("/proc/loadavg").read().split()[:3],
               100.0 * (s1 - s0) / max(1, t1 - t0)))
        print("%-10s %-8s %-10s %-10s %-10s %-10s %-12s %-10s" %
              ("processes", "threads", "py frames", "min s", "median s", "max s", "median CPU s",
               "max RSS MB"))
        times.sort()
        cpus.sort()
        print("%-10d %-8d %-10d %-10.3f %-10.3f %-10.3f %-12.3f %-10.1f" %
              (len(rep["processes"]), threads, pyframes, times[0], times[len(times) // 2],
               times[-1], cpus[len(cpus) // 2], after.ru_maxrss / 1024.0))
    finally:
        for p in vs:
            p.kill()
            p.wait()
        subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    sys.exit(main())
