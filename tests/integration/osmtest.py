# SPDX-License-Identifier: MIT
"""Helpers for osmosis's integration tests: victims with a fixed life, running osmosis, an
independent ELF core reader (the oracle for byte-for-byte checks), gdb and gcore.

A test file defines functions named test_*; `python3 FILE NAME` runs one, `python3 FILE` all.
A test fails by raising; it never passes by skipping its assertions."""

import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

OSMOSIS = os.environ.get("OSMOSIS", "build/osmosis")
VICTIM = os.environ.get("VICTIM", "build/tests/victim")


class Fail(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Fail(msg)


# ---------------------------------------------------------------------------------------------
# victims


class Victim:
    """A victim process: started, 'ready' line parsed into self.info."""

    def __init__(self, *args, env=None, preexec=None, user=None, cmd=None):
        cmd = (cmd or [VICTIM]) + [str(a) for a in args]
        if user is not None:
            cmd = ["setpriv", "--reuid=%d" % user, "--regid=%d" % user, "--clear-groups"] + cmd
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=env, preexec_fn=preexec)
        line = self.proc.stdout.readline()
        check(line.startswith("ready"), "victim %s did not get ready: %r %s" %
              (args, line, self.proc.stderr.read() if self.proc.poll() is not None else ""))
        self.info = dict(kv.split("=", 1) for kv in line.split()[1:])
        self.pid = int(self.info["pid"])

    def hexinfo(self, key):
        return int(self.info[key], 16)

    def tasks(self):
        return sorted(int(t) for t in os.listdir("/proc/%d/task" % self.pid))

    def states(self):
        out = {}
        for t in self.tasks():
            try:
                with open("/proc/%d/task/%d/stat" % (self.pid, t)) as f:
                    s = f.read()
                out[t] = s[s.rindex(")") + 2]
            except OSError:
                pass
        return out

    def tracer(self):
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                if line.startswith("TracerPid:"):
                    return int(line.split()[1])
        return 0

    def assert_running(self):
        """Alive, not traced, no thread held in a stop."""
        check(self.proc.poll() is None, "victim %d died (rc %s)" % (self.pid, self.proc.returncode))
        deadline = time.time() + 5
        while True:
            st = self.states()
            stopped = [t for t, s in st.items() if s in "tT"]
            tracers = [t for t in self.tasks() if task_tracer(self.pid, t)]
            if not stopped and not tracers:
                return
            if time.time() > deadline:
                raise Fail("victim %d not resumed: stopped threads %s, traced threads %s" %
                           (self.pid, stopped, tracers))
            time.sleep(0.05)

    def verify(self):
        """Ask the victim to check itself; it must say 'verify ok' and exit 0."""
        self.assert_running()
        os.kill(self.pid, signal.SIGUSR2)
        try:
            out, err = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise Fail("victim %d did not answer verify" % self.pid)
        check("verify ok" in out and self.proc.returncode == 0,
              "victim %d verify failed: %r %r rc=%s" % (self.pid, out, err, self.proc.returncode))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def wait_for(cond, what, timeout=60):
    """Poll cond() until it is true; fail saying what was awaited after timeout seconds. Tests
    wait on conditions, never on fixed sleeps: the machine they run on may be loaded."""
    deadline = time.time() + timeout
    while not cond():
        if time.time() > deadline:
            raise Fail("timed out after %d s waiting for %s" % (timeout, what))
        time.sleep(0.01)


