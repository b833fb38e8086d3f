# SPDX-License-Identifier: MIT
"""Multi-process snapshots and the system's state: trees, cgroups, --all, --state-only, the
manifest's description of descriptors, threads and system, osmosis show, and scale."""

import json
import os
import resource
import signal
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import osmtest
from osmtest import (check_pair_one_instant, Core, TempDir, Victim, check, main, manifest,
                     no_final_files, one_line_error, osmosis, snap)


def procs_by_pid(m):
    return {p["pid"]: p for p in m["processes"]}


def test_tree_pair_shows_one_instant():
    """Two processes exchanging messages through pipes, 20 snapshots: a message one counted as
    received was always counted as sent by the other."""
    with Victim("pingpong") as v, TempDir() as tmp:
        child = int(v.info["child"])
        addr = v.hexinfo("counters")
        for i in range(20):
            out = os.path.join(tmp, "s%d" % i)
            snap("--tree", "--sample", "0", "-o", out, v.pid)
            m = procs_by_pid(manifest(out))
            check(set(m) == {v.pid, child}, "tree holds %s" % sorted(m))
            check(m[child]["ppid"] == v.pid, "child's parent")
            sent, _ = check_pair_one_instant(out, v.pid, child, addr, "snapshot %d" % i)
            check(sent > 0, "the pair never exchanged a message")
        v.verify()


def test_tree_records_exits_and_catches_children():
    with Victim("factory", 20) as v, TempDir() as tmp:
        kids = sorted(int(t) for t in open("/proc/%d/task/%d/children" % (v.pid, v.pid)).read().split())
        check(len(kids) == 20, "factory made %d children" % len(kids))
        out = os.path.join(tmp, "a")
        snap("--tree", "-o", out, v.pid)
        m = procs_by_pid(manifest(out))
        check(set(m) == set([v.pid] + kids), "tree: %s" % sorted(m))
        for pid in m:
            check(os.path.exists(os.path.join(out, "core.%d" % pid)), "no core for %d" % pid)
        # a child killed while the set is frozen is recorded, not fatal
        victim_kid = kids[3]
        out = os.path.join(tmp, "b")
        r = osmosis("snap", "--tree", "-o", out, v.pid,
                    env={"OSMOSIS_FAULT": "frozen:kill=%d" % victim_kid})
        check(r.returncode == 0, "a child's exit failed the tree snapshot: %s" % r.stderr)
        m = procs_by_pid(manifest(out))
        check(m[victim_kid]["capture"] == "exited", "exit not recorded: %s" % m[victim_kid])
        check(not os.path.exists(os.path.join(out, "core.%d" % victim_kid)), "core of the dead")
        check(all(m[p]["capture"] == "memory" for p in m if p != victim_kid), "others")
        kids.remove(victim_kid)
        v.info  # the factory does not verify a killed child
        os.kill(v.pid, signal.SIGTERM)


def cgroup2_root():
    for line in open("/proc/mounts"):
        dev, mnt, typ = line.split()[:3]
        if typ == "cgroup2":
            return mnt
    return None


def cgroup1_root():
    for line in open("/proc/mounts"):
        dev, mnt, typ, opts = line.split()[:4]
        if typ == "cgroup" and ("pids" in opts.split(",") or "cpu" in opts.split(",")):
            return mnt
    return None


def snapshot_cgroup(root):
    check(root, "no such cgroup hierarchy mounted")
    path = os.path.join(root, "osmosis-test-%d" % os.getpid())
    os.mkdir(path)
    try:
        with Victim("basic") as a, Victim("factory", 2) as b, TempDir() as tmp:
            members = [a.pid, b.pid]
            for pid in members:
                with open(os.path.join(path, "cgroup.procs"), "w") as f:
                    f.write(str(pid))
            out = os.path.join(tmp, "s")
            snap("--cgroup", path, "-o", out)
            m = procs_by_pid(manifest(out))
            check(set(m) == set(members), "cgroup snapshot holds %s, cgroup has %s"
                  % (sorted(m), members))
            check(manifest(out)["scope"] == "cgroup", "scope")
            a.verify()
            # the factory's children stayed in the parent cgroup: not in the snapshot
            b.verify()
    finally:
        for pid in open(os.path.join(path, "cgroup.procs")).read().split():
            with open(os.path.join(os.path.dirname(path), "cgroup.procs"), "w") as f:
                f.write(pid)
        os.rmdir(path)


