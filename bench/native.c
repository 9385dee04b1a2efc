/* native.c: issue 14's yardstick for bench/run.py, the floor of an in-process
 * (SIGSEGV-based) tracer: the workload of bench/workload.c tracing its own accesses.
 *
 * The workload is workload.c's: N 4-byte accesses to a mapped file, alternately a write
 * and a read of the same word (r[(i >> 1) & 15]), the loop timed with CLOCK_MONOTONIC and
 * "MICROSECONDS SUM" printed as workload.c prints it.  The mapping is PROT_NONE from the
 * start, so every access faults.
 *
 * What it does, per access, in its SIGSEGV handler (SA_SIGINFO, running on the faulting
 * thread's stack):
 * - checks that the fault is a real one (si_code > 0, not a kill()) inside the traced
 *   mapping; anything else puts back the default action and returns, so the program dies
 *   of it as it would untraced;
 * - takes the fault address from the siginfo and RIP from the ucontext, and looks RIP up
 *   in a 64-entry per-PC cache (one compare on a hit).  On a miss (once per instruction)
 *   a tiny decoder reads the instruction at RIP: optional REX, opcode 89 (store) or 8b
 *   (load), a ModRM memory operand with any SIB/displacement form; width 4, or 8 with
 *   REX.W; its length and register.  Any other instruction is reported and the program
 *   exits 3: nothing is guessed.  Per access there is no decoding beyond the cache lookup,
 *   like kmmio's per-PC descriptors;
 * - performs the access through a second MAP_SHARED, PROT_READ|PROT_WRITE mapping of the
 *   same file (the alias): a store writes the source register's low 4 (8) bytes there, a
 *   load reads them and sets the destination register in the ucontext (a 32-bit load
 *   clears the upper half, as the CPU does);
 * - writes a record of 6 64-bit words (kind, width, address, value, pc, tid) into a ring
 *   buffer in memory (1 << 16 records, pre-faulted; the tid is read once per thread, not
 *   per access), counts it, advances RIP by the instruction's length and goes back to the
 *   program as kmmio's agent does, without rt_sigreturn (_resume.h).
 *
 * After the loop (outside the timed part) it checks itself and exits 1 if anything is
 * wrong: the records counted equal the accesses made, every record in the ring pairs a
 * write of i with a read of the same address, width and pc-pair that got i back, the
 * alias holds the last values written, and the loop's sum equals the sum of the values
 * written, i.e. the values read back through the handler are those written.
 *
 * What it does not do, and an in-process agent must: timestamps, any formatting of
 * records, any I/O or IPC per access (no consumer drains the ring: it wraps, and nothing
 * waits when it is full), more than one thread (the ring index is a plain variable, no
 * atomics, no per-thread state beyond the cached tid), other instruction forms, chaining
 * the program's own handlers, watching mmap-family calls, fork or exec.  So it is a
 * floor: an agent doing all that costs this much at least.
 *
 * Usage: native FILE N.  Not part of kmmio: a yardstick.  Build with cc -O2 -I
 * src/kmmio/agent; the loop's pointer is volatile so that each access is one plain mov
 * load or store (the decoder refuses anything else, so a compiler that folded a load into
 * an add would be caught). */
#define _GNU_SOURCE
#include "_resume.h" /* src/kmmio/agent/: the agent's way out of its handler */
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#define PAGE 4096
#define RING (1 << 16) /* records; a power of two */

/* x86 register number (ModRM reg field | REX.R << 3) -> index in the ucontext's gregs */
static const int greg[16] = {REG_RAX, REG_RCX, REG_RDX, REG_RBX, REG_RSP, REG_RBP, REG_RSI, REG_RDI,
                             REG_R8,  REG_R9,  REG_R10, REG_R11, REG_R12, REG_R13, REG_R14, REG_R15};

/* A decoded instruction, kept per PC (the workload's code does not change). */
struct insn {
    uintptr_t pc;
    uint8_t store, reg, width, len;
};
#define CACHE 64
static struct insn cache[CACHE];

struct record {
    uint64_t kind, width, addr, value, pc, tid; /* kind: 'R' or 'W' */
};
static struct record *ring;
static uint64_t records;

static uint8_t *traced, *alias;
static __thread uint64_t tid;

static void say(const char *s) {
    ssize_t unused = write(2, s, strlen(s));
    (void)unused;
}

/* Decode the instruction at pc: [REX] 89|8b ModRM [SIB] [disp8|disp32], memory operand. */
static int decode(uintptr_t pc, struct insn *d) {
    const uint8_t *c = (const uint8_t *)pc;
    int i = 0, rex = 0;
    if ((c[i] & 0xf0) == 0x40) rex = c[i++];
    int op = c[i++];
    if (op != 0x89 && op != 0x8b) return 0;
    int modrm = c[i++], mod = modrm >> 6, rm = modrm & 7;
    if (mod == 3) return 0; /* register to register: cannot fault */
    if (rm == 4) {
        int sib = c[i++];
        if (mod == 0 && (sib & 7) == 5) i += 4;
    }
    if (mod == 1)
        i += 1;
    else if (mod == 2 || (mod == 0 && rm == 5))
        i += 4;
    *d = (struct insn){pc, op == 0x89, ((modrm >> 3) & 7) | (rex & 4 ? 8 : 0), rex & 8 ? 8 : 4, i};
    return 1;
}

