/* The compiled part of kmmio's door to the kernel, built with cffi (see _sys_build.py).
 *
 * Two things Python cannot do cheaply or exactly:
 *
 * - syscalls on the per-access path (five ptrace requests and a waitid for each traced
 *   access) taking and returning plain integers, so that a call costs no argument
 *   conversion;
 * - loads and stores through the tracer's view of a traced mapping, each one instruction
 *   of the program's width, so that a device register sees exactly the access the
 *   program makes: no split, no read before a write, no wider copy.  A SIGBUS inside such
 *   an access (the file under the view shrank) sets kmmio_view_fault and returns, where
 *   it would have killed the tracer.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/wait.h>

static long kmmio_ptrace(long request, long pid, uintptr_t addr, uintptr_t data)
{
    return ptrace((enum __ptrace_request)request, (pid_t)pid, (void *)addr, (void *)data);
}

/* The fault a thread is stopped with, and its registers: PTRACE_GETSIGINFO, then
 * PTRACE_GETREGS.  0, or the request that failed (errno says why). */
static long kmmio_get_fault(long pid, uintptr_t siginfo, uintptr_t regs)
{
    if (ptrace(PTRACE_GETSIGINFO, (pid_t)pid, NULL, (void *)siginfo) == -1)
        return PTRACE_GETSIGINFO;
    if (ptrace(PTRACE_GETREGS, (pid_t)pid, NULL, (void *)regs) == -1)
        return PTRACE_GETREGS;
    return 0;
}

/* A thread goes on after an access the tracer did for it: its rip alone (PTRACE_POKEUSER
 * at rip_offset, when rip is not 0: a store moves nothing else) or all its registers
 * (PTRACE_SETREGS from regs), then `resume` (PTRACE_CONT or PTRACE_SYSCALL; 0: stay
 * stopped).  0, or the request that failed (errno says why). */
static long kmmio_finish(long pid, uintptr_t regs, uint64_t rip, long rip_offset, long resume)
{
    if (rip) {
        if (ptrace(PTRACE_POKEUSER, (pid_t)pid, (void *)rip_offset, (void *)rip) == -1)
            return PTRACE_POKEUSER;
    } else if (ptrace(PTRACE_SETREGS, (pid_t)pid, NULL, (void *)regs) == -1) {
        return PTRACE_SETREGS;
    }
    if (resume && ptrace((enum __ptrace_request)resume, (pid_t)pid, NULL, NULL) == -1)
        return resume;
    return 0;
}

/* waitid(P_ALL, 0, info, options): the status lands in the caller's buffer, where it
 * stays readable if a signal handler cuts the caller short after the call returned. */
static int kmmio_waitid(uintptr_t info, int options)
{
    return waitid(P_ALL, 0, (siginfo_t *)info, options);
}

static int kmmio_prctl(int option, unsigned long arg2, unsigned long arg3, unsigned long arg4,
                       unsigned long arg5)
{
    return prctl(option, arg2, arg3, arg4, arg5);
}

static uintptr_t kmmio_mmap(size_t length, int prot, int flags, int fd, long offset)
{
    void *addr = mmap(NULL, length, prot, flags, fd, (off_t)offset);
    return addr == MAP_FAILED ? UINTPTR_MAX : (uintptr_t)addr;
}

static int kmmio_munmap(uintptr_t addr, size_t length)
{
    return munmap((void *)addr, length);
}

/* -- accesses through a view ---------------------------------------------------------- */

static int kmmio_view_fault;
static sigjmp_buf view_jump;
static volatile sig_atomic_t in_view_access;

static void on_sigbus(int sig, siginfo_t *info, void *context)
{
    struct sigaction dfl;

    (void)info;
    (void)context;
    if (in_view_access) {
        in_view_access = 0;
        siglongjmp(view_jump, 1);
    }
    /* Not an access through a view: the default action, as if there were no handler
     * (the instruction faults again and the tracer dies of it). */
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigaction(sig, &dfl, NULL);
}

/* Install the SIGBUS handler; SA_NODEFER, as the handler leaves by siglongjmp. */
static int kmmio_view_init(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sigbus;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    return sigaction(SIGBUS, &sa, NULL);
}

/* Run one access; on a SIGBUS inside it, set kmmio_view_fault and return 0. */
#define GUARDED(access)                \
    do {                               \
        if (sigsetjmp(view_jump, 0)) { \
            kmmio_view_fault = 1;      \
            return 0;                  \
        }                              \
        in_view_access = 1;            \
        access;                        \
        in_view_access = 0;            \
    } while (0)

