# SPDX-License-Identifier: MIT
"""osmosis analyze: each pattern on a victim that exhibits it, naming the right processes and
threads; healthy victims with no error or warning; bad input; the JSON report; the demo."""

import json
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import osmtest
from osmtest import (Fail, SwapFile, TempDir, Victim, check, main, manifest, one_line_error,
                     osmosis, snap)


def analyze(d, *args):
    r = osmosis("analyze", "--json", *args, d)
    check(r.returncode == 0, "analyze failed (%d): %s" % (r.returncode, r.stderr))
    check(not r.stderr.strip(), "analyze wrote to stderr: %s" % r.stderr)
    return json.loads(r.stdout)


def snap_and_analyze(v, tmp, *snap_args, analyze_args=()):
    out = os.path.join(tmp, "s")
    snap("--sample", "0.3", *snap_args, "-o", out, v.pid)
    return out, analyze(out, *analyze_args)


def findings(report, pattern):
    return [f for f in report["findings"] if f["pattern"] == pattern]


def tids_named(d, pid, name):
    for p in manifest(d)["processes"]:
        if p["pid"] == pid:
            return sorted(t["tid"] for t in p["threads"] if t["name"] == name)
    return []


def machine_wide(f):
    """A finding about the whole machine (short of memory, busy): it names the biggest consumers,
    the victim among them, when the machine is loaded by others."""
    return f["pattern"] in ("insufficient-memory", "busy-system") and \
        f["summary"].startswith("The system")


def no_errors_or_warnings(report, pid, allow=()):
    """No error or warning about the victim. Findings about the machine (a busy or short system,
    which other tests running at the same time can cause) do not name it and do not count."""
    bad = [(f["pattern"], f["summary"]) for f in report["findings"]
           if f["severity"] in ("error", "warning") and f["pattern"] not in allow
           and pid in f["pids"] and not machine_wide(f)]
    check(not bad, "unexpected findings: %s" % bad)


def test_deadlock_of_two_and_three_threads():
    for n in (2, 3):
        with Victim("deadlock", n) as v, TempDir() as tmp:
            d, rep = snap_and_analyze(v, tmp)
            (f,) = findings(rep, "deadlock")
            want = []
            for i in range(n):
                want += tids_named(d, v.pid, "v-cycle%d" % i)
            check(sorted(f["tids"]) == sorted(want) and f["severity"] == "error",
                  "deadlock of %d names %s, want %s" % (n, f["tids"], want))
            check(len(f["evidence"]["cycle"]) == n, "cycle evidence %s" % f["evidence"])
            check(f["pids"] == [v.pid], "pids %s" % f["pids"])
            check(all(s["address"] for s in f["evidence"]["cycle"]), "lock addresses decoded")


def test_linked_findings_chain_into_deadlock():
    with Victim("deadlock", 2, "chained") as v, TempDir() as tmp:
        d, rep = snap_and_analyze(v, tmp)
        (dl,) = findings(rep, "deadlock")
        (wc,) = findings(rep, "wait-chain")
        check(wc["severity"] == "error", "a chain into a deadlock is an error")
        check(tids_named(d, v.pid, "v-late")[0] == wc["evidence"]["chain"][0]["tid"], "chain head")
        check(any(r.startswith(dl["id"]) for r in wc["related"]), "no link: %s" % wc["related"])
        check("deadlock" in wc["evidence"]["end"], "end %s" % wc["evidence"]["end"])


def test_deadlock_across_two_processes():
    with Victim("deadlock-procs") as v, TempDir() as tmp:
        d, rep = snap_and_analyze(v, tmp, "--tree")
        child = int(v.info["child"])
        (f,) = findings(rep, "deadlock")
        check(sorted(f["pids"]) == sorted([v.pid, child]), "pids %s" % f["pids"])
        # the parent's main thread joins v-waiter: stuck with it, in the same knot of waits
        check(sorted(f["tids"]) == sorted(tids_named(d, v.pid, "v-waiter") + [child, v.pid]),
              "tids %s" % f["tids"])
        check(not findings(rep, "coupled-processes"), "also reported as coupled")


