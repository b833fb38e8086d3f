# SPDX-License-Identifier: MIT
"""The capture methods (copy, clone, precopy, auto) give the same content for the same instant,
and leave the target as it was: its mappings, descriptors, signal masks and threads; no clone
alive, no zombie, no SIGCHLD, no write-protection; also when osmosis is killed at any moment."""

import os
import random
import re
import signal
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import osmtest
from osmtest import (Core, children, no_write_protection,
                     check_pair_one_instant, TempDir, Victim, check, gdb_backtraces, main, manifest,
                     no_final_files, osmosis, snap, xorshift_stream)

METHODS = ["copy", "clone", "precopy", "auto"]
MIB = 1 << 20


def settled(pid, timeout=10):
    """Wait until the victim's main thread sits in sigsuspend, where it lives: it prints its
    ready line just before, and on a loaded machine its mask may be read between the two
    (in sigsuspend the kernel shows the suspend mask, not the thread's own)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with open("/proc/%d/syscall" % pid) as f:
                if f.read().split(" ", 1)[0] == "130":  # rt_sigsuspend
                    return
        except OSError:
            return
        time.sleep(0.01)


def fingerprint(pid):
    """What must be as before: mappings, descriptors, threads and their signal masks."""
    settled(pid)
    with open("/proc/%d/maps" % pid) as f:
        maps = f.read()
    fds = {}
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            fds[fd] = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            pass
    masks = {}
    for tid in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/status" % (pid, tid)) as f:
            masks[tid] = [l for l in f if l.startswith(("SigBlk", "SigIgn", "SigCgt"))]
    return maps, fds, masks


TRAMPOLINE = re.compile(r"^[0-9a-f]+-[0-9a-f]+ r-xp 00000000 00:00 0 *$")


def check_same(before, pid, what, killed=False):
    after = list(fingerprint(pid))
    if killed:
        # A SIGKILL inside the injected clone (ms per GiB) leaves the trampoline page mapped
        # (the next snapshot removes it: test_sigkill_during_the_clone_syscall_...).
        old = set(before[0].splitlines())
        after[0] = "".join(l + "\n" for l in after[0].splitlines()
                           if l in old or not TRAMPOLINE.match(l))
    for name, a, b in zip(("mappings", "descriptors", "signal masks"), before, after):
        check(a == b, "%s: %s changed:\n%s\n---\n%s" % (what, name, a, b))






def left_as_before(v, before, what, killed=False):
    v.assert_running()
    check_same(before, v.pid, what, killed)
    kids = children(v.pid)
    # Even when osmosis died with SIGKILL, the clone is never the target's child (the
    # intermediate, let go, exits on its own and the trampoline's wait4 reaps it): no zombie,
    # no clone, after a moment.
    deadline = time.time() + 5
    while kids and time.time() < deadline:
        time.sleep(0.05)
        kids = children(v.pid)
    check(not kids, "%s: the target has children: %s" % (what, kids))
    no_write_protection(v.pid, what)


def segments(core):
    return {p["vaddr"]: p for p in core.loads}


def rseq_areas(core, rseq_offset):
    """Each thread's rseq area (fs_base + __rseq_offset, 32 bytes): the kernel rewrites it with
    the thread's CPU whenever the thread returns to user mode."""
    out = []
    for _, t, desc in core.notes:
        if t == 1:  # NT_PRSTATUS: registers from offset 112, fs_base is the 22nd
            (fs_base,) = struct.unpack_from("<Q", desc, 112 + 21 * 8)
            out.append((fs_base + rseq_offset, 32))
    return out


def masked(data, base, areas):
    b = bytearray(data)
    for addr, n in areas:
        lo, hi = max(addr - base, 0), min(addr + n - base, len(b))
        if lo < hi:
            b[lo:hi] = bytes(hi - lo)
    return bytes(b)


