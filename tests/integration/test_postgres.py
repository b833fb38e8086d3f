# SPDX-License-Identifier: MIT
"""A real PostgreSQL 15 (Debian's): a private cluster made by initdb as an unprivileged user in a
mkdtemp, on a free port and a private unix socket directory, shared_buffers 512 MiB, 20 pgbench
clients running. The postmaster is snapshotted with --tree under every method: no transaction
fails, every backend's core holds the shared buffers (a marker the test wrote through a table is
found at the same offset of the shared segment in two backends' cores, and reads the same), and
every process is resumed. The cluster is stopped in `finally`, whatever happened."""

import mmap
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from osmtest import check, main, manifest, osmosis

PGBIN = "/usr/lib/postgresql/15/bin"
USER = 65534  # nobody
METHODS = ["copy", "clone", "precopy", "auto"]
SKIP = 77


def as_user(cmd):
    return ["setpriv", "--reuid=%d" % USER, "--regid=%d" % USER, "--clear-groups"] + cmd


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    def __init__(self, shared_buffers="512MB", max_connections=60):
        self.dir = tempfile.mkdtemp(prefix="osmosis-pg-")
        os.chown(self.dir, USER, USER)
        os.chmod(self.dir, 0o700)
        self.data = os.path.join(self.dir, "data")
        self.port = free_port()
        self.env = dict(os.environ, LC_ALL="C", HOME=self.dir, PGHOST=self.dir,
                        PGPORT=str(self.port), PGUSER="postgres", PGDATABASE="postgres")
        r = subprocess.run(as_user([PGBIN + "/initdb", "-D", self.data, "-U", "postgres",
                                    "--auth=trust", "--no-sync", "-E", "UTF8"]),
                           capture_output=True, text=True, env=self.env, timeout=600)
        check(r.returncode == 0, "initdb failed: %s" % r.stderr)
        self.log = open(os.path.join(self.dir, "log"), "w")
        self.pm = subprocess.Popen(as_user([
            PGBIN + "/postgres", "-D", self.data, "-p", str(self.port), "-k", self.dir,
            "-c", "listen_addresses=", "-c", "shared_buffers=" + shared_buffers,
            "-c", "max_connections=%d" % max_connections, "-c", "fsync=off",
            "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
            "-c", "huge_pages=off"]), stdout=self.log, stderr=self.log, env=self.env)
        deadline = time.time() + 300
        while True:
            r = subprocess.run(as_user([PGBIN + "/pg_isready", "-q"]), env=self.env)
            if r.returncode == 0:
                break
            check(self.pm.poll() is None and time.time() < deadline,
                  "postgres did not start: %s" % open(os.path.join(self.dir, "log")).read())
            time.sleep(0.2)

    def sql(self, q):
        r = subprocess.run(as_user([PGBIN + "/psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1",
                                    "-c", q]), capture_output=True, text=True, env=self.env,
                           timeout=300)
        check(r.returncode == 0, "psql %r: %s" % (q, r.stderr))
        return r.stdout.strip()

    def pgbench(self, *args, **kw):
        return subprocess.Popen(as_user([PGBIN + "/pgbench"] + [str(a) for a in args]),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=self.env, **kw)

    def children(self):
        with open("/proc/%d/task/%d/children" % (self.pm.pid, self.pm.pid)) as f:
            return [int(x) for x in f.read().split()]

    def backends(self):
        """Children of the postmaster that serve a client."""
        out = []
        for pid in self.children():
            try:
                with open("/proc/%d/cmdline" % pid) as f:
                    cmd = f.read().replace("\0", " ")
            except OSError:
                continue
            if cmd.startswith("postgres: postgres postgres"):
                out.append(pid)
        return out

    def stop(self):
        if self.pm.poll() is None:
            self.pm.send_signal(signal.SIGQUIT)  # immediate shutdown: children end too
            try:
                self.pm.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.pm.kill()
                self.pm.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def segment(core_path, vaddr):
    """(mmap of the core, file offset, filesz) of the PT_LOAD at vaddr."""
    f = open(core_path, "rb")
    mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    f.close()
    phoff, = struct.unpack_from("<Q", mm, 32)
    phentsize, phnum = struct.unpack_from("<HH", mm, 54)
    if phnum == 0xFFFF:
        shoff, = struct.unpack_from("<Q", mm, 40)
        phnum, = struct.unpack_from("<I", mm, shoff + 44)
    for i in range(phnum):
        p_type, _, off, va, _, filesz, _, _ = struct.unpack_from("<IIQQQQQQ", mm,
                                                                 phoff + i * phentsize)
        if p_type == 1 and va == vaddr:
            return mm, off, filesz
    raise AssertionError("no segment at 0x%x in %s" % (vaddr, core_path))


def marker_offset(core_path, vaddr, marker):
    mm, off, filesz = segment(core_path, vaddr)
    try:
        i = mm.find(marker, off, off + filesz)
        return None if i < 0 else i - off
    finally:
        mm.close()