def test_coupled_processes_when_some_thread_still_runs():
    with Victim("coupled") as v, TempDir() as tmp:
        d, rep = snap_and_analyze(v, tmp, "--tree")
        child = int(v.info["child"])
        (f,) = findings(rep, "coupled-processes")
        check(sorted(f["pids"]) == sorted([v.pid, child]), "pids %s" % f["pids"])
        check(not findings(rep, "deadlock"), "a cycle with a running thread is no deadlock")


def test_wait_chain_across_three_processes():
    """A unix socket, a mutex and a pipe: asker -> p2 main -> v-holder -> p3."""
    with Victim("chain3") as v, TempDir() as tmp:
        d, rep = snap_and_analyze(v, tmp, "--tree")
        p2, p3 = int(v.info["p2"]), int(v.info["p3"])
        (f,) = findings(rep, "wait-chain")
        check(sorted(f["pids"]) == sorted([v.pid, p2, p3]), "pids %s" % f["pids"])
        want = tids_named(d, v.pid, "v-asker") + [p2] + tids_named(d, p2, "v-holder")
        check([l["tid"] for l in f["evidence"]["chain"]] == want,
              "chain %s, want %s" % (f["evidence"]["chain"], want))
        kinds = " ".join(l["waits_on"] for l in f["evidence"]["chain"])
        check("unix" in kinds and "mutex" in kinds and "pipe" in kinds, kinds)
        check("pid %d" % p3 in f["evidence"]["end"], "end %s" % f["evidence"]["end"])


VICTIM_WAITS = os.environ.get("VICTIM_WAITS", os.path.join(os.path.dirname(osmtest.VICTIM),
                                                             "victim-waits"))


def waits_victim(*args):
    return Victim(*args, cmd=[VICTIM_WAITS])


def snap_tree(v, tmp, *analyze_args):
    out = os.path.join(tmp, "s")
    snap("--sample", "0.3", "--tree", "-o", out, v.pid)
    return out, analyze(out, *analyze_args)


def test_any_of_wait_with_a_sleeping_writer_is_no_deadlock():
    """The issue's false deadlock: A reads a unix socket from B; B's main thread waits on a
    mutex held by B's worker; the worker reads a pipe whose write end A, B and C inherited; C
    sleeps and could write at any moment."""
    with waits_victim("wakers") as v, TempDir() as tmp:
        d, rep = snap_tree(v, tmp)
        b, worker, c = int(v.info["b"]), int(v.info["worker"]), int(v.info["c"])
        check(not findings(rep, "deadlock"), "a false deadlock: %s" % findings(rep, "deadlock"))
        (f,) = findings(rep, "coupled-processes")
        steps = {s["tid"]: s for s in f["evidence"]["cycle"]}
        check(set(steps) == {v.pid, b, worker}, "cycle %s" % list(steps))
        w = steps[worker]
        check(w["mode"] == "any-of", "the pipe read is an any-of wait: %s" % w)
        check(sorted(x["pid"] for x in w["wakers"]) == sorted([v.pid, b, c]),
              "every holder of the write end: %s" % w["wakers"])
        check(all(x["fd"] == int(v.info["pipe_w"]) for x in w["wakers"]), "fds %s" % w["wakers"])
        (cw,) = [x for x in w["wakers"] if x["pid"] == c]
        check(cw["can_go_on"] and cw["state"] == "sleeping", "C %s" % cw)
        check([x["pid"] for x in f["evidence"]["ways_out"]] == [c], "ways out %s"
              % f["evidence"]["ways_out"])
        check(steps[b]["mode"] == "this-one" and steps[b]["wakers"][0]["tid"] == worker,
              "the mutex wait names its owner: %s" % steps[b])
        r = osmosis("analyze", d)
        check("pid %d (v-c) fd %s, holds a write end: sleeping" % (c, v.info["pipe_w"]) in r.stdout,
              "text names C: %s" % r.stdout[:3000])
        check(max(len(l) for l in r.stdout.splitlines()) <= 100, "lines over 100 columns")
        cut = [l for l in r.stdout.splitlines() if "..." in l and not l.endswith(" not shown")]
        check(not cut, "text cut instead of wrapped: %s" % cut)  # frames left out are said so


