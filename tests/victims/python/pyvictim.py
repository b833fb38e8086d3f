# SPDX-License-Identifier: MIT
"""Python victims for osmosis's analysis tests: real programs, any CPython from 3.11 on.

    python3 pyvictim.py SCENARIO RECORD.json [N]

Each scenario starts its threads, waits until each one really is blocked where it says (its top
frame at the expected line and its task sleeping in the kernel), records every thread's Python
stack with sys._current_frames() into RECORD.json ({native_id: {"name", "frames": [[qualname,
file, line], ...] innermost first}}), prints "ready pid=PID" and waits to be killed."""

import asyncio
import ctypes
import json
import os
import queue
import socket
import sys
import threading
import time

HERE = os.path.abspath(__file__)
stop = threading.Event()


def task_state(native_id, proc="/proc/self/task"):
    try:
        with open("%s/%d/stat" % (proc, native_id)) as f:
            s = f.read()
        return s[s.rindex(")") + 2]
    except OSError:
        return "?"


def blocked_at(thread, func):
    """The thread's innermost Python frame in func (a qualname) and its task asleep."""
    frame = sys._current_frames().get(thread.ident)
    while frame is not None and os.path.abspath(frame.f_code.co_filename) != HERE:
        frame = frame.f_back
    return (frame is not None and frame.f_code.co_qualname == func and
            task_state(thread.native_id) == "S")


def wait_until(cond, what, timeout=None):
    timeout = timeout or float(os.environ.get("PYVICTIM_TIMEOUT", "240"))
    deadline = time.time() + timeout
    while not cond():
        if time.time() > deadline:
            sys.exit("pyvictim: %s never happened" % what)
        time.sleep(0.1)


def record(path, settle=None):
    # The main thread itself records from here; it blocks later, elsewhere.
    frames = sys._current_frames()
    out = {}
    for t in threading.enumerate():
        f = frames.get(t.ident)
        stack = []
        while f is not None:
            stack.append([f.f_code.co_qualname, f.f_code.co_filename, f.f_lineno])
            f = f.f_back
        out[str(t.native_id)] = {"name": t.name, "frames": stack}
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(out, f)
    os.rename(tmp, path)


def ready():
    print("ready pid=%d" % os.getpid(), flush=True)


def park():
    """The main thread's end: blocked in stop.wait() until killed."""
    stop.wait()


# --- deadlock: two threads, two Locks, opposite order ------------------------------------------

def transfer(first, second, barrier):
    with first:
        barrier.wait()
        with second:
            pass


def scenario_deadlock(rec, n, join=False):
    a, b = threading.Lock(), threading.Lock()
    barrier = threading.Barrier(2)
    ts = [threading.Thread(target=transfer, args=(a, b, barrier), name="worker-1", daemon=True),
          threading.Thread(target=transfer, args=(b, a, barrier), name="worker-2", daemon=True)]
    for t in ts:
        t.start()
    wait_until(lambda: all(blocked_at(t, "transfer") for t in ts), "the deadlock")
    record(rec)
    ready()
    if join:
        ts[0].join()  # the main thread waits for a thread of the deadlock
    park()


def scenario_deadlock_join(rec, n):
    scenario_deadlock(rec, n, join=True)


# --- a thread spinning in Python -----------------------------------------------------------------

def spin_here():
    x = 0
    while True:
        x += 1


def scenario_spin(rec, n):
    threading.Thread(target=spin_here, name="spinner", daemon=True).start()
    time.sleep(0.2)
    record(rec)
    ready()
    park()


# --- many kinds of blocked threads ---------------------------------------------------------------

def level3():
    time.sleep(3600)


def level2():
    level3()


def level1():
    level2()


def reader(sock):
    sock.recv(10)


def getter(q):
    q.get()


def acquirer(lock):
    lock.acquire()


def cond_waiter(cond):
    with cond:
        cond.wait()


def event_waiter(ev):
    ev.wait()


def rlock_waiter(rl):
    with rl:
        pass


def sem_waiter(sem):
    with sem:
        pass


def gen_body():
    yield 1
    time.sleep(3600)
    yield 2


def gen_driver():
    g = gen_body()
    next(g)
    next(g)


def callback_sleeper(a, b):
    time.sleep(3600)
    return 0


def ctypes_driver():
    libc = ctypes.CDLL(None)
    CMP = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int))
    arr = (ctypes.c_int * 2)(2, 1)
    libc.qsort(arr, 2, ctypes.sizeof(ctypes.c_int), CMP(callback_sleeper))


async def coro_inner():
    time.sleep(3600)  # a coroutine that blocks its loop: its frames are on the thread's stack


