/* SPDX-License-Identifier: MIT */
/* The parser of jhsdb jstack's output, and the bounded runner, on text made here: what a real
 * jhsdb prints (the deadlock section, thread headers, frames, lock lines), names with quotes
 * and control bytes, lines past the limit, and a child that outlives its deadline. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "analyze/runtime/java.h"

static const char sample[] =
    "Attaching to core /proc/self/fd/3 from executable /usr/bin/java, please wait...\n"
    "Debugger attached successfully.\n"
    "Server compiler detected.\n"
    "JVM version is 17.0.21.1+2-1-deb12u1-Debian\n"
    "Deadlock Detection:\n"
    "\n"
    "Found one Java-level deadlock:\n"
    "=============================\n"
    "\n"
    "\"b\":\n"
    "  waiting to lock Monitor@0x00007fc9d00015a0 (Object@0x00000000ffd1aeb8, a "
    "java/lang/Object),\n"
    "  which is held by \"a \"quoted\" one\"\n"
    "\"a \"quoted\" one\":\n"
    "  waiting to lock Monitor@0x00007fc9d40019c0 (Object@0x00000000ffd1aec8, a "
    "com/example/Lock$Inner),\n"
    "  which is held by \"b\"\n"
    "\n"
    "Found a total of 1 deadlock.\n"
    "\n"
    "\"a \"quoted\" one\" #12 daemon prio=5 tid=0x00007fca600b9b40 nid=0x4f94 waiting for "
    "monitor entry [0x00007f1f347fd000]\n"
    "   java.lang.Thread.State: BLOCKED (on object monitor)\n"
    "   JavaThread state: _thread_blocked\n"
    " - Deadlock.hold(java.lang.Object, java.lang.Object) @bci=25, line=34 (Interpreted frame)\n"
    "\t- locked <0x00000000ffd1ae98> (a java.lang.Object)\n"
    " - java.lang.Thread.run() @bci=11, line=840 (Compiled frame; information may be "
    "imprecise)\n"
    "\n"
    "\"b\" #13 prio=5 tid=0x00007fca600bab40 nid=20373 waiting for monitor entry [0x0]\n"
    "   java.lang.Thread.State: BLOCKED (on object monitor)\n"
    " - java.io.FileInputStream.readBytes(byte[], int, int) @bci=0 (Native Method)\n"
    "\"bad\x01name\xff\" #14 prio=5 tid=0x1 nid=0xzz runnable\n"
    "an unknown line\n";

static void test_a_deadlock_and_threads(void **state)
{
	struct jstack st = {0};
	(void)state;
	assert_int_equal(jstack_parse(sample, sizeof(sample) - 1, &st), 0);
	assert_true(st.attached);
	assert_string_equal(st.vm_version, "17.0.21.1+2-1-deb12u1-Debian");
	assert_int_equal(st.announced_deadlocks, 1);
	assert_int_equal(st.n_deadlocks, 1);
	assert_int_equal(st.deadlocks[0].n, 2);
	const struct jstep *s0 = &st.deadlocks[0].steps[0], *s1 = &st.deadlocks[0].steps[1];
	assert_string_equal(s0->waiter, "b");
	assert_string_equal(s0->holder, "a \"quoted\" one");
	assert_int_equal(s0->monitor, 0x00007fc9d00015a0ull);
	assert_int_equal(s0->object, 0xffd1aeb8ull);
	assert_string_equal(s0->cls, "java.lang.Object");
	assert_string_equal(s1->cls, "com.example.Lock$Inner");
	assert_int_equal(st.n_threads, 3);
	const struct jthread *a = &st.threads[0], *b = &st.threads[1], *bad = &st.threads[2];
	assert_string_equal(a->name, "a \"quoted\" one");
	assert_int_equal(a->nid, 0x4f94);
	assert_true(a->daemon);
	assert_string_equal(a->state, "BLOCKED (on object monitor)");
	assert_int_equal(a->n_frames, 2);
	assert_string_equal(a->frames[0].method,
			    "Deadlock.hold(java.lang.Object, java.lang.Object)");
	assert_int_equal(a->frames[0].line, 34);
	assert_int_equal(a->frames[0].bci, 25);
	assert_string_equal(a->frames[0].type, "Interpreted");
	assert_string_equal(a->frames[1].type, "Compiled");
	assert_true(jthread_locked(a, 0xffd1ae98));
	assert_int_equal(b->nid, 20373);
	assert_false(b->daemon);
	assert_int_equal(b->frames[0].line, 0);
	assert_string_equal(b->frames[0].type, "Native");
	assert_string_equal(bad->name, "bad?name?"); /* control and invalid bytes replaced */
	assert_int_equal(bad->nid, 0);		     /* a number not parsed whole is none */
	assert_true(st.ignored_lines >= 2);	     /* "Server compiler...", "an unknown line" */
	const struct jthread *c[2];
	assert_int_equal(jstack_find_named(&st, "b", c, 2), 1);
	assert_ptr_equal(c[0], b);
	jstack_done(&st);
}

