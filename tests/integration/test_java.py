# SPDX-License-Identifier: MIT
"""JVMs through the JDK's own reader (docs/java.md): osmosis analyze runs `jhsdb jstack` on the
core of each JVM in a snapshot. A Java-level deadlock (two synchronized blocks taking two
monitors in opposite order) is an ERROR deadlock naming both Java threads, both monitors, the
frames, linked to the native threads by nid; a healthy JVM (Object.wait, Thread.sleep, an idle
thread pool) draws no warning and shows its Java frames. Where jhsdb is absent, fails or runs
out of time, a line says so and the native analysis stands. Skipped (rc 77) without a JDK."""

import json
import os
import shutil
import stat
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from osmtest import Skip, TempDir, Victim, check, main, osmosis, snap  # noqa: E402

JAVA_VICTIM_DIR = os.environ.get("JAVA_VICTIM_DIR", "")


def need_jdk():
    java, jhsdb = shutil.which("java"), shutil.which("jhsdb")
    if not java or not jhsdb:
        raise Skip("no JDK (java and jhsdb) on this machine")
    if not JAVA_VICTIM_DIR or not os.path.exists(os.path.join(JAVA_VICTIM_DIR, "Deadlock.class")):
        raise Skip("the Java victim was not compiled (no javac at build time)")
    return java


def jvm(mode):
    # A small JVM: 64 MiB of heap, the serial collector (fewer threads), no perf-data file.
    return Victim(mode, cmd=[need_jdk(), "-Xmx64m", "-XX:+UseSerialGC", "-XX:-UsePerfData",
                             "-cp", JAVA_VICTIM_DIR, "Deadlock"])


def analyze(d, *args, env=None):
    r = osmosis("analyze", "--json", *args, d, env=env, timeout=240)
    check(r.returncode == 0, "analyze failed (%d): %s" % (r.returncode, r.stderr))
    check(not r.stderr.strip(), "analyze wrote to stderr: %s" % r.stderr)
    return json.loads(r.stdout)


def threads(rep, pid):
    (p,) = [p for p in rep["processes"] if p["pid"] == pid]
    return p, p["threads"]


def named(ts, name):
    return [t for t in ts if t.get("runtime_name") == name]


def java_frames(t):
    return [f for f in t["frames"] if f["kind"] == "java"]


def not_machine_wide(f):
    return not (f["pattern"] in ("insufficient-memory", "busy-system") and
                f["summary"].startswith("The system"))


def test_java_deadlock_named_with_threads_monitors_and_frames():
    with jvm("deadlock") as v, TempDir() as tmp:
        d = os.path.join(tmp, "s")
        snap("--sample", "0.2", "-o", d, v.pid)
        t0 = time.time()
        rep = analyze(d)
        took = time.time() - t0
        p, ts = threads(rep, v.pid)
        check(p["runtime"] and p["runtime"].startswith("JVM "), "runtime %s" % p["runtime"])
        (left,), (right,) = named(ts, "osm-left"), named(ts, "osm-right")
        dls = [f for f in rep["findings"] if f["pattern"] == "deadlock"]
        check(len(dls) == 1, "deadlock findings: %s" % [f["summary"] for f in rep["findings"]])
        f = dls[0]
        check(f["severity"] == "error", "severity %s" % f["severity"])
        check(sorted(f["tids"]) == sorted([left["tid"], right["tid"]]),
              "deadlock names tids %s, want osm-left %d and osm-right %d" %
              (f["tids"], left["tid"], right["tid"]))
        s = f["summary"]
        check("Java monitors" in s and '"osm-left"' in s and '"osm-right"' in s, "summary: %s" % s)
        # Both monitors, as jstack prints them: <0x...> (a java.lang.Object), two different ones.
        mons = {st["waits_on"].split("<", 1)[1].split(">", 1)[0] for st in f["evidence"]["cycle"]}
        check(len(mons) == 2 and all(m.startswith("0x") for m in mons), "monitors %s" % mons)
        check(all("(a java.lang.Object)" in st["waits_on"] for st in f["evidence"]["cycle"]),
              "monitor classes: %s" % [st["waits_on"] for st in f["evidence"]["cycle"]])
        check(any("synchronized" in r for r in f["recommendations"]), "what to do: %s" %
              f["recommendations"])
        text = "\n".join(f["evidence"]["lines"])
        check("Deadlock.hold(" in text and "(java) line" in text, "frames in evidence: %s" % text)
        # each contender, named as the other's waker, waits on the monitor (not the JVM's
        # condition variable under it)
        check("condition variable" not in text, "the monitor's condvar shown: %s" % text)
        # Each contender: its Java frames beside its native ones, the innermost in Deadlock.hold.
        for t in (left, right):
            jf = java_frames(t)
            check(jf and jf[0]["method"].startswith("Deadlock.hold(") and jf[0]["line"] > 0,
                  "java frames of %s: %s" % (t["runtime_name"], jf))
            check(any(x["kind"] == "native" and x["function"] and "ObjectMonitor" in x["function"]
                      for x in t["frames"]), "native frames of %s" % t["runtime_name"])
        # The healthy third thread waits in Object.wait and is in no finding.
        (h,) = named(ts, "osm-healthy")
        check(any(x["method"].startswith("java.lang.Object.wait") for x in java_frames(h)),
              "osm-healthy frames %s" % java_frames(h))
        check(not any(h["tid"] in g["tids"] for g in rep["findings"] if not_machine_wide(g)),
              "the healthy thread is named in a finding")
        print("  analyze with jhsdb: %.1f s" % took)

        # --no-java: the native analysis only, and quietly.
        rep = analyze(d, "--no-java")
        p, ts = threads(rep, v.pid)
        check(not any(java_frames(t) for t in ts), "java frames with --no-java")
        check(not [g for g in rep["findings"] if g["pattern"] == "deadlock"],
              "a deadlock with --no-java")
        check(not rep["notes"] and not any("jhsdb" in x for x in rep["problems"]),
              "--no-java said something: %s %s" % (rep["notes"], rep["problems"]))

        # A jhsdb that never finishes: killed at the deadline, reaped, said in one line.
        fake = os.path.join(tmp, "jhsdb")
        pidfile = os.path.join(tmp, "jhsdb.pid")
        with open(fake, "w") as fh:
            fh.write("#!/bin/sh\necho $$ > %s\nexec sleep 300\n" % pidfile)
        os.chmod(fake, stat.S_IRWXU)
        rep = analyze(d, env={"OSMOSIS_JHSDB": fake, "OSMOSIS_JHSDB_TIMEOUT": "1"})
        check(any("did not finish within 1 s" in x for x in rep["problems"]),
              "problems %s" % rep["problems"])
        with open(pidfile) as fh:
            fpid = int(fh.read())
        check(not os.path.exists("/proc/%d" % fpid), "the timed-out jhsdb %d lives on" % fpid)
        p, ts = threads(rep, v.pid)
        check(all(t["frames"] for t in ts) and not any(java_frames(t) for t in ts),
              "native analysis after the timeout")