def test_same_memory_under_every_method():
    """A target whose memory does not change: every method's core holds the same bytes, and
    the changes the target made just before the freeze (a MiB dropped, a MiB rewritten, after
    pre-copy's rounds had copied both) are in every core."""
    with Victim("still") as v, TempDir() as tmp:
        before = fingerprint(v.pid)
        cores = {}
        for m in METHODS:
            out = os.path.join(tmp, m)
            with open(v.info["fifo"], "w") as f:
                f.write("f")  # present before pre-copy's rounds, dropped after them
            time.sleep(0.2)
            snap("--method", m, "--sample", "0", "-o", out, v.pid,
                 env={"OSMOSIS_FAULT": "prepared:write=" + v.info["fifo"]})
            (p,) = manifest(out)["processes"]
            check(p["method"] in ("copy", "clone", "precopy") and p["method_reason"],
                  "%s: method %s" % (m, p))
            if m != "auto":
                check(p["method"] == m, "%s: got method %s" % (m, p["method"]))
            r = osmosis("show", out, "-p", v.pid)
            check("memory kept by %s: " % p["method"] in r.stdout,
                  "%s: osmosis show does not say the method:\n%s" % (m, r.stdout))
            cores[m] = Core(os.path.join(out, "core.%d" % v.pid))
            left_as_before(v, before, m)
        big = v.hexinfo("big")
        for m, c in cores.items():
            data = c.read(big, 48 * MIB)
            want = bytearray(xorshift_stream(0x51111, 48 * MIB))
            want[16 * MIB:20 * MIB] = bytes(4 * MIB)
            want[32 * MIB:33 * MIB] = bytes(MIB)
            want[40 * MIB:41 * MIB] = b"\x77" * MIB
            check(data == want, "%s: the 48 MiB region differs from what the victim holds" % m)
            for key, seed in (("shared", 0x5a), ("dontfork", 0x5b), ("wipeonfork", 0x5c)):
                check(c.read(v.hexinfo(key), MIB) == xorshift_stream(seed, MIB),
                      "%s: the %s mapping differs" % (m, key))
        # Every segment, byte for byte, against the copy method's core.
        ref = segments(cores["copy"])
        off = int(v.info["rseq_offset"])
        areas = rseq_areas(cores["copy"], off)
        check(len(areas) == 4, "threads in copy's core: %s" % areas)
        for m in ("clone", "precopy", "auto"):
            segs = segments(cores[m])
            check(sorted(segs) == sorted(ref), "%s: segments differ from copy's" % m)
            check(rseq_areas(cores[m], off) == areas, "%s: thread pointers differ" % m)
            for addr, p in ref.items():
                a = cores["copy"].read(addr, p["filesz"]) if p["filesz"] else b""
                q = segs[addr]
                b = cores[m].read(addr, q["filesz"]) if q["filesz"] else b""
                a, b = masked(a, addr, areas), masked(b, addr, areas)
                n = max(len(a), len(b))
                check(a.ljust(n, b"\0") == b.ljust(n, b"\0"),
                      "%s: segment 0x%x differs from copy's" % (m, addr))
        # gdb sees the same threads and stacks in each.
        exe = osmtest.VICTIM
        ref_bt, out = gdb_backtraces(exe, cores["copy"].path)
        check(len(ref_bt) == 4 and all(ref_bt.values()), "gdb on copy's core: %s" % out)
        for m in ("clone", "precopy", "auto"):
            bt, out = gdb_backtraces(exe, cores[m].path)
            check(bt == ref_bt, "%s: gdb backtraces differ:\n%s" % (m, out))
        v.verify()


def snapshots_under_every_method(v, tmp, n):
    """n snapshots of victim v under each method: (method, i, its core)."""
    for m in METHODS:
        for i in range(n):
            out = os.path.join(tmp, "%s%d" % (m, i))
            snap("--method", m, "--sample", "0", "-o", out, v.pid)
            yield m, i, Core(os.path.join(out, "core.%d" % v.pid))


def page_words(core, base, npages):
    """The first 8 bytes of each of npages pages from base, as the core holds them."""
    data = core.read(base, npages * 4096)
    return [struct.unpack_from("<Q", data, p * 4096)[0] for p in range(npages)]