static void on_segv(int sig, siginfo_t *si, void *ctx) {
    uint8_t *addr = si->si_addr;
    if (si->si_code <= 0 || addr < traced || addr >= traced + PAGE) {
        signal(sig, SIG_DFL); /* not ours: the program dies of it, as untraced */
        return;
    }
    greg_t *g = ((ucontext_t *)ctx)->uc_mcontext.gregs;
    uintptr_t pc = (uintptr_t)g[REG_RIP];
    struct insn *d = &cache[(pc >> 1) % CACHE];
    if (d->pc != pc && !decode(pc, d)) {
        say("native: an instruction other than a 4/8-byte mov touched the traced page\n");
        _exit(3);
    }
    uint8_t *p = alias + (addr - traced);
    uint64_t v;
    greg_t *r = &g[greg[d->reg]];
    if (d->store) {
        v = d->width == 8 ? (uint64_t)*r : (uint32_t)*r;
        if (d->width == 8)
            *(volatile uint64_t *)p = v;
        else
            *(volatile uint32_t *)p = (uint32_t)v;
    } else {
        v = d->width == 8 ? *(volatile uint64_t *)p : *(volatile uint32_t *)p;
        *r = (greg_t)v; /* a 32-bit load clears the upper half */
    }
    if (!tid) tid = (uint64_t)syscall(SYS_gettid);
    ring[records++ & (RING - 1)] =
        (struct record){d->store ? 'W' : 'R', d->width, (uintptr_t)addr, v, pc, tid};
    g[REG_RIP] += d->len;
    resume(ctx);
}

/* After the loop: the records, the alias and the sum must be what the workload did. */
static int check(long n, uint32_t sum) {
    uint64_t expect = (uint64_t)(n + 1) / 2 * 2, first = records > RING ? records - RING : 0;
    uint32_t want = 0;
    for (long i = 0; i < n; i += 2) want += (uint32_t)i;
    if (records != expect) {
        fprintf(stderr, "native: %llu records for %llu accesses\n", (unsigned long long)records,
                (unsigned long long)expect);
        return 0;
    }
    if (sum != want) {
        fprintf(stderr, "native: the loop read back sum %u, the values written sum to %u\n", sum, want);
        return 0;
    }
    for (uint64_t k = first; k < records; k += 2) {
        const struct record *w = &ring[k & (RING - 1)], *rd = &ring[(k + 1) & (RING - 1)];
        uint64_t i = k; /* the k-th access is the write of i = k (i counts accesses, += 2) */
        uint8_t *at = traced + ((i >> 1) & 15) * 4;
        if (w->kind != 'W' || rd->kind != 'R' || w->width != 4 || rd->width != 4 ||
            w->addr != (uintptr_t)at || rd->addr != w->addr || w->value != (uint32_t)i ||
            rd->value != w->value || w->tid != tid || rd->tid != tid || w->pc == rd->pc) {
            fprintf(stderr, "native: record %llu is not the write and read of %llu\n", (unsigned long long)k,
                    (unsigned long long)i);
            return 0;
        }
    }
    for (long i = n - 1 - (n - 1) % 2; i >= 0 && i > n - 1 - 32; i -= 2)
        if (((volatile uint32_t *)alias)[(i >> 1) & 15] != (uint32_t)i) {
            fprintf(stderr, "native: the alias does not hold the last value written, %ld\n", i);
            return 0;
        }
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || ftruncate(fd, PAGE)) return 1;
    long n = atol(argv[2]);
    traced = mmap(0, PAGE, PROT_NONE, MAP_SHARED, fd, 0);
    alias = mmap(0, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ring = mmap(0, RING * sizeof *ring, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (traced == MAP_FAILED || alias == MAP_FAILED || ring == MAP_FAILED) return 1;
    struct sigaction sa = {.sa_sigaction = on_segv, .sa_flags = SA_SIGINFO | SA_NODEFER}; /* _resume.h */
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGSEGV, &sa, 0)) return 1;

    volatile uint32_t *r = (volatile uint32_t *)traced;
    struct timespec a, b;
    uint32_t sum = 0;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long i = 0; i < n; i += 2) { r[(i >> 1) & 15] = (uint32_t)i; sum += r[(i >> 1) & 15]; }
    clock_gettime(CLOCK_MONOTONIC, &b);
    if (!check(n, sum)) return 1;
    printf("%.1f %u\n", (b.tv_sec - a.tv_sec) * 1e6 + (b.tv_nsec - a.tv_nsec) / 1e3, sum);
    return 0;
}
