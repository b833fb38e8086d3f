# SPDX-License-Identifier: MIT
"""Shared memory, one object one capture: an object mapped by every process of a set is kept
once (manifest `shared_objects`, each process's `shared_mappings` pointing to it), whatever the
method; its writes are tracked, so the pause copies only what was written since the last round;
every core holds its bytes at the freeze instant (processes writing it nonstop show one instant
across all cores); writers outside the snapshot are recorded; coredump_filter is honoured per
process; the targets are left without write protection."""

import os
import shutil
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import osmtest
from osmtest import (no_write_protection, Core, SwapFile, TempDir, Victim, check, main, manifest,
                     osmosis, snap)

SHM_VICTIM = os.environ.get("SHM_VICTIM", "build/tests/shm-victim")
METHODS = ["copy", "clone", "precopy", "auto"]
KINDS = ["anon", "sysv", "memfd", "posix"]
MIB = 1 << 20
HDR_MAGIC = 0x73686d2d6f736d6f


class Family:
    """The shm victim: a parent and its writers sharing one object."""

    def __init__(self, kind, size_mib, nprocs, write_mib, touch="touch", env=None,
                 shell=None):
        argv = [SHM_VICTIM, kind, str(size_mib), str(nprocs), str(write_mib), touch]
        if shell:
            # started by a shell that goes on running `shell` beside it (a supervisor)
            argv = ["sh", "-c", '"$@" & %s' % shell, "sh"] + argv
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True,
                                     env=dict(os.environ, **(env or {})))
        line = self.proc.stdout.readline()
        check(line.startswith("ready"), "shm victim did not get ready: %r" % line)
        info = dict(kv.split("=", 1) for kv in line.split()[1:])
        self.pid = int(info["pid"])
        self.kids = [int(k) for k in info["kids"].split(",")] if info["kids"] else []
        self.base = int(info["base"], 16)
        self.priv = int(info["priv"], 16)
        self.size = size_mib * MIB
        self.write = write_mib * MIB

    def pids(self):
        return [self.pid] + self.kids

    def assert_running(self):
        check(self.proc.poll() is None, "the shm parent died")
        for pid in self.pids():
            with open("/proc/%d/stat" % pid) as f:
                st = f.read().rsplit(")", 1)[1].split()[0]
            check(st not in "tTZ", "pid %d left in state %s" % (pid, st))
            with open("/proc/%d/status" % pid) as f:
                tracer = [l for l in f if l.startswith("TracerPid:")][0].split()[1]
            check(tracer == "0", "pid %d still traced" % pid)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.pid != self.proc.pid:
            try:
                os.kill(self.pid, 15)
            except ProcessLookupError:
                pass
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)




def children_of(pid):
    out = []
    for t in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/children" % (pid, t)) as f:
            out += [int(x) for x in f.read().split()]
    return out


def check_one_instant(out, fam, pids, what):
    """Across every core of the set: the object's bytes are the same; for each writer, its
    private generation G, its slice G then G - 1 with one boundary, its header word G or
    G - 1 (G once the slice is complete)."""
    ref = None
    cores = {pid: Core(os.path.join(out, "core.%d" % pid)) for pid in pids}
    for pid, c in cores.items():
        data = c.read(fam.base, fam.size)
        if ref is None:
            ref = data
        check(data == ref, "%s: core.%d holds other bytes for the shared object" % (what, pid))
    (magic,) = struct.unpack_from("<Q", ref, 0)
    check(magic == HDR_MAGIC, "%s: the shared header is not in the cores" % what)
    for i, kid in enumerate(fam.kids):
        if kid not in cores:
            continue
        _, g = struct.unpack("<QQ", cores[kid].read(fam.priv, 16))
        (h,) = struct.unpack_from("<Q", ref, 8 * (1 + i))
        off = MIB + i * fam.write
        gens = [struct.unpack_from("<Q", ref, off + p)[0] for p in range(0, fam.write, 4096)]
        # pages are written in order: G for a prefix (maybe empty), G - 1 after it
        in_order = all(x >= y for x, y in zip(gens, gens[1:]))
        done = all(x == g for x in gens)
        check(g > 0 and all(x in (g, g - 1) for x in gens) and in_order and
              (h in (g, g - 1) if done else h == g - 1),
              "%s: writer %d is not at one instant with its core: private %d, header %d, "
              "slice %s" % (what, kid, g, h, sorted(set(gens))))


def the_object(m, fam, what):
    objs = m["shared_objects"]
    check(len(objs) == 1, "%s: %d shared objects: %s" % (what, len(objs), objs))
    o = objs[0]
    check(o["size"] == fam.size and o["offset"] == 0, "%s: object %s" % (what, o))
    return o


