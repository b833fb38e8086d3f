// SPDX-License-Identifier: MIT
// A C++ victim: two threads locking two std::mutex in opposite order inside member functions of
// a class in a namespace, so that their frames carry mangled names (bank::Account::transfer...).
// Prints "ready pid=N" once both threads are blocked in futex waits, then stays so until killed.
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace bank
{
class Account
{
      public:
	std::mutex m;
	long balance = 100;
	// Takes this account's lock, then the other's: two transfers in opposite directions
	// meet in the middle and wait for each other forever.
	__attribute__((noinline)) void transfer_to(Account &other, long amount,
						   std::atomic<int> &holding)
	{
		std::lock_guard<std::mutex> mine(m);
		holding++;
		while (holding.load() < 2)
			std::this_thread::yield();
		std::lock_guard<std::mutex> theirs(other.m);
		balance -= amount;
		other.balance += amount;
	}
};
} // namespace bank

static long syscall_of(pid_t tid)
{
	std::ifstream f("/proc/self/task/" + std::to_string(tid) + "/syscall");
	long nr = -1;
	if (!(f >> nr))
		return -1;
	return nr;
}

int main()
{
	bank::Account a, b;
	std::atomic<int> holding{0};
	std::atomic<pid_t> tids[2] = {0, 0};
	std::vector<std::thread> ts;
	for (int i = 0; i < 2; i++)
		ts.emplace_back([&, i] {
			prctl(PR_SET_NAME, i ? "v-transfer-b" : "v-transfer-a");
			tids[i] = (pid_t)syscall(SYS_gettid);
			if (i)
				b.transfer_to(a, 5, holding);
			else
				a.transfer_to(b, 10, holding);
		});
	for (int i = 0; i < 4000; i++) {
		if (tids[0] && tids[1] && syscall_of(tids[0]) == SYS_futex &&
		    syscall_of(tids[1]) == SYS_futex)
			break;
		usleep(5000);
	}
	std::printf("ready pid=%d\n", (int)getpid());
	std::fflush(stdout);
	for (auto &t : ts)
		t.join();
	return 0;
}
