# SPDX-License-Identifier: MIT
"""A snapshot from anywhere is data, not instructions: osmosis analyze opens no file that a core
or a manifest names unless it is a regular file, uses a file only when its build-id matches the
core's, finishes quickly, and says what it refused. Each test takes a real snapshot and rewrites
the paths in it (NT_FILE in the core, exe in the manifest, the snapshot's own files) to point at
a FIFO, a socket, a device, a directory, a symbolic link to a FIFO, another ELF file; the
manifest repeating one process is deduplicated."""

import ctypes
import json
import os
import shutil
import socket
import struct
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from osmtest import (Fail, TempDir, Victim, check, main, manifest, osmosis, snap)

NT_FILE = 0x46494C45
PT_NOTE = 4
ANALYZE_TIMEOUT = 120  # seconds: generous on a loaded machine; a blocked open never returns


def note_file_names(core):
    """[(absolute offset of the name in the core file, name)] of the core's NT_FILE note."""
    with open(core, "rb") as f:
        d = f.read()
    e_phoff, = struct.unpack_from("<Q", d, 32)
    e_phentsize, e_phnum = struct.unpack_from("<HH", d, 54)
    out = []
    for i in range(e_phnum):
        p_type, _, p_offset, _, _, p_filesz = struct.unpack_from("<IIQQQQ", d, e_phoff + i * e_phentsize)
        if p_type != PT_NOTE:
            continue
        off, end = p_offset, p_offset + p_filesz
        while off + 12 <= end:
            namesz, descsz, ntype = struct.unpack_from("<III", d, off)
            doff = off + 12 + ((namesz + 3) & ~3)
            if ntype == NT_FILE:
                count, = struct.unpack_from("<Q", d, doff)
                pos = doff + 16 + 24 * count
                for _ in range(count):
                    nul = d.index(b"\0", pos)
                    out.append((pos, d[pos:nul].decode()))
                    pos = nul + 1
            off = doff + ((descsz + 3) & ~3)
    return out


def rewrite_paths(core, old, new):
    """Every NT_FILE name equal to old becomes new (of the same length), in place."""
    check(len(new) == len(old), "%r and %r differ in length" % (old, new))
    n = 0
    with open(core, "r+b") as f:
        for off, name in note_file_names(core):
            if name == old:
                f.seek(off)
                f.write(new.encode())
                n += 1
    check(n > 0, "%s is not in the NT_FILE note of %s" % (old, core))


def padded(base, length, leaf="f"):
    """A path under base of exactly length characters, ending in a name made of leaf."""
    room = length - len(base) - 1
    check(room >= 1, "no room for a path of %d characters under %s" % (length, base))
    return os.path.join(base, (leaf * room)[:room])


def padded_device(dev, length):
    """/dev/null as "/dev////null" of exactly length characters (the same file)."""
    d, leaf = os.path.split(dev)
    room = length - len(d) - len(leaf)
    check(room >= 1, "%s is longer than %d characters" % (dev, length))
    return d + "/" * room + leaf


class OpenWatch:
    """inotify on one path: did anything open it (O_PATH opens are not reported)?"""
    IN_OPEN, IN_NONBLOCK = 0x20, 0o4000

    def __init__(self, path):
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self.libc.inotify_init1(self.IN_NONBLOCK)
        check(self.fd >= 0, "inotify_init1 failed")
        wd = self.libc.inotify_add_watch(self.fd, path.encode(), self.IN_OPEN)
        check(wd >= 0, "inotify_add_watch(%s) failed: errno %d" % (path, ctypes.get_errno()))

    def opened(self):
        try:
            return len(os.read(self.fd, 4096)) > 0
        except BlockingIOError:
            return False

    def close(self):
        os.close(self.fd)