def test_one_object_one_capture_under_every_method():
    """Every kind of shared object, every method: one object in the manifest, mapped by all,
    kept by tracked writes; the pause copies what was written (at most the writers' slices),
    not the object; one instant across all cores."""
    nprocs, write = 4, 1
    plan = {"anon": METHODS, "sysv": ["copy"], "memfd": ["precopy"], "posix": ["clone"]}
    with TempDir() as tmp:
        for kind in KINDS:
            with Family(kind, 16, nprocs, write) as fam:
                for m in plan[kind]:
                    out = os.path.join(tmp, "%s-%s" % (kind, m))
                    r = snap("--tree", "--method", m, "--sample", "0", "-o", out, fam.pid,
                             timeout=900)
                    what = "%s %s" % (kind, m)
                    man = manifest(out)
                    o = the_object(man, fam, what)
                    want_kind = {"anon": "anonymous"}.get(kind, kind)
                    check(o["kind"] == want_kind, "%s: kind %s" % (what, o["kind"]))
                    check(sorted(x["pid"] for x in o["mapped_by"]) == sorted(fam.pids()),
                          "%s: mapped_by %s" % (what, o["mapped_by"]))
                    check(o["kept"] == "tracked" and not o["writers_outside"],
                          "%s: kept %s (%s)" % (what, o["kept"], o["kept_reason"]))
                    check(o["copied_in_pause_bytes"] <= (nprocs * write + 1) * MIB,
                          "%s: %d bytes of the object copied in the pause" %
                          (what, o["copied_in_pause_bytes"]))
                    for p in man["processes"]:
                        sm = p.get("shared_mappings") or []
                        check([x["object"] for x in sm] == [o["id"]] and
                              sm[0]["start"] == fam.base,
                              "%s: pid %d shared_mappings %s" % (what, p["pid"], sm))
                    check("shared: 1 object, 16.0 MiB, mapped by %d processes, kept once "
                          "(tracked writes: " % (nprocs + 1) in r.stdout,
                          "%s: summary: %s" % (what, r.stdout))
                    check_one_instant(out, fam, fam.pids(), what)
                    shutil.rmtree(out)
                    fam.assert_running()
                    for pid in fam.pids():
                        no_write_protection(pid, what, fam.base, fam.base + fam.size)


def test_nothing_is_allocated_in_the_freeze_under_every_method():
    """The pause allocates nothing beyond what was reserved before it: the manifest's
    timeline.allocations_in_freeze is 0 under every method, for real-shaped targets frozen
    together: a tree of writers sharing one object, a process of many threads, one of many
    mappings, a parent and its child writing to each other, a writer of scattered pages (as
    many runs of written pages as pages: each an extent in the freeze)."""
    with Family("anon", 16, 3, 1) as fam, Victim("threads", 64) as th, \
            Victim("maps", 3000) as mp, Victim("pingpong") as pp, \
            Victim("scatter", 16384) as sc, TempDir() as tmp:
        roots = [fam.pid, th.pid, mp.pid, pp.pid, sc.pid]
        for m in METHODS:
            out = os.path.join(tmp, m)
            snap("--tree", "--method", m, "--sample", "0", "-o", out, *roots, timeout=600)
            man = manifest(out)
            allocs = man["timeline"].get("allocations_in_freeze")
            check(allocs == 0, "%s: %r allocations in the freeze" % (m, allocs))
            procs = man["processes"]
            check(len(procs) >= len(fam.pids()) + 5, "%s: %d processes" % (m, len(procs)))
            check(all(p["capture"] == "memory" for p in procs),
                  "%s: not all captured: %s" % (m, [(p["pid"], p["capture"],
                                                     p.get("capture_note")) for p in procs
                                                    if p["capture"] != "memory"]))
            fam.assert_running()
        for v in (th, mp, pp, sc):
            v.verify()


def vm_pte_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        return int([l for l in f if l.startswith("VmPTE:")][0].split()[1])


def test_writers_page_tables_are_left_as_they_were():
    """Each writer of a 64 MiB object has touched 1 MiB of it: after snapshots under auto and
    precopy (whose rounds scan every mapping for written pages and protect them again), no
    process's page tables grew. The holes of a mapping are not write-protected: that would
    fill its page tables over the whole object (128 KiB here) and keep them."""
    with Family("anon", 64, 3, 1) as fam, TempDir() as tmp:
        before = {p: vm_pte_kib(p) for p in fam.pids()}
        for m in ("auto", "precopy"):
            out = os.path.join(tmp, m)
            snap("--tree", "--method", m, "--sample", "0", "-o", out, fam.pid, timeout=600)
            grown = {p: vm_pte_kib(p) - before[p] for p in fam.pids()}
            check(all(g <= 32 for g in grown.values()),
                  "%s: page tables grew (KiB, per pid): %s" % (m, grown))
            check_one_instant(out, fam, fam.pids(), m)
            shutil.rmtree(out)
        fam.assert_running()


