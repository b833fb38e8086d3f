/* SPDX-License-Identifier: MIT */
/* The trampoline's bytes (trampoline.S) as the injection copies them into a target. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "arch.h"

extern const uint8_t arch_tramp_start[], arch_tramp_regs[], arch_tramp_end[];
_Static_assert(offsetof(struct user_regs_struct, rdi) == 14 * sizeof(uint64_t),
	       "the trampoline pops r15 .. rdi in struct user_regs_struct's order");

void arch_tramp_build(const arch_gregs_t *restore, uint8_t *out, size_t *ret_len)
{
	size_t len = (size_t)(arch_tramp_end - arch_tramp_start);
	size_t data = (size_t)(arch_tramp_regs - arch_tramp_start);
	uint64_t tail[3] = {restore->eflags, restore->rsp, restore->rip};

	memcpy(out, arch_tramp_start, len);
	/* r15 .. rdi are the first 15 fields of struct user_regs_struct. */
	memcpy(out + data, restore, 15 * sizeof(uint64_t));
	memcpy(out + data + 15 * sizeof(uint64_t), tail, sizeof(tail));
	*ret_len = len;
}

const uint8_t *arch_tramp_code(size_t *ret_len)
{
	*ret_len = (size_t)(arch_tramp_regs - arch_tramp_start);
	return arch_tramp_start;
}