def check_one_boundary(core, base, npages, what):
    """The writer victim's pages in a core: generation g then g - 1, one boundary."""
    gens = page_words(core, base, npages)
    hi = max(gens)
    descents = sum(1 for x, y in zip(gens, gens[1:]) if x != y)
    check(hi > 0 and all(g in (hi, hi - 1) for g in gens) and descents <= 1,
          "%s is not one instant: generations %s" % (what, sorted(set(gens))[:10]))


def test_single_instant_under_every_method():
    """The writer victim (generation g written page after page, nonstop): one boundary."""
    npages = 16384
    with Victim("writer", npages) as v, TempDir() as tmp:
        base = v.hexinfo("pages")
        for m, i, core in snapshots_under_every_method(v, tmp, 2):
            check_one_boundary(core, base, npages, "%s: snapshot %d" % (m, i))
        v.verify()


def test_writer_across_adjacent_mappings_is_one_instant():
    """The writer victim's pages as 68 adjacent mappings (as a library's RELRO, .data and .bss
    touch; pre-copy walks touching mappings with one scan and deals out what it returns): one
    boundary, every page in its place."""
    npages = 4096
    with Victim("splitwriter", npages) as v, TempDir() as tmp:
        base = v.hexinfo("pages")
        with open("/proc/%d/maps" % v.pid) as f:
            n = sum(1 for l in f if base <= int(l.split("-")[0], 16) < base + npages * 4096)
        check(n > 50, "the victim's pages are %d mappings" % n)
        for m, i, core in snapshots_under_every_method(v, tmp, 2):
            check_one_boundary(core, base, npages, "%s: snapshot %d" % (m, i))
        # The freeze's walk across the libraries refused (as when a library's mapping was
        # replaced since): each mapping is walked alone, still one instant.
        for i in range(2):
            out = os.path.join(tmp, "refused%d" % i)
            r = osmosis("snap", "-v", "--method", "precopy", "--sample", "0", "-o", out, v.pid,
                        env={"OSMOSIS_FAULT": "gap-scan:fail"})
            check(r.returncode == 0 and "fault point gap-scan: injected failure" in r.stderr and
                  "was refused: its mappings one at a time" in r.stderr,
                  "gap-scan:fail: rc %d %s" % (r.returncode, r.stderr[-400:]))
            check_one_boundary(Core(os.path.join(out, "core.%d" % v.pid)), base, npages,
                               "gap-scan:fail: snapshot %d" % i)
        v.verify()


def test_read_only_mapping_made_writable_and_back_is_one_instant():
    """Pages of a read-only private mapping (tracked by pre-copy, as a library's RELRO is) that
    a thread makes writable, writes and makes read-only again, nonstop: every method's core
    shows one instant with the generation it last wrote whole, kept in a writable page (the
    writes under a passing PROT_WRITE are tracked, not left at the last round's)."""
    npages = 256
    with Victim("rotoggle", npages) as v, TempDir() as tmp:
        base, at = v.hexinfo("pages"), v.hexinfo("gen")
        for m, i, core in snapshots_under_every_method(v, tmp, 3):
            (g,) = struct.unpack("<Q", core.read(at, 8))
            gens = page_words(core, base, npages)
            # generation g written whole; g + 1 in progress: a prefix of the pages
            prefix = all(x >= y for x, y in zip(gens, gens[1:]))
            check(g > 1 and all(x in (g, g + 1) for x in gens) and prefix,
                  "%s: snapshot %d is not one instant: last whole %d, pages %s" %
                  (m, i, g, sorted(set(gens))[:10]))
        v.verify()


CHURN = r"""
import mmap, sys, time
data = [bytes([i]) * (1 << 20) for i in range(4)]
print("ready", flush=True)
i = 0
while True:  # a buffer given back and taken again: the same range, a new mapping each time
    m = mmap.mmap(-1, 1 << 20, flags=mmap.MAP_PRIVATE)
    m.write(data[i % 4])
    time.sleep(0.001)
    m.close()
    i += 1
"""


