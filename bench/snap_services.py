#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""osmosis's peak memory when it snapshots a few services at once, against its budget.

Starts, on free ports and in a private directory, redis-server (filled with DEBUG POPULATE
keys: a heap of small records), nginx (a master and two workers) and bench victims of the sizes
given (osmosis-bench-stall --victim: records, a heartbeat, a writer of all their memory), then
runs `osmosis snap --tree` of all of them, with and without --compress, and prints osmosis's
peak resident memory (from its summary) beside the --max-memory default it chose. Every service
is stopped at the end, whatever happens.

--all takes `osmosis snap --all` instead: every process osmosis sees. On a machine of one's own
that is the machine. On a shared machine it would freeze every other user's processes, so
--pidns runs the whole bench (itself, the services and osmosis) in a PID namespace of its own
with its own /proc (`unshare --pid --fork --mount-proc`): there `--all` is every process of that
namespace, the bench's python (its init) and the services, and nothing of anyone else's. When
the namespace's init ends, the kernel kills whatever is left in it.

Usage: bench/snap_services.py [--osmosis build/osmosis] [--victim build/bench/osmosis-bench-stall]
                              [--sizes 256,1024] [--keys 2000000] [--dir /var/tmp]
                              [--all | --pidns]
"""
import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from shared import floor_ms  # noqa: E402


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(cond, what, timeout=120):
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return
        time.sleep(0.1)
    raise RuntimeError("timed out waiting for " + what)


def children(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def is_kthread(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            flags = int(f.read().rsplit(")", 1)[1].split()[6])
        return bool(flags & 0x00200000)  # PF_KTHREAD
    except (OSError, ValueError, IndexError):
        return True  # gone: not counted


def stop(p, sig=signal.SIGTERM):
    if p is None or p.poll() is not None:
        return
    p.send_signal(sig)
    try:
        p.wait(timeout=20)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--osmosis", default="build/osmosis")
    ap.add_argument("--victim", default="build/bench/osmosis-bench-stall")
    ap.add_argument("--sizes", default="256,1024")
    ap.add_argument("--keys", type=int, default=2000000)
    ap.add_argument("--dir", default="/var/tmp")
    ap.add_argument("--all", action="store_true", help="snap --all instead of the tree")
    ap.add_argument("--pidns", action="store_true",
                    help="--all, in a PID namespace of the bench's own (a shared machine)")
    a = ap.parse_args()
    if a.pidns and os.environ.get("OSMOSIS_BENCH_PIDNS") != "1":
        if not shutil.which("unshare"):
            print("skipped: unshare (util-linux) is not installed")
            return 0
        env = dict(os.environ, OSMOSIS_BENCH_PIDNS="1")
        r = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", sys.executable,
                            os.path.abspath(__file__)] + sys.argv[1:], env=env)
        return r.returncode
    if a.pidns:
        a.all = True
    for tool in ("redis-server", "redis-cli", "nginx"):
        if not shutil.which(tool):
            print("skipped: %s is not installed" % tool)
            return 0
    tmp = tempfile.mkdtemp(prefix="osmosis-bench-services-", dir=a.dir)
    procs = []
    try:
        port = free_port()
        redis = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", tmp,
             "--save", "", "--appendonly", "no", "--daemonize", "no",
             "--enable-debug-command", "yes"], stdout=subprocess.DEVNULL, start_new_session=True)
        procs.append((redis, signal.SIGTERM))
        cli = ["redis-cli", "-p", str(port)]
        wait_for(lambda: subprocess.run(cli + ["PING"], capture_output=True,
                                        text=True).stdout.strip() == "PONG", "redis")
        subprocess.run(cli + ["DEBUG", "POPULATE", str(a.keys), "user:", "64"],
                       check=True, capture_output=True, timeout=600)

        nport = free_port()
        os.mkdir(os.path.join(tmp, "html"))
        with open(os.path.join(tmp, "html", "index.html"), "w") as f:
            f.write("hello\n" * 100)
        conf = os.path.join(tmp, "nginx.conf")
        with open(conf, "w") as f:
            f.write("""daemon off; master_process on; worker_processes 2;
pid %(t)s/nginx.pid; error_log %(t)s/error.log; user root;
events { worker_connections 256; }
http { access_log off; client_body_temp_path %(t)s/body; proxy_temp_path %(t)s/proxy;
  fastcgi_temp_path %(t)s/fcgi; uwsgi_temp_path %(t)s/uwsgi; scgi_temp_path %(t)s/scgi;
  server { listen 127.0.0.1:%(p)d; root %(t)s/html; } }
