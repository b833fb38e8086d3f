/* SPDX-License-Identifier: MIT */
/*
 * The trampoline osmosis copies into a page of the target for a long injected syscall (the
 * clone: tens of milliseconds for a large target). The thread runs the syscall at the start of
 * the page. Normally osmosis holds the thread at the syscall's exit and puts its registers back
 * itself; the code after the syscall runs only if osmosis died meanwhile, and then puts the
 * thread back on its own: the general registers and flags from the data block, then the stack
 * pointer, then a jump to the saved instruction pointer. In the clone child (rax 0) it exits at
 * once, touching no memory. Position independent: it is copied as bytes (arch_tramp_*).
 */
	.section .rodata
	.balign 16
	.globl arch_tramp_start, arch_tramp_regs, arch_tramp_end
arch_tramp_start:
	syscall
	test	%rax, %rax
	jz	1f
	lea	arch_tramp_regs(%rip), %rsp
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
1:	mov	$60, %eax		/* exit(0) */
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