def test_cgroup_v2():
    snapshot_cgroup(cgroup2_root())


def test_cgroup_v1():
    snapshot_cgroup(cgroup1_root())


def test_cgroup_errors():
    line = one_line_error(osmosis("snap", "--cgroup", "/nonexistent/cg"))
    check("cannot open cgroup" in line, line)
    line = one_line_error(osmosis("snap", "--cgroup", "/tmp"))
    check("not a cgroup directory" in line, line)
    line = one_line_error(osmosis("snap", "--cgroup", "x", "123"))
    check("cannot be combined" in line, line)
    line = one_line_error(osmosis("snap", "--all", "--cgroup", "x"))
    check("cannot be combined" in line, line)


def test_all_state_only():
    with Victim("basic") as v, TempDir() as tmp:
        out = os.path.join(tmp, "s")
        t0 = time.time()
        r = snap("--all", "--state-only", "-o", out)
        m = manifest(out)
        check(m["state_only"] and m["scope"] == "all", "header")
        check(sorted(os.listdir(out)) == ["manifest.json"], "state-only wrote %s" % os.listdir(out))
        procs = procs_by_pid(m)
        check(v.pid in procs and procs[v.pid]["capture"] == "state", "victim not captured")
        check(os.getpid() in procs, "the test runner is a process too")
        threads = {t["name"]: t for t in procs[v.pid]["threads"]}
        check(threads["v-read"]["syscall"]["name"] == "read", "syscall of the reader thread")
        check(threads["v-mutex"]["syscall"]["name"] == "futex", "syscall of the mutex waiter")
        kthreads = [p for p in m["processes"] if p["pid"] == 2]
        check(not kthreads, "kernel threads are not targets")
        for p in m["processes"]:
            check(p["capture"] in ("state", "skipped", "exited"), "capture %s" % p["capture"])
            if p["capture"] == "skipped":
                check(p.get("capture_note"), "skipped without a reason: %s" % p["pid"])
        check(m["pause_us"] < 5_000_000, "pause %d us" % m["pause_us"])
        v.verify()


def test_all_as_unprivileged_user_records_what_it_cannot_trace():
    d = "/tmp/osmosis-all-nobody-%d" % os.getpid()
    os.mkdir(d)
    os.chmod(d, 0o777)
    try:
        with Victim("basic") as v, Victim("basic", user=65534) as mine:
            r = osmosis("snap", "--all", "--state-only", "-o", os.path.join(d, "s"), user=65534)
            check(r.returncode == 0, "unprivileged --all failed: %s" % r.stderr)
            m = procs_by_pid(manifest(os.path.join(d, "s")))
            check(m[v.pid]["capture"] == "skipped" and "uid 0" in m[v.pid]["capture_note"],
                  "root's victim: %s" % m[v.pid])
            check(m[v.pid]["comm"] == "victim" and m[v.pid]["threads"],
                  "a skipped process keeps what /proc shows: %s" % m[v.pid])
            check(m[mine.pid]["capture"] == "state", "own victim: %s" % m[mine.pid]["capture"])
            v.verify()
            mine.verify()
    finally:
        subprocess.run(["rm", "-rf", d])


