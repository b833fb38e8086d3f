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
from osmtest import (Fail, TempDir, Victim, check, main, manifest, one_line_error, osmosis, snap)


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
        check(sorted(f["tids"]) == sorted(tids_named(d, v.pid, "v-waiter") + [child]),
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
    with Victim("basic") as v, TempDir() as tmp:
        d, rep = snap_and_analyze(v, tmp)
        f = findings(rep, "blocked-thread")
        check([x["tids"] for x in f] == [tids_named(d, v.pid, "v-mutex")], "blocked %s" % f)
        check(f[0]["severity"] == "info", "severity")
        no_errors_or_warnings(rep, v.pid, allow=("truncated-dump",))


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
    # What is tested is that the right thread is named. On a loaded machine (two CPU hogs beside
    # the test, other work) the spinner gets much less than a CPU, so the threshold follows what
    # the snapshot measured of it: 80% of its share (at most the default's 50%), far above the
    # idle threads' share.
    with Victim("busy", 1) as v, TempDir() as tmp:
        out = os.path.join(tmp, "s")
        snap("--sample", "0.3", "-o", out, v.pid)
        spin = tids_named(out, v.pid, "v-spin")
        (pct,) = [t.get("cpu_pct", 0) for p in manifest(out)["processes"] if p["pid"] == v.pid
                  for t in p["threads"] if t["tid"] in spin]
        check(pct >= 3, "the spinner got %.1f%% of a CPU over the sample" % pct)
        limit = min(50.0, 0.8 * pct)
        rep = analyze(out, "--threshold", "spiking-thread.cpu=%.1f" % limit)
        mine = [f for f in findings(rep, "spiking-thread") if v.pid in f["pids"]]
        check([f["tids"] for f in mine] == [spin], "spiking %s, want %s (threshold %.1f)" %
              ([(f["tids"], f["evidence"]) for f in mine], spin, limit))
        check(mine[0]["evidence"]["cpu_pct"] > limit, "cpu %s" % mine[0]["evidence"])


def test_busy_system():
    """Six threads spinning on two CPUs: every CPU busy, the run queue long."""
    with Victim("busy", 6) as v, TempDir() as tmp:
        d, rep = snap_and_analyze(v, tmp)
        (b,) = findings(rep, "busy-system")
        # The consumers named are processes using half a CPU or more: on a machine loaded by
        # others too the victim's six spinners may get less than that together.
        (p,) = [p for p in manifest(d)["processes"] if p["pid"] == v.pid]
        share = sum(t.get("cpu_pct", 0) for t in p["threads"])
        check((v.pid in b["pids"]) == (share >= 50), "busy-system names %s; the victim used "
              "%.0f%% of a CPU" % (b["pids"], share))
        check(b["evidence"]["cpu_busy_pct"] > 90, "%s" % b["evidence"])


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
    swap = "/var/tmp/osmosis-test-swap-%d" % os.getpid()
    subprocess.run(["dd", "if=/dev/zero", "of=" + swap, "bs=1M", "count=64"], check=True,
                   capture_output=True)
    os.chmod(swap, 0o600)
    subprocess.run(["mkswap", swap], check=True, capture_output=True)
    r = subprocess.run(["swapon", swap], capture_output=True, text=True)
    check(r.returncode == 0, "cannot enable a test swap file: %s" % r.stderr)
    try:
        with Victim("pagedout") as v, TempDir() as tmp:
            time.sleep(0.3)
            d, rep = snap_and_analyze(v, tmp)
            (f,) = findings(rep, "paged-out-stack")
            check(f["tids"] == tids_named(d, v.pid, "v-paged"), "tids %s" % f["tids"])
            v.verify()
    finally:
        subprocess.run(["swapoff", swap])
        os.unlink(swap)


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
        check(r.returncode == 0 and r.stdout.count("\n  needs:") == 18, "patterns lists 18")
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