def test_mapping_unmapped_and_mapped_again_during_precopy():
    """CPython's mmap of a private MiB, closed and made again in a loop, lands at the same
    address: a new mapping without the registration pre-copy gave the old one, and the kernel
    refused the next walk over it (every snapshot failed with "Operation not permitted"). Each
    snapshot succeeds, pre-copy's without falling back; the mapping is copied whole in the
    freeze."""
    p = subprocess.Popen([sys.executable, "-c", CHURN], stdout=subprocess.PIPE, text=True)
    try:
        check(p.stdout.readline().startswith("ready"), "the churning victim did not start")
        time.sleep(0.3)
        lost = 0
        with TempDir() as tmp:
            for m in ("precopy", "auto"):
                for i in range(4):
                    out = os.path.join(tmp, "%s-%d" % (m, i))
                    r = osmosis("snap", "-v", "--method", m, "--sample", "0", "-o", out, p.pid)
                    check(r.returncode == 0, "%s: rc %d: %s" % (m, r.returncode,
                                                                r.stderr.splitlines()[-1:]))
                    (pr,) = manifest(out)["processes"]
                    # auto may choose a clone by cost, never because pre-copy failed
                    check(pr["capture"] == "memory" and "failed" not in pr["method_reason"] and
                          (pr["method"] == "precopy" or m == "auto"),
                          "%s: kept by %s (%s)" % (m, pr["method"], pr["method_reason"]))
                    lost += "was unmapped and mapped again" in r.stderr
                    check(p.poll() is None, "%s: the victim died" % m)
                    no_write_protection(p.pid, m)
        check(lost > 0, "no snapshot met the mapping made again: the test proves nothing")
    finally:
        p.kill()
        p.wait()


def test_tree_one_instant_under_every_method():
    with Victim("pingpong") as v, TempDir() as tmp:
        child = int(v.info["child"])
        addr = v.hexinfo("counters")
        for m in METHODS:
            for i in range(4):
                out = os.path.join(tmp, "%s%d" % (m, i))
                snap("--tree", "--method", m, "--sample", "0", "-o", out, v.pid)
                procs = {p["pid"]: p for p in manifest(out)["processes"]}
                check(set(procs) == {v.pid, child}, "tree holds %s" % sorted(procs))
                check_pair_one_instant(out, v.pid, child, addr, "%s %d" % (m, i))
        check(not children(child), "the child has children left")
        check([pid for pid, _ in children(v.pid)] == [child], "clones left: %s" %
              children(v.pid))
        v.verify()


def test_auto_chooses_by_cost():
    """auto: a small process is copied; a large one writing little is pre-copied; one writing
    all its memory nonstop gets pre-copy only if the rounds brought its written set below what a
    clone costs, else the clone. The manifest says which, with the figures."""
    for mode, method, why in (("basic", "copy", "costs no more than a clone"),
                              ("still", "precopy", "last round found")):
        with Victim(mode) as v, TempDir() as tmp:
            out = os.path.join(tmp, "s")
            snap("--sample", "0", "-o", out, v.pid)
            (p,) = manifest(out)["processes"]
            check(p["method"] == method and why in p["method_reason"],
                  "%s victim: %s %s" % (mode, p["method"], p["method_reason"]))
            v.verify()
    with Victim("writer", 65536) as v, TempDir() as tmp:
        found = []
        for i in range(5):
            out = os.path.join(tmp, "s%d" % i)
            r = snap("--sample", "0", "-o", out, v.pid)
            (p,) = manifest(out)["processes"]
            why = p["method_reason"]
            check((p["method"] == "clone" and "clone" in why) or
                  (p["method"] == "precopy" and "last round found" in why),
                  "writer victim: %s %s" % (p["method"], why))
            check(" %s " % p["method"] in r.stdout, "summary lacks the method: %s" % r.stdout)
            found.append(why)
        # It writes nonstop, so the rounds find it writing. One round may find nothing on a
        # loaded machine (it got no CPU in that round's milliseconds), not five snapshots' last.
        check(any("found 0 B written" not in why for why in found),
              "writer victim: every last round found nothing written: %s" % found)
        v.verify()