def process_states(pids):
    out = {}
    for pid in pids:
        try:
            with open("/proc/%d/stat" % pid) as f:
                st = f.read().rsplit(")", 1)[1].split()[0]
            with open("/proc/%d/status" % pid) as f:
                tracer = int([l for l in f if l.startswith("TracerPid:")][0].split()[1])
        except OSError:
            continue
        out[pid] = (st, tracer)
    return out


def test_postgres_tree_under_every_method():
    if not os.path.exists(PGBIN + "/postgres") or not shutil.which("setpriv"):
        print("postgresql 15 is not installed: skipped")
        sys.exit(SKIP)
    pg = Cluster()
    bench = None
    tmp = tempfile.mkdtemp(prefix="osmosis-pgsnap-")
    try:
        marker = ("osmosis-marker-%016x" % random.getrandbits(64)).encode()
        pg.sql("CREATE TABLE marker(t text); INSERT INTO marker VALUES ('%s');"
               % marker.decode())
        check(pg.sql("SELECT t FROM marker") == marker.decode(), "marker not stored")
        r = subprocess.run(as_user([PGBIN + "/pgbench", "-i", "-q", "-s", "4"]),
                           capture_output=True, text=True, env=pg.env, timeout=600)
        check(r.returncode == 0, "pgbench -i: %s" % r.stderr)
        for m in METHODS:
            # pgbench runs long enough that the freeze falls inside it (the rounds take
            # seconds), short enough that the test does not wait long after the snapshot; on a
            # machine so loaded that it ended before the freeze (no backend in the snapshot),
            # once more with a longer run.
            for seconds in (20, 150):
                bench = pg.pgbench("-n", "-c", 20, "-j", 2, "-T", seconds)
                deadline = time.time() + 120
                while len(pg.backends()) < 20:
                    check(bench.poll() is None and time.time() < deadline,
                          "pgbench clients did not connect: %s" % (bench.poll(),))
                    time.sleep(0.1)
                out = os.path.join(tmp, m)
                serving = pg.backends()  # read now: pgbench may end before the snapshot does
                r = osmosis("snap", "--tree", "--method", m, "--sample", "0", "-o", out,
                            pg.pm.pid, timeout=1200)
                check(r.returncode == 0, "%s: osmosis failed: %s" % (m, r.stderr))
                man = manifest(out)
                procs = {p["pid"]: p for p in man["processes"]}
                states = process_states(procs)
                check(all(st not in "tT" and tracer == 0 for st, tracer in states.values()),
                      "%s: not every process resumed: %s" % (m, states))
                objs = [o for o in man["shared_objects"] if o["size"] >= 512 << 20]
                check(len(objs) == 1, "%s: shared objects %s" % (
                    m, [(o["kind"], o["size"]) for o in man["shared_objects"]]))
                seg = objs[0]
                backends = [p for p in serving if p in procs and
                            procs[p]["capture"] == "memory"]
                if len(backends) >= 2 or seconds == 150:
                    break
                print("  %s: pgbench ended before the freeze (load %.1f): again, longer" %
                      (m, os.getloadavg()[0]))
                bench.communicate(timeout=600)
                shutil.rmtree(out)
            # Autovacuum workers come and go: one that exits during the rounds costs a round
            # that reads the segment whole again, outside the pause (docs/shared-memory.md).
            check(seg["kept"] == "tracked",
                  "%s: the shared buffers were %s (%s)" % (m, seg["kept"], seg["kept_reason"]))
            check(len(backends) >= 2, "%s: backends captured: %s of %s (%s)" % (
                m, backends, serving, [(p, procs[p]["capture"], procs[p].get("capture_note"))
                                       for p in serving if p in procs]))
            found = {}
            for pid in backends[:2]:
                start = [x["start"] for x in seg["mapped_by"] if x["pid"] == pid]
                check(start, "%s: backend %d does not map the segment" % (m, pid))
                found[pid] = marker_offset(os.path.join(out, "core.%d" % pid), start[0],
                                           marker)
            offs = set(found.values())
            check(len(offs) == 1 and None not in offs,
                  "%s: the marker in the backends' cores: %s" % (m, found))
            print("  %s: pause %.1f ms, %d processes, marker at segment offset %#x; %s" %
                  (m, man["pause_us"] / 1000, len(procs), offs.pop(),
                   [l for l in r.stdout.splitlines() if l.startswith("shared:")]))
            so, se = bench.communicate(timeout=600)
            check(bench.returncode == 0, "%s: pgbench failed (%d): %s" %
                  (m, bench.returncode, se[-2000:]))
            failed = re.search(r"number of failed transactions: (\d+)", so)
            done = re.search(r"number of transactions actually processed: (\d+)", so)
            check(failed and int(failed.group(1)) == 0 and done and int(done.group(1)) > 0,
                  "%s: pgbench: %s" % (m, so))
            bench = None
            shutil.rmtree(out)
    finally:
        if bench and bench.poll() is None:
            bench.kill()
            bench.wait()
        pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main(globals())