def proc_state(pid):
    """The state letter of /proc/PID/stat, or None when there is no such process."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            s = f.read()
        return s[s.rindex(")") + 2]
    except (OSError, ValueError, IndexError):
        return None


def task_tracer(pid, tid):
    try:
        with open("/proc/%d/task/%d/status" % (pid, tid)) as f:
            for line in f:
                if line.startswith("TracerPid:"):
                    return int(line.split()[1])
    except OSError:
        return 0
    return 0


# ---------------------------------------------------------------------------------------------
# osmosis


def osmosis(*args, env=None, timeout=120, user=None):
    cmd = [OSMOSIS] + [str(a) for a in args]
    if user is not None:
        cmd = ["setpriv", "--reuid=%d" % user, "--regid=%d" % user, "--clear-groups"] + cmd
    e = dict(os.environ)
    e.setdefault("ASAN_OPTIONS", "detect_leaks=1")
    if env:
        e.update(env)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=e)


def snap(*args, **kw):
    r = osmosis("snap", *args, **kw)
    check(r.returncode == 0, "osmosis snap %s failed (%d): %s" % (args, r.returncode, r.stderr))
    return r


def one_line_error(r):
    """Bad input: non-zero exit, exactly one line on stderr, starting 'osmosis: error:'."""
    check(r.returncode != 0, "expected failure, got success: %s" % r.stdout)
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    check(len(lines) == 1 and lines[0].startswith("osmosis: error: "),
          "expected one error line, got %r" % r.stderr)
    check("AddressSanitizer" not in r.stderr and "runtime error" not in r.stderr,
          "sanitizer report: %s" % r.stderr)
    return lines[0]


class TempDir:
    def __init__(self):
        self.path = tempfile.mkdtemp(prefix="osmosis-test-")

    def __enter__(self):
        return self.path

    def __exit__(self, *exc):
        shutil.rmtree(self.path, ignore_errors=True)


class SwapFile:
    """A 64 MiB swap file enabled for the block (this machine has no swap), disabled and removed
    at its end."""

    def __init__(self):
        self.path = "/var/tmp/osmosis-test-swap-%d" % os.getpid()

    def __enter__(self):
        subprocess.run(["dd", "if=/dev/zero", "of=" + self.path, "bs=1M", "count=64"],
                       check=True, capture_output=True)
        os.chmod(self.path, 0o600)
        subprocess.run(["mkswap", self.path], check=True, capture_output=True)
        r = subprocess.run(["swapon", self.path], capture_output=True, text=True)
        if r.returncode != 0:
            os.unlink(self.path)
            check(False, "cannot enable a test swap file: %s" % r.stderr)
        return self.path

    def __exit__(self, *exc):
        subprocess.run(["swapoff", self.path])
        os.unlink(self.path)


def manifest(d):
    with open(os.path.join(d, "manifest.json")) as f:
        return json.load(f)


def no_final_files(parent, name):
    """Nothing under a final name: no DIR; anything left is inside a hidden ".NAME.partial-*"
    directory (a run killed with SIGKILL cannot remove it), and no file anywhere else."""
    check(not os.path.exists(os.path.join(parent, name)), "%s exists after a failure" % name)
    for entry in os.listdir(parent):
        path = os.path.join(parent, entry)
        if entry.startswith(".%s.partial-" % name) and os.path.isdir(path):
            for f in os.listdir(path):
                check(not f.endswith(".tmp") or f.startswith("."), "odd file %s" % f)
            continue
        check(not entry.startswith(name) and not entry.startswith("core."),
              "%s left in %s" % (entry, parent))


# ---------------------------------------------------------------------------------------------
# an independent ELF core reader


class Core:
    PT_LOAD, PT_NOTE = 1, 4

    def __init__(self, path):
        self.path = path
        with open(path, "rb") as f:
            self.data = f.read()
        d = self.data
        check(d[:4] == b"\x7fELF" and d[4] == 2 and d[5] == 1, "not an ELF64 LE file")
        (e_type, e_machine, _, _, e_phoff, e_shoff, _, _, e_phentsize, e_phnum, _, e_shnum,
         _) = struct.unpack_from("<HHIQQQIHHHHHH", d, 16)
        check(e_type == 4, "e_type %d is not ET_CORE" % e_type)
        self.machine = e_machine
        if e_phnum == 0xFFFF:
            check(e_shoff and e_shnum >= 1, "PN_XNUM without a section header")
            e_phnum = struct.unpack_from("<I", d, e_shoff + 44)[0]
        self.phnum = e_phnum
        self.phdrs = []
        for i in range(e_phnum):
            p_type, p_flags, p_offset, p_vaddr, _, p_filesz, p_memsz, p_align = \
                struct.unpack_from("<IIQQQQQQ", d, e_phoff + i * e_phentsize)
            self.phdrs.append(dict(type=p_type, flags=p_flags, offset=p_offset, vaddr=p_vaddr,
                                   filesz=p_filesz, memsz=p_memsz))
        self.loads = [p for p in self.phdrs if p["type"] == self.PT_LOAD]
        self.notes = []
        for p in self.phdrs:
            if p["type"] != self.PT_NOTE:
                continue
            off, end = p["offset"], p["offset"] + p["filesz"]
            while off + 12 <= end:
                namesz, descsz, ntype = struct.unpack_from("<III", d, off)
                name = d[off + 12:off + 12 + namesz].rstrip(b"\0").decode()
                doff = off + 12 + ((namesz + 3) & ~3)
                self.notes.append((name, ntype, d[doff:doff + descsz]))
                off = doff + ((descsz + 3) & ~3)

    def read(self, addr, length):
        """Bytes at [addr, addr+length), which may span adjacent segments."""
        out = b""
        while length > 0:
            p = self.load_for(addr)
            if p is None:
                raise Fail("0x%x not in any PT_LOAD" % addr)
            rel = addr - p["vaddr"]
            n = min(length, p["memsz"] - rel)
            if rel + n > p["filesz"]:
                raise Fail("0x%x+%d is beyond the segment's file data" % (addr, n))
            o = p["offset"] + rel
            out += self.data[o:o + n]
            addr += n
            length -= n
        return out

    def load_for(self, addr):
        for p in self.loads:
            if p["vaddr"] <= addr < p["vaddr"] + p["memsz"]:
                return p
        return None

    def note_types(self):
        return [t for _, t, _ in self.notes]

    def thread_tids(self):
        # NT_PRSTATUS: pr_pid at offset 32
        return [struct.unpack_from("<i", desc, 32)[0] for _, t, desc in self.notes if t == 1]


def check_pair_one_instant(out, parent, child, addr, what):
    """The pingpong victim's pair in snapshot `out`: every message one counted as received the
    other had counted as sent. Returns the parent's (sent, received)."""
    c = {}
    for pid in (parent, child):
        magic, sent, received = struct.unpack(
            "<QQQ", Core(os.path.join(out, "core.%d" % pid)).read(addr, 24))
        check(magic == 0x6f736d6f73697321, "counters not found in core.%d" % pid)
        c[pid] = (sent, received)
    check(c[child][1] <= c[parent][0] and c[parent][1] <= c[child][0],
          "%s: received more than was sent: parent %s child %s" % (what, c[parent], c[child]))
    return c[parent]


