# SPDX-License-Identifier: MIT
"""osmosis snap on live victims: core contents byte for byte, debuggers as oracles, one instant."""

import os
import signal
import stat
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import osmtest
from osmtest import (Core, Fail, TempDir, Victim, check, gcore, gdb_backtraces, main, manifest,
                     snap, xorshift_stream, VICTIM)

NT_PRSTATUS, NT_FPREGSET, NT_PRPSINFO, NT_AUXV, NT_SIGINFO, NT_FILE = 1, 2, 3, 6, 0x53494749, 0x46494c45
NT_X86_XSTATE = 0x202


def test_basic_core_contents():
    with Victim("basic") as v, TempDir() as tmp:
        out = os.path.join(tmp, "snap")
        r = snap("-o", out, v.pid)
        check("pause:" in r.stdout and str(v.pid) in r.stdout, "summary missing: %s" % r.stdout)

        # files and modes
        check(stat.S_IMODE(os.stat(out).st_mode) == 0o700, "directory is not 0700")
        for f in os.listdir(out):
            st = os.stat(os.path.join(out, f))
            check(stat.S_IMODE(st.st_mode) == 0o600, "%s is not 0600" % f)
            check(st.st_uid == os.geteuid(), "%s not owned by the caller" % f)
        check(sorted(os.listdir(out)) == sorted(["core.%d" % v.pid, "manifest.json"]),
              "unexpected files %s" % os.listdir(out))

        # manifest
        m = manifest(out)
        check(m["schema_version"] == 1 and m["method"] == "auto", "manifest header %s" % m)
        check(isinstance(m["pause_us"], int) and m["pause_us"] > 0, "pause_us %r" % m["pause_us"])
        for k in ("created", "host", "kernel"):
            check(m[k], "manifest lacks %s" % k)
        (p,) = m["processes"]
        check(p["pid"] == v.pid and p["ppid"] == os.getpid(), "pid/ppid %s" % p)
        check(p["core"] == "core.%d" % v.pid and p["exe"].endswith("victim"), "core/exe %s" % p)
        check(p["cmdline"].endswith("victim basic"), "cmdline %r" % p["cmdline"])
        tids = sorted(t["tid"] for t in p["threads"])
        check(tids == v.tasks(), "manifest threads %s != %s" % (tids, v.tasks()))
        names = sorted(t["name"] for t in p["threads"])
        check(names == sorted(["victim", "v-mutex", "v-read", "v-sleep", "v-condvar"]),
              "thread names %s" % names)

        # the core, read by our own ELF reader
        core = Core(os.path.join(out, "core.%d" % v.pid))
        check(core.machine == 62, "e_machine %d" % core.machine)
        check(sorted(core.thread_tids()) == v.tasks(), "core threads %s" % core.thread_tids())
        check(core.thread_tids()[0] == v.pid, "main thread is not the first NT_PRSTATUS")
        types = core.note_types()
        check(types[0] == NT_PRPSINFO and types[-2:] == [NT_AUXV, NT_FILE],
              "process notes out of order: %s" % types)
        per_thread = types[1:-2]
        check(per_thread == [NT_PRSTATUS, NT_FPREGSET, NT_X86_XSTATE, NT_SIGINFO] * 5,
              "per-thread notes %s" % per_thread)
        heap = core.read(v.hexinfo("heap"), int(v.info["heap_len"]))
        check(heap == xorshift_stream(int(v.info["heap_seed"]), len(heap)),
              "heap contents differ from what the victim wrote")
        glob = core.read(v.hexinfo("global"), 512 * 8)
        check(glob == xorshift_stream(0x5eed, 512 * 8), "global array differs")
        # the kernel's layout: segments page aligned, in address order
        loads = core.loads
        check(all(p["offset"] % 4096 == 0 for p in loads), "unaligned PT_LOAD")
        check([p["vaddr"] for p in loads] == sorted(p["vaddr"] for p in loads), "PT_LOAD order")
        v.verify()


def normalise(bt):
    """Frames of threads by LWP, without the per-thread noise of inlined-frame naming."""
    return {lwp: [f.split("@")[0] for f in frames] for lwp, frames in bt.items()}


def test_gdb_matches_gcore():
    with Victim("basic") as v, TempDir() as tmp:
        out = os.path.join(tmp, "snap")
        snap("-o", out, v.pid)
        ours, ours_text = gdb_backtraces(VICTIM, os.path.join(out, "core.%d" % v.pid))
        theirs, theirs_text = gdb_backtraces(VICTIM, gcore(v.pid, tmp))
        check(set(ours) == set(v.tasks()), "gdb sees threads %s in osmosis's core, victim has %s"
              % (sorted(ours), v.tasks()))
        check(normalise(ours) == normalise(theirs),
              "gdb backtraces differ:\n--- osmosis\n%s\n--- gcore\n%s" % (ours_text, theirs_text))
        for fn in ("victim_blocked_on_mutex", "victim_blocked_in_read",
                   "victim_blocked_in_sleep", "victim_blocked_on_condvar"):
            check(any(fn in frames for frames in ours.values()), "%s not in any stack" % fn)
        check("warning" not in ours_text.lower(), "gdb warned:\n%s" % ours_text)
        v.verify()


