# SPDX-License-Identifier: MIT
"""osmosis analyze on Python programs: Python frames merged with the native ones, equal to what
gdb's py-bt (Debian's python3.11-dbg) reads from the same core and to what the victim recorded
itself with sys._current_frames() just before it blocked; thread names; the GIL as a lock;
threading's locks named at Python level; the two-lock deadlock, across processes too.

Debian's python3.11 is always tested; pyenv's 3.11, 3.12 and 3.13 where `pyenv root` has them,
each its own test, which exits 77 (skipped) where the interpreter is absent."""

import json
import os
import re
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from osmtest import Core, Fail, Skip, TempDir, check, main, manifest, osmosis, snap  # noqa: E402

PYVICTIM = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "victims", "python",
                                        "pyvictim.py"))
DEBIAN_PYTHON = "/usr/bin/python3.11"


def pyenv_python(version):
    root = os.environ.get("PYENV_ROOT")
    if not root and shutil.which("pyenv"):
        root = subprocess.run(["pyenv", "root"], capture_output=True, text=True).stdout.strip()
    root = root or os.path.expanduser("~/.pyenv")
    exe = os.path.join(root, "versions", version, "bin", "python3")
    if not os.access(exe, os.X_OK):
        raise Skip("CPython %s is not installed under %s" % (version, root))
    return exe


def debian_python():
    if not os.access(DEBIAN_PYTHON, os.X_OK):
        raise Skip("%s is not installed" % DEBIAN_PYTHON)
    return DEBIAN_PYTHON