""" % {"t": tmp, "p": nport})
        nginx = subprocess.Popen(["nginx", "-c", conf, "-p", tmp], start_new_session=True)
        procs.append((nginx, signal.SIGQUIT))
        wait_for(lambda: len(children(nginx.pid)) >= 2, "nginx workers")

        pids = [redis.pid, nginx.pid]
        for mib in [int(x) for x in a.sizes.split(",") if x]:
            v = subprocess.Popen([a.victim, "--victim", "%d,0,0,0,1" % mib],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                 start_new_session=True)
            procs.append((v, signal.SIGKILL))
            if not v.stdout.readline().startswith("ready"):
                raise RuntimeError("victim of %d MiB did not start" % mib)
            pids.append(v.pid)

        with open("/proc/meminfo") as f:
            avail = int(re.search(r"MemAvailable:\s+(\d+)", f.read()).group(1)) * 1024
        print("%s UTC; command: %s" % (time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
                                        " ".join(["bench/snap_services.py"] + sys.argv[1:])))
        print("services: redis (%d keys), nginx (master + 2 workers), victims of %s MiB; "
              "MemAvailable %.1f GiB; load average %s" % (
                  a.keys, a.sizes, avail / 2**30,
                  "/".join(open("/proc/loadavg").read().split()[:3])))
        if a.all:
            users = [d for d in os.listdir("/proc") if d.isdigit() and not is_kthread(int(d))]
            print("--all: %d processes in this /proc%s (kernel threads left out by osmosis)" %
                  (len(users), ", a PID namespace of the bench's own (its init: the bench)"
                   if a.pidns else ""))
        print("floor: the longest gap of a 200 us sleeper over 3 s, nothing snapshotted: "
              "%.1f ms" % floor_ms(3))
        print("| %-34s | %8s | %12s | %12s | %10s | %9s | %8s | %-22s |" %
              ("osmosis snap", "total s", "peak RSS MiB", "buffers MiB", "budget MiB", "disk MiB",
               "pause ms", "captured"))
        print("|------------------------------------|----------|--------------|--------------|"
              "------------|-----------|----------|------------------------|")
        verdicts = []
        for extra in ([], ["--compress"]):
            out = os.path.join(tmp, "snap")
            scope = ["--all"] if a.all else ["--tree"] + [str(p) for p in pids]
            t0 = time.time()
            r = subprocess.run([a.osmosis, "snap", "--sample", "0", "-o", out] + extra + scope,
                               capture_output=True, text=True, timeout=3600)
            dt = time.time() - t0
            m = re.search(r"peak memory of osmosis: (\S+) (\S+) resident, (\S+) (\S+) in its "
                          r"buffers \(budget (\S+) (\S+)\)", r.stdout)
            if r.returncode != 0 or not m:
                print("osmosis failed (%d): %s" % (r.returncode, r.stderr.strip()[-400:]))
                shutil.rmtree(out, ignore_errors=True)
                continue

            def mib(n, unit):
                return float(n) * {"B": 2**-20, "KiB": 2**-10, "MiB": 1, "GiB": 1024}[unit]
            disk = sum(os.stat(os.path.join(out, f)).st_blocks * 512 for f in os.listdir(out))
            with open(os.path.join(out, "manifest.json")) as f:
                man = json.load(f)
            procs_m = man["processes"]
            got = sum(1 for q in procs_m if q.get("capture") == "memory")
            rss, budget = mib(m[1], m[2]), mib(m[5], m[6])
            print("| %-34s | %8.2f | %12.0f | %12.0f | %10.0f | %9.0f | %8.1f | %-22s |" %
                  (" ".join(scope[:1] + extra), dt, rss, mib(m[3], m[4]), budget, disk / 2**20,
                   man["pause_us"] / 1000, "%d of %d processes" % (got, len(procs_m))))
            verdicts.append("%s: peak RSS %.0f MiB, budget %.0f MiB: %s" % (
                " ".join(scope[:1] + extra), rss, budget,
                "within" if rss <= budget else "OVER"))
            for q in procs_m:
                if q.get("capture") != "memory":
                    verdicts.append("  not captured: pid %d %s: %s%s" % (
                        q["pid"], q.get("comm"), q.get("capture"),
                        " (%s)" % q["capture_note"] if q.get("capture_note") else ""))
            sys.stdout.flush()
            shutil.rmtree(out, ignore_errors=True)
        for v in verdicts:
            print(v)
    finally:
        for p, sig in reversed(procs):
            stop(p, sig)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