def test_clone_falls_back_to_copy_for_a_stopped_target():
    """Every thread in a group stop: no thread can run the clone; copied, and it says so."""
    with Victim("still") as v, TempDir() as tmp:
        os.kill(v.pid, signal.SIGSTOP)
        try:
            out = os.path.join(tmp, "s")
            snap("--method", "clone", "--sample", "0", "-o", out, v.pid)
            (p,) = manifest(out)["processes"]
            check(p["method"] == "copy" and "stopped by a signal" in p["method_reason"],
                  "%s %s" % (p["method"], p["method_reason"]))
            check(Core(os.path.join(out, "core.%d" % v.pid)).read(v.hexinfo("shared"), MIB) ==
                  xorshift_stream(0x5a, MIB), "copied content")
            check(v.states()[v.pid] == "T", "the target no longer stopped")
        finally:
            os.kill(v.pid, signal.SIGCONT)
        v.verify()


def test_no_injection_into_a_seccomp_filtered_target():
    """A target whose seccomp filter kills it for clone() or userfaultfd(): every method copies
    it instead (an injected syscall would meet the filter), and it lives."""
    with Victim("seccomp") as v, TempDir() as tmp:
        for m in METHODS:
            out = os.path.join(tmp, m)
            snap("--method", m, "--sample", "0", "-o", out, v.pid)
            (p,) = manifest(out)["processes"]
            check(p["method"] == "copy" and (m == "copy" or "seccomp" in p["method_reason"]),
                  "%s: %s %s" % (m, p["method"], p["method_reason"]))
            v.assert_running()
        v.verify()


def test_unprivileged_target_is_tracked_and_cloned():
    """A target of another user (osmosis as root): its userfaultfd is user-mode-only."""
    with Victim("still", user=65534) as v, TempDir() as tmp:
        before = fingerprint(v.pid)
        for m in ("precopy", "clone"):
            out = os.path.join(tmp, m)
            snap("--method", m, "--sample", "0", "-o", out, v.pid)
            (p,) = manifest(out)["processes"]
            check(p["method"] == m, "%s: %s" % (m, p))
            left_as_before(v, before, m)
        v.verify()


