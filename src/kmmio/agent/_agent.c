/* kmmio's in-process agent: LD_PRELOAD-ed into a traced program (see kmmio/agent/__init__.py).
 *
 * Python decides, this only executes.  The tracer (kmmio.agent.tracer) tells the agent
 * which ranges to arm and, for each new faulting instruction, what to do with it:
 *  - QUICK: a plain load or store (kmmio.x86.quick.QuickOp's words): performed here, in
 *    the SIGSEGV handler of the faulting thread, through an alias of the same pages (a
 *    second mapping made with mremap(old, 0)), its registers patched in the ucontext;
 *  - RELOC: anything else: per fault the tracer gets the registers and answers a copy of
 *    the instruction re-encoded against the alias (and registers to set), which runs in a
 *    per-thread trampoline ending with hlt; the hlt's fault hands the registers back.
 * Records go into a shared ring (a memfd the tracer drains, a lane per thread id modulo
 * LANES: ring_layout.h); a full lane makes the faulting thread wait.  Nothing is
 * per-access IPC on the QUICK path, nor a write shared with other threads.
 *
 * The kernel's kmmio.c names: kmmio_handler() is on_segv(), post_kmmio_handler() is
 * reloc_post(), arm_kmmio_fault_page() is arm(), disarm_kmmio_fault_page() disarm().
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>
#include <asm/prctl.h>
#include <cpuid.h>
#include <sys/prctl.h>
#include <linux/audit.h>

#define EXPORT __attribute__((visibility("default")))
#define TLS __thread __attribute__((tls_model("initial-exec")))
#define PAGE 4096ul

/* -- the ring: its layout is kmmio/backend/ring_layout.h, shared with the tracer's end ---- */
#include "ring_layout.h"

/* -- messages (the M_*, D_*, A_*, P_* of kmmio/agent/tracer.py) ------------------------- */
enum { M_HELLO = 1, M_MAPS = 2, M_DECODE = 3, M_PRE = 4, M_POST = 5, M_ARMED = 6, M_SYSCALL = 7, M_SYSDONE = 8 };
enum { D_NONE = 0, D_QUICK = 1, D_RELOC = 2, D_TEMPLATE = 3 };
enum { A_ARM = 1, A_DISARM = 2 };
enum { P_RUN = 1, P_GENUINE = 2, P_REGS = 3 };
#define NWORDS 27 /* struct user_regs_struct */
#define U_RIP 16
#define U_FS_BASE 21
#define U_GS_BASE 22

/* user_regs_struct word -> ucontext gregs index (-1: not in the ucontext). */
static const int U2G[NWORDS] = {
    REG_R15, REG_R14, REG_R13, REG_R12, REG_RBP, REG_RBX, REG_R11, REG_R10, REG_R9, REG_R8,
    REG_RAX, REG_RCX, REG_RDX, REG_RSI, REG_RDI, -1,      REG_RIP, -1,      REG_EFL, REG_RSP,
    -1,      -1,      -1,      -1,      -1,      -1,      -1,
};

struct desc {
    _Atomic uint64_t pc; /* 0 free, 1 forgotten */
    uint64_t kind, write, width;
    int64_t base_i, base_shift;
    uint64_t base_mask;
    int64_t index_i, index_shift;
    uint64_t index_mask, scale, disp;
    int64_t seg_i, reg_i, reg_shift;
    uint64_t reg_mask, has_imm, imm, sign_bit, next_ip;
    /* D_TEMPLATE: a relocated copy kept for this pc (kmmio.agent.plan.Template): the
     * code (its memory operand [scratch + index*scale]), the scratch register, and the
     * accesses it makes, relative to the effective address. */
    int64_t scratch_i;
    uint64_t code_len;
    uint8_t code[32];
    uint64_t ntmpl;
    struct {
        uint64_t kind, off, width;
    } tmpl[4];
    /* A masked operand (AVX-512 {k}): tmpl[0] is the whole operand; the bytes touched are
     * the elements whose bit of opmask k<mask_k> is set (compress: the first popcount). */
    int64_t mask_k;
    uint64_t mask_elem, mask_count, mask_compress;
};
#define DESC_CAP 4096
static struct desc descs[DESC_CAP];

struct range {
    _Atomic uint64_t live;
    uint64_t lo, hi, alias, map_id, phys; /* the armed pages; phys: of wlo */
    uint64_t wlo, whi;                    /* the bytes logged (-m PATTERN@OFFSET+LENGTH) */
    uint8_t *prot; /* per 4 KiB page: what the program asked for */
    int private_kind; /* no alias: accessed through /proc/self/mem */
};
#define RANGE_CAP 512
static struct range ranges[RANGE_CAP];
static _Atomic int range_top;