def test_any_of_wait_whose_every_waker_is_stuck_is_a_deadlock():
    with waits_victim("wakers-stuck") as v, TempDir() as tmp:
        d, rep = snap_tree(v, tmp)
        b, worker, c = int(v.info["b"]), int(v.info["worker"]), int(v.info["c"])
        (f,) = findings(rep, "deadlock")
        check({v.pid, b, worker, c} <= set(f["tids"]), "tids %s" % f["tids"])
        check(sorted(f["pids"]) == sorted([v.pid, b, c]), "pids %s" % f["pids"])
        check(not findings(rep, "coupled-processes"), "also reported as coupled")


def test_full_pipe_deadlock_between_two_processes():
    with waits_victim("pipe-full") as v, TempDir() as tmp:
        d, rep = snap_tree(v, tmp)
        p2 = int(v.info["p2"])
        (f,) = findings(rep, "deadlock")
        check({v.pid, p2} <= set(f["tids"]) and sorted(f["pids"]) == sorted([v.pid, p2]),
              "deadlock %s" % f)
        check(all("writes" in s["waits_on"] for s in f["evidence"]["cycle"]), "%s" % f["evidence"])


def test_flock_chain_across_three_processes():
    with TempDir() as tmp, waits_victim("flock-chain", tmp) as v:
        d, rep = snap_tree(v, tmp)
        p1, p2, p3 = int(v.info["p1"]), int(v.info["p2"]), int(v.info["p3"])
        (f,) = findings(rep, "wait-chain")
        check(f["severity"] == "warning", "severity %s" % f["severity"])
        chain = f["evidence"]["chain"]
        check([s["tid"] for s in chain] == [p3, p2], "chain %s" % chain)
        check(all("file lock" in s["waits_on"] for s in chain), "%s" % chain)
        check("/F2" in chain[0]["waits_on"] and "/F1" in chain[1]["waits_on"], "%s" % chain)
        check([w["pid"] for w in chain[0]["wakers"]] == [p2] and
              [w["pid"] for w in chain[1]["wakers"]] == [p1], "holders %s" % chain)
        check("pid %d" % p1 in f["evidence"]["end"], "end %s" % f["evidence"]["end"])
        locks = manifest(d)["file_locks"]
        check(sorted((l["pid"], l["waiting"]) for l in locks) ==
              sorted([(p1, False), (p2, False), (p2, True), (p3, True)]), "locks %s" % locks)
        check(all(l["path"] and l["type"] == "FLOCK" for l in locks), "locks %s" % locks)
        r = osmosis("show", "-p", str(p2), d)
        check(r.returncode == 0 and "waiting" in r.stdout and "held by pid %d" % p1 in r.stdout,
              r.stdout)


def test_flock_deadlock_of_two_processes():
    with TempDir() as tmp, waits_victim("flock-deadlock", tmp) as v:
        d, rep = snap_tree(v, tmp)
        p1, p2 = int(v.info["p1"]), int(v.info["p2"])
        (f,) = findings(rep, "deadlock")
        check(sorted(f["pids"]) == sorted([p1, p2]) and sorted(f["tids"]) == sorted([p1, p2]),
              "deadlock %s" % f)
        check(all("file lock" in s["waits_on"] for s in f["evidence"]["cycle"]), "%s" % f)


def test_fcntl_range_wait():
    with TempDir() as tmp, waits_victim("fcntl-range", tmp) as v:
        d, rep = snap_tree(v, tmp)
        p1, p2 = int(v.info["p1"]), int(v.info["p2"])
        (f,) = findings(rep, "wait-chain")
        (step,) = f["evidence"]["chain"]
        check(step["tid"] == p2 and "POSIX WRITE, bytes 150-159" in step["waits_on"], "%s" % step)
        (w,) = step["wakers"]
        check(w["pid"] == p1 and "bytes 100-199" in w["role"] and w["state"] == "sleeping",
              "holder %s" % w)
        check(f["severity"] == "info", "a lone lock wait is a note: %s" % f["severity"])
        no_errors_or_warnings(rep, p2)