/* One load of 1, 2, 4 or 8 bytes at addr, zero-extended. */
static uint64_t kmmio_load(uintptr_t addr, int width)
{
    uint64_t value = 0;
    uint32_t narrow = 0;

    switch (width) {
    case 1:
        GUARDED(__asm__ volatile("movzbl (%1), %0" : "=r"(narrow) : "r"(addr) : "memory"));
        return narrow;
    case 2:
        GUARDED(__asm__ volatile("movzwl (%1), %0" : "=r"(narrow) : "r"(addr) : "memory"));
        return narrow;
    case 4:
        GUARDED(__asm__ volatile("movl (%1), %0" : "=r"(narrow) : "r"(addr) : "memory"));
        return narrow;
    case 8:
        GUARDED(__asm__ volatile("movq (%1), %0" : "=r"(value) : "r"(addr) : "memory"));
        return value;
    }
    return 0;
}

/* One store of the low 1, 2, 4 or 8 bytes of value at addr. */
static int kmmio_store(uintptr_t addr, int width, uint64_t value)
{
    switch (width) {
    case 1:
        GUARDED(__asm__ volatile("movb %b1, (%0)" : : "r"(addr), "q"(value) : "memory"));
        break;
    case 2:
        GUARDED(__asm__ volatile("movw %w1, (%0)" : : "r"(addr), "r"(value) : "memory"));
        break;
    case 4:
        GUARDED(__asm__ volatile("movl %k1, (%0)" : : "r"(addr), "r"(value) : "memory"));
        break;
    case 8:
        GUARDED(__asm__ volatile("movq %1, (%0)" : : "r"(addr), "r"(value) : "memory"));
        break;
    }
    return 0;
}

/* One 16-byte (movdqu) or 32-byte (vmovdqu) copy from src to dst: a load from the view
 * into a buffer, or a store from a buffer into the view, each side one access. */
static int kmmio_copy_wide(uintptr_t dst, uintptr_t src, int width)
{
    if (width == 16)
        GUARDED(__asm__ volatile("movdqu (%0), %%xmm0\n\tmovdqu %%xmm0, (%1)"
                                 : : "r"(src), "r"(dst) : "xmm0", "memory"));
    else if (width == 32)
        GUARDED(__asm__ volatile("vmovdqu (%0), %%ymm0\n\tvmovdqu %%ymm0, (%1)\n\tvzeroupper"
                                 : : "r"(src), "r"(dst) : "xmm0", "memory"));
    return 0;
}

/* -- the CPU's registers as XSAVE lays them out, and 64-byte accesses (AVX-512) ----------
 *
 * CPUID tells where each XSAVE component lives in the standard layout the kernel's
 * NT_X86_XSTATE regset uses (leaf 0xD, sub-leaf = component: EBX its offset, EAX its
 * size), and whether the CPU has AVX-512; XCR0 whether the kernel enabled its state.  A
 * 64-byte access through a view is one vmovdqu64 of zmm0, made only when both say yes.
 */

/* CPUID leaf, sub-leaf: EAX, EBX, ECX, EDX into the four uint32_t at out. */
static void kmmio_cpuid(uint32_t leaf, uint32_t subleaf, uintptr_t out)
{
    uint32_t *r = (uint32_t *)out;

    __asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(subleaf));
}

/* XCR0, the state components the kernel enabled; 0 without OSXSAVE (XGETBV would #UD). */
static uint64_t kmmio_xcr0(void)
{
    uint32_t r[4], lo, hi;

    kmmio_cpuid(1, 0, (uintptr_t)r);
    if (!(r[2] & (1u << 27)))
        return 0;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (uint64_t)hi << 32 | lo;
}

/* Whether zmm registers may be used here: CPUID.7.0:EBX.AVX512F, and XCR0 enabling the
 * SSE, AVX, opmask, ZMM_Hi256 and Hi16_ZMM state. */
static int zmm_usable(void)
{
    static int usable = -1;
    uint32_t r[4];

    if (usable < 0) {
        kmmio_cpuid(0, 0, (uintptr_t)r);
        usable = 0;
        if (r[0] >= 7) {
            kmmio_cpuid(7, 0, (uintptr_t)r);
            usable = (r[1] & (1u << 16)) && (kmmio_xcr0() & 0xe6) == 0xe6;
        }
    }
    return usable;
}

/* One 64-byte copy (vmovdqu64 zmm0) from src to dst, as kmmio_copy_wide: each side one
 * access.  -1, having touched nothing, if the CPU or the kernel does not offer AVX-512. */
static int kmmio_copy_zmm(uintptr_t dst, uintptr_t src)
{
    if (!zmm_usable())
        return -1;
    GUARDED(__asm__ volatile("vmovdqu64 (%0), %%zmm0\n\tvmovdqu64 %%zmm0, (%1)\n\tvzeroupper"
                             : : "r"(src), "r"(dst) : "xmm0", "memory"));
    return 0;
}
