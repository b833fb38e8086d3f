# SPDX-License-Identifier: MIT
"""Bad input: a clear one-line error and a non-zero exit, never a crash, a hang or a partial
file. Permission rules: other users' and non-dumpable processes."""

import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
import osmtest
from osmtest import (TempDir, Victim, check, main, manifest, one_line_error, osmosis, snap)

NOBODY = 65534


class SharedDir:
    """A temporary directory anyone may write in, for osmosis run as another user."""

    def __enter__(self):
        self.path = tempfile.mkdtemp()
        os.chmod(self.path, 0o777)
        return self.path

    def __exit__(self, *exc):
        subprocess.run(["rm", "-rf", self.path])


def free_pid():
    with open("/proc/sys/kernel/pid_max") as f:
        pid_max = int(f.read())
    for pid in range(pid_max - 1, 1, -1):
        if not os.path.exists("/proc/%d" % pid):
            return pid
    raise AssertionError("no free pid")


def test_bad_pids():
    with TempDir() as tmp:
        out = os.path.join(tmp, "s")
        cases = [
            ([str(free_pid())], "no process with pid"),
            (["abc"], "is not a process id"),
            (["0"], "is not a process id"),
            (["-5"], "unknown option"),
            (["12x"], "is not a process id"),
            (["99999999999"], "is not a process id"),
            (["2"], "is a kernel thread"),
            ([], "no PID given"),
        ]
        for args, want in cases:
            line = one_line_error(osmosis("snap", "-o", out, *args))
            check(want in line, "%s: %r" % (args, line))
            check(not os.listdir(tmp), "%s left %s" % (args, os.listdir(tmp)))


def test_zombie_and_self():
    with TempDir() as tmp:
        z = subprocess.Popen(["true"])
        osmtest.wait_for(lambda: osmtest.proc_state(z.pid) == "Z", "true to exit (a zombie)")
        line = one_line_error(osmosis("snap", "-o", os.path.join(tmp, "s"), z.pid))
        check("zombie" in line, line)
        z.wait()
        # osmosis's own pid is refused: ask it to snapshot the shell that runs it? Use its pid
        # through a wrapper that execs osmosis with $$.
        r = subprocess.run(["sh", "-c", 'exec "$0" snap -o "$1" $$', os.environ.get("OSMOSIS", "build/osmosis"),
                            os.path.join(tmp, "t")], capture_output=True, text=True, timeout=30)
        check("osmosis itself" in one_line_error(r), r.stderr)
        check(not os.listdir(tmp), "left %s" % os.listdir(tmp))


def test_another_users_process_is_refused_with_the_reason():
    with SharedDir() as d, Victim("basic") as v:  # root's
        r = osmosis("snap", "-o", os.path.join(d, "s"), v.pid, user=NOBODY)
        line = one_line_error(r)
        check("belongs to uid 0" in line and "root" in line, line)
        check(not os.listdir(d), "left %s" % os.listdir(d))
        v.verify()


def test_nondumpable_target():
    with SharedDir() as d, Victim("nondumpable", user=NOBODY) as v:
        r = osmosis("snap", "-o", os.path.join(d, "s"), v.pid, user=NOBODY)
        line = one_line_error(r)
        check("not dumpable" in line and "only root" in line, line)
        check(not os.listdir(d), "left %s" % os.listdir(d))
        # root may, and the files are root's alone
        out = os.path.join(d, "root")
        snap("-o", out, v.pid)
        for f in os.listdir(out) + ["."]:
            st = os.stat(os.path.join(out, f))
            check(st.st_uid == 0 and stat.S_IMODE(st.st_mode) & 0o077 == 0,
                  "%s is readable by others: %o uid %d" % (f, st.st_mode, st.st_uid))
        v.verify()


def test_own_process_as_unprivileged_user():
    with SharedDir() as d, Victim("basic", user=NOBODY) as v:
        r = osmosis("snap", "-o", os.path.join(d, "s"), v.pid, user=NOBODY)
        check(r.returncode == 0, "unprivileged snapshot of own process failed: %s" % r.stderr)
        check(manifest(os.path.join(d, "s"))["processes"][0]["pid"] == v.pid, "manifest")
        v.verify()


def test_existing_and_unusable_directories():
    with Victim("basic") as v, TempDir() as tmp:
        existing = os.path.join(tmp, "exists")
        os.mkdir(existing)
        check("already exists" in one_line_error(osmosis("snap", "-o", existing, v.pid)), "exists")
        check(os.listdir(existing) == [], "wrote into an existing directory")
        line = one_line_error(osmosis("snap", "-o", os.path.join(tmp, "no/such/dir"), v.pid))
        check("No such file or directory" in line, line)
        f = os.path.join(tmp, "file")
        open(f, "w").close()
        line = one_line_error(osmosis("snap", "-o", os.path.join(f, "s"), v.pid))
        check("not a directory" in line.lower(), line)
        ro = os.path.join(tmp, "ro")
        os.mkdir(ro)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", ro], check=True)
        try:
            line = one_line_error(osmosis("snap", "-o", os.path.join(ro, "s"), v.pid))
            check("Read-only file system" in line, line)
        finally:
            subprocess.run(["umount", ro], check=True)
        v.verify()