class Foreign:
    """A snapshot of a basic victim, and a short private directory for the files it is made to
    name."""

    def __enter__(self):
        self.victim = Victim("basic")
        self.tmp = tempfile.mkdtemp(prefix="osmosis-test-")
        self.short = tempfile.mkdtemp(prefix="o", dir="/tmp")
        self.snap = os.path.join(self.tmp, "s")
        snap("-o", self.snap, self.victim.pid)
        self.victim.stop()
        self.core = os.path.join(self.snap, "core.%d" % self.victim.pid)
        self.exe = os.path.realpath(os.environ.get("VICTIM", "build/tests/victim"))
        check(any(n == self.exe for _, n in note_file_names(self.core)),
              "the victim's path %s is not in its core" % self.exe)
        return self

    def __exit__(self, *exc):
        self.victim.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)
        shutil.rmtree(self.short, ignore_errors=True)

    def point_exe_at(self, path):
        """The core's NT_FILE and the manifest name path for the executable."""
        rewrite_paths(self.core, self.exe, path)
        mpath = os.path.join(self.snap, "manifest.json")
        m = manifest(self.snap)
        for p in m["processes"]:
            p["exe"] = path
        os.chmod(mpath, 0o600)
        with open(mpath, "w") as f:
            json.dump(m, f)

    def analyze(self):
        t0 = time.time()
        try:
            r = osmosis("analyze", "--json", self.snap, timeout=ANALYZE_TIMEOUT)
        except Exception as e:  # noqa: BLE001 - subprocess.TimeoutExpired: it blocked
            raise Fail("analyze did not finish in %d s (blocked?): %s" % (ANALYZE_TIMEOUT, e))
        check(r.returncode == 0, "analyze failed (%d): %s" % (r.returncode, r.stderr))
        check("AddressSanitizer" not in r.stderr and "runtime error" not in r.stderr, r.stderr)
        rep = json.loads(r.stdout)
        return rep, time.time() - t0

    def problems(self, rep):
        return [l for f in rep["findings"] if f["pattern"] == "truncated-dump"
                for l in f["evidence"].get("lines", [])]


def refused_exe(make, kind):
    """Point the executable at what make(path_of_the_right_length) creates; analysis finishes,
    names the refusal once, and still shows every thread's stack from the core."""
    with Foreign() as s:
        path = make(s, len(s.exe))
        watch = OpenWatch(path) if os.path.exists(path) and not path.startswith("/dev") else None
        s.point_exe_at(path)
        rep, took = s.analyze()
        opened = watch.opened() if watch else False
        if watch:
            watch.close()
        lines = s.problems(rep)
        said = [l for l in lines if path in l and kind in l]
        check(len(said) == 1, "the refusal of %s (%s) is said once: %s" % (path, kind, lines))
        check(not opened, "%s was opened" % path)
        (p,) = rep["processes"]
        check(p["threads"] and all(t["frames"] for t in p["threads"]),
              "a thread without frames: %s" % [(t["name"], len(t["frames"])) for t in p["threads"]])
        # libc still comes from its file (its build-id matches): its functions are named
        check(any(f.get("function") and "libc" in (f.get("module") or "")
                  for t in p["threads"] for f in t["frames"]), "no named libc frame")
        print("   %s refused, analysis took %.1f s" % (kind, took))


def make_fifo(s, n):
    p = padded(s.short, n)
    os.mkfifo(p, 0o600)
    return p


def make_socket(s, n):
    p = padded(s.short, n)
    sk = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sk.bind(p)
    sk.listen(1)
    s.sock = sk  # kept open (and listening) while the analysis runs
    return p


def make_dir(s, n):
    p = padded(s.short, n)
    os.mkdir(p, 0o700)
    return p


def make_symlink_to_fifo(s, n):
    fifo = os.path.join(s.short, "fifo")
    os.mkfifo(fifo, 0o600)
    p = padded(s.short, n, "l")
    os.symlink(fifo, p)
    s.fifo_target = fifo
    return p


def test_nt_file_naming_a_fifo_is_not_opened():
    refused_exe(make_fifo, "a FIFO")


def test_nt_file_naming_a_socket_is_not_opened():
    refused_exe(make_socket, "a socket")