def test_cxx_std_mutex_deadlock_with_demangled_names():
    cxx = os.environ.get("VICTIM_CXX") or os.path.join(os.path.dirname(osmtest.VICTIM),
                                                        "victim-cxx")
    if not os.access(cxx, os.X_OK):
        print("skip: no C++ victim (no C++ compiler at build time)")
        sys.exit(77)
    with Victim(cmd=[cxx]) as v, TempDir() as tmp:
        d, rep = snap_and_analyze(v, tmp)
        (f,) = findings(rep, "deadlock")
        want = tids_named(d, v.pid, "v-transfer-a") + tids_named(d, v.pid, "v-transfer-b")
        check(sorted(f["tids"]) == sorted(want), "deadlock %s, want %s" % (f["tids"], want))
        lines = "\n".join(f["evidence"]["lines"])
        check("bank::Account::transfer_to(bank::Account&, long, std::atomic<int>&)" in lines,
              "demangled names: %s" % lines)
        check("_ZN4bank" not in lines, "a mangled name left: %s" % lines)
        fr = [x["function"] for t in rep["processes"][0]["threads"] for x in t["frames"]]
        check(not [x for x in fr if x and x.startswith("_Z")], "mangled frames %s" % fr)


def test_frames_outside_every_module_say_what_memory_they_are_in():
    with waits_victim("jit") as v, TempDir() as tmp:
        d, rep = snap_and_analyze(v, tmp)
        th = {t["name"]: t for t in rep["processes"][0]["threads"]}
        check(th["v-anon"]["frames"][0]["module"] == "[anonymous executable memory]",
              "anon %s" % th["v-anon"]["frames"][:2])
        check("memfd:jit-code" in th["v-memfd"]["frames"][0]["module"],
              "memfd %s" % th["v-memfd"]["frames"][:2])
        r = osmosis("analyze", d)
        check("?+0x0" not in r.stdout and "[anonymous executable memory]" in r.stdout, r.stdout)


def test_identical_stacks_group_only_on_the_same_object():
    with waits_victim("same-code") as v, TempDir() as tmp:
        d, rep = snap_and_analyze(v, tmp)
        r = osmosis("analyze", d)
        stacks = r.stdout.split("Stack trace collection")[1]
        check(stacks.count('"v-same"') == 2 and "2 threads:" not in stacks,
              "two mutexes, two groups: %s" % stacks)
        check(v.info["m0"][2:] in stacks and v.info["m1"][2:] in stacks, "both addresses")


def test_high_contention_names_waiters_and_owner():
    with Victim("contention", 10) as v, TempDir() as tmp:
        d, rep = snap_and_analyze(v, tmp)
        (f,) = findings(rep, "high-contention")
        waiters = tids_named(d, v.pid, "v-contender")
        owner = tids_named(d, v.pid, "v-owner")
        check(len(waiters) == 10 and set(waiters) <= set(f["tids"]), "waiters %s" % f["tids"])
        check(f["evidence"]["owner"] == owner[0], "owner %s" % f["evidence"])
        check(not findings(rep, "blocked-thread"), "contention waiters repeated as blocked")
        # a threshold changes the verdict
        rep = analyze(d, "--threshold", "high-contention.waiters=11")
        check(not findings(rep, "high-contention"), "threshold 11 still reports 10 waiters")


def test_blocked_thread():
    """Threads blocked that nobody waits on draw no blocked-thread note unless the user names
    them; a lone lock wait that lasted the sample is a wait-chain note, not a warning."""
    with Victim("basic") as v, TempDir() as tmp:
        d, rep = snap_and_analyze(v, tmp)
        mutex = tids_named(d, v.pid, "v-mutex")
        check(not findings(rep, "blocked-thread"), "blocked %s" % findings(rep, "blocked-thread"))
        wc = findings(rep, "wait-chain")
        check([x["evidence"]["chain"][0]["tid"] for x in wc] == mutex and
              wc[0]["severity"] == "info", "wait chains %s" % wc)
        no_errors_or_warnings(rep, v.pid, allow=("truncated-dump",))
        rep = analyze(d, "--thread", str(mutex[0]))
        f = findings(rep, "blocked-thread")
        check([x["tids"] for x in f] == [mutex], "blocked %s" % f)
        check(f[0]["severity"] == "info", "severity")
        r = osmosis("analyze", "--thread", "x1", d)
        check(r.returncode == 2 and "--thread needs thread ids" in one_line_error(r), r.stderr)