def test_full_disk_leaves_no_partial_core():
    with Victim("basic") as v, TempDir() as tmp:
        small = os.path.join(tmp, "small")
        os.mkdir(small)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", small], check=True)
        try:
            r = osmosis("snap", "-o", os.path.join(small, "s"), v.pid)
            line = one_line_error(r)
            check("No space left on device" in line and "core." in line, line)
            check(os.listdir(small) == [], "left %s on the full disk" % os.listdir(small))
            st = os.statvfs(small)
            check(st.f_bfree == st.f_blocks, "space still used after cleanup")
        finally:
            subprocess.run(["umount", small], check=True)
        v.verify()


def test_refuses_to_copy_more_than_memory_allows():
    """osmosis in a cgroup limited to 96 MiB, asked to copy a 256 MiB process: it refuses up
    front rather than push itself (or the machine) into the OOM killer."""
    root = None
    for line in open("/proc/mounts"):
        dev, mnt, typ, opts = line.split()[:4]
        if typ == "cgroup" and "memory" in opts.split(","):
            root, limit = mnt, "memory.limit_in_bytes"
        elif typ == "cgroup2" and root is None and "memory" in open(
                os.path.join(mnt, "cgroup.controllers")).read().split():
            root, limit = mnt, "memory.max"
    check(root, "no cgroup hierarchy has the memory controller")
    cg = os.path.join(root, "osmosis-small-%d" % os.getpid())
    os.mkdir(cg)
    try:
        with open(os.path.join(cg, limit), "w") as f:
            f.write(str(96 << 20))
        with Victim("writer", 65536) as v, TempDir() as tmp:
            def enter():
                with open(os.path.join(cg, "cgroup.procs"), "w") as f:
                    f.write(str(os.getpid()))
            # copy needs a buffer of the target's size; pre-copy writes pages to the core file
            # and needs memory only for what the target writes between rounds (here, all of
            # it: refused, or done within the budget)
            for method in ("copy",):
                cmd = [os.environ.get("OSMOSIS", "build/osmosis"), "snap", "--method", method,
                       "-o", os.path.join(tmp, "s"), str(v.pid)]
                r = subprocess.run(cmd, capture_output=True, text=True, preexec_fn=enter,
                                   timeout=60)
                line = one_line_error(r)
                check("needs" in line and "available" in line and "--method clone" in line,
                      line)
                check(not os.listdir(tmp), "left %s" % os.listdir(tmp))
            cmd = [os.environ.get("OSMOSIS", "build/osmosis"), "snap", "--method", "precopy",
                   "-o", os.path.join(tmp, "p"), str(v.pid)]
            r = subprocess.run(cmd, capture_output=True, text=True, preexec_fn=enter, timeout=120)
            if r.returncode != 0:
                line = one_line_error(r)
                check("budget" in line and "--method clone" in line, line)
                check(not os.listdir(tmp), "left %s" % os.listdir(tmp))
            else:
                shutil.rmtree(os.path.join(tmp, "p"))
            # auto takes the clone, which needs no such buffer (or pre-copy within the budget)
            cmd = [os.environ.get("OSMOSIS", "build/osmosis"), "snap", "-o",
                   os.path.join(tmp, "s"), str(v.pid)]
            r = subprocess.run(cmd, capture_output=True, text=True, preexec_fn=enter, timeout=60)
            check(r.returncode == 0, "auto failed: %s" % r.stderr)
            (p,) = manifest(os.path.join(tmp, "s"))["processes"]
            check(p["method"] in ("clone", "precopy"),
                  "auto chose %s: %s" % (p["method"], p["method_reason"]))
            v.verify()
    finally:
        time.sleep(0.2)
        os.rmdir(cg)


def test_usage_errors_and_help():
    r = osmosis("--help")
    check(r.returncode == 0 and "snap" in r.stdout, "osmosis --help")
    r = osmosis("snap", "--help")
    check(r.returncode == 0 and "--max-pause" in r.stdout and "--output" in r.stdout, "snap --help")
    r = osmosis("--version")
    check(r.returncode == 0 and r.stdout.startswith("osmosis "), "--version")
    check(osmosis().returncode == 2, "no command should be a usage error")
    for args, want in [(["snpa"], "did you mean 'snap'"),
                       (["frobnicate"], "is not an osmosis command"),
                       (["snap", "--bogus", "1"], "unknown option"),
                       (["snap", "--max-pause", "0", "1"], "--max-pause"),
                       (["snap", "--max-pause", "abc", "1"], "--max-pause"),
                       (["snap", "--method", "teleport", "1"], "unknown method"),
                       (["snap", "-o"], "needs an argument")]:
        r = osmosis(*args)
        line = one_line_error(r)
        check(r.returncode == 2 and want in line, "%s: %d %r" % (args, r.returncode, line))


if __name__ == "__main__":
    main(globals())