def test_eu_stack_and_lldb_open_the_core():
    with Victim("basic") as v, TempDir() as tmp:
        out = os.path.join(tmp, "snap")
        snap("-o", out, v.pid)
        core = os.path.join(out, "core.%d" % v.pid)
        r = subprocess.run(["eu-stack", "--core", core, "-e", VICTIM], capture_output=True,
                           text=True, timeout=60)
        tids = sorted(int(l.split()[1].rstrip(":")) for l in r.stdout.splitlines()
                      if l.startswith("TID "))
        check(tids == v.tasks(), "eu-stack threads %s (%s)" % (tids, r.stderr))
        check("victim_blocked_in_read" in r.stdout, "eu-stack stack lacks the victim's frames")
        r = subprocess.run(["lldb", "--batch", "-o", "thread backtrace all", "-c", core, VICTIM],
                           capture_output=True, text=True, timeout=120)
        n = len([l for l in r.stdout.splitlines() if l.strip().lstrip("* ").startswith("thread #")])
        check(n == len(v.tasks()), "lldb shows %d threads:\n%s%s" % (n, r.stdout, r.stderr))
        check("victim_blocked_on_condvar" in r.stdout, "lldb stack lacks the victim's frames")
        v.verify()


def test_several_pids_one_pause():
    with Victim("basic") as a, Victim("basic") as b, TempDir() as tmp:
        out = os.path.join(tmp, "snap")
        r = snap("-o", out, a.pid, b.pid)
        m = manifest(out)
        check(sorted(p["pid"] for p in m["processes"]) == sorted([a.pid, b.pid]), "processes")
        check("2 processes frozen together" in r.stdout, "summary: %s" % r.stdout)
        for v in (a, b):
            core = Core(os.path.join(out, "core.%d" % v.pid))
            heap = core.read(v.hexinfo("heap"), 4096)
            check(heap == xorshift_stream(0x1234567, 4096), "heap of %d" % v.pid)
        a.verify()
        b.verify()


def test_single_instant_under_nonstop_writes():
    """A thread writes generation g into pages 0..N-1 in order, nonstop. At one instant the
    pages read g...g (g-1)...(g-1): one boundary. A copy spread over time shows more."""
    npages = 16384
    with Victim("writer", npages) as v, TempDir() as tmp:
        for i in range(5):
            out = os.path.join(tmp, "snap%d" % i)
            snap("-o", out, v.pid)
            core = Core(os.path.join(out, "core.%d" % v.pid))
            base = v.hexinfo("pages")
            gens = [struct.unpack("<Q", core.read(base + p * 4096, 8))[0] for p in range(npages)]
            hi = max(gens)
            check(hi > 0, "writer never ran")
            descents = sum(1 for x, y in zip(gens, gens[1:]) if x != y)
            check(all(g in (hi, hi - 1) for g in gens) and descents <= 1,
                  "snapshot %d is not one instant: generations %s" %
                  (i, sorted(set(gens))[:10]))
            check(gens == sorted(gens, reverse=True), "generations not monotone")
        v.verify()


def test_threads_born_and_dying_during_the_freeze():
    with Victim("churn") as v, TempDir() as tmp:
        for i in range(20):
            out = os.path.join(tmp, "s%d" % i)
            snap("-o", out, v.pid)
            m = manifest(out)
            core = Core(os.path.join(out, "core.%d" % v.pid))
            captured = sorted(t["tid"] for t in m["processes"][0]["threads"] if t["captured"])
            check(sorted(core.thread_tids()) == captured,
                  "core threads %s != manifest %s" % (core.thread_tids(), captured))
            check(v.pid in captured, "main thread missing")
            v.assert_running()
        v.verify()


def test_stopped_target_stays_stopped():
    with Victim("basic") as v, TempDir() as tmp:
        os.kill(v.pid, signal.SIGSTOP)
        osmtest.wait_for(lambda: set(v.states().values()) == {"T"}, "the victim to stop")
        snap("-o", os.path.join(tmp, "s"), v.pid)
        time.sleep(0.2)
        states = set(v.states().values())
        check(states == {"T"}, "a SIGSTOPped target did not stay stopped: %s" % states)
        os.kill(v.pid, signal.SIGCONT)
        time.sleep(0.1)
        v.verify()


