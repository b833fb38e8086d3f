/*
 * The trampoline osmosis copies into a page of the target for the injected clone (tens of
 * milliseconds for a large target), built so that no zombie is ever left in the target and the
 * thread always comes back, whatever moment osmosis dies at.
 *
 * The thread (T) runs the syscall at the start of the page: clone(CLONE_VM | CLONE_FILES) with
 * exit signal 0 and a stack pointer in the never-mapped first page. The new task, the
 * intermediate (I), shares T's memory (no page tables copied) and descriptor table; it runs the
 * code at 3: one more clone(CLONE_FILES), the real clone (C): a copy-on-write copy of the
 * target's memory, child of I, never of the target; then I exits at once. T, back from its
 * clone, waits for I with wait4(I, NULL, __WALL, NULL), so I is reaped by the target's own
 * thread whether osmosis is there or not; when I exits, C is the child of the init process (or
 * of a subreaper) that reaps it when it dies. Then T restores itself: the general registers and
 * flags from the data block, the stack pointer, a jump to the saved instruction pointer.
 *
 * With osmosis alive, osmosis drives it step by step (T and I are traced; C is held in its first
 * stop and never runs) and restores T's registers itself at the wait4's exit. The code after the
 * syscalls matters when osmosis died: C, if it ever runs, and I exit at once (exit(0)), touching
 * no memory (I shares the target's); no code here uses a stack.
 *
 * The trampoline is for the clone only: its parent path waits for the pid the syscall returned.
 * Position independent: it is copied as bytes (arch_tramp_*).
 */
	.section .rodata
	.balign 16
	.globl arch_tramp_start, arch_tramp_regs, arch_tramp_end
arch_tramp_start:
	syscall				/* T: clone(CLONE_VM | CLONE_FILES, bad sp): I */
	test	%rax, %rax
	jz	3f			/* in I */
	js	2f			/* no I: nothing to wait for */
	mov	%rax, %rdi
1:	xor	%esi, %esi
	mov	$0x40000000, %edx	/* __WALL */
	xor	%r10d, %r10d
	mov	$61, %eax		/* wait4(I, NULL, __WALL, NULL) */
	syscall
	cmp	$-4, %rax		/* -EINTR: a handler of T ran meanwhile; wait again */
	je	1b
2:	lea	arch_tramp_regs(%rip), %rsp
	pop	%r15
	pop	%r14
	pop	%r13
	pop	%r12
	pop	%rbp
	pop	%rbx
	pop	%r11
	pop	%r10
	pop	%r9
	pop	%r8
	pop	%rax
	pop	%rcx
	pop	%rdx
	pop	%rsi
	pop	%rdi
	popfq
	mov	(%rsp), %rsp
	jmp	*arch_tramp_rip(%rip)
3:	mov	$56, %eax		/* I: clone(CLONE_FILES, bad sp, 0, 0, 0): C */
	mov	$0x400, %edi
	mov	$16, %esi
	xor	%edx, %edx
	xor	%r10d, %r10d
	xor	%r8d, %r8d
	syscall
	mov	$60, %eax		/* exit(0): I, and C if it ever runs */
	xor	%edi, %edi
	syscall
	ud2
	.balign 8
arch_tramp_regs:			/* r15 ... rdi, in struct user_regs_struct's order */
	.skip	15 * 8
arch_tramp_flags:
	.skip	8
arch_tramp_rsp:
	.skip	8
arch_tramp_rip:
	.skip	8
arch_tramp_end:
	.section .note.GNU-stack, "", @progbits
