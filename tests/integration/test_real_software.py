# SPDX-License-Identifier: MIT
"""osmosis analyze on real software, as a new user would try it: healthy services under load
draw no error and no warning; hangs made in real programs are found. Each service runs on a free
port and in a private directory under a mkdtemp, and is stopped in `finally`, pass or fail. A
test whose program is not installed exits 77 (skipped).

Findings about the machine itself (busy-system, spiking-thread, insufficient-memory) are not
counted against a healthy service: on a test machine shared with other work they say the truth
about the machine, not about the service."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
from osmtest import Fail, Skip, TempDir, Victim, check, main, osmosis, snap  # noqa: E402

MACHINE = ("busy-system", "spiking-thread", "insufficient-memory", "truncated-dump")
PG_BIN = "/usr/lib/postgresql/15/bin"


def need(*programs):
    for p in programs:
        if not (shutil.which(p) or os.access(p, os.X_OK)):
            raise Skip("%s is not installed" % p)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_for(cond, what, timeout=40):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise Fail("timed out waiting for %s" % what)


def in_syscall(pid, nr):
    try:
        with open("/proc/%d/syscall" % pid) as f:
            return f.read().split()[0] == str(nr)
    except (OSError, IndexError):
        return False


def children(pid):
    out = []
    try:
        for t in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/children" % (pid, t)) as f:
                out += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return out


def stop(p, sig=signal.SIGTERM):
    """Stop a process started here and reap it (its children go with its group)."""
    if p is None or p.poll() is not None:
        return
    try:
        os.killpg(p.pid, sig)
    except OSError:
        p.send_signal(sig)
    try:
        p.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()


def start(cmd, **kw):
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, **kw)


def analyze(d, *args):
    r = osmosis("analyze", "--json", *args, d, timeout=300)
    check(r.returncode == 0, "analyze failed (%d): %s" % (r.returncode, r.stderr))
    return json.loads(r.stdout)


def snap_and_analyze(tmp, *args):
    out = os.path.join(tmp, "s")
    snap("--sample", "0.3", "-o", out, *[str(a) for a in args], timeout=300)
    return out, analyze(out)


def healthy(rep, pids, notes_too=False):
    pids = set(pids)
    bad = [f for f in rep["findings"]
           if (f["severity"] in ("error", "warning") or notes_too) and f["pattern"] not in MACHINE
           and set(f["pids"]) & pids]
    for f in bad:  # the evidence, to tell a wrong finding from a true one
        print("%s: %s\n  %s" % (f["pattern"], f["summary"],
                                "\n  ".join(f["evidence"].get("lines", []))))
    check(not bad, "findings on a healthy service: %s" % [(f["pattern"], f["summary"])
                                                          for f in bad])


# ---------------------------------------------------------------------------------------------
# healthy under load


def start_redis(tmp):
    port = free_port()
    p = start(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", tmp,
               "--save", "", "--appendonly", "no", "--daemonize", "no",
               "--enable-debug-command", "yes"])
    wait_for(lambda: subprocess.run(["redis-cli", "-p", str(port), "PING"], capture_output=True,
                                    text=True).stdout.strip() == "PONG", "redis to answer")
    return p, port


def test_redis_under_redis_benchmark_is_healthy():
    need("redis-server", "redis-cli", "redis-benchmark")
    with TempDir() as tmp:
        redis = bench = None
        try:
            redis, port = start_redis(tmp)
            bench = start(["redis-benchmark", "-p", str(port), "-n", "10000000", "-c", "8",
                           "-q", "-t", "set,get"])
            time.sleep(1)
            check(bench.poll() is None, "redis-benchmark ended early")
            d, rep = snap_and_analyze(tmp, redis.pid, bench.pid)
            healthy(rep, [redis.pid, bench.pid])
            # State-only snapshots, quick to take: some catch a request in flight (in the
            # server's socket, not read yet, the server about to wake): traffic, not a hang.
            for i in range(6):
                shutil.rmtree(d)
                d, rep = snap_and_analyze(tmp, "--state-only", redis.pid, bench.pid)
                healthy(rep, [redis.pid, bench.pid])
        finally:
            stop(bench)
            stop(redis)


def test_nginx_under_ab_is_healthy():
    need("nginx", "ab")
    with TempDir() as tmp:
        port = free_port()
        os.mkdir(os.path.join(tmp, "html"))
        with open(os.path.join(tmp, "html", "index.html"), "w") as f:
            f.write("hello\n" * 100)
        conf = os.path.join(tmp, "nginx.conf")
        with open(conf, "w") as f:
            f.write("""daemon off; master_process on; worker_processes 2;