def test_an_object_mostly_unused_is_not_held_whole():
    """A 256 MiB object of which the writers use 3 MiB: osmosis's image of it holds what is
    there, and its write-out does not read the rest (each page read would fault a zeroed page
    in, a huge page here): osmosis's peak RSS stays far below the object's size, and the
    cores hold the object as it was."""
    with Family("anon", 256, 2, 1, "sparse") as fam, TempDir() as tmp:
        out = os.path.join(tmp, "s")
        snap("--tree", "--sample", "0", "-o", out, fam.pid, timeout=600)
        tl = manifest(out)["timeline"]
        print("  peak RSS %.1f MiB" % (tl["peak_rss"] / (1 << 20)))
        check(tl["peak_rss"] < 160 << 20, "osmosis's peak RSS %.1f MiB for a 256 MiB object "
              "of which 3 MiB is used" % (tl["peak_rss"] / (1 << 20)))
        check_one_instant(out, fam, fam.pids(), "sparse")
        fam.assert_running()


def test_one_instant_on_a_machine_with_swap():
    """With swap, reclaim may drop a written page of a shared object from a writer's page
    tables, so the scans for written pages look at holes too (capture/shared.c, written_anyof):
    writers writing nonstop in an object mostly holes still show one instant in every core."""
    with SwapFile(), Family("anon", 16, 4, 1, "sparse") as fam, TempDir() as tmp:
        for m in ("auto", "precopy"):
            out = os.path.join(tmp, m)
            snap("--tree", "--method", m, "--sample", "0", "-o", out, fam.pid, timeout=600)
            o = the_object(manifest(out), fam, m)
            check(o["kept"] == "tracked", "%s: kept %s (%s)" % (m, o["kept"], o["kept_reason"]))
            check_one_instant(out, fam, fam.pids(), "%s, with swap" % m)
            shutil.rmtree(out)
        fam.assert_running()


def test_single_instant_across_writers_of_one_object():
    """Eight processes writing the same object nonstop, snapshots under each method: one
    instant in every core, every time."""
    with Family("anon", 16, 8, 1) as fam, TempDir() as tmp:
        for m in METHODS:
            for i in range(1):
                out = os.path.join(tmp, "%s%d" % (m, i))
                snap("--tree", "--method", m, "--sample", "0", "-o", out, fam.pid,
                     timeout=900)
                check_one_instant(out, fam, fam.pids(), "%s %d" % (m, i))
                shutil.rmtree(out)
        fam.assert_running()


def copied_in_pause(stdout):
    """Bytes the summary says were copied in the pause."""
    import re
    m = re.search(r"; ([\d.]+) (B|KiB|MiB|GiB) copied in the pause", stdout)
    check(m, "no copy in the pause in the summary: %r" % stdout)
    return float(m.group(1)) * {"B": 1, "KiB": 1 << 10, "MiB": MIB, "GiB": 1 << 30}[m.group(2)]


def test_members_get_a_last_round_just_before_the_freeze():
    """Eight members writing their private memory slowly (a page a millisecond, as a server's
    processes do their sorts and caches), pre-copied one after another: by the freeze, the first
    members' rounds are long past. Each gets one more round just before the freeze, so the pause
    copies what was written during those last rounds, not what each wrote after its own."""
    with Family("anon", 16, 8, 0, env={"SHM_CREEP": "8"}) as fam, TempDir() as tmp:
        time.sleep(0.5)
        out = os.path.join(tmp, "s")
        r = osmosis("snap", "--tree", "--method", "precopy", "--sample", "0", "-v", "-o", out,
                    fam.pid)
        check(r.returncode == 0, r.stderr)
        last = [l for l in r.stderr.splitlines() if "pre-copy's last round" in l]
        since = [float(l.split("round, ")[1].split(" ms")[0]) for l in last]
        copied = copied_in_pause(r.stdout)
        print("  %d last rounds, %.0f-%.0f ms after the one before; %.0f KiB copied in the "
              "pause" % (len(last), min(since or [0]), max(since or [0]), copied / 1024))
        check(len(last) >= 4, "members' last rounds: %s" % last)
        # without the last rounds the pause would copy each member's pages written since its
        # round, a page a millisecond: sum(since) ms of pages (2.4-2.7 MiB here), beside the
        # half MiB of stacks and libraries it copies anyway; with them, a fraction of that
        check(copied < sum(since) / 3 * 4096 + 512 * 1024,
              "%.0f KiB copied in the pause, the last rounds %s ms after the ones before" %
              (copied / 1024, since))
        m = manifest(out)
        check(sorted(p["pid"] for p in m["processes"] if p.get("capture") == "memory") ==
              sorted(fam.pids()), "not all captured: %s" % m["processes"])
        fam.assert_running()