class PyVictim:
    def __init__(self, python, scenario, tmp, n=0):
        self.record_path = os.path.join(tmp, "record-%s.json" % scenario)
        self.proc = subprocess.Popen([python, PYVICTIM, scenario, self.record_path, str(n)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     start_new_session=True)
        line = self.proc.stdout.readline()
        if not line.startswith("ready"):
            self.stop()
            raise Fail("python victim %s did not get ready: %r %s" %
                       (scenario, line, self.proc.stderr.read()))
        self.info = dict(kv.split("=", 1) for kv in line.split()[1:])
        self.pid = int(self.info["pid"])

    def record(self):
        with open(self.record_path) as f:
            return {int(k): v for k, v in json.load(f).items()}

    def stop(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, 9)
            except ProcessLookupError:
                pass
            self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def analyze(d, *args):
    r = osmosis("analyze", "--json", *args, d)
    check(r.returncode == 0, "analyze failed (%d): %s" % (r.returncode, r.stderr))
    check(not r.stderr.strip(), "analyze wrote to stderr: %s" % r.stderr)
    return json.loads(r.stdout)


def snap_analyze(v, tmp, *args):
    out = os.path.join(tmp, "s")
    snap("--sample", "0.3", *args, "-o", out, v.pid)
    return out, analyze(out)


def process(rep, pid):
    for p in rep["processes"]:
        if p["pid"] == pid:
            return p
    raise Fail("pid %d not in the report" % pid)


def python_frames(rep, pid):
    """{tid: [(function, file, line), ...]} of the Python frames, innermost first."""
    return {t["tid"]: [(f["function"], f["file"], f["line"]) for f in t["frames"]
                       if f.get("kind") == "python"]
            for t in process(rep, pid)["threads"]}


def findings(rep, pattern):
    return [f for f in rep["findings"] if f["pattern"] == pattern]


def check_no_python_problem(rep, pid):
    bad = [p for p in rep["problems"] if p.startswith("pid %d" % pid)]
    check(not bad, "problems with pid %d: %s" % (pid, bad))


def check_against_record(rep, v, skip_main=True):
    """Every thread's Python frames equal what the victim recorded (the main thread recorded
    itself before it blocked elsewhere, so it is left out)."""
    got = python_frames(rep, v.pid)
    rec = v.record()
    for tid, r in rec.items():
        if skip_main and tid == v.pid:
            continue
        want = [tuple(x) for x in r["frames"]]
        check(got.get(tid) == want, "thread %d (%s): osmosis %s, the victim recorded %s" %
              (tid, r["name"], got.get(tid), want))
    names = {t["tid"]: t.get("runtime_name") for t in process(rep, v.pid)["threads"]}
    for tid, r in rec.items():
        check(names.get(tid) == r["name"], "thread %d: name %r, want %r" %
              (tid, names.get(tid), r["name"]))


def py_bt(python, core):
    """gdb's py-bt of every thread: {lwp: [(name, file, line), ...]} innermost first."""
    r = subprocess.run(["gdb", "-batch", "-nx", "-ex", "set debuginfod enabled off",
                        "-ex", "source /usr/share/gdb/auto-load/usr/bin/python3.11-gdb.py",
                        "-ex", "thread apply all py-bt", python, core],
                       capture_output=True, text=True, timeout=240)
    out, cur = {}, None
    for line in r.stdout.splitlines():
        m = re.match(r"Thread \d+ \(.*LWP (\d+)\)\)?:", line)
        if m:
            cur = int(m.group(1))
            out[cur] = []
            continue
        # py-bt prints "line ?" where its own line-table reader fails (long forms of the
        # location table, seen for a module frame far down a file): None, any line
        m = re.match(r'\s+File "(.*)", line (\d+|\?), in (.*)$', line)
        if m and cur is not None:
            out[cur].append((m.group(3), m.group(1),
                             None if m.group(2) == "?" else int(m.group(2))))
    check(out, "gdb py-bt printed no thread: %s %s" % (r.stdout[-2000:], r.stderr[-2000:]))
    return out


def bt_equal(bt, mine):
    """py-bt's frames equal osmosis's, a line py-bt could not read matching any."""
    return bt is not None and len(bt) == len(mine) and all(
        b[:2] == m[:2] and (b[2] is None or b[2] == m[2]) for b, m in zip(bt, mine))


def short(fn):
    return fn.split(".")[-1]


def check_mix(python, with_gdb=False):
    with TempDir() as tmp, PyVictim(python, "mix", tmp) as v:
        d, rep = snap_analyze(v, tmp)
        check_no_python_problem(rep, v.pid)
        p = process(rep, v.pid)
        check(p["runtime"] and p["runtime"].startswith("CPython 3."), "runtime %s" % p["runtime"])
        check_against_record(rep, v)
        got = python_frames(rep, v.pid)
        # the merge: each run of Python frames sits before a native evaluation frame
        for t in p["threads"]:
            kinds = [f.get("kind") for f in t["frames"]]
            check(kinds.count("python") == len(got[t["tid"]]), "kinds")
            if "python" in kinds:
                after = t["frames"][kinds.index("python"):]
                check(any(f.get("function") == "_PyEval_EvalFrameDefault" for f in after),
                      "thread %d: no native eval frame after its Python frames" % t["tid"])
        # the ctypes callback: Python frames on both sides of the native qsort
        cb = [t for t in p["threads"] if t.get("runtime_name") == "ctypes-callback"][0]
        fns = [f.get("function") or "" for f in cb["frames"]]
        check(any("qsort" in f or "msort" in f for f in fns[fns.index("callback_sleeper"):
                                                          fns.index("ctypes_driver")]),
              "no native qsort between the callback and its caller: %s" % fns)
        # Python-level waits
        waits = {t.get("runtime_name"): t["wait"] or "" for t in p["threads"]}
        check("queue.Queue.get" in waits["getter"], "getter: %s" % waits["getter"])
        check("threading.Event.wait" in waits["event-waiter"], "%s" % waits["event-waiter"])
        check("threading.Condition.wait" in waits["cond-waiter"], "%s" % waits["cond-waiter"])
        check("threading.Lock" in waits["acquirer"] and "holder unknown" in waits["acquirer"],
              "acquirer: %s" % waits["acquirer"])
        check("threading.Semaphore.acquire" in waits["sem-waiter"], "%s" % waits["sem-waiter"])
        check(re.match(r'waits in "with rl:" \(pyvictim.py:\d+, rlock_waiter\) for a '
                       r'threading.RLock at 0x[0-9a-f]+ held by thread %d "MainThread"' % v.pid,
                       waits["rlock-waiter"]), "rlock-waiter: %s" % waits["rlock-waiter"])
        if with_gdb:
            core = os.path.join(d, "core.%d" % v.pid)
            bt = py_bt(python, core)
            for tid, frames in got.items():
                mine = [(short(f), file, line) for f, file, line in frames]
                check(bt_equal(bt.get(tid), mine), "thread %d: osmosis %s, py-bt %s" %
                      (tid, mine, bt.get(tid)))


def check_deadlock(python):
    with TempDir() as tmp, PyVictim(python, "deadlock", tmp) as v:
        d, rep = snap_analyze(v, tmp)
        check_no_python_problem(rep, v.pid)
        check_against_record(rep, v)
        (f,) = findings(rep, "deadlock")
        names = {t["tid"]: t.get("runtime_name") for t in process(rep, v.pid)["threads"]}
        check(sorted(names[t] for t in f["tids"]) == ["worker-1", "worker-2"],
              "deadlock names %s" % [names.get(t) for t in f["tids"]])
        text = "\n".join(f["evidence"]["lines"])
        for w in ("worker-1", "worker-2"):
            check(re.search(r'thread \d+ "%s" waits in "with second:" \(pyvictim.py:\d+, '
                            r'transfer\) for a threading.Lock at 0x[0-9a-f]+' % w, f["summary"] +
                            "\n" + text) or
                  ('"%s"' % w in text and 'waits in "with second:" (pyvictim.py:' in text),
                  "deadlock evidence lacks %s's with line: %s" % (w, text))
        addrs = set(re.findall(r"threading.Lock at (0x[0-9a-f]+)", text))
        check(len(addrs) == 2, "two locks named: %s" % addrs)
        check("Python" in f["summary"] or "threading.Lock" in f["summary"],
              "the summary speaks Python: %s" % f["summary"])


def gil_settled(v):
    """Waits on the gil victim's condition: the main thread asleep in the C call, the spinners
    on the GIL."""
    deadline = time.time() + 60
    while True:
        sc = {}
        for t in os.listdir("/proc/%d/task" % v.pid):
            try:
                with open("/proc/%d/task/%s/syscall" % (v.pid, t)) as fh:
                    sc[int(t)] = fh.read().split()[0]
            except OSError:
                pass
        if sc.get(v.pid) in ("35", "230") and sum(1 for k, s in sc.items()
                                                  if k != v.pid and s == "202") == 3:
            return
        check(time.time() < deadline, "the gil victim never settled: %s" % sc)
        time.sleep(0.05)


def check_gil_waiters(rep, v):
    p = process(rep, v.pid)
    holders = [t["tid"] for t in p["threads"] if t.get("holds_gil")]
    check(holders == [v.pid], "GIL holder %s" % holders)
    waiters = sorted(t["runtime_name"] for t in p["threads"] if t.get("waits_gil"))
    check(waiters == ["spinner-0", "spinner-1", "spinner-2"], "GIL waiters %s" % waiters)
    return p


def check_gil(python):
    with TempDir() as tmp, PyVictim(python, "gil", tmp, 3) as v:
        gil_settled(v)
        d, rep = snap_analyze(v, tmp)
        check_no_python_problem(rep, v.pid)
        check_gil_waiters(rep, v)
        (f,) = findings(rep, "gil-held-in-blocking-call")
        check(v.pid in f["tids"] and f["severity"] == "warning", "finding %s" % f)
        check("3 threads wait for it" in f["summary"] and "MainThread" in f["summary"],
              "summary %s" % f["summary"])


# --- the tests ---------------------------------------------------------------------------------

def test_debian_python311_frames_equal_py_bt_and_the_record():
    check_mix(debian_python(), with_gdb=True)


def test_debian_python311_deadlock_of_two_locks():
    check_deadlock(debian_python())


def test_debian_python311_gil_held_across_a_blocking_call():
    check_gil(debian_python())


def test_gil_waiter_met_between_two_of_its_waits_still_waits_for_the_gil():
    # A GIL waiter wakes every 5 ms; on a busy machine the freeze can meet one woken and
    # running its wait loop in take_gil, in no system call. The manifest is edited to read as
    # it then would (no syscall for spinner-0); its stack, in the core, is still in take_gil.
    python = pyenv_python("3.12.1")  # with symbols: take_gil is named
    with TempDir() as tmp, PyVictim(python, "gil", tmp, 3) as v:
        gil_settled(v)
        d, rep = snap_analyze(v, tmp)
        tid = [t["tid"] for t in process(rep, v.pid)["threads"]
               if t.get("runtime_name") == "spinner-0"][0]
        path = os.path.join(d, "manifest.json")
        m = manifest(d)
        (t,) = [t for p in m["processes"] if p["pid"] == v.pid for t in p["threads"]
                if t["tid"] == tid]
        check(t["syscall"] and t["syscall"]["name"] == "futex", "spinner-0: %s" % t["syscall"])
        t["syscall"] = None
        with open(path, "w") as f:
            json.dump(m, f)
        rep = analyze(d)
        check_no_python_problem(rep, v.pid)
        p = check_gil_waiters(rep, v)
        (t,) = [t for t in p["threads"] if t["tid"] == tid]
        check(t["wait"].startswith("waits for the GIL, held by"), "spinner-0: %s" % t["wait"])
        (f,) = findings(rep, "gil-held-in-blocking-call")
        check("3 threads wait for it" in f["summary"], "summary %s" % f["summary"])


COPIER = r"""
import threading, time
src = bytearray(32 << 20)
def copier():
    while True:
        bytes(src)  # a memmove of 32 MiB in the C library, the GIL held: the interpreter's work
def spinner():
    while True:
        pass
for i in range(2):
    threading.Thread(target=spinner, name="spinner-%d" % i, daemon=True).start()
threading.Thread(target=copier, name="copier", daemon=True).start()
print("ready", flush=True)
time.sleep(3600)
"""


def test_gil_holder_at_work_in_the_c_library_draws_no_warning():
    """A thread copying a bytearray holds the GIL inside libc's memmove while two others wait
    their turn: the interpreter at work, not a C call that stops the others (a busy threaded
    server drew gil-held-in-blocking-call for a list grown with memmove)."""
    python = debian_python()
    p = subprocess.Popen([python, "-c", COPIER], stdout=subprocess.PIPE, text=True)
    try:
        check(p.stdout.readline().startswith("ready"), "the copier did not start")
        time.sleep(0.5)
        in_memmove = 0
        with TempDir() as tmp:
            for i in range(4):
                out = os.path.join(tmp, "s%d" % i)
                snap("--sample", "0.3", "-o", out, p.pid)
                rep = analyze(out)
                check_no_python_problem(rep, p.pid)
                th = {t.get("runtime_name"): t for t in process(rep, p.pid)["threads"]}
                fns = [f.get("function") or "" for f in th["copier"]["frames"][:2]]
                in_memmove += th["copier"].get("holds_gil", False) and "memmove" in fns[0]
                bad = [f["summary"] for f in findings(rep, "gil-held-in-blocking-call")]
                check(not bad, "snapshot %d: %s" % (i, bad))
        print("  the copier held the GIL in memmove in %d of 4 snapshots" % in_memmove)
    finally:
        p.kill()
        p.wait()


def test_gil_waiter_holder_and_mutex_owner_are_one_chain():
    python = debian_python()
    with TempDir() as tmp, PyVictim(python, "gil-chain", tmp, 2) as v:
        deadline = time.time() + 60
        while True:
            with open("/proc/%d/task/%d/syscall" % (v.pid, v.pid)) as fh:
                if fh.read().split()[0] == "202":
                    break
            check(time.time() < deadline, "the main thread never blocked on the mutex")
            time.sleep(0.05)
        time.sleep(0.3)  # the spinners get to the GIL once the holder keeps it
        d, rep = snap_analyze(v, tmp)
        names = {t["tid"]: t.get("runtime_name") for t in process(rep, v.pid)["threads"]}
        chains = [f for f in findings(rep, "wait-chain")
                  if names.get(f["evidence"]["chain"][0]["tid"], "").startswith("spinner")]
        check(chains, "no chain from a GIL waiter: %s" % [f["summary"] for f in rep["findings"]])
        c = chains[0]["evidence"]["chain"]
        check([names[s["tid"]] for s in c][1:] == ["MainThread"] and
              "GIL" in c[0]["waits_on"], "chain %s" % c)
        check(names[[t for t in chains[0]["tids"] if names[t] == "mutex-holder"][0]] ==
              "mutex-holder", "the chain ends at the mutex's owner: %s" % chains[0]["summary"])


def test_high_contention_on_one_python_lock():
    python = debian_python()
    with TempDir() as tmp, PyVictim(python, "contention", tmp, 10) as v:
        d, rep = snap_analyze(v, tmp)
        check_against_record(rep, v)
        (f,) = findings(rep, "high-contention")
        names = {t["tid"]: t.get("runtime_name") for t in process(rep, v.pid)["threads"]}
        check("threading.Lock" in f["summary"], "summary %s" % f["summary"])
        check(sum(1 for t in f["tids"] if names[t].startswith("contender")) == 10 and
              any(names[t] == "holder" for t in f["tids"]), "tids %s" % f["tids"])


def test_python_deadlock_across_two_processes():
    python = debian_python()
    with TempDir() as tmp, PyVictim(python, "procs", tmp) as v:
        d, rep = snap_analyze(v, tmp, "--tree")
        child = int(v.info["child"])
        (f,) = findings(rep, "deadlock")
        check(sorted(f["pids"]) == sorted([v.pid, child]), "pids %s" % f["pids"])
        text = "\n".join(f["evidence"]["lines"])
        check(text.count("in Python: ask_and_wait (pyvictim.py:") == 2, "Python frames in %s" % text)


def test_join_of_a_deadlocked_thread_chains_into_the_deadlock():
    python = debian_python()
    with TempDir() as tmp, PyVictim(python, "deadlock-join", tmp) as v:
        deadline = time.time() + 60
        while True:  # the main thread asleep in join (a futex wait)
            with open("/proc/%d/task/%d/syscall" % (v.pid, v.pid)) as fh:
                if fh.read().split()[0] == "202":
                    break
            check(time.time() < deadline, "the main thread never blocked in join")
            time.sleep(0.05)
        d, rep = snap_analyze(v, tmp)
        (dl,) = findings(rep, "deadlock")
        chains = [f for f in findings(rep, "wait-chain") if f["evidence"]["chain"][0]["tid"] == v.pid]
        check(len(chains) == 1, "no chain from the joining main thread: %s" %
              [f["summary"] for f in rep["findings"]])
        wc = chains[0]
        check(wc["severity"] == "error" and any(r.startswith(dl["id"]) for r in wc["related"]),
              "the chain runs into the deadlock: %s %s" % (wc["severity"], wc["related"]))
        check("threading.Thread.join" in wc["evidence"]["chain"][0]["waits_on"] and
              '"worker-1"' in wc["evidence"]["chain"][0]["waits_on"],
              "join step %s" % wc["evidence"]["chain"][0])


def test_spiking_python_thread_shows_its_python_frame():
    python = debian_python()
    with TempDir() as tmp, PyVictim(python, "spin", tmp) as v:
        out = os.path.join(tmp, "s")
        # The threshold is that low so that a loaded machine (tens of runnable threads on two
        # CPUs) cannot hide the spinner; what is tested is the Python frame it is shown with.
        snap("--sample", "1", "-o", out, v.pid)
        r = osmosis("analyze", "--json", "--threshold", "spiking-thread.cpu=0.5", out)
        check(r.returncode == 0, "analyze: %s" % r.stderr)
        rep = json.loads(r.stdout)
        names = {t["tid"]: t.get("runtime_name") for t in process(rep, v.pid)["threads"]}
        fs = [f for f in findings(rep, "spiking-thread") if names.get(f["tids"][0]) == "spinner"]
        check(fs, "no spiking-thread finding for the spinner: %s" %
              [(f["pattern"], f["summary"]) for f in rep["findings"]])
        check('"spinner"' in fs[0]["summary"], "named by its Python name: %s" % fs[0]["summary"])
        check(any("spin_here (python)" in l and "pyvictim.py:" in l
                  for l in fs[0]["evidence"]["lines"]), "its Python frame: %s" %
              fs[0]["evidence"]["lines"])


def test_blocked_python_thread_names_the_lock_and_holder():
    python = debian_python()
    with TempDir() as tmp, PyVictim(python, "contention", tmp, 1) as v:
        d, rep = snap_analyze(v, tmp)
        names = {t["tid"]: t.get("runtime_name") for t in process(rep, v.pid)["threads"]}
        # Nobody waits on the contender: blocked-thread reports it when the user names it.
        tids = [tid for tid, n in names.items() if n == "contender-0"]
        check(len(tids) == 1, "contender-0 among %s" % names)
        rep = analyze(d, "--thread", str(tids[0]))
        fs = [f for f in findings(rep, "blocked-thread") if names.get(f["tids"][0]) == "contender-0"]
        check(fs, "no blocked-thread finding: %s" % [(f["pattern"], f["summary"])
                                                     for f in rep["findings"]])
        line = [l for l in fs[0]["evidence"]["lines"] if l.startswith("waits on:")][0]
        check('"with lock:" (pyvictim.py:' in line and "threading.Lock" in line and
              '"holder"' in line, "the wait %s" % line)
        # A threading.Lock is a lock of a wait chain: waited on the whole sample, a note; for
        # longer than wait-chain.lock-wait-ms (a request handler behind a lock held across a
        # sleep), a warning that ends at the sleeping holder.
        for args, sev in (((), "info"), (("--threshold", "wait-chain.lock-wait-ms=100"),
                                         "warning")):
            rep = analyze(d, *args)
            cs = [f for f in findings(rep, "wait-chain") if tids[0] in f["tids"]]
            check(len(cs) == 1 and cs[0]["severity"] == sev and '"holder"' in cs[0]["summary"]
                  and "sleeps" in cs[0]["summary"],
                  "%s: wait chains %s" % (args, [(f["severity"], f["summary"]) for f in cs]))


# --- asyncio ------------------------------------------------------------------------------------

def tasks_of(rep, pid):
    return {t["name"]: t for t in process(rep, pid).get("tasks", [])}


def check_tasks_against_record(rep, v):
    """Each task's coroutine chain equals what the victim recorded with cr_await just before it
    blocked, and its outermost frame what task.get_stack() said."""
    with open(v.record_path + ".tasks") as f:
        rec = json.load(f)
    got = tasks_of(rep, v.pid)
    for name, r in rec.items():
        check(name in got, "task %s not found: %s" % (name, sorted(got)))
        mine = [(f["function"], f["file"], f["line"]) for f in got[name]["frames"]]
        check(mine == [tuple(x) for x in r["chain"]], "task %s: osmosis %s, the victim's "
              "cr_await chain %s" % (name, mine, r["chain"]))
        check(mine[-1:] == [tuple(x) for x in r["stack"]][-1:],
              "task %s: get_stack %s" % (name, r["stack"]))
    return got


def check_async_mix(python, with_gdb=False):
    with TempDir() as tmp, PyVictim(python, "async-mix", tmp) as v:
        d, rep = snap_analyze(v, tmp)
        check_no_python_problem(rep, v.pid)
        check_against_record(rep, v)
        # The loop's thread recorded itself running a task; it now sits in its selector:
        # from run_forever outward the frames are the same.
        loop = python_frames(rep, v.pid)[v.pid]
        want = [tuple(x) for x in v.record()[v.pid]["frames"]]
        fns = [x[0] for x in loop]
        check(fns[:2] == ["EpollSelector.select", "BaseEventLoop._run_once"] and
              loop[fns.index("BaseEventLoop.run_forever"):] ==
              want[[x[0] for x in want].index("BaseEventLoop.run_forever"):],
              "loop thread: osmosis %s, recorded %s" % (loop, want))
        p = process(rep, v.pid)
        check(p.get("loop_thread") == v.pid, "loop thread %s" % p.get("loop_thread"))
        got = check_tasks_against_record(rep, v)
        aw = {n: t["awaits"] for n, t in got.items()}
        check(re.match(r'waits in "async with lock:" \(pyvictim.py:\d+, take_lock\) for an '
                       r'asyncio.Lock at 0x[0-9a-f]+ held by task "lock-holder"',
                       aw["lock-waiter"]), "lock-waiter: %s" % aw["lock-waiter"])
        check(got["lock-waiter"]["waits_for"] == "lock-holder", "waits_for")
        # `async with cond:` (the local is named lock in take_lock) holds the Condition's own lock
        check(re.match(r'waits in "async with lock:" \(pyvictim.py:\d+, take_lock\) for an '
                       r'asyncio.Lock at 0x[0-9a-f]+ held by task "cond-holder"',
                       aw["cond-waiter"]), "cond-waiter: %s" % aw["cond-waiter"])
        check(aw["sleeper"].startswith("sleeps in asyncio.sleep(3600), called at nap"),
              aw["sleeper"])
        check("asyncio.Event.wait" in aw["event-waiter"] and "no owner by design" in
              aw["event-waiter"], aw["event-waiter"])
        check("asyncio.Queue.get" in aw["queue-getter"], aw["queue-getter"])
        check([f["function"] for f in got["nested"]["frames"]] ==
              ["Event.wait", "inner_wait", "middle_wait", "outer_wait"], "nested chain")
        check(aw["awaiter"].startswith('awaits task "sleeper"'), aw["awaiter"])
        check(not findings(rep, "deadlock"), "no deadlock in the mix")
        if with_gdb:
            core = os.path.join(d, "core.%d" % v.pid)
            bt = py_bt(python, core)
            mine = [(short(f), file, line) for f, file, line in python_frames(rep, v.pid)[v.pid]]
            check(bt_equal(bt.get(v.pid), mine), "loop thread: osmosis %s, py-bt %s" %
                  (mine, bt.get(v.pid)))


def check_async_deadlock(python):
    with TempDir() as tmp, PyVictim(python, "async-deadlock", tmp) as v:
        d, rep = snap_analyze(v, tmp)
        check_no_python_problem(rep, v.pid)
        check_tasks_against_record(rep, v)
        (f,) = findings(rep, "deadlock")
        text = f["summary"] + "\n" + "\n".join(f["evidence"]["lines"])
        for name in ("transfer-1", "transfer-2"):
            check(re.search(r'task "%s" waits in "async with second:" \(pyvictim.py:\d+, '
                            r'async_transfer\) for an asyncio.Lock at 0x[0-9a-f]+ held by task '
                            r'"transfer-' % name, text), "%s in %s" % (name, text))
        locks = set(re.findall(r"asyncio.Lock at (0x[0-9a-f]+)", text))
        check(len(locks) == 2, "two locks named: %s" % locks)
        check([c["task"] for c in f["evidence"]["task_cycle"]] in
              (["transfer-1", "transfer-2"], ["transfer-2", "transfer-1"]), "cycle")
    # the same with `await lock.acquire()`: holders unknown, each lock's suspect named by its
    # code, never as the holder
    with TempDir() as tmp, PyVictim(python, "async-deadlock-explicit", tmp) as v:
        d, rep = snap_analyze(v, tmp)
        check_no_python_problem(rep, v.pid)
        check_tasks_against_record(rep, v)
        (f,) = findings(rep, "deadlock")
        text = f["summary"] + "\n" + "\n".join(f["evidence"]["lines"])
        check("most likely a deadlock" in f["summary"], f["summary"])
        check(len(set(re.findall(r"asyncio.Lock at (0x[0-9a-f]+)", text))) == 2, text)
        for c in f["evidence"]["task_cycle"]:
            check(c["holder"] is None, "a holder claimed: %s" % c)
        check(text.count("holder: unknown (acquired explicitly); by its code, task") == 2, text)


def test_debian_python311_asyncio_tasks_equal_the_record_and_py_bt():
    check_async_mix(debian_python(), with_gdb=True)


def test_debian_python311_asyncio_deadlock_of_two_locks():
    check_async_deadlock(debian_python())


def test_pyenv_python312_asyncio():
    python = pyenv_python("3.12.1")
    check_async_mix(python)
    check_async_deadlock(python)
    check_deadlock_explicit(python)


def test_pyenv_python313_asyncio():
    python = pyenv_python("3.13.0")
    check_async_mix(python)
    check_async_deadlock(python)
    check_deadlock_explicit(python)


def test_healthy_asyncio_server_draws_no_warning():
    python = debian_python()
    with TempDir() as tmp, PyVictim(python, "async-server", tmp, 2) as v:
        d, rep = snap_analyze(v, tmp)
        check_no_python_problem(rep, v.pid)
        got = check_tasks_against_record(rep, v)
        bad = [(f["pattern"], f["summary"]) for f in rep["findings"]
               if v.pid in f["pids"] and f["severity"] in ("warning", "error")]
        check(not bad, "a healthy server drew %s" % bad)
        reads = [n for n, t in got.items() if t["awaits"].startswith("waits for data on fd ")]
        check(len(reads) == 4, "two clients and two handlers wait for data: %s" %
              {n: t["awaits"] for n, t in got.items()})
        check(got["ticker"]["awaits"].startswith("sleeps in asyncio.sleep(3600)"), "ticker")
        check("asyncio.Server.serve_forever" in got["server"]["awaits"], "server")


def test_debian_python311_deadlock_of_two_locks_taken_with_acquire():
    check_deadlock_explicit(debian_python())


def test_deadlock_of_timed_acquires_is_found_in_a_second_snapshot():
    """Two threads deadlocked in `lock.acquire(timeout=3600)`. A wait with a timeout met by a
    stop (the first snapshot's freeze, an injection, SIGSTOP, a debugger) resumes in the kernel as
    restart_syscall, and stays there until its wait ends: the second snapshot sees no futex call.
    The deadlock is still named from the frames, under copy and under precopy."""
    python = debian_python()
    with TempDir() as tmp, PyVictim(python, "deadlock-timed", tmp) as v:
        for i, m in enumerate(("copy", "copy", "precopy")):
            d, rep = snap_analyze(v, tmp, "--method", m)
            what = "snapshot %d (%s)" % (i + 1, m)
            names = {t["tid"]: t.get("runtime_name") for t in process(rep, v.pid)["threads"]}
            waiters = [t for t in manifest(d)["processes"][0]["threads"]
                       if names.get(t["tid"], "").startswith("timed-")]
            calls = sorted((t["syscall"] or {}).get("name") for t in waiters)
            if i > 0:
                check(calls == ["restart_syscall"] * 2,
                      "%s: the waiters are in %s, not resumed after the first freeze" %
                      (what, calls))
            fs = findings(rep, "deadlock")
            check(len(fs) == 1 and sorted(names[t] for t in fs[0]["tids"]) ==
                  ["timed-1", "timed-2"], "%s: deadlocks %s (calls %s)" %
                  (what, [[names.get(t) for t in f["tids"]] for f in fs], calls))
            text = "\n".join(fs[0]["evidence"]["lines"])
            check(len(set(re.findall(r"threading.Lock at (0x[0-9a-f]+)", text))) == 2,
                  "%s: two locks: %s" % (what, text))
            print("  %s: calls %s, deadlock of %s" % (what, calls, sorted(names[t] for t in
                                                                           fs[0]["tids"])))
            shutil.rmtree(d)


def check_deadlock_explicit(python):
    with TempDir() as tmp, PyVictim(python, "deadlock-explicit", tmp) as v:
        d, rep = snap_analyze(v, tmp)
        check_no_python_problem(rep, v.pid)
        check_against_record(rep, v)
        names = {t["tid"]: t.get("runtime_name") for t in process(rep, v.pid)["threads"]}
        fs = findings(rep, "deadlock")
        got = sorted(sorted(names[t] for t in f["tids"]) for f in fs)
        check(got == [["account-1", "account-2"], ["worker-1", "worker-2"]],
              "two deadlocks, by local and by attribute: %s" % got)
        for f in fs:
            text = "\n".join(f["evidence"]["lines"])
            check(len(set(re.findall(r"threading.Lock at (0x[0-9a-f]+)", text))) == 2,
                  "two locks: %s" % text)
            check(text.count("holder: unknown (acquired explicitly)") == 2, text)
            for c in f["evidence"]["suspect_cycle"]:
                check(c["holder"] is None and c["suspect"] != c["tid"], "holder %s" % c)
        # frame numbers: each shown frame keeps its number, a gap is said
        nums = [int(m) for f in fs for l in f["evidence"]["lines"]
                for m in re.findall(r"^\s+#(\d+) ", l)]
        check(nums, "no frames shown")
        r = osmosis("analyze", d)
        check(r.returncode == 0, r.stderr)
        block = r.stdout.split("ERROR deadlock#1")[1].split("ERROR deadlock#2")[0]
        last = -1
        for l in block.splitlines():
            m = re.match(r"\s+#(\d+) ", l)
            g = re.match(r"\s+\.\.\. frames? #(\d+)(?:-#(\d+))? not shown", l)
            if m:
                n = int(m.group(1))
                check(n == last + 1, "frame #%d follows #%d with nothing said between" % (n, last))
                last = n
            elif g:
                check(int(g.group(1)) == last + 1, "gap line %s after #%d" % (l, last))
                last = int(g.group(2) or g.group(1))
            elif "thread " in l and "of pid" in l:
                last = -1


def dynsym(path, name):
    r = subprocess.run(["readelf", "--dyn-syms", "-W", path], capture_output=True, text=True)
    for line in r.stdout.splitlines():
        f = line.split()
        if len(f) >= 8 and f[7] == name:
            return int(f[1], 16)
    raise Fail("%s has no %s" % (path, name))


def test_damaged_interpreter_state_is_one_line_and_native_analysis_goes_on():
    python = debian_python()
    with open(python, "rb") as f:
        check(f.read(18)[16] == 2, "Debian's python3.11 is expected to be a non-PIE executable")
    runtime = dynsym(python, "_PyRuntime")
    with TempDir() as tmp, PyVictim(python, "deadlock", tmp) as v:
        d, rep = snap_analyze(v, tmp)
        check(findings(rep, "deadlock"), "the deadlock before the damage")
        core = os.path.join(d, "core.%d" % v.pid)
        for what, off, value in (("interpreters.head", 40, 0x4141414141414141),
                                 ("interpreters.head", 40, runtime)):  # points back at itself
            c = Core(core)
            p = c.load_for(runtime + off)
            pos = p["offset"] + runtime + off - p["vaddr"]
            with open(core, "r+b") as f:
                f.seek(pos)
                saved = f.read(8)
                f.seek(pos)
                f.write(value.to_bytes(8, "little"))
            try:
                rep = analyze(d)
            finally:
                with open(core, "r+b") as f:
                    f.seek(pos)
                    f.write(saved)
            mine = [l for l in rep["problems"] if l.startswith("pid %d" % v.pid)]
            check(len(mine) == 1 and "CPython 3.11" in mine[0], "one line about the damage "
                  "(%s = 0x%x): %s" % (what, value, rep["problems"]))
            t = process(rep, v.pid)["threads"]
            check(all(f.get("kind") != "python" for th in t for f in th["frames"]),
                  "Python frames from a damaged runtime")
            check(all(any(f.get("function") for f in th["frames"]) for th in t),
                  "native frames are still there")


def _pyenv(version):
    python = pyenv_python(version)
    check_mix(python)
    check_deadlock(python)
    check_gil(python)


def test_pyenv_python311():
    _pyenv("3.11.7")


def test_pyenv_python312():
    _pyenv("3.12.1")


def test_pyenv_python313():
    _pyenv("3.13.0")


if __name__ == "__main__":
    main(globals())
