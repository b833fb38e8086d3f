# SPDX-License-Identifier: MIT
"""The target always resumes, and nothing partial is left under a final name: osmosis killed
with SIGKILL at every fault point and at random moments, signals to osmosis, the watchdog,
targets exiting mid-snapshot, injected failures."""

import os
import random
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import osmtest
from osmtest import (Fail, TempDir, Victim, check, main, no_final_files, one_line_error, osmosis)

POINTS = ["vetted", "prepared", "frozen", "captured", "thawed", "core-written",
          "manifest-written"]


def test_sigkill_at_every_fault_point():
    with Victim("basic") as v, TempDir() as tmp:
        for point in POINTS:
            r = osmosis("snap", "-o", os.path.join(tmp, point), v.pid,
                        env={"OSMOSIS_FAULT": point + ":sigkill"})
            check(r.returncode == -signal.SIGKILL, "%s: osmosis was not killed (%d)" %
                  (point, r.returncode))
            v.assert_running()
            no_final_files(tmp, point)
        v.verify()


def test_sigkill_at_random_moments_of_a_large_snapshot():
    """A 256 MiB writer keeps the freeze busy for tens of milliseconds: kill anywhere in it."""
    rnd = random.Random(1)
    with Victim("writer", 65536) as v, TempDir() as tmp:
        for i in range(12):
            out = os.path.join(tmp, "s%d" % i)
            p = subprocess.Popen([osmtest.OSMOSIS, "snap", "-o", out, str(v.pid)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(rnd.uniform(0.0, 0.25))
            p.kill()
            p.wait()
            v.assert_running()
            if p.returncode == -signal.SIGKILL:
                no_final_files(tmp, "s%d" % i)
        v.verify()


def test_target_exits_mid_snapshot():
    for point in ("vetted", "prepared", "frozen", "captured"):
        with Victim("basic") as v, TempDir() as tmp:
            r = osmosis("snap", "-o", os.path.join(tmp, "s"), v.pid,
                        env={"OSMOSIS_FAULT": "%s:kill=%d" % (point, v.pid)})
            line = one_line_error(r)
            check("exited" in line or "no process" in line, "%s: %s" % (point, line))
            no_final_files(tmp, "s")
            check(not os.listdir(tmp), "%s: left %s" % (point, os.listdir(tmp)))


def test_signals_to_osmosis_during_the_freeze():
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        with Victim("basic") as v, TempDir() as tmp:
            p = subprocess.Popen([osmtest.OSMOSIS, "snap", "-o", os.path.join(tmp, "s"),
                                  str(v.pid)], env=dict(os.environ, OSMOSIS_FAULT="frozen:sleep=5"),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            deadline = time.time() + 5
            while set(v.states().values()) != {"t"}:
                check(time.time() < deadline, "victim never frozen")
                time.sleep(0.02)
            p.send_signal(sig)
            out, err = p.communicate(timeout=10)
            check(p.returncode == 128 + sig, "%s: exit %d" % (sig.name, p.returncode))
            check("interrupted by %s" % sig.name in err and "resumed" in err,
                  "%s: %r" % (sig.name, err))
            v.assert_running()
            check(not os.listdir(tmp), "%s: left %s" % (sig.name, os.listdir(tmp)))
            v.verify()


def test_watchdog_resumes_the_target():
    with Victim("basic") as v, TempDir() as tmp:
        t0 = time.time()
        r = osmosis("snap", "--max-pause", "0.3", "-o", os.path.join(tmp, "s"), v.pid,
                    env={"OSMOSIS_FAULT": "frozen:sleep=20"})
        line = one_line_error(r)
        check("--max-pause" in line and "resumed" in line, line)
        check(time.time() - t0 < 10, "watchdog took %.1fs" % (time.time() - t0))
        v.assert_running()
        check(not os.listdir(tmp), "left %s" % os.listdir(tmp))
        v.verify()


def test_watchdog_last_resort_kills_osmosis():
    """osmosis stuck where signals cannot reach: the watchdog kills it; the kernel resumes."""
    with Victim("basic") as v, TempDir() as tmp:
        r = osmosis("snap", "--max-pause", "0.2", "-o", os.path.join(tmp, "s"), v.pid,
                    env={"OSMOSIS_FAULT": "frozen:hang=60"}, timeout=30)
        check(r.returncode == -signal.SIGKILL, "exit %d: %s" % (r.returncode, r.stderr))
        check("killing osmosis so that the kernel resumes the targets" in r.stderr, r.stderr)
        v.assert_running()
        no_final_files(tmp, "s")
        v.verify()


def test_injected_failures_leave_nothing():
    with Victim("basic") as v, TempDir() as tmp:
        for point in POINTS:
            r = osmosis("snap", "-o", os.path.join(tmp, "s"), v.pid,
                        env={"OSMOSIS_FAULT": point + ":fail"})
            line = one_line_error(r)
            check("injected failure" in line, line)
            v.assert_running()
            check(not os.listdir(tmp), "%s: left %s" % (point, os.listdir(tmp)))
        v.verify()


if __name__ == "__main__":
    main(globals())
