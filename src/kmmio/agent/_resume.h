/* _resume.h: leaving a SIGSEGV handler that has dealt with the fault, without rt_sigreturn.
 * Included by the agent (_agent_calls.c: on_segv ends with resume()) and by the bench's
 * in-process floors (bench/native.c, bench/faults.c), which must leave their handler the
 * way the agent does: a floor does no more than what it is compared with.
 *
 * The program's FPU/vector state comes back from the signal frame (XRSTOR with the
 * features the kernel saved there, or FXRSTOR for a legacy frame), its general registers
 * from the ucontext, and iretq (allowed at CPL 3) switches rip, rsp and rflags at once, so
 * nothing is written below the program's stack pointer (its red zone stays intact) and no
 * register is left holding a value of the handler's.  That spares each fault a syscall
 * (with the seccomp filters of the process run on it) and the kernel's checks of the
 * frame.  rt_sigreturn still serves what only the kernel can restore, or what iretq
 * cannot: a user shadow stack (CET), an alternate stack the kernel disarmed for the
 * handler (SS_AUTODISARM), another code or stack segment, a frame without FPU state, and
 * EFLAGS.NT set (iretq would take it for a task return: #GP).  The signal mask is not
 * restored: the handler must be installed with SA_NODEFER and an empty sa_mask, so that
 * delivery left it as the program had it.
 *
 * resume(uc) last in the handler: it does not return, but where rt_sigreturn must serve
 * (then return from the handler as usual). */
#ifndef KMMIO_RESUME_H
#define KMMIO_RESUME_H
#include <signal.h>
#include <stdint.h>
#include <ucontext.h>

__attribute__((noreturn)) static void iret_to(greg_t *g, void *fp, uint64_t mask, long xsave)
{
    __asm__ volatile(
        "test %[xs], %[xs]\n\t"
        "jz 1f\n\t"
        "xrstor64 (%[fp])\n\t"
        "jmp 2f\n"
        "1:\n\t"
        "fxrstor64 (%[fp])\n"
        "2:\n\t"
        "xor %%eax, %%eax\n\t"
        "mov %%ss, %%ax\n\t"
        "push %%rax\n\t"
        "push %c[rsp](%[g])\n\t"
        "push %c[efl](%[g])\n\t"
        "mov %%cs, %%ax\n\t"
        "push %%rax\n\t"
        "push %c[rip](%[g])\n\t"
        "mov %c[r8](%[g]), %%r8\n\t"
        "mov %c[r9](%[g]), %%r9\n\t"
        "mov %c[r10](%[g]), %%r10\n\t"
        "mov %c[r11](%[g]), %%r11\n\t"
        "mov %c[r12](%[g]), %%r12\n\t"
        "mov %c[r13](%[g]), %%r13\n\t"
        "mov %c[r14](%[g]), %%r14\n\t"
        "mov %c[r15](%[g]), %%r15\n\t"
        "mov %c[rsi](%[g]), %%rsi\n\t"
        "mov %c[rbp](%[g]), %%rbp\n\t"
        "mov %c[rbx](%[g]), %%rbx\n\t"
        "mov %c[rdx](%[g]), %%rdx\n\t"
        "mov %c[rax](%[g]), %%rax\n\t"
        "mov %c[rcx](%[g]), %%rcx\n\t"
        "mov %c[rdi](%[g]), %%rdi\n\t"
        "iretq"
        :
        : [g] "D"(g), [fp] "S"(fp), [xs] "c"(xsave), "a"((uint32_t)mask), "d"((uint32_t)(mask >> 32)),
          [rsp] "i"(REG_RSP * 8), [efl] "i"(REG_EFL * 8), [rip] "i"(REG_RIP * 8), [r8] "i"(REG_R8 * 8),
          [r9] "i"(REG_R9 * 8), [r10] "i"(REG_R10 * 8), [r11] "i"(REG_R11 * 8), [r12] "i"(REG_R12 * 8),
          [r13] "i"(REG_R13 * 8), [r14] "i"(REG_R14 * 8), [r15] "i"(REG_R15 * 8), [rsi] "i"(REG_RSI * 8),
          [rbp] "i"(REG_RBP * 8), [rbx] "i"(REG_RBX * 8), [rdx] "i"(REG_RDX * 8), [rax] "i"(REG_RAX * 8),
          [rcx] "i"(REG_RCX * 8), [rdi] "i"(REG_RDI * 8)
        : "memory");
    __builtin_unreachable();
}

/* Back to the program as rt_sigreturn would take it; returns only where the kernel must. */
static void resume(ucontext_t *uc)
{
    uint64_t ssp = 0, flags = (uint64_t)uc->uc_mcontext.gregs[REG_EFL];
    uint64_t segs = (uint64_t)uc->uc_mcontext.gregs[REG_CSGSFS]; /* cs, gs, fs, ss */
    uint16_t cs, ss;
    __asm__ volatile("rdsspq %0" : "+r"(ssp)); /* a no-op without a shadow stack: 0 */
    __asm__ volatile("mov %%cs, %0\n\tmov %%ss, %1" : "=r"(cs), "=r"(ss));
    void *fp = uc->uc_mcontext.fpregs;
    if (ssp || !fp || ((uintptr_t)fp & 63) || (flags & 0x4000 /* NT */) ||
        (uc->uc_stack.ss_flags & (int)(1u << 31) /* SS_AUTODISARM */) || (uint16_t)segs != cs ||
        ((uc->uc_flags & 2 /* UC_SIGCONTEXT_SS */) && (uint16_t)(segs >> 48) != ss))
        return;
    const struct _fpx_sw_bytes *sw = (const struct _fpx_sw_bytes *)((const char *)fp + 464);
    int xsave = (uc->uc_flags & 1 /* UC_FP_XSTATE */) && sw->magic1 == FP_XSTATE_MAGIC1;
    iret_to(uc->uc_mcontext.gregs, fp, xsave ? sw->xstate_bv : 0, xsave);
}

#endif