pid %(t)s/nginx.pid; error_log %(t)s/error.log; user root;
events { worker_connections 256; }
http { access_log off; client_body_temp_path %(t)s/body; proxy_temp_path %(t)s/proxy;
  fastcgi_temp_path %(t)s/fcgi; uwsgi_temp_path %(t)s/uwsgi; scgi_temp_path %(t)s/scgi;
  server { listen 127.0.0.1:%(p)d; root %(t)s/html; } }
""" % {"t": tmp, "p": port})
        nginx = ab = None
        try:
            nginx = start(["nginx", "-c", conf, "-p", tmp])
            wait_for(lambda: len(children(nginx.pid)) >= 2, "nginx workers")
            ab = start(["ab", "-q", "-n", "10000000", "-c", "8", "-k",
                        "http://127.0.0.1:%d/" % port])
            time.sleep(1)
            check(ab.poll() is None, "ab ended early")
            d, rep = snap_and_analyze(tmp, "--tree", nginx.pid, ab.pid)
            healthy(rep, [nginx.pid, ab.pid] + children(nginx.pid))
        finally:
            stop(ab)
            stop(nginx, signal.SIGQUIT)


def test_postgresql_under_pgbench_is_healthy():
    need(PG_BIN + "/initdb", PG_BIN + "/pg_ctl", "pgbench")
    with TempDir() as tmp:
        os.chmod(tmp, 0o755)
        data = os.path.join(tmp, "data")
        port = free_port()
        pg = ["setpriv", "--reuid=postgres", "--regid=postgres", "--clear-groups"]
        sock = os.path.join(tmp, "sock")
        for x in (data, sock):
            os.mkdir(x, 0o700)
            shutil.chown(x, "postgres", "postgres")
        r = subprocess.run(pg + [PG_BIN + "/initdb", "-D", data, "-A", "trust", "-U", "postgres"],
                           capture_output=True, text=True)
        check(r.returncode == 0, "initdb: %s" % r.stderr)
        postgres = bench = None
        try:
            postgres = start(pg + [PG_BIN + "/postgres", "-D", data, "-p", str(port), "-k", sock,
                                   "-c", "listen_addresses=", "-c", "fsync=off"])
            ready = lambda: subprocess.run([PG_BIN + "/pg_isready", "-h", sock, "-p", str(port)],
                                           capture_output=True).returncode == 0
            wait_for(ready, "postgres to accept connections", timeout=60)
            r = subprocess.run(["pgbench", "-h", sock, "-p", str(port), "-U", "postgres", "-i",
                                "-s", "1", "postgres"], capture_output=True, text=True)
            check(r.returncode == 0, "pgbench -i: %s" % r.stderr)
            bench = start(["pgbench", "-h", sock, "-p", str(port), "-U", "postgres", "-c", "4",
                           "-T", "120", "postgres"])
            time.sleep(2)
            check(bench.poll() is None, "pgbench ended early")
            main = postgres.pid  # setpriv execs postgres: the same pid
            d, rep = snap_and_analyze(tmp, "--tree", main, bench.pid)
            healthy(rep, [main, bench.pid] + children(main))
        finally:
            stop(bench)
            stop(postgres, signal.SIGINT)


LOADER = r"""
import sys, threading, time, urllib.request
port, n = int(sys.argv[1]), int(sys.argv[2])
def run():
    while True:
        try:
            for path in ("/", "/blob.bin"):
                urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=10).read()
        except Exception:
            time.sleep(0.05)