def test_abandoned_mutex():
    with Victim("abandoned") as v, TempDir() as tmp:
        d, rep = snap_and_analyze(v, tmp)
        (f,) = findings(rep, "abandoned-mutex")
        check(f["tids"] == tids_named(d, v.pid, "v-orphaned"), "tids %s" % f["tids"])
        check(f["evidence"]["owner"] not in [t["tid"] for t in manifest(d)["processes"][0]["threads"]],
              "owner should be gone")


def test_mutex_corruption():
    with Victim("corrupt") as v, TempDir() as tmp:
        d, rep = snap_and_analyze(v, tmp)
        (f,) = findings(rep, "mutex-corruption")
        check(f["tids"] == tids_named(d, v.pid, "v-smashed"), "tids %s" % f["tids"])
        check(f["evidence"]["address"] == v.hexinfo("mutex"), "address")
        check("__count" in f["evidence"]["why"] or "__owner" in f["evidence"]["why"], f["summary"])


def test_spiking_thread():
    """A spinner is named by what it wants (run time plus run-queue wait), not what it gets: the
    default threshold holds even when other tests load the machine."""
    with Victim("busy", 1) as v, TempDir() as tmp:
        d, rep = snap_and_analyze(v, tmp)
        (f,) = findings(rep, "spiking-thread")
        check(f["tids"] == tids_named(d, v.pid, "v-spin"), "spiking %s" % f["tids"])
        check(f["evidence"]["demand_pct"] >= 90, "demand %s" % f["evidence"])
        t = [t for t in manifest(d)["processes"][0]["threads"] if t["name"] == "v-spin"][0]
        check(t["schedstat"]["run_ns"] > 0 and t["run_pct"] is not None, "schedstat %s" % t)


def test_busy_system():
    """More spinners than CPUs: each is named as a spiking thread though each gets only a share
    of a CPU; busy-system names the machine's top consumers and links to them."""
    ncpu = os.cpu_count() or 2
    with Victim("busy", 3 * ncpu) as v, TempDir() as tmp:
        d, rep = snap_and_analyze(v, tmp)
        (b,) = findings(rep, "busy-system")
        # The consumers named are processes that want half a CPU or more (time on a CPU plus
        # time waiting for one): on a machine loaded by others the victim's six spinners may
        # get much less than that, but they always want it.
        (p,) = [p for p in manifest(d)["processes"] if p["pid"] == v.pid]
        want = sum(min(100, t["run_pct"] + t["runq_wait_pct"]) if t.get("run_pct") is not None
                   else t.get("cpu_pct", 0) for t in p["threads"])
        check(want >= 50 and v.pid in b["pids"], "busy-system names %s; the victim wanted "
              "%.0f%% of a CPU" % (b["pids"], want))
        check(b["evidence"]["cpu_busy_pct"] > 90, "%s" % b["evidence"])
        top = b["evidence"]["top_consumers"]
        check(any(c["pid"] == v.pid and c["in_snapshot"] for c in top), "top %s" % top)
        spin = tids_named(d, v.pid, "v-spin")
        named = sorted(t for f in findings(rep, "spiking-thread") for t in f["tids"])
        check(named == sorted(spin), "spinners named %s of %s" % (named, spin))
        got = [t["cpu_pct"] for t in manifest(d)["processes"][0]["threads"] if t["name"] == "v-spin"]
        check(min(got) < 90, "each spinner got less than a CPU: %s" % got)
        check(any(r.startswith("spiking-thread#") for r in b["related"]), "links %s" % b["related"])


def test_busy_system_of_many_processes():
    """Three processes whose threads never sleep, three times as many as CPUs: they mostly wait
    for a CPU; one finding lists them all rather than a spin-loop warning each."""
    ncpu = os.cpu_count() or 2
    with Victim("busy", ncpu) as a, Victim("busy", ncpu) as b, Victim("busy", ncpu) as c, \
            TempDir() as tmp:
        d = os.path.join(tmp, "s")
        snap("--sample", "0.3", "-o", d, a.pid, b.pid, c.pid)
        rep = analyze(d)
        spin = sorted(sum((tids_named(d, v.pid, "v-spin") for v in (a, b, c)), []))
        fs = findings(rep, "spiking-thread")
        named = sorted(t for f in fs for t in f["tids"])
        check(set(named) <= set(spin), "not spinners: %s of %s" % (named, spin))
        grouped = [f for f in fs if "never slept" in f["summary"]]
        check(len(grouped) == 1 and len(grouped[0]["tids"]) >= 4 and
              len(set(grouped[0]["pids"])) == 3 and len(fs) <= 1 + ncpu,
              "%s" % [(f["summary"], f["tids"]) for f in fs])


