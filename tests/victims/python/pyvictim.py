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


def blocked_at(thread, func, line=None):
    """The thread's innermost Python frame in func (a qualname), at that line if given, and its
    task asleep."""
    frame = sys._current_frames().get(thread.ident)
    while frame is not None and os.path.abspath(frame.f_code.co_filename) != HERE:
        frame = frame.f_back
    return (frame is not None and frame.f_code.co_qualname == func and
            (line is None or frame.f_lineno == line) and task_state(thread.native_id) == "S")


def stably(cond):
    """cond true now and again 0.2 s later: a thread asleep for a moment elsewhere (waiting for
    the GIL, in a barrier) is not where it will stay."""
    def check():
        if not cond():
            return False
        time.sleep(0.2)
        return cond()
    return check


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
        with second:  # TRANSFER_WAIT: where each thread of the deadlock waits
            pass


TRANSFER_WAIT = transfer.__code__.co_firstlineno + 3


def scenario_deadlock(rec, n, join=False, body=transfer, line=TRANSFER_WAIT, name="worker"):
    a, b = threading.Lock(), threading.Lock()
    barrier = threading.Barrier(2)
    ts = [threading.Thread(target=body, args=(a, b, barrier), name=name + "-1", daemon=True),
          threading.Thread(target=body, args=(b, a, barrier), name=name + "-2", daemon=True)]
    for t in ts:
        t.start()
    # each holds its first lock and waits for the other's: not in the barrier, not for the GIL
    wait_until(stably(lambda: a.locked() and b.locked() and
                      all(blocked_at(t, body.__name__, line) for t in ts)), "the deadlock")
    record(rec)
    ready()
    if join:
        ts[0].join()  # the main thread waits for a thread of the deadlock
    park()


def scenario_deadlock_join(rec, n):
    scenario_deadlock(rec, n, join=True)


# --- deadlock with timeouts: acquire(timeout=...), as careful code writes it --------------------

def transfer_timed(first, second, barrier):
    with first:
        barrier.wait()
        if second.acquire(timeout=3600):  # TIMED_WAIT
            second.release()


TIMED_WAIT = transfer_timed.__code__.co_firstlineno + 3


def scenario_deadlock_timed(rec, n):
    scenario_deadlock(rec, n, body=transfer_timed, line=TIMED_WAIT, name="timed")


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
    wait_until(stably(lambda: all(blocked_at(t, p[3]) for t, p in zip(ts, plan))),
               "every thread blocked")
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
    wait_until(stably(lambda: all(blocked_at(t, "contender") for t in ts)),
               "every contender blocked")
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


# --- asyncio: tasks suspended in awaits, on no thread's stack ------------------------------------

def coro_chain(coro):
    """The task's coroutine chain as cr_await walks it, innermost first."""
    out = []
    while coro is not None:
        f = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if f is None:
            break
        out.append([f.f_code.co_qualname, f.f_code.co_filename, f.f_lineno])
        coro = getattr(coro, "cr_await", getattr(coro, "gi_yieldfrom", None))
    return out[::-1]


def record_tasks(path):
    """{name: {"chain": coroutine chain innermost first, "stack": task.get_stack()}} of every
    task but the running one, printed just before the loop blocks."""
    out = {}
    me = asyncio.current_task()
    for t in asyncio.all_tasks():
        if t is me:
            continue
        out[t.get_name()] = {
            "chain": coro_chain(t.get_coro()),
            "stack": [[f.f_code.co_qualname, f.f_code.co_filename, f.f_lineno]
                      for f in t.get_stack()]}
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(out, f)
    os.rename(tmp, path)


async def settled(tasks_and_funcs, what):
    """Until each task's innermost coroutine frame is in the function named (a qualname)."""
    deadline = time.time() + float(os.environ.get("PYVICTIM_TIMEOUT", "240"))
    while not all(coro_chain(t.get_coro())[:1] and coro_chain(t.get_coro())[0][0] == fn
                  for t, fn in tasks_and_funcs):
        if time.time() > deadline:
            sys.exit("pyvictim: %s never happened" % what)
        await asyncio.sleep(0.01)


async def async_transfer(first, second, barrier):
    async with first:
        await barrier.wait()
        async with second:
            pass


async def explicit_transfer(first, second, barrier):
    await first.acquire()
    await barrier.wait()
    await second.acquire()


async def async_deadlock_main(rec, explicit):
    a, b = asyncio.Lock(), asyncio.Lock()
    barrier = asyncio.Barrier(2)
    fn = explicit_transfer if explicit else async_transfer
    ts = [asyncio.create_task(fn(a, b, barrier), name="transfer-1"),
          asyncio.create_task(fn(b, a, barrier), name="transfer-2")]
    # the state from inside: both locks held, each with one waiter
    deadline = time.time() + float(os.environ.get("PYVICTIM_TIMEOUT", "240"))
    while not (a.locked() and b.locked() and len(a._waiters or ()) == 1 and
               len(b._waiters or ()) == 1):
        if time.time() > deadline:
            sys.exit("pyvictim: the asyncio deadlock never happened")
        await asyncio.sleep(0.01)
    record(rec)
    record_tasks(rec + ".tasks")
    ready()
    await asyncio.gather(*ts)


def scenario_async_deadlock(rec, n):
    asyncio.run(async_deadlock_main(rec, False))


def scenario_async_deadlock_explicit(rec, n):
    asyncio.run(async_deadlock_main(rec, True))


async def hold_lock(lock):
    async with lock:
        await asyncio.sleep(3600)


async def take_lock(lock):
    async with lock:
        pass


async def wait_event(ev):
    await ev.wait()


