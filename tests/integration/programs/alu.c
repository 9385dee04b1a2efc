/* alu.c: read-modify-write, compare and test instructions on a traced mapping, at every
 * width, on edge values, printing each result and the arithmetic flags it left.
 * Usage: alu FILE.  Run untraced and traced: the output must be identical, which checks
 * the emulated results and flags bit for bit against the CPU's. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#define FLAGS 0x8d5ULL
typedef unsigned long long u64;
static volatile uint8_t *m;

/* op (mem), reg: memory is the destination (cmp/test only read it) */
#define MEM_DST(op, sfx, mod, T)                                                          \
    static void op##_m_##sfx(u64 a, u64 b) {                                              \
        u64 fl;                                                                           \
        *(volatile T *)m = (T)a;                                                          \
        asm volatile(#op #sfx " %" #mod "1, (%2)\n\tpushfq\n\tpopq %0"                  \
                     : "=&r"(fl) : "q"((T)b), "r"(m) : "memory", "cc");                   \
        printf(#op #sfx " m,r %llx %llx -> %llx %llx\n", a, b, (u64) * (volatile T *)m, fl & FLAGS); \
    }
/* op reg, (mem): the register is the destination */
#define REG_DST(op, sfx, mod, T)                                                          \
    static void op##_r_##sfx(u64 a, u64 b) {                                              \
        u64 fl;                                                                           \
        T r = (T)a;                                                                       \
        *(volatile T *)m = (T)b;                                                          \
        asm volatile(#op #sfx " (%2), %" #mod "1\n\tpushfq\n\tpopq %0"                  \
                     : "=&r"(fl), "+q"(r) : "r"(m) : "memory", "cc");                     \
        printf(#op #sfx " r,m %llx %llx -> %llx %llx\n", a, b, (u64)r, fl & FLAGS);       \
    }
/* unary on memory, every flag set to a known state first (not keeps them all, inc/dec keep CF) */
#define UNARY(op, sfx, T, carry)                                                          \
    static void op##_u_##sfx##carry(u64 a) {                                              \
        u64 fl;                                                                           \
        *(volatile T *)m = (T)a;                                                          \
        asm volatile("xorl %%eax, %%eax\n\tcmpl %%eax, %%eax\n\t" #carry "\n\t" #op #sfx       \
                     " (%1)\n\tpushfq\n\tpopq %0"                                      \
                     : "=&r"(fl) : "r"(m) : "rax", "memory", "cc");                       \
        printf(#op #sfx " " #carry " %llx -> %llx %llx\n", a, (u64) * (volatile T *)m, fl & FLAGS); \
    }

#define WIDTHS(X, op) X(op, b, b, uint8_t) X(op, w, w, uint16_t) X(op, l, k, uint32_t) X(op, q, q, uint64_t)
#define BINOPS(X) WIDTHS(X, add) WIDTHS(X, sub) WIDTHS(X, and) WIDTHS(X, or) WIDTHS(X, xor) WIDTHS(X, cmp)
BINOPS(MEM_DST)
WIDTHS(MEM_DST, test)
WIDTHS(REG_DST, add) WIDTHS(REG_DST, sub) WIDTHS(REG_DST, and) WIDTHS(REG_DST, or) WIDTHS(REG_DST, xor)
WIDTHS(REG_DST, cmp)
#define UN(op, sfx, mod, T) UNARY(op, sfx, T, clc) UNARY(op, sfx, T, stc)
WIDTHS(UN, inc) WIDTHS(UN, dec) WIDTHS(UN, neg) WIDTHS(UN, not)

static const u64 V[] = {0, 1, 2, 0x7f, 0x80, 0xff, 0x7fff, 0x8000, 0xffff, 0x7fffffff, 0x80000000,
                        0xffffffff, 0x7fffffffffffffffULL, 0x8000000000000000ULL, 0xffffffffffffffffULL,
                        0x0f, 0x10, 0x1234567890abcdefULL};
#define N (sizeof V / sizeof V[0])

int main(int argc, char **argv) {
    int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || ftruncate(fd, 4096)) return 1;
    m = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED) return 1;
    for (unsigned i = 0; i < N; i++) {
        for (unsigned j = 0; j < N; j++) {
#define CALLB(op, sfx, mod, T) op##_m_##sfx(V[i], V[j]);
#define CALLR(op, sfx, mod, T) op##_r_##sfx(V[i], V[j]);
            BINOPS(CALLB) WIDTHS(CALLB, test)
            WIDTHS(CALLR, add) WIDTHS(CALLR, sub) WIDTHS(CALLR, and) WIDTHS(CALLR, or) WIDTHS(CALLR, xor)
            WIDTHS(CALLR, cmp)
        }
#define CALLU(op, sfx, mod, T) op##_u_##sfx##clc(V[i]); op##_u_##sfx##stc(V[i]);
        WIDTHS(CALLU, inc) WIDTHS(CALLU, dec) WIDTHS(CALLU, neg) WIDTHS(CALLU, not)
    }
    return 0;
}