def test_process_factory():
    with Victim("factory", 60) as v, TempDir() as tmp:
        d, rep = snap_and_analyze(v, tmp, "--tree")
        (f,) = findings(rep, "process-factory")
        check(f["evidence"]["parent"] == v.pid and f["evidence"]["count"] == 60, "%s" % f["evidence"])


def test_zombie_processes():
    with Victim("zombies", 8) as v, TempDir() as tmp:
        d, rep = snap_and_analyze(v, tmp, "--tree")
        (f,) = findings(rep, "zombie-processes")
        check(f["evidence"]["parent"] == v.pid and f["evidence"]["zombies"] == 8, "%s" % f["evidence"])
        check(v.pid in f["pids"] and len(f["pids"]) == 9, "pids %s" % f["pids"])


def test_handle_leak():
    with Victim("fdleak", 300) as v, TempDir() as tmp:
        d, rep = snap_and_analyze(v, tmp)
        (f,) = findings(rep, "handle-leak")
        check(f["pids"] == [v.pid] and f["severity"] == "error", "%s" % f)
        check(f["evidence"]["by_type"]["eventfd"] == 300, "breakdown %s" % f["evidence"])
    # both ends of 100 socket pairs and 100 pipes, far from the limit: a leak by evidence
    with waits_victim("pairs", 100) as v, TempDir() as tmp:
        d, rep = snap_and_analyze(v, tmp)
        (f,) = findings(rep, "handle-leak")
        check(f["severity"] == "warning" and f["evidence"]["own_pairs"] == 200, "%s" % f)
    # 300 different files open at once (a checkpointer at work): no leak, however many
    with TempDir() as tmp:
        os.mkdir(os.path.join(tmp, "rel"))
        with waits_victim("files", 300, os.path.join(tmp, "rel")) as v:
            d, rep = snap_and_analyze(v, tmp)
            check(not findings(rep, "handle-leak"), "%s" % findings(rep, "handle-leak"))


def cgroup2_root():
    for line in open("/proc/mounts"):
        dev, mnt, typ = line.split()[:3]
        if typ == "cgroup2":
            return mnt
    raise Fail("no cgroup2 hierarchy mounted")


def memory_cgroup_root():
    """The hierarchy with the memory controller: v2 if it has it, else v1's."""
    v2 = cgroup2_root()
    if "memory" in open(os.path.join(v2, "cgroup.controllers")).read().split():
        return v2, "memory.max"
    for line in open("/proc/mounts"):
        dev, mnt, typ, opts = line.split()[:4]
        if typ == "cgroup" and "memory" in opts.split(","):
            return mnt, "memory.limit_in_bytes"
    raise Fail("no cgroup hierarchy has the memory controller")


def test_insufficient_memory_in_a_cgroup_and_system_wide():
    root, limit_file = memory_cgroup_root()
    cg = os.path.join(root, "osmosis-mem-%d" % os.getpid())
    os.mkdir(cg)
    try:
        if limit_file == "memory.max" and not os.path.exists(os.path.join(cg, "memory.max")):
            with open(os.path.join(root, "cgroup.subtree_control"), "w") as f:
                f.write("+memory")
        with open(os.path.join(cg, limit_file), "w") as f:
            f.write(str(48 << 20))

        def enter():
            with open(os.path.join(cg, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))

        with Victim("alloc", 44, preexec=enter) as v, TempDir() as tmp:
            d, rep = snap_and_analyze(v, tmp)
            # the cgroup's finding (a system-wide one may name the victim too on a loaded machine)
            f = [x for x in findings(rep, "insufficient-memory") if x["pids"] == [v.pid]
                 and "cgroup_pct" in x["evidence"]]
            check(f and f[0]["evidence"]["cgroup_pct"] >= 90, "cgroup finding %s" % findings(rep, "insufficient-memory"))
            rep = analyze(d, "--threshold", "insufficient-memory.available=101")
            sys_f = [x for x in findings(rep, "insufficient-memory") if "short of memory" in x["summary"]]
            check(sys_f and v.pid in sys_f[0]["pids"], "system-wide finding %s" % sys_f)
    finally:
        subprocess.run(["sh", "-c", "for p in $(cat %s/cgroup.procs); do echo $p > %s/cgroup.procs; done"
                        % (cg, root)])
        time.sleep(0.2)
        os.rmdir(cg)