for _ in range(n):
    threading.Thread(target=run, daemon=True).start()
time.sleep(3600)
"""


def answers(url):
    try:
        urllib.request.urlopen(url, timeout=2).read()
        return True
    except OSError:
        return False


def test_threaded_python_http_server_under_load_is_healthy():
    """Debian's python3 -m http.server (a thread per request) under 32 client threads and ab:
    the GIL's holder is the interpreter at work (a list grown with memmove, a deque with malloc)
    while the others wait for their turn. Taken for a C call that stops the others, it drew a
    gil-held-in-blocking-call warning in 2 of 3 snapshots."""
    need("python3", "ab")
    with TempDir() as tmp:
        port = free_port()
        www = os.path.join(tmp, "www")
        os.mkdir(www)
        with open(os.path.join(www, "blob.bin"), "wb") as f:
            f.write(bytes(range(256)) * 800)
        server = loader = ab = None
        try:
            server = start(["python3", "-m", "http.server", "--bind", "127.0.0.1", str(port)],
                           cwd=www)
            wait_for(lambda: answers("http://127.0.0.1:%d/" % port), "the server to answer")
            loader = start(["python3", "-c", LOADER, str(port), "32"])
            ab = start(["ab", "-q", "-n", "10000000", "-c", "50",
                        "http://127.0.0.1:%d/" % port])
            time.sleep(1)
            check(ab.poll() is None and loader.poll() is None, "the load ended early")
            for i in range(6):
                d, rep = snap_and_analyze(tmp, server.pid)
                healthy(rep, [server.pid])
                shutil.rmtree(d)
        finally:
            stop(ab)
            stop(loader)
            stop(server)


def test_request_and_answer_over_nonblocking_sockets_draws_nothing():
    """A server and a client answering each other as fast as they can over four non-blocking
    unix socket pairs (redis and redis-benchmark's shape): a thread caught as it returned from a
    read or a write waits on nothing, and no cycle is drawn, whatever instant the freeze meets."""
    with Victim("sockpong", 4) as v, TempDir() as tmp:
        for i in range(8):
            d, rep = snap_and_analyze(tmp, "--tree", v.pid)
            healthy(rep, [v.pid, int(v.info["child"])])
            shutil.rmtree(d)
        v.verify()


def test_shell_pipeline_under_supervision_draws_nothing():
    """bash -> bash -> timeout -> sleep | tee: parents waiting for children, tee reading a pipe
    whose writers sleep: no warning and no note."""
    with TempDir() as tmp:
        sh = None
        try:
            sh = start(["bash", "-c", 'bash -c "timeout 100 sleep 100 | tee /dev/null"; true'])
            wait_for(lambda: any(open("/proc/%d/comm" % c).read().strip() == "tee"
                                 for c in children(sh.pid) + sum((children(x) for x in
                                                                  children(sh.pid)), [])),
                     "the pipeline to start")
            d, rep = snap_and_analyze(tmp, "--tree", sh.pid)
            pids = [p["pid"] for p in json.load(open(os.path.join(d, "manifest.json")))["processes"]]
            check(len(pids) >= 4, "the tree: %s" % pids)
            healthy(rep, pids, notes_too=True)
        finally:
            stop(sh, signal.SIGKILL)


def test_snap_all_state_only_of_this_machine():
    """Everything on this machine, as it is: no error or warning about the system's own
    processes (other tests' victims, deliberately broken, are left out of the verdict)."""
    with TempDir() as tmp:
        out = os.path.join(tmp, "s")
        # a spinner among the machine's top consumers: its share is over the time between its
        # two reads, never more than the machine's CPUs (reading every process's state takes
        # far longer than the 0.3 s sample)
        spin = start([sys.executable, "-c", "# test spinner\nwhile True: pass"])
        try:
            r = osmosis("snap", "--all", "--state-only", "--sample", "0.3", "-o", out,
                        timeout=300)
        finally:
            stop(spin, signal.SIGKILL)
        check(r.returncode == 0, "snap --all --state-only: %s" % r.stderr)
        rep = analyze(out)
        m = json.load(open(os.path.join(out, "manifest.json")))
        top = m["system"].get("top_consumers", [])
        check(top and all(t["cpu_pct"] <= 100.0 * os.cpu_count() for t in top), "top %s" % top)
        procs = {p["pid"]: p for p in m["processes"]}

        def ours(pid):
            p = procs.get(pid, {})
            exe = p.get("exe") or ""
            return exe.startswith("/usr/") or exe.startswith("/lib") or exe.startswith("/bin") or \
                exe.startswith("/sbin")

        def test_made(pid):
            p = procs.get(pid, {})
            exe, cmd = p.get("exe") or "", p.get("cmdline") or ""
            return "/build" in exe or exe.startswith("/tmp") or "/tests/" in cmd or \
                "osmosis" in exe or "/tmp/" in cmd or "test" in cmd
        bad = [(f["pattern"], f["summary"]) for f in rep["findings"]
               if f["severity"] in ("error", "warning") and f["pattern"] not in MACHINE
               and f["pids"] and all(ours(p) and not test_made(p) for p in f["pids"])]
        check(not bad, "findings on the machine's own processes: %s" % bad)


# ---------------------------------------------------------------------------------------------
# hangs made in real software


def test_redis_debug_sleep_with_blocked_clients():
    need("redis-server", "redis-cli")
    with TempDir() as tmp:
        redis = None
        clients = []
        try:
            redis, port = start_redis(tmp)
            clients.append(start(["redis-cli", "-p", str(port), "DEBUG", "SLEEP", "60"]))
            wait_for(lambda: in_syscall(redis.pid, 35) or in_syscall(redis.pid, 230),
                     "redis to sleep")
            for _ in range(4):
                clients.append(start(["redis-cli", "-p", str(port), "PING"]))
            wait_for(lambda: all(in_syscall(c.pid, 0) or in_syscall(c.pid, 45) for c in clients),
                     "the clients to block")
            d, rep = snap_and_analyze(tmp, redis.pid, *[c.pid for c in clients])
            chains = [f for f in rep["findings"] if f["pattern"] == "wait-chain"]
            heads = sorted(f["evidence"]["chain"][0]["pid"] for f in chains)
            check(heads == sorted(c.pid for c in clients), "a chain from each client: %s, want %s"
                  % (heads, sorted(c.pid for c in clients)))
            for f in chains:
                check(redis.pid in f["pids"] and f["severity"] == "warning",
                      "into redis: %s" % f)
                check("redis" in f["evidence"]["end"], "end %s" % f["evidence"]["end"])
            # Clients started by a shell that waits for them, all in the snapshot: still a
            # chain from each client (the shell waiting for its children is supervision).
            sh = start(["sh", "-c", "redis-cli -p %d PING & redis-cli -p %d PING & wait" %
                        (port, port)])
            clients.append(sh)
            kids = []

            def kids_blocked():
                kids[:] = [int(x) for x in open("/proc/%d/task/%d/children" %
                                                (sh.pid, sh.pid)).read().split()]
                return len(kids) == 2 and all(in_syscall(k, 0) or in_syscall(k, 45)
                                              for k in kids)
            wait_for(kids_blocked, "the shell's clients to block")
            shutil.rmtree(d)
            d, rep = snap_and_analyze(tmp, "--tree", sh.pid, redis.pid)
            chains = [f for f in rep["findings"] if f["pattern"] == "wait-chain"]
            heads = sorted(f["evidence"]["chain"][0]["pid"] for f in chains)
            check(set(kids) <= set(heads) and sh.pid not in heads,
                  "a chain from each of the shell's clients %s: heads %s" % (kids, heads))
        finally:
            for c in clients:
                stop(c, signal.SIGKILL)
            stop(redis, signal.SIGKILL)


def test_flock_held_by_one_process_awaited_by_another():
    need("flock")
    with TempDir() as tmp:
        holder = waiter = None
        f = os.path.join(tmp, "lockfile")
        try:
            holder = start(["flock", f, "sleep", "100"])
            wait_for(lambda: children(holder.pid), "the holder to hold it")
            waiter = start(["bash", "-c", "flock %s true; true" % f])  # under a shell
            w = []

            def blocked():
                w[:] = [x for x in children(waiter.pid) if in_syscall(x, 73)]
                return w
            wait_for(blocked, "the waiter to wait")
            d, rep = snap_and_analyze(tmp, "--tree", holder.pid, waiter.pid)
            chains = [x for x in rep["findings"] if x["pattern"] == "wait-chain"]
            (c,) = [x for x in chains if w[0] in [s["pid"] for s in x["evidence"]["chain"]]]
            (step,) = [s for s in c["evidence"]["chain"] if s["pid"] == w[0]]
            check("file lock" in step["waits_on"] and f in step["waits_on"], "%s" % step)
            # the lock's descriptor is shared by flock and its child: both hold it
            check(holder.pid in [x["pid"] for x in step["wakers"]], "holder %s" % step)
            # named by the user: a note, which does not say others need it (only its shell,
            # its parent, waits for it to exit)
            (b,) = [x for x in analyze(d, "--thread", w[0])["findings"]
                    if x["pattern"] == "blocked-thread"]
            check("others wait on it" not in json.dumps(b), "%s" % b)
        finally:
            stop(waiter, signal.SIGKILL)
            stop(holder, signal.SIGKILL)


# Two subshells each take one flock, then wait for the other's (util-linux flock, bash). Each
# lock is held through a descriptor the subshell and its children share, while /proc/locks names
# the `flock` helper that took it and exited: the holders are the descriptors' processes.
SHELL_PAIR = ("( exec 8>La; flock 8; sleep 1; exec 9>Lb; flock 9 ) & "
              "( exec 8>Lb; flock 8; sleep 1; exec 9>La; flock 9 ) & wait")


def descendants(pid):
    out, todo = [], [pid]
    while todo:
        c = children(todo.pop())
        out += c
        todo += c
    return out


def start_shell_pair(tmp):
    """The shell pair deadlocked: returns the outer shell and the two blocked `flock`s."""
    need("flock", "bash")
    sh = start(["bash", "-c", SHELL_PAIR], cwd=tmp)
    blocked = []

    def both():
        blocked[:] = [p for p in descendants(sh.pid) if in_syscall(p, 73)]
        return len(blocked) == 2
    try:
        wait_for(both, "both shells to block in flock")
    except Fail:
        stop(sh, signal.SIGKILL)
        raise
    return sh, blocked


def test_flock_deadlock_of_two_shells():
    with TempDir() as tmp:
        sh, blocked = start_shell_pair(tmp)
        try:
            d, rep = snap_and_analyze(tmp, "--tree", sh.pid)
            (f,) = [x for x in rep["findings"] if x["pattern"] == "deadlock"]
            check(set(blocked) <= set(f["pids"]), "deadlock %s, blocked %s" % (f, blocked))
            r = osmosis("analyze", d)  # the chain of the outer shell ends in the deadlock
            check("outside the snapshot" not in r.stdout, r.stdout)
            r = osmosis("show", "-p", blocked[0], d)
            check("held by pid" in r.stdout and " fd 8" in r.stdout, r.stdout)
        finally:
            stop(sh, signal.SIGKILL)


if __name__ == "__main__":
    main(globals())