def xorshift_stream(seed, nbytes):
    out = bytearray()
    s = seed
    M = (1 << 64) - 1
    for _ in range(nbytes // 8):
        s ^= (s << 13) & M
        s ^= s >> 7
        s ^= (s << 17) & M
        out += struct.pack("<Q", s)
    return bytes(out)


# ---------------------------------------------------------------------------------------------
# gdb and gcore


def gdb_backtraces(exe, core):
    """{lwp: [function, ...]} from gdb's 'thread apply all bt' of a core."""
    r = subprocess.run(["gdb", "-nx", "-batch", "-ex", "set pagination off", "-ex",
                        "thread apply all bt", exe, core],
                       capture_output=True, text=True, timeout=120)
    threads, cur = {}, None
    for line in r.stdout.splitlines():
        m = re.match(r"^Thread \d+ \(.*LWP (\d+)\)", line)
        if m:
            cur = int(m.group(1))
            threads[cur] = []
            continue
        m = re.match(r"^#\d+\s+(?:0x[0-9a-f]+ in )?(\S+)", line)
        if m and cur is not None:
            threads[cur].append(m.group(1))
    return threads, r.stdout + r.stderr


def gcore(pid, outdir):
    prefix = os.path.join(outdir, "gcore")
    r = subprocess.run(["gcore", "-o", prefix, str(pid)], capture_output=True, text=True,
                       timeout=300)
    path = "%s.%d" % (prefix, pid)
    check(os.path.exists(path), "gcore failed: %s" % r.stderr)
    return path


# ---------------------------------------------------------------------------------------------


PM_UFFD_WP = 1 << 57  # pagemap: the page is write-protected by a userfaultfd


def children(pid):
    """(pid, state) of every child of pid, zombies included."""
    out = []
    for e in os.listdir("/proc"):
        if not e.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % e) as f:
                st = f.read()
        except OSError:
            continue
        rest = st[st.rindex(")") + 2:].split()
        if int(rest[1]) == pid:
            out.append((int(e), rest[0]))
    return out


def no_write_protection(pid, what, start=None, end=None):
    """No mapping of pid registered with a userfaultfd, and no page write-protected: in
    [start, end) when given, else in every mapping below 1 GiB of size (larger ones are
    reservations, whose pagemap alone would be gigabytes to read)."""
    with open("/proc/%d/smaps" % pid) as f:
        for line in f:
            if line.startswith("VmFlags:"):
                check(" uw" not in line, "%s: pid %d: a mapping is still registered: %s" %
                      (what, pid, line))
    if start is None:
        with open("/proc/%d/maps" % pid) as f:
            ranges = [tuple(int(x, 16) for x in l.split()[0].split("-")) for l in f]
        ranges = [(a, b) for a, b in ranges if b - a <= 1 << 30 and b <= 1 << 47]
    else:
        ranges = [(start, end)]
    with open("/proc/%d/pagemap" % pid, "rb") as pm:
        for a, b in ranges:
            pm.seek(a // 4096 * 8)
            data = pm.read((b - a) // 4096 * 8)
            for i in range(0, len(data), 8):
                (e,) = struct.unpack_from("<Q", data, i)
                check(not e & PM_UFFD_WP, "%s: pid %d: page 0x%x still write-protected" %
                      (what, pid, a + i // 8 * 4096))


class Skip(Exception):
    """A test that cannot run here (a program or an interpreter missing): reported as
    skipped, never as passed."""


def main(ns):
    """Run the named tests (all by default): exit 1 if one failed, 77 if all were skipped."""
    tests = sorted(k for k in ns if k.startswith("test_") and callable(ns[k]))
    wanted = sys.argv[1:] or tests
    failed = skipped = 0
    for name in wanted:
        if name not in ns:
            print("no such test: %s" % name)
            failed += 1
            continue
        t0 = time.time()
        try:
            ns[name]()
            print("ok   %s (%.1fs)" % (name, time.time() - t0))
        except Skip as e:
            skipped += 1
            print("SKIP %s: %s" % (name, e))
        except Exception as e:  # noqa: BLE001 - every failure is reported
            failed += 1
            print("FAIL %s: %s: %s" % (name, type(e).__name__, e))
    sys.exit(1 if failed else 77 if skipped == len(wanted) else 0)