def test_signals_sent_during_the_freeze_are_delivered():
    with Victim("signals", 3) as v, TempDir() as tmp:
        # held frozen for 5 s at the fault point; wait until the freeze is seen (a loaded
        # machine may take a while to get there), never a fixed sleep
        env = {"OSMOSIS_FAULT": "frozen:sleep=5"}
        import osmtest
        p = subprocess.Popen([osmtest.OSMOSIS, "snap", "-o", os.path.join(tmp, "s"), str(v.pid)],
                             env=dict(os.environ, **env), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 60
        while not set(v.states().values()) <= {"t"} and p.poll() is None and time.time() < deadline:
            time.sleep(0.01)
        check(set(v.states().values()) <= {"t"}, "victim not frozen: %s" % v.states())
        for _ in range(3):
            os.kill(v.pid, signal.SIGRTMIN + 1)
            os.kill(v.pid, signal.SIGUSR1)
            time.sleep(0.05)
        out, err = p.communicate(timeout=60)
        check(p.returncode == 0, "snap failed: %s" % err)
        time.sleep(0.2)
        v.verify()


def test_dontdump_and_coredump_filter():
    with Victim("dontdump") as v, TempDir() as tmp:
        snap("-o", os.path.join(tmp, "a"), v.pid)
        core = Core(os.path.join(tmp, "a", "core.%d" % v.pid))
        dd = core.load_for(v.hexinfo("dontdump"))
        check(dd and dd["filesz"] == 0, "MADV_DONTDUMP region was dumped: %s" % dd)
        check(core.read(v.hexinfo("normal"), 4096) == b"\xbb" * 4096, "normal region")
        # default filter: file-backed text keeps only its ELF header page
        text = [p for p in core.loads if p["flags"] & 1 and p["memsz"] > 65536
                and p["vaddr"] < 0xffffffffff000000]
        check(text and all(p["filesz"] <= 4096 for p in text), "text segments dumped whole")
        # filter 0: only the always-dumped vDSO remains
        with open("/proc/%d/coredump_filter" % v.pid, "w") as f:
            f.write("0")
        snap("-o", os.path.join(tmp, "b"), v.pid)
        core = Core(os.path.join(tmp, "b", "core.%d" % v.pid))
        dumped = [p for p in core.loads if p["filesz"]]
        check(len(dumped) <= 2, "coredump_filter 0 still dumped %d segments" % len(dumped))
        check(core.load_for(v.hexinfo("normal"))["filesz"] == 0, "filter 0 dumped anonymous")
        # bit 2 (file-backed private): the executable's text is dumped whole
        with open("/proc/%d/coredump_filter" % v.pid, "w") as f:
            f.write("0x37")
        snap("-o", os.path.join(tmp, "c"), v.pid)
        core = Core(os.path.join(tmp, "c", "core.%d" % v.pid))
        libc = [p for p in core.loads if p["flags"] & 1 and p["filesz"] == p["memsz"]
                and p["memsz"] > 65536]
        check(libc, "filter 0x37 did not dump file-backed text")
        v.verify()


def test_more_than_65534_mappings():
    with open("/proc/sys/vm/max_map_count") as f:
        old = f.read().strip()
    with open("/proc/sys/vm/max_map_count", "w") as f:
        f.write("262144")
    try:
        with Victim("maps", 140000) as v, TempDir() as tmp:
            with open("/proc/%d/maps" % v.pid) as f:
                nmaps = len(f.readlines())
            check(nmaps > 65535, "victim made only %d mappings" % nmaps)
            # 140,000 mappings under ASan on a loaded machine can take more than the default
            # 10 s pause: what is tested here is the core's layout, not the pause
            snap("--max-pause", "300", "-o", os.path.join(tmp, "s"), v.pid)
            core = Core(os.path.join(tmp, "s", "core.%d" % v.pid))
            check(len(core.loads) == nmaps, "%d PT_LOADs for %d mappings" % (len(core.loads), nmaps))
            base = v.hexinfo("region")
            for i in (0, 1, 77777, 139999):
                check(core.read(base + i * 4096, 1) == bytes([(i * 7 + 1) & 0xFF]), "page %d" % i)
            r = subprocess.run(["eu-readelf", "-l", os.path.join(tmp, "s", "core.%d" % v.pid)],
                               capture_output=True, text=True, timeout=120)
            check(r.stdout.count("LOAD") == nmaps, "eu-readelf sees %d LOADs"
                  % r.stdout.count("LOAD"))
            v.verify()
    finally:
        with open("/proc/sys/vm/max_map_count", "w") as f:
            f.write(old)


if __name__ == "__main__":
    main(globals())