def test_manifest_describes_descriptors_threads_and_system():
    with Victim("fds") as v, TempDir() as tmp:
        out = os.path.join(tmp, "s")
        snap("-o", out, v.pid)
        m = manifest(out)
        p = procs_by_pid(m)[v.pid]
        fds = {f["fd"]: f for f in p["fds"]}
        fd = lambda k: fds[int(v.info[k])]
        check(fd("pipe_r")["type"] == "pipe" and fd("pipe_r")["flags"] & 3 == 0, "pipe read end")
        check(fd("pipe_w")["flags"] & 3 == 1 and fd("pipe_w")["inode"] == fd("pipe_r")["inode"],
              "pipe write end")
        ua, ub = fd("unix_a"), fd("unix_b")
        check(ua["proto"] == "unix" and ua["peer_inode"] == ub["inode"] and
              ub["peer_inode"] == ua["inode"], "unix peers: %s %s" % (ua, ub))
        cl, sv, ls = fd("tcp_client"), fd("tcp_server"), fd("tcp_listen")
        check(cl["proto"] == "tcp" and cl["sock_state"] == "established", "tcp client %s" % cl)
        check(cl["local"] == sv["remote"] and cl["remote"] == sv["local"], "tcp ends %s %s" % (cl, sv))
        check(ls["sock_state"] == "listen" and ls["local"].endswith(":" + v.info["port"]), "listen")
        check(fd("eventfd")["type"] == "eventfd" and fd("eventfd")["eventfd_count"] == 7, "eventfd")
        check(fd("epoll")["type"] == "epoll" and
              sorted(fd("epoll")["epoll_tfds"]) == sorted([int(v.info["pipe_r"]), int(v.info["unix_a"])]),
              "epoll %s" % fd("epoll"))
        check(fd("timerfd")["type"] == "timerfd", "timerfd")
        check(fd("memfd")["type"] == "memfd", "memfd %s" % fd("memfd"))
        check(p["oom_score_adj"] == 500, "oom_score_adj %s" % p["oom_score_adj"])
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        check(p["limits"]["nofile_soft"] == soft, "nofile %s" % p["limits"])
        check(p["cgroup"] and p["memory"]["vm_rss"] > 0 and p["memory"]["rss_anon"] > 0, "memory")
        threads = {t["name"]: t for t in p["threads"]}
        # the spinner's share of a CPU depends on the machine's load: it is measured, and above
        # every idle thread's
        spin = threads["v-spin"]["cpu_pct"]
        others = [t.get("cpu_pct", 0) for n, t in threads.items() if n != "v-spin"]
        check(spin > 3 and spin > 2 * max(others + [0]), "spinning thread at %s%%, the others %s" %
              (spin, others))
        check(threads["victim"]["cpu_pct"] < 10, "idle main thread at %s%%" % threads["victim"]["cpu_pct"])
        check(threads["v-spin"]["syscall"] is None, "a spinning thread is in no syscall")
        # /proc/PID/stack needs the kernel's stack traces (CONFIG_STACKTRACE): recorded when
        # this kernel shows the main thread's (it sleeps where it was)
        try:
            shown = open("/proc/%d/task/%d/stack" % (v.pid, v.pid)).read().strip()
        except OSError as e:
            shown = ""
            print("this kernel shows no kernel stacks (%s)" % e)
        check(bool(threads["victim"]["kernel_stack"]) == bool(shown),
              "kernel stack (root): %r, the kernel shows %r" % (threads["victim"]["kernel_stack"],
                                                              shown))
        s = m["system"]
        check(s["ncpu"] == os.cpu_count() and len(s["cpus"]) == s["ncpu"] + 1, "cpus")
        check(s["meminfo"]["MemTotal"] > 0 and len(s["loadavg"]) == 3, "meminfo/loadavg")
        check("procs_running" in s and "vmstat" in s and "pgfault" in s["vmstat"], "counters")
        busy = [c["busy_pct"] for c in s["cpus"] if c["cpu"] == "all"][0]
        check(busy is not None and busy > 20, "a spinning thread makes the system busy: %s" % busy)
        v.verify()