static int active;            /* connected to a tracer */
static int sock = -1;          /* this process's own socket to the tracer */
static int root_fd = -1, ring_fd = -1, wake_fd = -1;
static struct ring_hdr *ring;
static int self_mem = -1;      /* /proc/self/mem, for private mappings */
/* Locks of the agent's own (a futex through the gadget: libc's would make its futex calls
 * from libc, which the agent's seccomp filters may trap). */
typedef _Atomic int lock_t;
static lock_t sock_lock, table_lock;
static struct sigaction prog_segv;  /* the program's own SIGSEGV action */
static struct sigaction prog_sys;   /* and SIGSYS (the agent's seccomp filters trap with it) */
static int sys_handler;             /* the agent's SIGSYS handler is in place */
static int (*real_sigaction)(int, const struct sigaction *, struct sigaction *);
static int (*real_sigprocmask)(int, const sigset_t *, sigset_t *);
static int (*real_pthread_sigmask)(int, const sigset_t *, sigset_t *);
static pid_t fork_parent;
static pid_t my_pid; /* the process connected to the tracer */
/* A page that reads as zero in a forked child (MADV_WIPEONFORK): *connected says this
 * process is the one connected, without a getpid per fault (a fork child is not, until
 * its handler runs). */
static volatile int *connected;
static long sys6(long nr, long a, long b, long c, long d, long e, long f);
static int is_connected(void) { return connected ? *connected : sys6(SYS_getpid, 0, 0, 0, 0, 0, 0) == my_pid; }

static TLS pid_t my_tid;
static TLS uint64_t call_pc; /* see CALLER */
/* SIGSEGV and SIGSYS are never really blocked while the agent works (one forced on a
 * thread blocking it kills the process: a fault, a trapped syscall): what a thread asks
 * of them is kept here and shown back to it (see mask_change()). */
#define KEPT_OPEN ((1ull << (SIGSEGV - 1)) | (1ull << (SIGSYS - 1)))
static TLS uint64_t v_blocked;
static int mask_change(int how, const uint64_t *set, uint64_t cur, uint64_t *next, uint64_t *shown);
static long set_mask(int how, const uint64_t *set, uint64_t *old);

/* A handler's mask without the signals kept open. */
static void strip_segv(sigset_t *set)
{
    sigdelset(set, SIGSEGV);
    sigdelset(set, SIGSYS);
}
/* Mapping calls in progress that may arm pages: a fault outside any armed range then waits
 * (returns to run the instruction again) rather than being taken for the program's. */
static _Atomic int changing;
static TLS uint8_t *tramp;      /* this thread's trampoline page */
static TLS uint64_t tramp_hlt;  /* the address of its hlt while one runs, else 0 */
/* A kept relocation running in the trampoline (no tracer round trip): */
static TLS struct desc t_desc;
static TLS int t_templated;
static TLS uint64_t t_ea, t_scratch, t_pc;
static TLS struct range *t_range;
static TLS uint8_t t_vals[4][64];
static TLS uint64_t t_enabled; /* a masked operand's bytes touched (bit i: byte i) */
static uint32_t opmask_offset; /* where k0-k7 lie in an XSAVE area (CPUID 0xD, 5) */

static pid_t tid(void)
{
    if (!my_tid)
        my_tid = (pid_t)syscall(SYS_gettid);
    return my_tid;
}

static TLS int my_lane = -1; /* this thread's lane of the ring, once it has one */

/* Every syscall the agent makes on the program's behalf, or naming traced addresses,
 * goes through one "syscall" instruction at a fixed address (the same in every image
 * after exec), which the agent's seccomp filters let through: a page of its own holding
 *   mov rax,rdi; mov rdi,rsi; mov rsi,rdx; mov rdx,rcx; mov r10,r8; mov r8,r9;
 *   mov r9,[rsp+8]; syscall; ret
 * (kmmio/agent/tracer.py's GADGET_RETS are the addresses after its syscall and int 0x80). */
#define GADGET_AT 0x6b6d00000000ul
static const uint8_t GADGET_CODE[] = {0x48, 0x89, 0xf8, 0x48, 0x89, 0xf7, 0x48, 0x89, 0xd6, 0x48, 0x89, 0xca,
                                      0x4d, 0x89, 0xc2, 0x4d, 0x89, 0xc8, 0x4c, 0x8b, 0x4c, 0x24, 0x08, 0x0f,
                                      0x05, 0xc3};