def test_mapper_exiting_during_the_rounds_costs_a_round_not_a_copy_in_the_pause():
    """A writer killed between two rounds (fault point shared-round), then one killed after the
    last round (fault point prepared): each time its write tracking went with it; the object is
    read whole again outside the freeze, so it stays tracked, the pause copies only what was
    written since the last round, the manifest says why it was read again, and the cores that
    remain show one instant."""
    with Family("anon", 16, 4, 1) as fam, TempDir() as tmp:
        for point, victim, m in (("shared-round", fam.kids[0], "auto"),
                                 ("prepared", fam.kids[1], "clone")):
            what = "%s:kill (%s)" % (point, m)
            out = os.path.join(tmp, point)
            r = snap("--tree", "--method", m, "--sample", "0", "-o", out, fam.pid,
                     env={"OSMOSIS_FAULT": "%s:kill=%d" % (point, victim)}, timeout=900)
            man = manifest(out)
            o = the_object(man, fam, what)
            procs = {p["pid"]: p for p in man["processes"]}
            check(procs[victim]["capture"] == "exited", "%s: the killed writer: %s" %
                  (what, procs[victim]))
            check(victim not in [x["pid"] for x in o["mapped_by"]],
                  "%s: mapped_by %s" % (what, o["mapped_by"]))
            check(o["kept"] == "tracked" and "read whole again before the freeze" in
                  (o["kept_reason"] or "") and "pid %d" % victim in o["kept_reason"],
                  "%s: kept %s (%s)" % (what, o["kept"], o["kept_reason"]))
            check(o["copied_in_pause_bytes"] <= (4 + 1) * MIB,
                  "%s: %d bytes of the object copied in the pause" %
                  (what, o["copied_in_pause_bytes"]))
            alive = [p for p in fam.pids() if procs.get(p, {}).get("capture") == "memory"]
            check(len(alive) >= 3, "%s: captured %s" % (what, alive))
            check_one_instant(out, fam, alive, what)
            print("  %s: pause %.1f ms, %d bytes copied in the pause; %s" %
                  (what, man["pause_us"] / 1000, o["copied_in_pause_bytes"], o["kept_reason"]))
            shutil.rmtree(out)
            for pid in alive:
                no_write_protection(pid, what, fam.base, fam.base + fam.size)


def test_written_pages_that_cannot_be_read_in_the_freeze_cost_a_whole_copy():
    """The freeze's scan of a tracked mapping for its written pages fails (fault point
    shared-scan, on the copy threads): the object is copied whole in the pause instead, the
    manifest says why, the snapshot succeeds, every core shows one instant and no write
    protection is left."""
    with Family("anon", 16, 4, 1) as fam, TempDir() as tmp:
        for m in ("auto", "clone"):
            what = "shared-scan:fail (%s)" % m
            out = os.path.join(tmp, m)
            r = snap("--tree", "--method", m, "--sample", "0", "-o", out, fam.pid,
                     env={"OSMOSIS_FAULT": "shared-scan:fail"}, timeout=900)
            check("fault point shared-scan: injected failure" in r.stderr,
                  "%s: not reached: %s" % (what, r.stderr))
            man = manifest(out)
            o = the_object(man, fam, what)
            check(o["kept"] == "copied" and "could not be read" in (o["kept_reason"] or ""),
                  "%s: kept %s (%s)" % (what, o["kept"], o["kept_reason"]))
            check(o["copied_in_pause_bytes"] == fam.size, "%s: %d bytes copied in the pause" %
                  (what, o["copied_in_pause_bytes"]))
            check_one_instant(out, fam, fam.pids(), what)
            print("  %s: pause %.1f ms; %s" % (what, man["pause_us"] / 1000, o["kept_reason"]))
            shutil.rmtree(out)
            fam.assert_running()
            for pid in fam.pids():
                no_write_protection(pid, what, fam.base, fam.base + fam.size)


def test_mapper_gone_before_its_tracking_began_costs_nothing():
    """A writer killed after the private pre-copy and before the shared object's tracking begins
    (fault point precopied; a backend ending under connection churn): it writes no more, and the
    whole read that begins the rounds sees what it wrote. The object stays tracked, not copied in
    the pause ("write tracking could not start"), and the cores that remain show one instant."""
    with Family("anon", 16, 4, 1) as fam, TempDir() as tmp:
        victim = fam.kids[2]
        out = os.path.join(tmp, "s")
        snap("--tree", "--method", "precopy", "--sample", "0", "-o", out, fam.pid,
             env={"OSMOSIS_FAULT": "precopied:kill=%d" % victim}, timeout=900)
        man = manifest(out)
        o = the_object(man, fam, "precopied:kill")
        procs = {p["pid"]: p for p in man["processes"]}
        check(procs[victim]["capture"] == "exited", "the killed writer: %s" % procs[victim])
        check(o["kept"] == "tracked", "kept %s (%s)" % (o["kept"], o["kept_reason"]))
        check(o["copied_in_pause_bytes"] <= (4 + 1) * MIB,
              "%d bytes of the object copied in the pause" % o["copied_in_pause_bytes"])
        alive = [p for p in fam.pids() if procs.get(p, {}).get("capture") == "memory"]
        check(len(alive) == 4, "captured %s" % alive)
        check_one_instant(out, fam, alive, "precopied:kill")
        print("  pause %.1f ms, %d bytes copied in the pause; %s" %
              (man["pause_us"] / 1000, o["copied_in_pause_bytes"], o["kept_reason"]))


