/* SPDX-License-Identifier: MIT */
/*
 * x86_64 specifics: the register sets a stopped thread is captured with, and how they go into core
 * notes. Every architecture provides this same header and arch.c with the same functions.
 */
#pragma once

#include <elf.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/user.h>

#define ARCH_NAME	 "x86_64"
#define ARCH_ELF_MACHINE EM_X86_64
#define ARCH_ELF_CLASS	 ELFCLASS64
#define ARCH_XSTATE_MAX	 8192 /* ample for AVX-512 and AMX-less XSAVE areas */

/* Where things sit in the NT_PRSTATUS register set (elf_gregset_t, user_regs_struct order). */
#define ARCH_PRSTATUS_REG_OFFSET 112
#define ARCH_GREGS_COUNT	 27
#define ARCH_GREGS_PC		 16 /* rip */
#define ARCH_GREGS_SP		 19 /* rsp */
#define ARCH_GREGS_TP		 21 /* fs_base: the thread's struct pthread */

struct arch_regs {
	struct user_regs_struct gp;
	struct user_fpregs_struct fp;
	bool fp_valid;
	uint32_t xstate_len; /* 0 when the kernel gave none */
	uint8_t *xstate;     /* points into caller-provided storage of ARCH_XSTATE_MAX bytes */
};

/* Fetch every register set of a ptrace-stopped thread. xstate_buf must hold ARCH_XSTATE_MAX bytes
 * and outlive regs. Returns 0 or a negative errno; does not log. */
int arch_get_regs(pid_t tid, struct arch_regs *regs, uint8_t *xstate_buf);

/* Register accessors used by generic code (the manifest, later the analysis). */
uint64_t arch_regs_pc(const struct arch_regs *regs);
uint64_t arch_regs_sp(const struct arch_regs *regs);
/* The registers an unwinder starts from, in the DWARF numbering of the psABI, from an
 * NT_PRSTATUS register set (gregs[0..ARCH_GREGS_COUNT), elf_gregset_t order): rax, rdx, rcx,
 * rbx, rsi, rdi, rbp, rsp, r8-r15, then rip in the return address column (16). Writes
 * ARCH_DWARF_NREGS values, the set libdwfl's x86_64 backend unwinds with; the pc is
 * gregs[ARCH_GREGS_PC]. Pure. */
#define ARCH_DWARF_NREGS 17
void arch_gregs_to_dwarf(const uint64_t *gregs, uint64_t dwarf[ARCH_DWARF_NREGS]);
/* The syscall the registers of a stopped thread name (or -1), with up to 6 arguments and the
 * result register. A stop inside a syscall names it; so does a stop on the way out of one that
 * had ended (the stop comes at the return to user space), with the call's result. */
long arch_regs_syscall(const struct arch_regs *regs, uint64_t args[6], int64_t *ret_result);
/* Whether a syscall's result register says the stop interrupted it as it waited: a restart code,
 * or EINTR for the calls the kernel never restarts (epoll_wait). */
bool arch_syscall_interrupted(int64_t result);
/* The syscall's name, or NULL for a number this table does not know. */
const char *arch_syscall_name(long nr);

/* Injection (src/inject/): the general registers as the kernel's regset, and how a syscall is
 * set up in them and its result read back. */
#define ARCH_SYSCALL_INSN     "\x0f\x05" /* syscall */
#define ARCH_SYSCALL_INSN_LEN 2
typedef struct user_regs_struct arch_gregs_t;
int arch_gregs_get(pid_t tid, arch_gregs_t *r);
int arch_gregs_set(pid_t tid, const arch_gregs_t *r);
uint64_t arch_gregs_pc(const arch_gregs_t *r);
long arch_gregs_syscall_nr(const arch_gregs_t *r);
void arch_gregs_setup_syscall(arch_gregs_t *r, uint64_t insn, long nr, const uint64_t args[6]);
int64_t arch_gregs_syscall_result(const arch_gregs_t *r);
/* A thread interrupted in a syscall that the kernel would restart: do the restart by hand (back
 * to the syscall instruction, the number in place of -ERESTART*), because resuming from another
 * stop than the interrupt's does not pass through the kernel's restart logic. */
void arch_gregs_restart_fixup(arch_gregs_t *r);
/* The syscall r was interrupted in when the kernel resumes it as restart_syscall (a sleep, a
 * timed futex wait: its time left kept by the kernel), or -1. */
long arch_gregs_restart_block_nr(const arch_gregs_t *r);
/* Whether nr is restart_syscall, the call such an interrupted call is resumed as. */
bool arch_syscall_is_restart(long nr);

/* The self-restoring trampoline (trampoline.S): its bytes, with the registers it restores
 * (after arch_gregs_restart_fixup) written into its data block. *ret_len <= ARCH_TRAMP_MAX. */
#define ARCH_TRAMP_MAX 512
void arch_tramp_build(const arch_gregs_t *restore, uint8_t *out, size_t *ret_len);
/* Its code bytes (without the data block): how a page left behind is recognised. */
const uint8_t *arch_tramp_code(size_t *ret_len);

/* Whether osmosis can capture a process whose executable starts with these bytes (its ELF
 * header, len bytes of it): NULL when it can (or when the bytes do not tell), else a static
 * reason. On x86_64: 64-bit x86_64 only; a 32-bit (i386, compat) or x32 process has another
 * register layout and syscall numbers, into which nothing may be injected. Pure. */
const char *arch_exe_refusal(const uint8_t *ehdr, size_t len);
/* The same for a live process, from /proc/PID/exe (procfd: its /proc directory). NULL when it
 * can be captured or the executable cannot be read. */
const char *arch_process_refusal(int procfd);

struct note_sink;
struct osm_thread;
struct osm_process;
/* Append the per-thread notes after NT_PRSTATUS: NT_FPREGSET and NT_X86_XSTATE. */
int arch_thread_extra_notes(const struct osm_thread *t, struct note_sink *ns);
/* Fill the pr_reg part of NT_PRSTATUS. gregs has room for the elf_gregset_t. */
void arch_fill_prstatus_regs(const struct arch_regs *regs, void *gregs, size_t len);