/* And at GADGET_AT + 0x40 the same for the i386 ABI (int 0x80), its arguments in
 * ebx, ecx, edx, esi, edi, ebp; the address after its int 0x80 is GADGET_AT + 0x5e. */
static const uint8_t INT80_CODE[] = {0x53, 0x55, 0x48, 0x89, 0xf8, 0x48, 0x89, 0xf3, 0x49, 0x89, 0xca,
                                     0x48, 0x89, 0xd1, 0x4c, 0x89, 0xd2, 0x4c, 0x89, 0xc6, 0x4c, 0x89,
                                     0xcf, 0x48, 0x8b, 0x6c, 0x24, 0x18, 0xcd, 0x80, 0x5d, 0x5b, 0xc3};
typedef long (*gadget_fn)(long, long, long, long, long, long, long);
static gadget_fn gadget, int80;

/* A raw syscall: the result, or -errno. */
static long sys6(long nr, long a, long b, long c, long d, long e, long f)
{
    if (gadget)
        return gadget(nr, a, b, c, d, e, f);
    long r = syscall(nr, a, b, c, d, e, f); /* only before the gadget exists */
    return r == -1 ? -errno : r;
}

static void make_gadget(void)
{
    long m = syscall(SYS_mmap, GADGET_AT, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
                     -1, 0);
    if (m != (long)GADGET_AT) {
        if (m > 0 || m < -4096)
            syscall(SYS_munmap, m, PAGE);
        return;
    }
    memcpy((void *)m, GADGET_CODE, sizeof GADGET_CODE);
    memcpy((void *)(m + 0x40), INT80_CODE, sizeof INT80_CODE);
    syscall(SYS_mprotect, m, PAGE, PROT_READ | PROT_EXEC);
    gadget = (gadget_fn)m;
    int80 = (gadget_fn)(m + 0x40);
}

/* The kernel's struct sigaction; the agent sets its own SIGSEGV and SIGSYS actions with
 * rt_sigaction through the gadget (its base filter traps the program's), returning
 * through its own restorer. */
struct kact {
    void *handler;
    unsigned long flags;
    void *restorer;
    uint64_t mask;
};
void kmmio_restore_rt(void) __attribute__((visibility("hidden")));
__asm__(".text\n.p2align 4\nkmmio_restore_rt:\n\tmov $15, %rax\n\tsyscall\n\thlt\n");

static long ksigaction(int sig, void *handler, unsigned long flags, struct kact *old)
{
    struct kact act = {handler, flags | 0x04000000 /* SA_RESTORER */, (void *)kmmio_restore_rt, 0};
    return sys6(SYS_rt_sigaction, sig, handler == (void *)-2 ? 0 : (long)&act, (long)old, 8, 0, 0);
}

/* The program's action as the kernel holds it, as a struct sigaction. */
static void read_action(int sig, struct sigaction *out)
{
    struct kact k;
    memset(out, 0, sizeof *out);
    if (ksigaction(sig, (void *)-2, 0, &k) < 0)
        return;
    out->sa_handler = (void (*)(int))k.handler;
    out->sa_flags = (int)(k.flags & ~0x04000000ul);
    memcpy(&out->sa_mask, &k.mask, 8);
}

/* While a thread holds one of the agent's locks, the program's asynchronous signals wait:
 * a handler of the program's run in the middle could ask the tracer itself (the lock is
 * taken: it would wait for ever) or leave by siglongjmp (the lock would stay taken). */
#define SYNC_SIGNALS                                                                                   \
    ((1ull << (SIGSEGV - 1)) | (1ull << (SIGBUS - 1)) | (1ull << (SIGILL - 1)) | (1ull << (SIGFPE - 1)) | \
     (1ull << (SIGTRAP - 1)) | (1ull << (SIGSYS - 1)))
static TLS int t_locks;        /* locks this thread holds */
static TLS uint64_t t_unlocked; /* its signal mask before the first */

static void hold_signals(void)
{
    if (t_locks++ == 0) {
        uint64_t async = ~SYNC_SIGNALS;
        sys6(SYS_rt_sigprocmask, SIG_BLOCK, (long)&async, (long)&t_unlocked, 8, 0, 0);
    }
}

static void release_signals(void)
{
    if (t_locks > 0 && --t_locks == 0)
        sys6(SYS_rt_sigprocmask, SIG_SETMASK, (long)&t_unlocked, 0, 8, 0, 0);
}