static void test_limits(void **state)
{
	size_t n = JSTACK_MAX_LINE + 200;
	char *buf = malloc(n + 64);
	struct jstack st = {0};
	(void)state;
	assert_non_null(buf);
	/* one overlong header line, then a short one: only the short one is a thread */
	buf[0] = '"';
	memset(buf + 1, 'x', n - 1);
	memcpy(buf + n, "\" nid=0x10 x\n\"y\" nid=0x11\n", 26);
	assert_int_equal(jstack_parse(buf, n + 26, &st), 0);
	assert_int_equal(st.n_threads, 1);
	assert_string_equal(st.threads[0].name, "y");
	assert_int_equal(st.ignored_lines, 1);
	jstack_done(&st);
	/* a long name is cut at JSTACK_MAX_NAME */
	memset(&st, 0, sizeof(st));
	buf[0] = '"';
	memset(buf + 1, 'n', 1000);
	memcpy(buf + 1001, "\" nid=0x12\n", 11);
	assert_int_equal(jstack_parse(buf, 1012, &st), 0);
	assert_int_equal(st.n_threads, 1);
	assert_int_equal(strlen(st.threads[0].name), JSTACK_MAX_NAME);
	jstack_done(&st);
	/* no trailing newline, no NUL: nothing read past len */
	memset(&st, 0, sizeof(st));
	assert_int_equal(jstack_parse("\"z\" nid=0x13", 12, &st), 0);
	assert_int_equal(st.n_threads, 1);
	assert_int_equal(st.threads[0].nid, 0x13);
	jstack_done(&st);
	free(buf);
}

static void test_run_bounded(void **state)
{
	char *out = NULL, err[256];
	size_t len = 0;
	bool trunc = true;
	int status = -1;
	char *argv_ok[] = {"/bin/sh", "-c", "echo out; echo err >&2; test -e /proc/self/fd/3",
			   NULL};
	char *argv_slow[] = {"/bin/sh", "-c", "echo $$; exec sleep 60", NULL};
	char *envp[] = {"PATH=/usr/bin:/bin", NULL};
	int keep = 0; /* our stdin, given to the child as 3 */
	(void)state;

	assert_int_equal(run_bounded("/bin/sh", argv_ok, envp, &keep, 1, 10000, 1 << 20, &out, &len,
				     &trunc, err, sizeof(err), &status),
			 0);
	assert_string_equal(out, "out\n");
	assert_string_equal(err, "err\n");
	assert_false(trunc);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	free(out);
	out = NULL;
	/* past the deadline: killed and reaped, its pid gone (when it had time to say it) */
	assert_int_equal(run_bounded("/bin/sh", argv_slow, envp, NULL, 0, 500, 1 << 20, &out, &len,
				     &trunc, err, sizeof(err), &status),
			 -ETIME);
	assert_non_null(out);
	pid_t pid = (pid_t)atoi(out);
	free(out);
	assert_true(pid >= 0);
	if (pid > 0)
		assert_true(kill(pid, 0) < 0 && errno == ESRCH);
	assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	/* output beyond the bound is dropped, not waited on */
	char *argv_big[] = {"/bin/sh", "-c", "head -c 300000 /dev/zero", NULL};
	assert_int_equal(run_bounded("/bin/sh", argv_big, envp, NULL, 0, 10000, 1000, &out, &len,
				     &trunc, err, sizeof(err), &status),
			 0);
	assert_true(trunc);
	assert_true(len <= 1000);
	free(out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_a_deadlock_and_threads),
	    cmocka_unit_test(test_limits),
	    cmocka_unit_test(test_run_bounded),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
