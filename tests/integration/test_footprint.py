# SPDX-License-Identifier: MIT
"""The target is left as it was: for every method, resident memory, page-table size (VmPTE) and
mappings after a snapshot equal those before (within 1 MiB), on a process with large PROT_NONE
reservations, a 1 TiB reserved range, glibc arenas of 32 threads and sparse heaps, and on a
threaded Python server (the report of 27 MB growing to 885 MB after `snap --all`); no write
protection is left and no page of the target is populated by osmosis."""

import os
import re
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from osmtest import no_write_protection, TempDir, check, main, manifest, snap

FOOTPRINT_VICTIM = os.environ.get("FOOTPRINT_VICTIM", "build/tests/footprint-victim")
METHODS = ["copy", "clone", "precopy", "auto"]
MIB = 1 << 20


def status(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if v.strip().endswith("kB"):
                out[k] = int(v.split()[0]) * 1024
    return out


def layout(pid):
    """The mappings, without the figures that the process's own running changes."""
    with open("/proc/%d/maps" % pid) as f:
        return [l.split()[:5] + l.split()[5:] for l in f]


def footprint(pid):
    s = status(pid)
    return {"VmRSS": s["VmRSS"], "VmPTE": s["VmPTE"], "RssAnon": s["RssAnon"],
            "RssShmem": s["RssShmem"], "maps": layout(pid)}




def compare(before, after, what):
    for k in ("VmRSS", "VmPTE", "RssAnon", "RssShmem"):
        check(abs(after[k] - before[k]) <= MIB,
              "%s: %s went from %d to %d bytes" % (what, k, before[k], after[k]))
    check(before["maps"] == after["maps"], "%s: the mappings changed:\n%s\n---\n%s" %
          (what, "\n".join(map(" ".join, before["maps"])),
           "\n".join(map(" ".join, after["maps"]))))


def settle(pid):
    """The footprint once it no longer moves (the process's own start-up done)."""
    prev = footprint(pid)
    deadline = time.time() + 60
    while time.time() < deadline:
        time.sleep(0.3)
        cur = footprint(pid)
        if all(abs(cur[k] - prev[k]) <= 64 * 1024 for k in ("VmRSS", "VmPTE")) and \
                cur["maps"] == prev["maps"]:
            return cur
        prev = cur
    return prev


def test_reservations_arenas_and_sparse_heaps_are_left_as_they_were():
    p = subprocess.Popen([FOOTPRINT_VICTIM], stdout=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline()
        check(line.startswith("ready"), "footprint victim: %r" % line)
        pid = int(line.split("=")[1])
        with TempDir() as tmp:
            for m in METHODS:
                before = settle(pid)
                snap("--method", m, "--sample", "0", "-o", os.path.join(tmp, m), pid,
                     timeout=900)
                after = footprint(pid)
                print("  %s: VmRSS %d -> %d, VmPTE %d -> %d" %
                      (m, before["VmRSS"], after["VmRSS"], before["VmPTE"], after["VmPTE"]))
                compare(before, after, m)
                no_write_protection(pid, m)
                check(p.poll() is None, "%s: the victim died" % m)
    finally:
        p.kill()
        p.wait()


def resident_by_mapping(pid):
    """{(start, end, path): (Rss, Anonymous) in kB} from smaps."""
    out, key = {}, None
    with open("/proc/%d/smaps" % pid) as f:
        for line in f:
            head = line.split()
            if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
                key = (head[0], head[5] if len(head) > 5 else "")
                out[key] = [0, 0]
            elif head[0] == "Rss:":
                out[key][0] = int(head[1])
            elif head[0] == "Anonymous:":
                out[key][1] = int(head[1])
    return out


def test_untouched_pages_of_a_sleeping_program_stay_untouched():
    # Debian's sleep: its heap and stack are small mappings (132 KiB) with a few pages resident.
    # Pre-copy tracks them whole and marks their absent pages too; a marker reads as a swapped
    # page in pagemap, and copying it once gave the target all 132 KiB of each. (Reading the
    # vDSO maps its second page, as the kernel's own core dump does: not the program's memory.)
    # The first snapshot of each sleep says the call it is in, clock_nanosleep, under every
    # method: pre-copy's injection interrupts the sleep before the freeze, and the kernel
    # resumes it as restart_syscall. (Any stop does that, so the next snapshot's is.)
    with TempDir() as tmp:
        for m in METHODS:
            p = subprocess.Popen(["/bin/sleep", "600"])
            try:
                before = settle(p.pid)
                rb = resident_by_mapping(p.pid)
                snap("--method", m, "--sample", "0", "-o", os.path.join(tmp, m), p.pid)
                ra = resident_by_mapping(p.pid)
                grown = ["%s %s: Rss %d -> %d kB, Anonymous %d -> %d kB" %
                         (k[0], k[1], rb[k][0], ra[k][0], rb[k][1], ra[k][1])
                         for k in rb if k in ra and ra[k] != rb[k] and k[1] != "[vdso]"]
                check(not grown, "%s: pages of sleep populated:\n%s" % (m, "\n".join(grown)))
                (th,) = manifest(os.path.join(tmp, m))["processes"][0]["threads"]
                check((th["syscall"] or {}).get("name") == "clock_nanosleep",
                      "%s: sleep is in %s" % (m, th["syscall"]))
                compare(before, footprint(p.pid), m)
                no_write_protection(p.pid, m)
            finally:
                p.kill()
                p.wait()


SERVER = r"""
import http.server, socketserver, threading, sys, json, urllib.request

class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = json.dumps({"x": [i * i for i in range(2000)]}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass

class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True

srv = S(("127.0.0.1", 0), H)
port = srv.server_address[1]
threading.Thread(target=srv.serve_forever, daemon=True).start()

def client():
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", port)
    while True:
        c.request("GET", "/")
        c.getresponse().read()

for _ in range(32):
    threading.Thread(target=client, daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
"""


def test_threaded_python_server_keeps_its_footprint():
    """32 client threads keep a ThreadingHTTPServer busy (33 threads, glibc arenas among them):
    after a snapshot under each method, its resident memory and page tables are as before."""
    p = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True)
    try:
        check(p.stdout.readline().startswith("ready"), "server did not start")
        with TempDir() as tmp:
            for m in METHODS:
                before = settle(p.pid)
                snap("--method", m, "--sample", "0", "-o", os.path.join(tmp, m), p.pid,
                     timeout=900)
                after = footprint(p.pid)
                print("  %s: VmRSS %d -> %d, VmPTE %d -> %d" %
                      (m, before["VmRSS"], after["VmRSS"], before["VmPTE"], after["VmPTE"]))
                # A busy server's own allocations move a little: within 1 MiB, and no new
                # reservation became resident.
                for k in ("VmRSS", "VmPTE"):
                    check(after[k] - before[k] <= 4 * MIB,
                          "%s: %s grew from %d to %d" % (m, k, before[k], after[k]))
                no_write_protection(p.pid, m)
                check(p.poll() is None, "%s: the server died" % m)
    finally:
        p.kill()
        p.wait()


if __name__ == "__main__":
    main(globals())