def test_stack_overflow():
    with Victim("deepstack") as v, TempDir() as tmp:
        d, rep = snap_and_analyze(v, tmp)
        (f,) = findings(rep, "stack-overflow")
        check(f["tids"] == tids_named(d, v.pid, "v-deep"), "tids %s" % f["tids"])
        check(f["evidence"]["bytes_left"] < 8192, "%s" % f["evidence"])


def test_paged_out_stack():
    with SwapFile(), Victim("pagedout") as v, TempDir() as tmp:
        time.sleep(0.3)
        d, rep = snap_and_analyze(v, tmp)
        (f,) = findings(rep, "paged-out-stack")
        check(f["tids"] == tids_named(d, v.pid, "v-paged"), "tids %s" % f["tids"])
        v.verify()


def test_module_variety():
    with TempDir() as tmp:
        lib = os.path.join(tmp, "libvariety.so")
        shutil.copy("/lib/x86_64-linux-gnu/libz.so.1", lib)
        with Victim("dlopen", lib) as old:
            # the library is replaced on disk by another build while old still maps it
            shutil.copy("/lib/x86_64-linux-gnu/libjson-c.so.5", lib + ".new")
            os.rename(lib + ".new", lib)
            with Victim("dlopen", lib) as new:
                out = os.path.join(tmp, "s")
                snap("-o", out, old.pid, new.pid)
                rep = analyze(out)
                f = findings(rep, "module-variety")
                deleted = [x for x in f if "deleted" in x["summary"]]
                builds = [x for x in f if "build-ids" in x["summary"]]
                check(deleted and deleted[0]["pids"] == [old.pid], "deleted: %s" % f)
                check(builds and sorted(builds[0]["pids"]) == sorted([old.pid, new.pid]),
                      "build-ids: %s" % f)