def test_writer_forked_in_the_tree_before_the_freeze_joins_it():
    """A writer forked after the tree was listed (fault point vetted, before the objects are
    collected, as a postmaster forks a backend): it is not a writer outside, it joins the tree in
    the freeze. The object stays tracked (not copied whole in the pause), the new writer's core
    holds it, and every core shows one instant."""
    with TempDir() as tmp:
        fifo = os.path.join(tmp, "fork")
        os.mkfifo(fifo, 0o600)
        with Family("anon", 16, 3, 1, env={"SHM_FORK_FIFO": fifo}) as fam:
            for m in ("precopy", "clone"):
                out = os.path.join(tmp, m)
                before = set(children_of(fam.pid))
                snap("--tree", "--method", m, "--sample", "0", "-o", out, fam.pid,
                     env={"OSMOSIS_FAULT": "vetted:write=%s" % fifo}, timeout=900)
                new = sorted(set(children_of(fam.pid)) - before)
                check(len(new) == 1, "%s: forked at the fault point: %s" % (m, new))
                fam.kids += new
                man = manifest(out)
                o = the_object(man, fam, m)
                procs = {p["pid"]: p for p in man["processes"]}
                check(procs.get(new[0], {}).get("capture") == "memory",
                      "%s: the new writer: %s" % (m, procs.get(new[0])))
                check(new[0] in [x["pid"] for x in o["mapped_by"]], "%s: mapped_by %s" %
                      (m, o["mapped_by"]))
                check(o["kept"] == "tracked" and not o["writers_outside"],
                      "%s: kept %s (%s), outside %s" % (m, o["kept"], o["kept_reason"],
                                                       o["writers_outside"]))
                check(o["copied_in_pause_bytes"] <= (len(fam.kids) + 1) * MIB,
                      "%s: %d bytes copied in the pause" % (m, o["copied_in_pause_bytes"]))
                check_one_instant(out, fam, fam.pids(), m)
                print("  %s: pause %.1f ms, %d bytes copied in the pause; %s" %
                      (m, man["pause_us"] / 1000, o["copied_in_pause_bytes"], o["kept_reason"]))
                shutil.rmtree(out)
            fam.assert_running()