async def get_item(q):
    await q.get()


async def nap():
    await asyncio.sleep(3600)


async def inner_wait(ev):
    await ev.wait()


async def middle_wait(ev):
    await inner_wait(ev)


async def outer_wait(ev):
    await middle_wait(ev)


async def await_task(other):
    await other


async def async_mix_main(rec):
    lock, ev, q, cond = asyncio.Lock(), asyncio.Event(), asyncio.Queue(), asyncio.Condition()
    holder = asyncio.create_task(hold_lock(lock), name="lock-holder")
    cond_holder = asyncio.create_task(hold_lock(cond), name="cond-holder")
    await asyncio.sleep(0)  # the holders take the lock and the condition first
    plan = [(holder, "sleep"), (cond_holder, "sleep"),
            (asyncio.create_task(take_lock(lock), name="lock-waiter"), "Lock.acquire"),
            (asyncio.create_task(take_lock(cond), name="cond-waiter"), "Lock.acquire"),
            (asyncio.create_task(wait_event(ev), name="event-waiter"), "Event.wait"),
            (asyncio.create_task(get_item(q), name="queue-getter"), "Queue.get"),
            (asyncio.create_task(nap(), name="sleeper"), "sleep"),
            (asyncio.create_task(outer_wait(ev), name="nested"), "Event.wait")]
    sleeper = [t for t, _ in plan if t.get_name() == "sleeper"][0]
    plan.append((asyncio.create_task(await_task(sleeper), name="awaiter"), "await_task"))
    await settled(plan, "every task suspended")
    while len(lock._waiters or ()) != 1 or len(cond._lock._waiters or ()) != 1:
        await asyncio.sleep(0.01)
    record(rec)
    record_tasks(rec + ".tasks")
    ready()
    await asyncio.gather(*(t for t, _ in plan))


def scenario_async_mix(rec, n):
    asyncio.run(async_mix_main(rec))


async def serve_client(reader, writer):
    while True:
        line = await reader.readline()
        if not line:
            break
        writer.write(line)
        await writer.drain()


async def client(port, connected):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"hello\n")
    await writer.drain()
    await reader.readline()
    connected.set()
    await reader.readline()  # the server echoes only what it gets: waits here


async def ticker():
    while True:
        await asyncio.sleep(3600)


async def async_server_main(rec, n):
    server = await asyncio.start_server(serve_client, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    serving = asyncio.create_task(server.serve_forever(), name="server")
    connected = [asyncio.Event() for _ in range(n or 2)]
    clients = [asyncio.create_task(client(port, c), name="client-%d" % i)
               for i, c in enumerate(connected)]
    tick = asyncio.create_task(ticker(), name="ticker")
    for c in connected:
        await c.wait()
    # every handler and client waits for a line
    def handlers():
        return [t for t in asyncio.all_tasks() if t.get_coro().__qualname__ == "serve_client"]
    deadline = time.time() + float(os.environ.get("PYVICTIM_TIMEOUT", "240"))
    while len(handlers()) != len(clients):
        if time.time() > deadline:
            sys.exit("pyvictim: the handlers never started")
        await asyncio.sleep(0.01)
    await settled([(t, "StreamReader._wait_for_data") for t in clients + handlers()] +
                  [(tick, "sleep"), (serving, "Server.serve_forever")], "the server idle")
    record(rec)
    record_tasks(rec + ".tasks")
    ready()
    await asyncio.gather(serving, tick, *clients)


def scenario_async_server(rec, n):
    asyncio.run(async_server_main(rec, n))


# --- two threads, two Locks taken with acquire(), opposite order ---------------------------------

def explicit_lock_transfer(first, second, barrier):
    first.acquire()
    barrier.wait()
    second.acquire()


class Account:
    def __init__(self):
        self.lock = threading.Lock()


def attribute_lock_transfer(src, dst, barrier):
    src.lock.acquire()
    barrier.wait()
    dst.lock.acquire()


def scenario_deadlock_explicit(rec, n):
    a, b = threading.Lock(), threading.Lock()
    barrier = threading.Barrier(2)
    ts = [threading.Thread(target=explicit_lock_transfer, args=(a, b, barrier), name="worker-1",
                           daemon=True),
          threading.Thread(target=explicit_lock_transfer, args=(b, a, barrier), name="worker-2",
                           daemon=True)]
    x, y = Account(), Account()
    barrier2 = threading.Barrier(2)
    ts += [threading.Thread(target=attribute_lock_transfer, args=(x, y, barrier2),
                            name="account-1", daemon=True),
           threading.Thread(target=attribute_lock_transfer, args=(y, x, barrier2),
                            name="account-2", daemon=True)]
    for t in ts:
        t.start()
    wait_until(stably(lambda: all(blocked_at(t, t._target.__qualname__) for t in ts) and
                      a.locked() and b.locked() and x.lock.locked() and y.lock.locked()),
               "the deadlocks")
    record(rec)
    ready()
    park()


SCENARIOS = {"deadlock": scenario_deadlock, "deadlock-join": scenario_deadlock_join,
             "spin": scenario_spin, "mix": scenario_mix, "gil": scenario_gil,
             "gil-chain": scenario_gil_chain, "contention": scenario_contention,
             "procs": scenario_procs, "async-deadlock": scenario_async_deadlock,
             "async-deadlock-explicit": scenario_async_deadlock_explicit,
             "async-mix": scenario_async_mix, "async-server": scenario_async_server,
             "deadlock-explicit": scenario_deadlock_explicit,
             "deadlock-timed": scenario_deadlock_timed}

if __name__ == "__main__":
    SCENARIOS[sys.argv[1]](sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 0)