async def coro_outer():
    await coro_inner()


def asyncio_driver():
    asyncio.run(coro_outer())


def scenario_mix(rec, n):
    s1, s2 = socket.socketpair()
    q = queue.Queue()
    held = threading.Lock()
    held.acquire()
    cond = threading.Condition()
    ev = threading.Event()
    rl = threading.RLock()
    rl.acquire()  # held by the main thread
    sem = threading.Semaphore(0)
    plan = [("sleeper", level1, (), "level3"), ("reader", reader, (s1,), "reader"),
            ("getter", getter, (q,), "getter"), ("acquirer", acquirer, (held,), "acquirer"),
            ("cond-waiter", cond_waiter, (cond,), "cond_waiter"),
            ("event-waiter", event_waiter, (ev,), "event_waiter"),
            ("rlock-waiter", rlock_waiter, (rl,), "rlock_waiter"),
            ("sem-waiter", sem_waiter, (sem,), "sem_waiter"),
            ("generator", gen_driver, (), "gen_body"),
            ("ctypes-callback", ctypes_driver, (), "callback_sleeper"),
            ("asyncio-loop", asyncio_driver, (), "coro_inner")]
    ts = []
    for name, fn, args, _ in plan:
        t = threading.Thread(target=fn, args=args, name=name, daemon=True)
        t.start()
        ts.append(t)
    # Condition.wait and Queue.get sleep inside threading.py: the innermost frame of this file is
    # the caller's.
    wait_until(lambda: all(blocked_at(t, p[3]) for t, p in zip(ts, plan)), "every thread blocked")
    record(rec)
    ready()
    park()


# --- the GIL held across a blocking C call -------------------------------------------------------

def spinner():
    while True:
        pass


def scenario_gil(rec, n):
    for i in range(n or 3):
        threading.Thread(target=spinner, name="spinner-%d" % i, daemon=True).start()
    time.sleep(0.2)
    record(rec)
    ready()
    # PyDLL keeps the GIL during the call: every spinner now waits for it.
    ctypes.PyDLL(None).sleep(3600)


# --- the GIL holder waits on a mutex held by a third thread --------------------------------------

def mutex_holder(libc, mutex, held):
    libc.pthread_mutex_lock(mutex)  # CDLL: the GIL is released during the call
    held.set()
    time.sleep(3600)


def scenario_gil_chain(rec, n):
    libc = ctypes.CDLL(None)
    mutex = ctypes.create_string_buffer(64)  # zeroed: PTHREAD_MUTEX_INITIALIZER
    held = threading.Event()
    threading.Thread(target=mutex_holder, args=(libc, mutex, held), name="mutex-holder",
                     daemon=True).start()
    held.wait()
    for i in range(n or 2):
        threading.Thread(target=spinner, name="spinner-%d" % i, daemon=True).start()
    time.sleep(0.2)
    record(rec)
    ready()
    ctypes.PyDLL(None).pthread_mutex_lock(mutex)  # blocks holding the GIL


# --- many threads contending for one Lock (speed, high contention) ------------------------------

def contender(lock):
    with lock:
        pass


def holder_sleeps(lock, held):
    with lock:
        held.set()
        time.sleep(3600)


def scenario_contention(rec, n):
    lock = threading.Lock()
    held = threading.Event()
    threading.Thread(target=holder_sleeps, args=(lock, held), name="holder", daemon=True).start()
    held.wait()
    ts = [threading.Thread(target=contender, args=(lock,), name="contender-%d" % i, daemon=True)
          for i in range(n or 10)]
    for t in ts:
        t.start()
    wait_until(lambda: all(blocked_at(t, "contender") for t in ts), "every contender blocked")
    record(rec)
    ready()
    park()


# --- two processes waiting on each other through a socket pair -----------------------------------

def ask_and_wait(sock):
    sock.recv(10)


def scenario_procs(rec, n):
    a, b = socket.socketpair()
    pid = os.fork()
    if pid == 0:
        a.close()
        ask_and_wait(b)  # the child waits for the parent
        os._exit(0)
    b.close()
    wait_until(lambda: task_state(pid, "/proc") == "S", "the child blocked")
    print("ready pid=%d child=%d" % (os.getpid(), pid), flush=True)
    ask_and_wait(a)  # and the parent for the child


SCENARIOS = {"deadlock": scenario_deadlock, "deadlock-join": scenario_deadlock_join,
             "spin": scenario_spin, "mix": scenario_mix, "gil": scenario_gil,
             "gil-chain": scenario_gil_chain, "contention": scenario_contention,
             "procs": scenario_procs}

if __name__ == "__main__":
    SCENARIOS[sys.argv[1]](sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 0)