def state_of(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def check_ended_writer(out, fam, pid, i, what):
    """The slice of writer i, killed before the freeze, as every core holds it: its last
    generation G for a prefix, G - 1 after it, its header word G when the slice was done, else
    G - 1. A core missing its writes since the first round holds an older slice under a newer
    header (the header page is written by every writer, so it is copied fresh)."""
    data = Core(os.path.join(out, "core.%d" % pid)).read(fam.base, fam.size)
    (h,) = struct.unpack_from("<Q", data, 8 * (1 + i))
    off = MIB + i * fam.write
    gens = [struct.unpack_from("<Q", data, off + p)[0] for p in range(0, fam.write, 4096)]
    g = max(gens)
    in_order = all(x >= y for x, y in zip(gens, gens[1:]))
    done = all(x == g for x in gens)
    check(g > 0 and all(x in (g, g - 1) for x in gens) and in_order and
          (h in (g, g - 1) if done else h == g - 1),
          "%s: the ended writer's slice is not what it last wrote: header %d, slice %s" %
          (what, h, sorted(set(gens))))


def test_writer_forked_in_the_tree_that_ends_before_the_freeze():
    """A writer forked after the tree was listed (fault point vetted) is killed and reaped
    before the freeze: during the rounds (fault point shared-round), its writes are read by a
    whole read outside the pause and the object stays tracked; after the last check (fault point
    settled), it is missing from the freeze and the object is copied whole in the pause, with
    the reason. Either way its last writes are in every core, and the cores show one instant."""
    with TempDir() as tmp:
        # After the last check, the reap may land before the freeze or not (a loaded
        # machine): the freeze finds a reaped child, or a joiner missing; a copy either way.
        after = ("exited after the last round", "was not in the freeze")
        for point, end, why_has in (("shared-round", "reaped", ("read whole again",)),
                                    ("settled", "reaped", after),
                                    ("settled", "zombie", after)):
            what = "%s, %s" % (point, end)
            fifo = os.path.join(tmp, "fork-%s-%s" % (point, end))
            os.mkfifo(fifo, 0o600)
            with Family("anon", 16, 3, 1, env={"SHM_FORK_FIFO": fifo,
                                               "SHM_FORK_KILL": end}) as fam:
                out = os.path.join(tmp, "%s-%s" % (point, end))
                before = set(children_of(fam.pid))
                snap("--tree", "--method", "precopy", "--sample", "0", "-o", out, fam.pid,
                     env={"OSMOSIS_FAULT": "vetted:write=%s;%s:write=%s" % (fifo, point, fifo)},
                     timeout=900)
                new = sorted(set(children_of(fam.pid)) - before)
                check(all(state_of(pid) in ("Z", None) for pid in new),
                      "%s: the forked writer lives: %s" % (what, new))
                man = manifest(out)
                o = the_object(man, fam, what)
                why = o["kept_reason"] or ""
                kept = "tracked" if point == "shared-round" else "copied"
                check(o["kept"] == kept and any(w in why for w in why_has),
                      "%s: kept %s (%s)" % (what, o["kept"], why))
                check_one_instant(out, fam, fam.pids(), what)
                for pid in fam.pids():
                    check_ended_writer(out, fam, pid, len(fam.kids), what)
                print("  %s: pause %.1f ms, %d bytes copied in the pause; %s" %
                      (what, man["pause_us"] / 1000, o["copied_in_pause_bytes"], why))
                fam.assert_running()


def test_writer_forked_outside_a_named_set_during_the_rounds_is_a_writer_outside():
    """Named pids (not a tree): a writer forked from a member after the first round (fault
    point shared-round) runs outside the snapshot and maps the object writable: the object is
    copied whole in the pause and the manifest names it among the writers outside, claiming no
    consistency for the object."""
    with TempDir() as tmp:
        fifo = os.path.join(tmp, "fork")
        os.mkfifo(fifo, 0o600)
        with Family("anon", 16, 2, 1, env={"SHM_FORK_FIFO": fifo}) as fam:
            out = os.path.join(tmp, "s")
            before = set(children_of(fam.pid))
            snap("--method", "precopy", "--sample", "0", "-o", out, *fam.pids(),
                 env={"OSMOSIS_FAULT": "shared-round:write=%s" % fifo}, timeout=900)
            new = sorted(set(children_of(fam.pid)) - before)
            check(len(new) == 1, "forked at the fault point: %s" % new)
            fam.kids += new
            man = manifest(out)
            o = the_object(man, fam, "outside")
            outside = [x if isinstance(x, int) else x.get("pid") for x in o["writers_outside"]]
            check(o["kept"] == "copied" and new[0] in outside,
                  "kept %s (%s), outside %s" % (o["kept"], o["kept_reason"],
                                                o["writers_outside"]))
            check(new[0] not in [p["pid"] for p in man["processes"]],
                  "the new writer is in the snapshot")
            print("  pause %.1f ms, %d bytes copied in the pause; %s; outside %s" %
                  (man["pause_us"] / 1000, o["copied_in_pause_bytes"], o["kept_reason"],
                   o["writers_outside"]))
            fam.assert_running()


FLASH_MAGIC = 0x666c617368


def test_child_that_writes_and_exits_during_the_rounds_is_seen():
    """After the first round, the parent forks a child that writes its slice and header word and
    exits, reaped at once (fault point shared-round; a short-lived worker under connection
    churn). Its mapping was never tracked, yet its writes are in every core. The parent forks,
    so it is watched: the child was seen to its exit and what it touched copied, without a whole
    read, and the manifest names the parent. As a tree and as named pids. Without the watch
    (fault point child-watch), its parent's reaped children's faults rose, and the object was
    read whole again (or copied in the pause)."""
    with TempDir() as tmp:
        for scope, m, fault, want in (("tree", "precopy", "", "seen to its exit"),
                                      ("pids", "clone", "", "seen to its exit"),
                                      ("tree", "precopy", "child-watch:fail", "a child of pid")):
            fifo = os.path.join(tmp, "fork-%s-%s" % (scope, bool(fault)))
            os.mkfifo(fifo, 0o600)
            with Family("anon", 16, 3, 1, env={"SHM_FORK_FIFO": fifo, "SHM_FLASH": "1"}) as fam:
                out = os.path.join(tmp, "%s-%s" % (scope, bool(fault)))
                who = ["--tree", fam.pid] if scope == "tree" else fam.pids()
                faults = "shared-round:write=%s" % fifo + (";" + fault if fault else "")
                snap("--method", m, "--sample", "0", "-o", out, *who,
                     env={"OSMOSIS_FAULT": faults}, timeout=900)
                what = "%s, %s%s" % (scope, m, ", " + fault if fault else "")
                man = manifest(out)
                o = the_object(man, fam, what)
                why = o["kept_reason"] or ""
                check(want in why and "of pid %d" % fam.pid in why and
                      (fault or "read whole again" not in why),
                      "%s: kept %s (%s)" % (what, o["kept"], why))
                slot = len(fam.kids)
                for pid in fam.pids():
                    data = Core(os.path.join(out, "core.%d" % pid)).read(fam.base, fam.size)
                    (h,) = struct.unpack_from("<Q", data, 8 * (1 + slot))
                    (pg,) = struct.unpack_from("<Q", data, MIB + slot * fam.write)
                    check(h == FLASH_MAGIC and pg == FLASH_MAGIC,
                          "%s: core.%d misses the exited child's writes: %#x %#x" %
                          (what, pid, h, pg))
                check_one_instant(out, fam, fam.pids(), what)
                print("  %s: pause %.1f ms, %d bytes copied in the pause; %s" %
                      (what, man["pause_us"] / 1000, o["copied_in_pause_bytes"], why))
                fam.assert_running()


def tracers(pid):
    """The tracer of each thread of pid (0 for none)."""
    out = []
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/status" % (pid, tid)) as f:
                out += [int(l.split()[1]) for l in f if l.startswith("TracerPid:")]
        except OSError:
            pass
    return out


def test_watch_of_children_lets_go_when_osmosis_fails_or_is_killed():
    """The parent of the writers forks, so its children are watched during the rounds: osmosis
    is its tracer then. When the snapshot fails there (fault point shared-round, fail) or
    osmosis is killed there (sigkill), the parent and its children are left untraced and
    running, and the next snapshot takes them."""
    with Family("anon", 16, 3, 1) as fam, TempDir() as tmp:
        for action in ("fail", "sigkill"):
            out = os.path.join(tmp, action)
            r = osmosis("snap", "-v", "--tree", "--method", "precopy", "--sample", "0", "-o",
                        out, fam.pid, env={"OSMOSIS_FAULT": "shared-round:" + action},
                        timeout=900)
            check(r.returncode != 0, "%s: osmosis exited 0" % action)
            if action == "fail":
                check("children are watched to their exits" in r.stderr,
                      "fail: the parent was not watched: %s" % r.stderr[-2000:])
            deadline = time.time() + 5
            while time.time() < deadline and any(any(tracers(p)) for p in fam.pids()):
                time.sleep(0.05)
            for pid in fam.pids():
                check(not any(tracers(pid)), "%s: pid %d still traced: %s" %
                      (action, pid, tracers(pid)))
            fam.assert_running()
        out = os.path.join(tmp, "after")
        snap("--tree", "--sample", "0", "-o", out, fam.pid, timeout=900)
        o = the_object(manifest(out), fam, "after")
        check(o["kept"] == "tracked", "after: kept %s (%s)" % (o["kept"], o["kept_reason"]))
        fam.assert_running()


def test_children_of_a_member_that_maps_nothing_cost_the_object_nothing():
    """The writers are started by a shell that goes on running commands (a supervisor, a
    wrapper script; any process under --all): it reaps a child every few milliseconds. Those
    children never map the object, so their exits cost it nothing: it stays tracked, is not read
    whole again, and the pause copies only what was written since the last round."""
    with Family("anon", 16, 3, 1, shell="while :; do /bin/true; done") as fam, \
            TempDir() as tmp:
        shell = fam.proc.pid
        for m in ("precopy", "auto"):
            out = os.path.join(tmp, m)
            snap("--tree", "--method", m, "--sample", "0", "-o", out, shell, timeout=900)
            man = manifest(out)
            o = the_object(man, fam, m)
            check(o["kept"] == "tracked" and "read whole again" not in (o["kept_reason"] or ""),
                  "%s: kept %s (%s)" % (m, o["kept"], o["kept_reason"]))
            check(o["copied_in_pause_bytes"] <= (3 + 1) * MIB,
                  "%s: %d bytes of the object copied in the pause" %
                  (m, o["copied_in_pause_bytes"]))
            check_one_instant(out, fam, fam.pids(), m)
            print("  %s: pause %.1f ms, %d bytes copied in the pause; %s" %
                  (m, man["pause_us"] / 1000, o["copied_in_pause_bytes"], o["kept_reason"]))
            shutil.rmtree(out)
        fam.assert_running()


def test_writers_outside_the_snapshot_are_recorded():
    """Two of the writers named, the others left out: the object is copied whole in the pause
    and the manifest names the processes outside that map it."""
    with Family("memfd", 16, 3, 1) as fam, TempDir() as tmp:
        inside = [fam.pid, fam.kids[0]]
        out = os.path.join(tmp, "s")
        r = snap("--sample", "0", "-o", out, *inside)
        o = the_object(manifest(out), fam, "outside")
        check(sorted(o["writers_outside"]) == sorted(fam.kids[1:]),
              "writers_outside %s, want %s" % (o["writers_outside"], fam.kids[1:]))
        check(o["kept"] == "copied" and "outside the snapshot" in o["kept_reason"],
              "kept %s (%s)" % (o["kept"], o["kept_reason"]))
        check("copied whole in the pause" in r.stdout, "summary: %s" % r.stdout)
        fam.assert_running()


def test_coredump_filter_is_honoured_per_process():
    """A writer whose coredump_filter leaves shared anonymous memory out: its core has no bytes
    for the object (it still counts as a writer), the others' cores hold it."""
    with Family("anon", 16, 2, 1) as fam, TempDir() as tmp:
        left_out = fam.kids[0]
        with open("/proc/%d/coredump_filter" % left_out, "w") as f:
            f.write("0x31")
        out = os.path.join(tmp, "s")
        snap("--tree", "--method", "precopy", "--sample", "0", "-o", out, fam.pid)
        o = the_object(manifest(out), fam, "filter")
        dumped = {x["pid"]: x["dumped"] for x in o["mapped_by"]}
        check(dumped[left_out] is False and all(v for p, v in dumped.items() if p != left_out),
              "dumped: %s" % dumped)
        core = Core(os.path.join(out, "core.%d" % left_out))
        seg = core.load_for(fam.base)
        check(seg is not None and seg["filesz"] == 0, "the filtered core holds the object")
        check_one_instant(out, fam, [p for p in fam.pids() if p != left_out], "filter")
        fam.assert_running()


# A process that maps a data file read-only and shared, as a JVM maps its modules and CDS
# archive, with coredump_filter asking for shared file mappings (as the JVM sets it).
MAPPER = r"""
import mmap, os, sys, time
with open("/proc/self/coredump_filter", "w") as f:
    f.write("0x3f")
path, mode = sys.argv[1], sys.argv[2]
fd = os.open(path, os.O_RDWR if mode == "rw" else os.O_RDONLY)
m = mmap.mmap(fd, 0, mmap.MAP_SHARED, mmap.PROT_READ | (mmap.PROT_WRITE if mode == "rw" else 0))
os.close(fd)
print("ready", flush=True)
while True:
    if mode == "rw":
        m[0:8] = int(time.time() * 1e6).to_bytes(8, "little")
    time.sleep(0.01)
"""


def test_read_only_file_mapping_is_read_before_the_freeze():
    """A 16 MiB file mapped read-only by the target: no mapping can write it, so it is read
    once before the freeze (kept "read-only"), nothing of it is copied in the pause, and the
    core holds the file's bytes. Once another process maps it writable outside the snapshot,
    it is copied whole in the pause and that process is named."""
    with TempDir() as tmp:
        data = os.path.join(tmp, "data")
        blob = os.urandom(1 << 20) * 16
        with open(data, "wb") as f:
            f.write(blob)
        procs = []
        try:
            for mode in ("ro", "rw"):
                p = subprocess.Popen([sys.executable, "-c", MAPPER, data, mode],
                                     stdout=subprocess.PIPE, text=True)
                procs.append(p)
                check(p.stdout.readline().startswith("ready"), "mapper %s did not start" % mode)
            ro, rw = procs
            for m in ("copy", "precopy", "clone"):
                out = os.path.join(tmp, "s-" + m)
                r = snap("--method", m, "--sample", "0", "-o", out, ro.pid)
                (o,) = [o for o in manifest(out)["shared_objects"] if o["path"] == data]
                check(o["kept"] == "copied" and o["writers_outside"] == [rw.pid],
                      "%s, a writer outside: kept %s (%s), writers %s" %
                      (m, o["kept"], o["kept_reason"], o["writers_outside"]))
                shutil.rmtree(out)
            rw.kill()
            rw.wait()
            with open(data, "rb") as f:
                blob = f.read()  # as the writer left it
            for m in ("copy", "precopy", "clone"):
                out = os.path.join(tmp, "r-" + m)
                r = snap("--method", m, "--sample", "0", "-o", out, ro.pid)
                (o,) = [o for o in manifest(out)["shared_objects"] if o["path"] == data]
                check(o["kept"] == "read-only" and o["copied_in_pause_bytes"] == 0,
                      "%s: kept %s (%s), %d bytes in the pause" %
                      (m, o["kept"], o["kept_reason"], o["copied_in_pause_bytes"]))
                check("read-only, read before the freeze" in r.stdout, r.stdout)
                (start,) = [x["start"] for x in o["mapped_by"] if x["pid"] == ro.pid]
                core = Core(os.path.join(out, "core.%d" % ro.pid))
                check(core.read(start, len(blob)) == blob, "%s: the core lacks the file" % m)
                shutil.rmtree(out)
        finally:
            for p in procs:
                p.kill()
                p.wait()


if __name__ == "__main__":
    main(globals())
