/* SPDX-License-Identifier: MIT */
/*
 * x86_64 register capture and the per-thread notes that follow NT_PRSTATUS in a core:
 * NT_FPREGSET (the 512-byte FXSAVE area, name "CORE") and NT_X86_XSTATE (the XSAVE area as the
 * kernel's PTRACE_GETREGSET returns it, name "LINUX").
 */
#include <cpuid.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/uio.h>
#include <unistd.h>

#include "arch.h"
#include "core/notes.h"
#include "snapshot/model.h"
#include "syscalls.h"

#ifndef NT_X86_XSTATE
#define NT_X86_XSTATE 0x202
#endif

const char *arch_exe_refusal(const uint8_t *ehdr, size_t len)
{
	uint16_t machine;

	if (len < EI_NIDENT + 4 || memcmp(ehdr, ELFMAG, SELFMAG))
		return NULL; /* cannot tell */
	memcpy(&machine, ehdr + offsetof(Elf64_Ehdr, e_machine), sizeof(machine));
	if (ehdr[EI_CLASS] == ELFCLASS32 && machine == EM_X86_64)
		return "an x32 process (32-bit pointers, its own syscall numbers): osmosis "
		       "captures "
		       "64-bit x86_64 processes only";
	if (ehdr[EI_CLASS] == ELFCLASS32)
		return "a 32-bit (compat) process: osmosis captures 64-bit x86_64 processes only";
	if (ehdr[EI_CLASS] == ELFCLASS64 && machine != EM_X86_64)
		return "not an x86_64 program: osmosis captures 64-bit x86_64 processes only";
	return NULL;
}