def test_nt_file_naming_a_device_is_not_opened():
    for dev in ("/dev/null", "/dev/tty", "/dev/zero"):
        if os.path.exists(dev):
            refused_exe(lambda s, n, d=dev: padded_device(d, n), "a character device")


def test_nt_file_naming_a_directory_is_not_opened():
    refused_exe(make_dir, "a directory")


def test_nt_file_naming_a_symlink_to_a_fifo_is_not_opened():
    with Foreign() as s:
        path = make_symlink_to_fifo(s, len(s.exe))
        watch = OpenWatch(s.fifo_target)
        s.point_exe_at(path)
        rep, _ = s.analyze()
        check(not watch.opened(), "the FIFO behind %s was opened" % path)
        watch.close()
        lines = s.problems(rep)
        check(len([l for l in lines if path in l and "a FIFO" in l]) == 1,
              "the refusal is said once: %s" % lines)


def test_nt_file_naming_a_file_of_another_build_id_is_not_used():
    with Foreign() as s:
        other = shutil.which("true") or "/bin/true"
        path = padded(s.short, len(s.exe))
        shutil.copy(other, path)
        s.point_exe_at(path)
        rep, _ = s.analyze()
        lines = s.problems(rep)
        check(len([l for l in lines if path in l and "build-id differs" in l]) == 1,
              "the mismatch is said once: %s" % lines)
        (p,) = rep["processes"]
        # the victim's own functions are not named from the wrong file
        names = {f.get("function") for t in p["threads"] for f in t["frames"]}
        check(not any(n and n.startswith("victim_") for n in names),
              "victim functions named from another file: %s" % sorted(n for n in names if n))


def build_id_offset(path):
    """(offset in the file, length) of an ELF file's GNU build-id."""
    with open(path, "rb") as f:
        d = f.read()
    e_phoff, = struct.unpack_from("<Q", d, 32)
    e_phentsize, e_phnum = struct.unpack_from("<HH", d, 54)
    for i in range(e_phnum):
        p_type, _, p_offset, _, _, p_filesz = struct.unpack_from("<IIQQQQ", d, e_phoff + i * e_phentsize)
        off, end = p_offset, p_offset + p_filesz
        while p_type == PT_NOTE and off + 12 <= end:
            namesz, descsz, ntype = struct.unpack_from("<III", d, off)
            doff = off + 12 + ((namesz + 3) & ~3)
            if ntype == 3 and d[off + 12:off + 12 + namesz] == b"GNU\0":
                return doff, descsz
            off = doff + ((descsz + 3) & ~3)
    raise Fail("%s has no build-id" % path)


def test_symbols_are_shared_only_through_a_file_of_each_cores_build_id():
    """Symbols are read once for all processes of a snapshot (src/analyze/symcache.c), keyed by
    build-id: two processes whose cores name one path, one of them built as the file there is
    and one not (another build-id), get symbols for the first only; the second says the file's
    build-id differs and shows no function of that file."""
    with TempDir() as tmp:
        exe = os.path.realpath(os.environ.get("VICTIM", "build/tests/victim"))
        a, b = os.path.join(tmp, "va"), os.path.join(tmp, "vb")
        shutil.copy(exe, a)
        shutil.copy(exe, b)
        off, n = build_id_offset(b)
        with open(b, "r+b") as f:
            f.seek(off)
            byte = f.read(1)
            f.seek(off)
            f.write(bytes([byte[0] ^ 0xFF]))
        d = os.path.join(tmp, "s")
        with Victim("basic", cmd=[a]) as old, Victim("basic", cmd=[b]) as new:
            snap("-o", d, old.pid, new.pid)
            old.stop()
            new.stop()
        # The first process's core names the second's file (same length): another build-id.
        rewrite_paths(os.path.join(d, "core.%d" % old.pid), a, b)
        r = osmosis("analyze", "--json", d, timeout=ANALYZE_TIMEOUT)
        check(r.returncode == 0, "analyze failed (%d): %s" % (r.returncode, r.stderr))
        rep = json.loads(r.stdout)
        names = {p["pid"]: {f.get("function") for t in p["threads"] for f in t["frames"]}
                 for p in rep["processes"]}
        ours = lambda pid: sorted(x for x in names[pid] if x and x.startswith("victim_"))
        check(ours(new.pid), "the process of the file has no symbol of it: %s" % names[new.pid])
        check(not ours(old.pid), "symbols of another build-id's file: %s" % ours(old.pid))
        lines = [l for f in rep["findings"] if f["pattern"] == "truncated-dump"
                 for l in f["evidence"].get("lines", [])]
        check([l for l in lines if "core.%d" % old.pid in l and "build-id differs" in l],
              "the mismatch is not said: %s" % lines)