/* 0 free, 1 taken, 2 taken with waiters (Drepper's "Futexes are tricky", mutex 2). */
static void lock(lock_t *l)
{
    hold_signals();
    int c = 0;
    if (atomic_compare_exchange_strong(l, &c, 1))
        return;
    if (c != 2)
        c = atomic_exchange(l, 2);
    while (c != 0) {
        sys6(SYS_futex, (long)l, FUTEX_WAIT_PRIVATE, 2, 0, 0, 0);
        c = atomic_exchange(l, 2);
    }
}

static int trylock(lock_t *l)
{
    hold_signals();
    int c = 0;
    if (atomic_compare_exchange_strong(l, &c, 1))
        return 0;
    release_signals();
    return -1;
}

static void unlock(lock_t *l)
{
    if (atomic_fetch_sub(l, 1) != 1) {
        atomic_store(l, 0);
        sys6(SYS_futex, (long)l, FUTEX_WAKE_PRIVATE, 1, 0, 0, 0);
    }
    release_signals();
}

static long raw_mmap(void *a, size_t n, int prot, int flags, int fd, off_t off)
{
    return sys6(SYS_mmap, (long)a, (long)n, prot, flags, fd, off);
}
static long raw_mprotect(uint64_t a, size_t n, int prot) { return sys6(SYS_mprotect, (long)a, (long)n, prot, 0, 0, 0); }

/* Records are stamped in the tracer's clock: this process's CLOCK_MONOTONIC, less its
 * time namespace's offset, plus the tracer's (ring_layout.h). */
static int64_t clock_delta_us;

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u + (uint64_t)clock_delta_us;
}

/* This process's time namespace's CLOCK_MONOTONIC offset (0 in the first namespace, or
 * without /proc/self/timens_offsets). */
/* A small file of /proc/self into buf (size bytes, NUL-terminated); its length, or <= 0. */
static long read_small(const char *path, char *buf, size_t size)
{
    long fd = sys6(SYS_openat, AT_FDCWD, (long)path, O_RDONLY | O_CLOEXEC, 0, 0, 0);
    if (fd < 0)
        return fd;
    long n = sys6(SYS_read, fd, (long)buf, (long)size - 1, 0, 0, 0);
    sys6(SYS_close, fd, 0, 0, 0, 0, 0);
    buf[n > 0 ? n : 0] = 0;
    return n;
}

static int64_t timens_offset_us(void)
{
    char buf[256];
    if (read_small("/proc/self/timens_offsets", buf, sizeof buf) <= 0)
        return 0;
    for (char *line = buf; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        char *end;
        if (strncmp(line, "monotonic", 9) != 0)
            continue;
        long long sec = strtoll(line + 9, &end, 10);
        long long nsec = strtoll(end, &end, 10);
        return (int64_t)(sec * 1000000 + nsec / 1000);
    }
    return 0;
}

static void die(const char *why)
{
    /* The agent cannot go on: say so on stderr and end the program, as the kernel would
     * on an access it cannot handle (its pages would otherwise stay armed). */
    static const char pre[] = "kmmio agent: ";
    sys6(SYS_write, 2, (long)pre, sizeof pre - 1, 0, 0, 0);
    sys6(SYS_write, 2, (long)why, (long)strlen(why), 0, 0, 0);
    sys6(SYS_write, 2, (long)"\n", 1, 0, 0, 0);
    sys6(SYS_exit_group, 3, 0, 0, 0, 0, 0);
}

/* -- talking to the tracer -------------------------------------------------------------- */

/* One request, one reply, on this process's socket (under sock_lock). */
static long ask(const void *req, size_t len, void *reply, size_t cap)
{
    ssize_t n;
    do
        n = sys6(SYS_sendto, sock, (long)req, (long)len, MSG_NOSIGNAL, 0, 0);
    while (n == -EINTR);
    if (n < 0)
        return -1;
    do
        n = sys6(SYS_recvfrom, sock, (long)reply, (long)cap, 0, 0, 0);
    while (n == -EINTR);
    return n <= 0 ? -1 : n;
}

static void tell(const void *msg, size_t len)
{
    ssize_t n;
    do
        n = sys6(SYS_sendto, sock, (long)msg, (long)len, MSG_NOSIGNAL, 0, 0);
    while (n == -EINTR);
}

/* The rest, in the order it builds on: one translation unit (its state is static). */
#include "_agent_ranges.c"
#include "_agent_syscalls.c"
#include "_agent_access.c"
#include "_agent_calls.c"
#include "_agent_start.c"