const char *arch_process_refusal(int procfd)
{
	uint8_t ehdr[sizeof(Elf64_Ehdr)];
	int fd = openat(procfd, "exe", O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	ssize_t n;

	if (fd < 0)
		return NULL;
	n = pread(fd, ehdr, sizeof(ehdr), 0);
	close(fd);
	return n > 0 ? arch_exe_refusal(ehdr, (size_t)n) : NULL;
}

int arch_get_regs(pid_t tid, struct arch_regs *regs, uint8_t *xstate_buf)
{
	struct iovec iov;

	memset(regs, 0, sizeof(*regs));
	iov.iov_base = &regs->gp;
	iov.iov_len = sizeof(regs->gp);
	if (ptrace(PTRACE_GETREGSET, tid, (void *)NT_PRSTATUS, &iov) < 0)
		return -errno;
	/* A 32-bit (compat) thread's set is shorter, in another layout: never read it as ours. */
	if (iov.iov_len != sizeof(regs->gp))
		return -EPROTONOSUPPORT;
	iov.iov_base = &regs->fp;
	iov.iov_len = sizeof(regs->fp);
	regs->fp_valid = ptrace(PTRACE_GETREGSET, tid, (void *)NT_PRFPREG, &iov) == 0;
	iov.iov_base = xstate_buf;
	iov.iov_len = ARCH_XSTATE_MAX;
	if (ptrace(PTRACE_GETREGSET, tid, (void *)NT_X86_XSTATE, &iov) == 0) {
		regs->xstate = xstate_buf;
		regs->xstate_len = (uint32_t)iov.iov_len;
	}
	return 0;
}

uint64_t arch_regs_pc(const struct arch_regs *regs)
{
	return regs->gp.rip;
}

uint64_t arch_regs_sp(const struct arch_regs *regs)
{
	return regs->gp.rsp;
}

void arch_gregs_to_dwarf(const uint64_t *gregs, uint64_t dwarf[ARCH_DWARF_NREGS])
{
	/* Where each DWARF register sits in struct user_regs_struct, in words. */
	static const uint8_t from[ARCH_DWARF_NREGS] = {
	    offsetof(struct user_regs_struct, rax) / 8, offsetof(struct user_regs_struct, rdx) / 8,
	    offsetof(struct user_regs_struct, rcx) / 8, offsetof(struct user_regs_struct, rbx) / 8,
	    offsetof(struct user_regs_struct, rsi) / 8, offsetof(struct user_regs_struct, rdi) / 8,
	    offsetof(struct user_regs_struct, rbp) / 8, offsetof(struct user_regs_struct, rsp) / 8,
	    offsetof(struct user_regs_struct, r8) / 8,	offsetof(struct user_regs_struct, r9) / 8,
	    offsetof(struct user_regs_struct, r10) / 8, offsetof(struct user_regs_struct, r11) / 8,
	    offsetof(struct user_regs_struct, r12) / 8, offsetof(struct user_regs_struct, r13) / 8,
	    offsetof(struct user_regs_struct, r14) / 8, offsetof(struct user_regs_struct, r15) / 8,
	    offsetof(struct user_regs_struct, rip) / 8,
	};

	for (size_t i = 0; i < ARCH_DWARF_NREGS; i++)
		dwarf[i] = gregs[from[i]];
}

#define ERESTARTSYS_	       512
#define ERESTARTNOINTR_	       513
#define ERESTARTNOHAND_	       514
#define ERESTART_RESTARTBLOCK_ 516
#define EINTR_		       4

bool arch_syscall_interrupted(int64_t result)
{
	return result == -ERESTARTSYS_ || result == -ERESTARTNOINTR_ ||
	       result == -ERESTARTNOHAND_ || result == -ERESTART_RESTARTBLOCK_ || result == -EINTR_;
}

long arch_regs_syscall(const struct arch_regs *regs, uint64_t args[6], int64_t *ret_result)
{
	*ret_result = (int64_t)regs->gp.rax;
	args[0] = regs->gp.rdi;
	args[1] = regs->gp.rsi;
	args[2] = regs->gp.rdx;
	args[3] = regs->gp.r10;
	args[4] = regs->gp.r8;
	args[5] = regs->gp.r9;
	return (long)regs->gp.orig_rax;
}

/*
 * The XSAVE area from PTRACE_GETREGSET is in the CPU's standard format, whose component offsets
 * come from CPUID leaf 0xD. Debuggers (gdb 13, lldb) assume the offsets of the original Intel
 * layout instead; on CPUs without MPX the AVX-512 components sit lower, and gdb rejects the note
 * ("Section .reg-xstate too small"). gcore writes the fixed layout, so we do the same: move each
 * component to its fixed offset when the CPU's differs. Components the fixed layout does not know
 * (AMX and later) are left out of the note; the FXSAVE part and header are copied as they are.
 */
struct xcomp {
	uint32_t off, size;
};
static const struct xcomp fixed_layout[10] = {
    [2] = {576, 256},	/* AVX YMM_Hi128 */
    [3] = {960, 64},	/* MPX BNDREGS */
    [4] = {1024, 64},	/* MPX BNDCSR */
    [5] = {1088, 64},	/* AVX-512 opmask */
    [6] = {1152, 512},	/* AVX-512 ZMM_Hi256 */
    [7] = {1664, 1024}, /* AVX-512 Hi16_ZMM */
    [9] = {2688, 8},	/* PKRU */
};
#define XSAVE_XCR0_OFFSET 464 /* sw_reserved: the kernel stores XCR0 here */
#define XSAVE_HDR_END	  576

static void cpu_layout(struct xcomp out[10])
{
	for (unsigned i = 2; i < 10; i++) {
		unsigned a = 0, b = 0, c = 0, d = 0;
		__cpuid_count(0xd, i, a, b, c, d);
		out[i] = (struct xcomp){.off = b, .size = a};
	}
}

static uint8_t *to_fixed_layout(const uint8_t *x, uint32_t len, uint32_t *ret_len)
{
	static struct xcomp cpu[10];
	static int have_cpu;
	uint64_t xcr0;
	uint32_t out_len = XSAVE_HDR_END;
	bool same = true;
	uint8_t *out;

	if (len < XSAVE_HDR_END)
		return NULL;
	if (!have_cpu) {
		cpu_layout(cpu);
		have_cpu = 1;
	}
	memcpy(&xcr0, x + XSAVE_XCR0_OFFSET, sizeof(xcr0));
	for (unsigned i = 2; i < 10; i++) {
		if (!(xcr0 & (1ull << i)) || !fixed_layout[i].size)
			continue;
		if (cpu[i].off != fixed_layout[i].off || cpu[i].size != fixed_layout[i].size)
			same = false;
		if (fixed_layout[i].off + fixed_layout[i].size > out_len)
			out_len = fixed_layout[i].off + fixed_layout[i].size;
	}
	if (same)
		return NULL;
	out = calloc(1, out_len);
	if (!out)
		return NULL;
	memcpy(out, x, XSAVE_HDR_END);
	for (unsigned i = 2; i < 10; i++) {
		if (!(xcr0 & (1ull << i)) || !fixed_layout[i].size || !cpu[i].size)
			continue;
		if (cpu[i].off + cpu[i].size > len || cpu[i].size != fixed_layout[i].size)
			continue;
		memcpy(out + fixed_layout[i].off, x + cpu[i].off, cpu[i].size);
	}
	*ret_len = out_len;
	return out;
}

const char *arch_syscall_name(long nr)
{
	if (nr < 0 || nr >= (long)(sizeof(arch_syscall_names) / sizeof(arch_syscall_names[0])))
		return NULL;
	return arch_syscall_names[nr];
}

int arch_thread_extra_notes(const struct osm_thread *t, struct note_sink *ns)
{
	if (t->regs.fp_valid)
		note_add(ns, "CORE", NT_FPREGSET, &t->regs.fp, sizeof(t->regs.fp));
	if (t->regs.xstate_len) {
		uint32_t len = 0;
		uint8_t *fixed = to_fixed_layout(t->regs.xstate, t->regs.xstate_len, &len);
		if (fixed)
			note_add(ns, "LINUX", NT_X86_XSTATE, fixed, len);
		else
			note_add(ns, "LINUX", NT_X86_XSTATE, t->regs.xstate, t->regs.xstate_len);
		free(fixed);
	}
	return ns->err;
}

void arch_fill_prstatus_regs(const struct arch_regs *regs, void *gregs, size_t len)
{
	memcpy(gregs, &regs->gp, len < sizeof(regs->gp) ? len : sizeof(regs->gp));
}

int arch_gregs_get(pid_t tid, arch_gregs_t *r)
{
	struct iovec iov = {.iov_base = r, .iov_len = sizeof(*r)};
	if (ptrace(PTRACE_GETREGSET, tid, (void *)NT_PRSTATUS, &iov) < 0)
		return -errno;
	return iov.iov_len == sizeof(*r) ? 0 : -EPROTONOSUPPORT; /* a compat thread */
}

int arch_gregs_set(pid_t tid, const arch_gregs_t *r)
{
	struct iovec iov = {.iov_base = (void *)r, .iov_len = sizeof(*r)};
	return ptrace(PTRACE_SETREGSET, tid, (void *)NT_PRSTATUS, &iov) < 0 ? -errno : 0;
}

uint64_t arch_gregs_pc(const arch_gregs_t *r)
{
	return r->rip;
}

long arch_gregs_syscall_nr(const arch_gregs_t *r)
{
	return (long)r->orig_rax;
}

void arch_gregs_setup_syscall(arch_gregs_t *r, uint64_t insn, long nr, const uint64_t args[6])
{
	r->rip = insn;
	r->rax = (uint64_t)nr;
	r->orig_rax = (uint64_t)-1; /* not in a syscall: nothing for the kernel to restart */
	r->rdi = args[0];
	r->rsi = args[1];
	r->rdx = args[2];
	r->r10 = args[3];
	r->r8 = args[4];
	r->r9 = args[5];
}

int64_t arch_gregs_syscall_result(const arch_gregs_t *r)
{
	return (int64_t)r->rax;
}

#define NR_RESTART_SYSCALL 219

bool arch_syscall_is_restart(long nr)
{
	return nr == NR_RESTART_SYSCALL;
}

long arch_gregs_restart_block_nr(const arch_gregs_t *r)
{
	return (long)r->orig_rax >= 0 && (long)r->rax == -ERESTART_RESTARTBLOCK_ ? (long)r->orig_rax
										 : -1;
}

void arch_gregs_restart_fixup(arch_gregs_t *r)
{
	if ((long)r->orig_rax < 0)
		return;
	switch ((long)r->rax) {
	case -ERESTARTSYS_:
	case -ERESTARTNOINTR_:
	case -ERESTARTNOHAND_:
		r->rax = r->orig_rax;
		r->rip -= ARCH_SYSCALL_INSN_LEN;
		break;
	case -ERESTART_RESTARTBLOCK_:
		r->rax = NR_RESTART_SYSCALL;
		r->rip -= ARCH_SYSCALL_INSN_LEN;
		break;
	default:
		return;
	}
	r->orig_rax = (uint64_t)-1;
}