def test_snapshot_files_that_are_not_regular_are_refused():
    with Foreign() as s:
        # the core itself a FIFO: refused, reported, the analysis goes on
        os.unlink(s.core)
        os.mkfifo(s.core, 0o600)
        rep, _ = s.analyze()
        lines = s.problems(rep)
        check(any("core.%d" % s.victim.pid in l and "a FIFO" in l for l in lines),
              "the FIFO core is not reported: %s" % lines)
        # manifest.json a FIFO: one error line, at once
        mpath = os.path.join(s.snap, "manifest.json")
        os.unlink(mpath)
        os.mkfifo(mpath, 0o600)
        r = osmosis("analyze", s.snap, timeout=ANALYZE_TIMEOUT)
        check(r.returncode != 0 and "manifest.json is a FIFO" in r.stderr, r.stderr)
        # manifest.json a symbolic link: not followed
        os.unlink(mpath)
        os.symlink("/dev/zero", mpath)
        r = osmosis("analyze", s.snap, timeout=ANALYZE_TIMEOUT)
        check(r.returncode != 0 and "symbolic link" in r.stderr, r.stderr)
        r = osmosis("show", s.snap, timeout=ANALYZE_TIMEOUT)
        check(r.returncode != 0 and "symbolic link" in r.stderr, r.stderr)


def write_manifest(s, m):
    mpath = os.path.join(s.snap, "manifest.json")
    os.chmod(mpath, 0o600)
    with open(mpath, "w") as f:
        json.dump(m, f)


def test_manifest_repeating_a_process_is_deduplicated():
    with Foreign() as s:
        m = manifest(s.snap)
        (p,) = m["processes"]
        m["processes"] = [p] * 1000
        write_manifest(s, m)
        rep, took = s.analyze()
        check(len(rep["processes"]) == 1, "%d processes analyzed" % len(rep["processes"]))
        lines = s.problems(rep)
        check(len([l for l in lines if "999 process entries repeat" in l and
                   "pid %d" % p["pid"] in l]) == 1, "no one-line warning: %s" % lines)
        check(not [f for f in rep["findings"] if f["pattern"] == "deadlock"],
              "a process waiting on itself through its copies")
        print("   1000 copies of one process analyzed in %.1f s" % took)
        # distinct pids naming one core: the core is read for the first only
        m["processes"] = [dict(p, pid=p["pid"] + 100000 + i) for i in range(200)]
        write_manifest(s, m)
        rep, took = s.analyze()
        lines = s.problems(rep)
        check(any("199 processes name a core file" in l for l in lines),
              "shared core not reported: %s" % lines)
        print("   200 processes naming one core analyzed in %.1f s" % took)
        # one that exited before the freeze, its name never read: the summary and its line agree
        m["processes"] = [p, {"pid": p["pid"] + 1, "comm": "", "capture": "exited",
                              "capture_note": "exited before the freeze", "threads": []}]
        write_manifest(s, m)
        rep, took = s.analyze()
        (f,) = [f for f in rep["findings"] if f["pattern"] == "truncated-dump" and
                "exited" in f["summary"]]
        check("exited before osmosis could capture" in f["summary"], f["summary"])
        check(any("(name unknown): exited before the freeze" in l
                  for l in s.problems(rep)), s.problems(rep))


if __name__ == "__main__":
    main(globals())