def test_healthy_jvm_draws_no_warning_and_shows_java_frames():
    with jvm("healthy") as v, TempDir() as tmp:
        d = os.path.join(tmp, "s")
        # A compressed core: jhsdb reads a plain one, which osmosis writes out for it.
        snap("--compress", "--sample", "0.2", "-o", d, v.pid)
        rep = analyze(d)
        bad = [(f["pattern"], f["summary"]) for f in rep["findings"]
               if f["severity"] in ("error", "warning") and not_machine_wide(f)]
        check(not bad, "a healthy JVM drew %s" % bad)
        check(not rep["problems"], "problems: %s" % rep["problems"])
        p, ts = threads(rep, v.pid)
        check(p["runtime"].startswith("JVM "), "runtime %s" % p["runtime"])
        (w,), (s,) = named(ts, "osm-waiter"), named(ts, "osm-sleeper")
        pool = named(ts, "osm-pool")
        check(len(pool) == 3, "pool workers %s" % [t["tid"] for t in pool])
        check(java_frames(w)[0]["method"].startswith("java.lang.Object.wait"),
              "osm-waiter %s" % java_frames(w))
        check(java_frames(s)[0]["method"].startswith("java.lang.Thread.sleep"),
              "osm-sleeper %s" % java_frames(s))
        for t in pool:
            check(any("ThreadPoolExecutor.getTask" in x["method"] for x in java_frames(t)),
                  "pool worker %d: %s" % (t["tid"], java_frames(t)))
        # The Java main thread (not the launcher's) by its Java name, with its frame in main.
        (m,) = named(ts, "main")
        check(any(x["method"].startswith("Deadlock.main(") for x in java_frames(m)),
              "main %s" % java_frames(m))
        # the pool's idle workers, each parked on its own condition variable, are one group
        r = osmosis("analyze", d, timeout=240)
        check(any(l.startswith("  3 threads:") and l.count('"osm-pool"') == 3
                  for l in r.stdout.splitlines()), "pool not grouped: %s" % r.stdout)

        # No JDK: one note, no warning, native stacks as ever.
        rep = analyze(d, env={"OSMOSIS_JHSDB": "/nonexistent/jhsdb"})
        check(len([n for n in rep["notes"] if "jhsdb" in n]) == 1, "notes %s" % rep["notes"])
        check(not [g for g in rep["findings"] if g["severity"] != "info" and not_machine_wide(g)],
              "findings without a JDK: %s" % [g["summary"] for g in rep["findings"]])
        p, ts = threads(rep, v.pid)
        check(all(t["frames"] for t in ts), "native frames without a JDK")


if __name__ == "__main__":
    main(globals())