def test_truncated_and_corrupt_cores_are_reported_not_fatal():
    with Victim("basic") as a, Victim("basic") as b, TempDir() as tmp:
        out = os.path.join(tmp, "s")
        snap("-o", out, a.pid, b.pid)
        ca, cb = os.path.join(out, "core.%d" % a.pid), os.path.join(out, "core.%d" % b.pid)
        os.truncate(ca, os.path.getsize(ca) // 3)
        with open(cb, "r+b") as f:
            f.write(os.urandom(4096))
        r = osmosis("analyze", out)
        check(r.returncode == 0 and "Traceback" not in r.stderr, r.stderr)
        rep = analyze(out)
        (f,) = [x for x in findings(rep, "truncated-dump") if "could not be read" in x["summary"]]
        lines = " ".join(f["evidence"]["lines"])
        check("core.%d" % a.pid in lines and "cut short" in lines, lines)
        check("core.%d" % b.pid in lines and "not an ELF" in lines, lines)
        # the readable part of the truncated core is still analyzed: every thread keeps at
        # least its first frame, and where its stack was cut off, the reason
        pa = [p for p in rep["processes"] if p["pid"] == a.pid][0]
        check(all(t["frames"] for t in pa["threads"]), "a thread without a first frame")
        check(any(t["unwind_error"] for t in pa["threads"]), "no reason for a cut stack: %s"
              % [(t["name"], len(t["frames"])) for t in pa["threads"]])
        # a missing core
        os.unlink(cb)
        rep = analyze(out)
        check(any("cannot open" in l for x in findings(rep, "truncated-dump")
                  for l in x["evidence"]["lines"]), "missing core not reported")


def test_healthy_victims_have_no_errors_or_warnings():
    with Victim("healthy") as v, TempDir() as tmp:
        d, rep = snap_and_analyze(v, tmp)
        no_errors_or_warnings(rep, v.pid)
        idle = [t for t in rep["processes"][0]["threads"] if "condition variable" in (t["wait"] or "")]
        check(len(idle) == 4, "idle pool waits: %s" % [t["wait"] for t in rep["processes"][0]["threads"]])
        v.verify()


def test_json_report_shape():
    with Victim("deadlock", 2) as v, TempDir() as tmp:
        d, rep = snap_and_analyze(v, tmp)
        check(rep["schema_version"] == 1, "schema_version")
        f = rep["findings"][0]
        for k in ("pattern", "severity", "summary", "pids", "tids", "evidence", "recommendations"):
            check(k in f, "finding lacks %s" % k)
        check(f["severity"] in ("error", "warning", "info") and f["recommendations"], "values")
        t = rep["processes"][0]["threads"][0]
        check({"tid", "name", "frames"} <= set(t), "thread keys %s" % t.keys())
        fr = [fr for th in rep["processes"][0]["threads"] for fr in th["frames"]]
        check(fr and {"pc", "function", "module", "offset", "file", "line"} <= set(fr[0]), "frame keys")
        check(any(x["function"] == "victim_lock_in_cycle" for x in fr), "symbolized frames")
        sev = [x["severity"] for x in rep["findings"]]
        order = {"error": 0, "warning": 1, "info": 2}
        check(sev == sorted(sev, key=order.get), "most severe first: %s" % sev)


def test_text_report_and_cli():
    with Victim("deadlock", 2) as v, TempDir() as tmp:
        d, rep = snap_and_analyze(v, tmp)
        r = osmosis("analyze", d)
        check(r.returncode == 0 and "ERROR deadlock#1: Deadlock" in r.stdout, r.stdout[:500])
        check("Stack trace collection" in r.stdout and "What to do:" in r.stdout, "sections")
        check("\033[" not in r.stdout, "colour in a pipe")
        check(max(len(l) for l in r.stdout.splitlines()) <= 100, "lines over 100 columns")
        r = osmosis("analyze", "--pattern", "wait-chain", d)
        check("deadlock#1" not in r.stdout, "--pattern did not filter")
        r = osmosis("patterns")
        n = r.stdout.count("\n  needs:")
        check(r.returncode == 0 and n >= 18, "patterns lists %d" % n)
        for args, want in [(["analyze", "--pattern", "nope", d], "no pattern 'nope'"),
                           (["analyze", "--threshold", "x=1", d], "no threshold 'x'"),
                           (["analyze", "--threshold", "high-contention.waiters=abc", d], "needs a number"),
                           (["analyze"], "give one snapshot directory")]:
            r = osmosis(*args)
            check(r.returncode == 2 and want in one_line_error(r), "%s: %s" % (args, r.stderr))
        line = one_line_error(osmosis("analyze", os.path.join(tmp, "nowhere")))
        check("cannot open" in line, line)
        r = osmosis("snap", "--analyze", "-o", os.path.join(tmp, "t"), v.pid)
        check(r.returncode == 0 and "ERROR deadlock#1" in r.stdout, "snap --analyze: %s" % r.stdout[:300])


def test_demo_workload_report_names_both_problems():
    demo = os.environ.get("DEMO", os.path.join(os.path.dirname(osmtest.VICTIM), "..", "demo",
                                                "osmosis-demo-workload"))
    p = subprocess.Popen([demo], stdout=subprocess.PIPE, text=True)
    try:
        _, pid, backend = p.stdout.readline().split()
        pid, backend = int(pid), int(backend)
        with TempDir() as tmp:
            out = os.path.join(tmp, "s")
            snap("--tree", "-o", out, pid)
            rep = analyze(out)
            (dl,) = findings(rep, "deadlock")
            check(sorted(dl["tids"]) == sorted(tids_named(out, pid, "transfer-a") +
                                                tids_named(out, pid, "transfer-b")), "deadlock %s" % dl)
            (wc,) = findings(rep, "wait-chain")
            check(sorted(wc["pids"]) == sorted([pid, backend]), "chain %s" % wc["pids"])
            check(tids_named(out, backend, "cache-refresh")[0] in wc["tids"], "chain end")
            mine = [f for f in rep["findings"] if f["severity"] != "info" and
                    set(f["pids"]) & {pid, backend} and not machine_wide(f)]
            check(len(mine) == 2, "only the two problems: %s" % [f["pattern"] for f in mine])
            check(not wc["related"], "the chain does not run into the deadlock: %s" % wc["related"])
    finally:
        p.kill()
        p.wait()


if __name__ == "__main__":
    main(globals())