def sched_of(pid):
    """(policy, nice) of a process, from /proc/PID/stat; None once it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[38]), int(fields[16])  # fields 41 and 19 of proc(5)


def sched_while_sleeping_at(point, pid, tmp, user=None):
    """Run a clone snapshot of pid that sleeps 2 s at a fault point; the (policy, nice)
    osmosis had while there, and its result."""
    out = os.path.join(tmp, point)
    cmd = [osmtest.OSMOSIS, "snap", "--method", "clone", "--sample", "0", "-o", out, str(pid)]
    if user is not None:
        cmd = ["setpriv", "--reuid=%d" % user, "--regid=%d" % user, "--clear-groups"] + cmd
    # osmosis sleeps 10 s at the point, and the wait for it is long: on a loaded machine (and
    # beside the spinners of the next test) this loop itself may hardly get a CPU
    p = subprocess.Popen(cmd, env=dict(os.environ, OSMOSIS_FAULT=point + ":sleep=10"),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = None
    deadline = time.time() + 300
    # core-written: the core has its final name (in the partial directory); committed: the
    # directory has its final name.
    while p.poll() is None and time.time() < deadline:
        there = os.path.isdir(out) if point == "committed" else any(
            "core.%d" % pid in names for _, _, names in os.walk(tmp))
        if there:
            time.sleep(0.1)
            seen = sched_of(p.pid)
            break
        time.sleep(0.02)
    _, err = p.communicate(timeout=300)
    check(p.returncode == 0, "%s: osmosis failed (%s): %s" % (point, p.returncode, err))
    check(seen is not None, "%s: osmosis never got there" % point)
    return seen


def grown_prefix(core, base, by):
    """Pages of the grower's growth in a core: k + 1 in page k's first word, for a prefix (the
    growth is written in order), zeroes after it. Its length in pages."""
    def word(k):
        return struct.unpack("<Q", core.read(base + k * 4096, 8))[0]
    lo, hi = 0, by // 4096  # word(k) == k + 1 for k < lo; 0 from hi on (binary search)
    while lo < hi:
        mid = (lo + hi) // 2
        if word(mid) == mid + 1:
            lo = mid + 1
        else:
            hi = mid
    n = lo
    for k in random.sample(range(by // 4096), 64) + [0, n - 1, n]:
        if 0 <= k < by // 4096:
            check(word(k) == (k + 1 if k < n else 0),
                  "page %d of the growth holds %d (prefix of %d pages)" % (k, word(k), n))
    return n


def test_memory_grown_after_the_reservation_goes_to_a_clone():
    """A process fills 256 MiB more of its memory during pre-copy's rounds, after osmosis
    reserved room for it (a service filling its cache). As a member of a set it goes to a
    clone with the reason, before the freeze, and its core holds the growth as it was at the
    freeze; the freeze no longer finds that it does not fit. Named alone with --method precopy,
    osmosis refuses before freezing anything, says why, and the target runs on."""
    with Victim("grower") as v, TempDir() as tmp:
        out = os.path.join(tmp, "tree")
        r = snap("--tree", "--method", "precopy", "--sample", "0", "-o", out, v.pid,
                 env={"OSMOSIS_FAULT": "tracking:write=" + v.info["fifo"]}, timeout=600)
        (p,) = manifest(out)["processes"]
        check(p["capture"] == "memory" and p["method"] == "clone" and
              "left of the memory reserved: memory grew, or was written" in
              (p["method_reason"] or ""),
              "the grown member: %s" % {k: p.get(k) for k in
                                        ("capture", "capture_note", "method", "method_reason")})
        n = grown_prefix(Core(os.path.join(out, "core.%d" % v.pid)),
                         v.hexinfo("map") + int(v.info["used"]), int(v.info["by"]))
        check(n > 0, "the core holds none of the growth")
        print("  --tree: %s; %d MiB of the growth in the core" % (p["method_reason"], n >> 8))
        v.assert_running()
    with Victim("grower") as v, TempDir() as tmp:
        r = osmosis("snap", "--method", "precopy", "--sample", "0", "-o",
                    os.path.join(tmp, "alone"), v.pid,
                    env={"OSMOSIS_FAULT": "tracking:write=" + v.info["fifo"]}, timeout=600)
        check(r.returncode != 0 and "its memory grew, or it wrote, after osmosis planned it"
              in r.stderr,
              "alone with --method precopy (%d): %s" % (r.returncode, r.stderr))
        no_final_files(tmp, "alone")
        v.assert_running()


def test_osmosis_steps_aside_while_writing_cores():
    """Writing cores, osmosis runs at SCHED_IDLE (root: it may take its policy back) and takes
    SCHED_OTHER back before it ends the clone, which stops a target thread; without that
    privilege it lowers its priority to nice 10 for good."""
    SCHED_OTHER, SCHED_IDLE = 0, 5
    with Victim("still") as v, TempDir() as tmp:
        got = sched_while_sleeping_at("core-written", v.pid, tmp)
        # On a loaded machine SCHED_IDLE starves, and osmosis comes back at nice 10 (the next
        # test): either way it has stepped aside.
        check(got in ((SCHED_IDLE, 0), (SCHED_OTHER, 10)), "writing cores as root: %s" % (got,))
    with Victim("still") as v, TempDir() as tmp:
        got = sched_while_sleeping_at("committed", v.pid, tmp)
        # SCHED_OTHER back (at nice 10 if SCHED_IDLE starved on a loaded machine)
        check(got in ((SCHED_OTHER, 0), (SCHED_OTHER, 10)), "after the commit: %s" % (got,))
        check(not children(v.pid), "clones left: %s" % children(v.pid))
        v.verify()
    with Victim("still", user=65534) as v, TempDir() as tmp:
        os.chmod(tmp, 0o777)
        got = sched_while_sleeping_at("core-written", v.pid, tmp, user=65534)
        check(got == (SCHED_OTHER, 10), "unprivileged, writing cores: %s" % (got,))
        v.verify()


def test_no_real_time_while_the_targets_run():
    """osmosis takes SCHED_FIFO only in the freeze. Time at real-time priority is not charged to
    a thread's fair-class runtime: a thread that took a hold for each copy and walk of pre-copy's
    rounds came back to the fair class after each, was picked again at once, and kept its CPU
    for the whole loop (a PostgreSQL backend woken there waited 204 ms). Traced with strace, a
    pre-copy of a running process makes no sched_setscheduler(SCHED_FIFO) call before the last
    point before the freeze (a write to one marker file) nor after the thaw (to another, the
    unregister included), and the freeze between them does make one (so the trace sees them)."""
    with Victim("basic") as v, TempDir() as tmp:
        m1, m2 = os.path.join(tmp, "settled"), os.path.join(tmp, "thawed")
        log = os.path.join(tmp, "strace.log")
        for m in (m1, m2):
            open(m, "w").close()
        cmd = ["strace", "-f", "-qq", "--seccomp-bpf", "-e",
               "trace=sched_setscheduler,openat", "-o", log, osmtest.OSMOSIS, "snap",
               "--method", "precopy", "--sample", "0", "-o", os.path.join(tmp, "s"),
               str(v.pid)]
        # LeakSanitizer cannot run under ptrace (strace); every other test checks for leaks.
        e = dict(os.environ, OSMOSIS_FAULT="settled:write=%s;thawed:write=%s" % (m1, m2),
                 ASAN_OPTIONS="detect_leaks=0")
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=e)
        check(r.returncode == 0, "osmosis under strace failed (%d): %s" %
              (r.returncode, r.stderr[-2000:]))
        with open(log) as f:
            lines = f.read().splitlines()

        def opened(path):
            at = [i for i, l in enumerate(lines) if "openat(" in l and '"%s"' % path in l]
            check(at, "the trace has no write to %s: %s" % (path, lines[-20:]))
            return at[0]

        # Holds are at the lowest real-time priority; the watchdog, asleep until --max-pause
        # runs out, sits one above them from its start (freeze/guard.c).
        def holds(ls):
            return [l for l in ls if "sched_setscheduler(" in l and "SCHED_FIFO, [1]" in l]
        i1, i2 = opened(m1), opened(m2)
        before, frozen, after = holds(lines[:i1]), holds(lines[i1:i2]), holds(lines[i2:])
        check(not before, "%d real-time holds before the freeze, the first: %s" %
              (len(before), before[:3]))
        check(not after, "%d real-time holds after the thaw, the first: %s" %
              (len(after), after[:3]))
        check(frozen, "no real-time hold in the freeze either: is strace seeing them?")
        v.verify()


def test_osmosis_comes_back_when_aside_starves_it():
    """SCHED_IDLE on CPUs the targets keep busy would hardly run (a core of gigabytes in
    hours): osmosis sees it waits for a CPU most of the time and comes back, at nice 10."""
    spinners = [subprocess.Popen(["sh", "-c", "while :; do :; done"])
                for _ in range(os.cpu_count() or 1)]
    try:
        with Victim("writer", 65536) as v, TempDir() as tmp:  # a 256 MiB core: seconds there
            got = sched_while_sleeping_at("core-written", v.pid, tmp)
            check(got == (0, 10), "writing cores on busy CPUs: %s" % (got,))
            v.verify()
    finally:
        for s in spinners:
            s.kill()
            s.wait()


def test_sigkill_during_the_clone_syscall_then_the_next_snapshot_tidies():
    """osmosis killed while the injected clone() runs (a 1 GiB writer: ~25 ms of page-table
    copy): the thread restores itself through the trampoline and the target runs on, with no
    zombie at any moment (the trampoline's own wait4 reaps the intermediate); what is left (the
    trampoline page) the next snapshot removes."""
    with Victim("writer", 262144) as v, TempDir() as tmp:
        before = fingerprint(v.pid)
        landed = False
        for i, delay in enumerate(("0.003", "0.008", "0.015", "0.001", "0.020")):
            r = osmosis("snap", "--method", "clone", "--sample", "0", "-o",
                        os.path.join(tmp, "k%d" % i), v.pid,
                        env={"OSMOSIS_FAULT": "trampoline:sigkill-after=" + delay})
            check(r.returncode == -signal.SIGKILL, "osmosis was not killed: %d %s" %
                  (r.returncode, r.stderr))
            v.assert_running()
            # An intermediate that osmosis's death let go makes its clone and exits on its own
            # (milliseconds, more on a loaded machine); the target's thread reaps it.
            deadline = time.time() + 5
            while children(v.pid) and time.time() < deadline:
                time.sleep(0.05)
            check(not children(v.pid), "a child left in the target: %s" % children(v.pid))
            # (a clone: a copy of the 1 GiB writer would exceed the default --max-memory)
            r = snap("--method", "clone", "--sample", "0", "-o", os.path.join(tmp, "ok%d" % i),
                     v.pid)
            if "removed what a killed osmosis left" in r.stderr:
                landed = True
                break
        check(landed, "no kill landed inside the clone in 5 tries")
        check(not children(v.pid), "children left: %s" % children(v.pid))
        check_same(before, v.pid, "after the tidy")
        v.verify()


FAULT_POINTS = {
    "copy": ["vetted", "prepared", "frozen", "captured", "thawed", "core-written"],
    "clone": ["prepared", "frozen", "injecting", "cloned", "captured", "thawed",
              "core-written", "manifest-written"],
    "precopy": ["uffd-taken", "tracking", "precopied", "prepared", "frozen", "captured",
                "thawed", "core-written", "manifest-written"],
    "auto": ["uffd-taken", "tracking", "prepared", "captured", "thawed"],
}


def test_sigkill_at_every_fault_point_of_every_method():
    with Victim("still") as v, TempDir() as tmp:
        before = fingerprint(v.pid)
        for m, points in FAULT_POINTS.items():
            for point in points:
                name = "%s-%s" % (m, point)
                r = osmosis("snap", "--method", m, "--sample", "0", "-o",
                            os.path.join(tmp, name), v.pid,
                            env={"OSMOSIS_FAULT": point + ":sigkill"})
                check(r.returncode == -signal.SIGKILL, "%s: osmosis was not killed (%d) %s" %
                      (name, r.returncode, r.stderr))
                left_as_before(v, before, name, killed=True)
                no_final_files(tmp, name)
        v.verify()


def test_sigkill_at_random_moments_of_every_method():
    """A 256 MiB writer: kill osmosis anywhere in pre-copy rounds, clone life, core writing."""
    rnd = random.Random(5)
    with Victim("writer", 65536) as v, TempDir() as tmp:
        before = fingerprint(v.pid)
        for m in ("clone", "precopy", "auto"):
            for i in range(6):
                name = "%s%d" % (m, i)
                p = subprocess.Popen([osmtest.OSMOSIS, "snap", "--method", m, "--sample", "0",
                                      "-o", os.path.join(tmp, name), str(v.pid)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(rnd.uniform(0.0, 0.6))
                p.kill()
                p.wait()
                left_as_before(v, before, name, killed=True)
                final = os.path.join(tmp, name)
                if p.returncode == -signal.SIGKILL and os.path.exists(final):
                    # killed after the directory was complete and renamed (ending the clone)
                    check(manifest(final)["processes"] and
                          os.path.exists(os.path.join(final, "core.%d" % v.pid)),
                          "%s: a final directory that is not whole" % name)
                elif p.returncode == -signal.SIGKILL:
                    no_final_files(tmp, name)
        v.verify()


if __name__ == "__main__":
    main(globals())
