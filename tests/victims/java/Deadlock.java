// SPDX-License-Identifier: MIT
//
// A JVM victim for osmosis's Java analysis (tests/integration/test_java.py).
//
//   java Deadlock deadlock   two threads ("osm-left", "osm-right") enter two synchronized blocks
//                            on two monitors in opposite order and block on each other; a third
//                            thread ("osm-healthy") waits in Object.wait(). Prints
//                            "ready pid=N mode=deadlock" only once both contenders are BLOCKED,
//                            each holding the monitor the other wants.
//   java Deadlock healthy    idle threads only: one in Object.wait() ("osm-waiter"), one in
//                            Thread.sleep() ("osm-sleeper"), a fixed thread pool whose workers
//                            ("osm-pool") wait for work. Prints "ready pid=N mode=healthy" once
//                            every one of them is waiting.
//
// Either way its main thread then sleeps for 120 s and it exits (the test kills it sooner).
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;

public class Deadlock {
	static final Object left = new Object();
	static final Object right = new Object();
	static final Object idle = new Object();

	static void hold(Object first, Object second, CountDownLatch both) {
		synchronized (first) {
			both.countDown();
			try {
				both.await();
			} catch (InterruptedException e) {
				return;
			}
			synchronized (second) {
				System.out.println("unreachable: took both monitors");
			}
		}
	}

	static Thread waiter(String name) {
		Thread t = new Thread(() -> {
			synchronized (idle) {
				try {
					idle.wait();
				} catch (InterruptedException e) {
				}
			}
		}, name);
		t.setDaemon(true);
		t.start();
		return t;
	}

	static void waitFor(Thread t, Thread.State s) throws InterruptedException {
		while (t.getState() != s)
			Thread.sleep(10);
	}

	public static void main(String[] args) throws Exception {
		String mode = args.length > 0 ? args[0] : "deadlock";
		if (mode.equals("deadlock")) {
			CountDownLatch both = new CountDownLatch(2);
			Thread a = new Thread(() -> hold(left, right, both), "osm-left");
			Thread b = new Thread(() -> hold(right, left, both), "osm-right");
			a.setDaemon(true);
			b.setDaemon(true);
			Thread h = waiter("osm-healthy");
			a.start();
			b.start();
			waitFor(a, Thread.State.BLOCKED);
			waitFor(b, Thread.State.BLOCKED);
			waitFor(h, Thread.State.WAITING);
			// Both passed the latch, so each holds the monitor it took first; BLOCKED is only
			// ever entering a monitor: each waits for the other's.
			if (both.getCount() == 0)
				System.out.println("ready pid=" + ProcessHandle.current().pid() + " mode=deadlock");
		} else if (mode.equals("healthy")) {
			Thread w = waiter("osm-waiter");
			Thread s = new Thread(() -> {
				try {
					Thread.sleep(600_000);
				} catch (InterruptedException e) {
				}
			}, "osm-sleeper");
			s.setDaemon(true);
			s.start();
			ExecutorService pool = Executors.newFixedThreadPool(3, r -> {
				Thread t = new Thread(r, "osm-pool");
				t.setDaemon(true);
				return t;
			});
			CountDownLatch ran = new CountDownLatch(3);
			for (int i = 0; i < 3; i++)
				pool.submit(ran::countDown);
			ran.await();
			waitFor(w, Thread.State.WAITING);
			waitFor(s, Thread.State.TIMED_WAITING);
			// the workers are idle once every one parks on the queue again
			for (Thread t : Thread.getAllStackTraces().keySet())
				if (t.getName().equals("osm-pool"))
					waitFor(t, Thread.State.WAITING);
			System.out.println("ready pid=" + ProcessHandle.current().pid() + " mode=healthy");
		} else {
			System.err.println("usage: java Deadlock deadlock|healthy");
			System.exit(2);
		}
		System.out.flush();
		Thread.sleep(120_000);
	}
}