def test_show_text_json_and_bad_manifests():
    with Victim("basic") as v, TempDir() as tmp:
        out = os.path.join(tmp, "s")
        snap("-o", out, v.pid)
        r = osmosis("show", out)
        check(r.returncode == 0, r.stderr)
        check("Processes (1 frozen" in r.stdout and "Threads of %d" % v.pid in r.stdout, r.stdout)
        check("read(fd 3: pipe:[" in r.stdout and "read end" in r.stdout, "reader's wait")
        check("futex wait on" in r.stdout, "mutex waiter")
        r = osmosis("show", "--json", out)
        shown = json.loads(r.stdout)
        orig = manifest(out)
        check(shown["processes"] == orig["processes"], "show --json differs from the manifest")
        check(osmosis("show", "-p", str(v.pid), out).returncode == 0, "show -p")
        # damaged manifests: one line, exit 1, no crash
        bad = os.path.join(tmp, "bad")
        os.mkdir(bad)
        text = open(os.path.join(out, "manifest.json")).read()
        for content, want in [(text[: len(text) // 2], "not valid JSON"),
                              ("[]", "not a JSON object"),
                              (text.replace('"schema_version": 1', '"schema_version": 99'),
                               "schema_version 99"),
                              ("", "not valid JSON")]:
            with open(os.path.join(bad, "manifest.json"), "w") as f:
                f.write(content)
            line = one_line_error(osmosis("show", bad))
            check(want in line, line)
        line = one_line_error(osmosis("show", os.path.join(tmp, "nope")))
        check("cannot open" in line, line)
        v.verify()


def test_scale_1000_threads():
    with Victim("threads", 1000) as v, TempDir() as tmp:
        out = os.path.join(tmp, "s")
        snap("-o", out, v.pid)
        n = len(v.tasks())
        check(n >= 1002, "victim has %d threads" % n)
        core = Core(os.path.join(out, "core.%d" % v.pid))
        check(len(core.thread_tids()) == n, "core has %d threads of %d" % (len(core.thread_tids()), n))
        check(len(procs_by_pid(manifest(out))[v.pid]["threads"]) == n, "manifest threads")
        check(osmosis("show", out).returncode == 0, "show")
        v.verify()


def test_scale_500_process_tree():
    with Victim("factory", 500) as v, TempDir() as tmp:
        out = os.path.join(tmp, "s")
        snap("--tree", "-o", out, v.pid)
        m = manifest(out)
        check(len(m["processes"]) == 501, "%d processes" % len(m["processes"]))
        cores = [f for f in os.listdir(out) if f.startswith("core.")]
        check(len(cores) == 501, "%d cores" % len(cores))
        r = osmosis("show", out)
        check(r.returncode == 0 and r.stdout.count("v-child") >= 500, "show lists the tree")
        v.verify()


def test_progress_on_a_terminal_only():
    import pty
    with Victim("factory", 60) as v, TempDir() as tmp:
        master, slave = pty.openpty()
        p = subprocess.Popen([osmtest.OSMOSIS, "snap", "--tree", "-o", os.path.join(tmp, "t"),
                              str(v.pid)], stdin=slave, stdout=slave, stderr=slave)
        os.close(slave)
        out = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        p.wait()
        os.close(master)
        text = out.decode(errors="replace")
        check(p.returncode == 0, text)
        check("writing cores" in text and "reading process state" in text,
              "no progress on a terminal: %r" % text[:300])
        r = snap("--tree", "-o", os.path.join(tmp, "p"), v.pid)
        check("writing cores" not in r.stderr + r.stdout, "progress written to a pipe")
        v.verify()


def test_sigkill_mid_tree_snapshot_resumes_every_process():
    with Victim("factory", 5) as v, TempDir() as tmp:
        kids = [int(t) for t in open("/proc/%d/task/%d/children" % (v.pid, v.pid)).read().split()]
        for point in ("prepared", "frozen", "captured"):
            r = osmosis("snap", "--tree", "-o", os.path.join(tmp, point), v.pid,
                        env={"OSMOSIS_FAULT": point + ":sigkill"})
            check(r.returncode == -signal.SIGKILL, "%s: not killed" % point)
            time.sleep(0.1)
            for pid in [v.pid] + kids:
                st = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()[0]
                check(st not in "tT", "%s: pid %d left in state %s" % (point, pid, st))
            no_final_files(tmp, point)
        v.verify()


if __name__ == "__main__":
    main(globals())
