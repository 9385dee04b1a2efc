/* context.c: a traced access leaves the rest of the program's context as it was.
 * Usage: context FILE N.  N rounds, each with fresh random patterns: the general registers,
 * rflags (carry, parity, adjust, zero, sign, overflow, direction, nested task), MXCSR (rounding, flush
 * and denormal modes, sticky flags), the x87 control word and st(0), and the vector
 * registers (zmm0-31 and k0-k7 where the CPU has AVX-512 F and BW, else xmm0-15) are
 * loaded; then a 4-byte store to the mapped FILE and a load back (movl %ebx, (%rax);
 * movl (%rax), %ecx); then everything is saved again.  Everything must come back as it
 * was, but ecx (the value loaded: ebx's low half).  Prints "N rounds, everything kept"
 * or the first difference (exit 1).  The work is in assembly functions of their own
 * (run512, run128), following the calling convention, so that the compiler keeps
 * nothing of its own in the registers they load. */
#include <cpuid.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* The context, in the layout the assembly below uses. */
struct ctx {
    uint64_t g[16]; /* 0: rax rbx rcx rdx rsi rdi rbp r8 ... r15 (15 unused) */
    uint64_t flags; /* 128 */
    uint64_t k[8];  /* 136 */
    uint32_t mxcsr; /* 200 */
    uint16_t fcw;   /* 204 */
    uint16_t pad;
    double st0;       /* 208 */
    uint8_t pad2[40]; /* to 256 */
    uint8_t v[32][64] __attribute__((aligned(64))); /* 256 */
};
_Static_assert(__builtin_offsetof(struct ctx, v) == 256, "layout");
_Static_assert(__builtin_offsetof(struct ctx, st0) == 208, "layout");

void run512(const struct ctx *in, struct ctx *out, volatile uint32_t *mem);
void run128(const struct ctx *in, struct ctx *out, volatile uint32_t *mem);

/* rdi: in, rsi: out, rdx: the traced word.  LOADV/SAVEV/LOADK/SAVEK name the vector
 * part of each variant. */
#define RUN(name, LOADV, SAVEV, LOADK, SAVEK)                                                  \
    ".globl " name "\n" name ":\n"                                                             \
    "push %rbx\n push %rbp\n push %r12\n push %r13\n push %r14\n push %r15\n"                  \
    "sub $16, %rsp\n stmxcsr (%rsp)\n fnstcw 4(%rsp)\n" /* the caller's, back at the end */   \
    "push %rsi\n push %rdx\n mov %rdi, %rax\n" LOADV LOADK                                     \
    "ldmxcsr 200(%rax)\n fldcw 204(%rax)\n fldl 208(%rax)\n"                                   \
    "pushq 128(%rax)\n popfq\n"                                                                \
    "mov 8(%rax), %rbx\n mov 16(%rax), %rcx\n mov 24(%rax), %rdx\n mov 32(%rax), %rsi\n"       \
    "mov 40(%rax), %rdi\n mov 48(%rax), %rbp\n mov 56(%rax), %r8\n mov 64(%rax), %r9\n"        \
    "mov 72(%rax), %r10\n mov 80(%rax), %r11\n mov 88(%rax), %r12\n mov 96(%rax), %r13\n"      \
    "mov 104(%rax), %r14\n mov 112(%rax), %r15\n"                                              \
    "mov (%rsp), %rax\n"                                                                       \
    "movl %ebx, (%rax)\n movl (%rax), %ecx\n" /* the traced accesses */                        \
    "pushfq\n push %rax\n mov 24(%rsp), %rax\n"                                                \
    "mov %rbx, 8(%rax)\n mov %rcx, 16(%rax)\n mov %rdx, 24(%rax)\n mov %rsi, 32(%rax)\n"       \
    "mov %rdi, 40(%rax)\n mov %rbp, 48(%rax)\n mov %r8, 56(%rax)\n mov %r9, 64(%rax)\n"        \
    "mov %r10, 72(%rax)\n mov %r11, 80(%rax)\n mov %r12, 88(%rax)\n mov %r13, 96(%rax)\n"      \
    "mov %r14, 104(%rax)\n mov %r15, 112(%rax)\n"                                              \
    "pop %rbx\n mov %rbx, 0(%rax)\n pop %rbx\n mov %rbx, 128(%rax)\n pushq $0x202\n popfq\n"   \
    SAVEV SAVEK "stmxcsr 200(%rax)\n fnstcw 204(%rax)\n fstpl 208(%rax)\n"                     \
    "add $16, %rsp\n ldmxcsr (%rsp)\n fldcw 4(%rsp)\n add $16, %rsp\n"                          \
    "pop %r15\n pop %r14\n pop %r13\n pop %r12\n pop %rbp\n pop %rbx\n ret\n"

#define ALL32 "0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31"
#define ALL16 "0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15"
__asm__(".text\n" RUN("run512",
                      ".irp i," ALL32 "\n vmovdqu64 256+64*\\i(%rax), %zmm\\i\n .endr\n",
                      ".irp i," ALL32 "\n vmovdqu64 %zmm\\i, 256+64*\\i(%rax)\n .endr\n",
                      ".irp i,0,1,2,3,4,5,6,7\n kmovq 136+8*\\i(%rax), %k\\i\n .endr\n",
                      ".irp i,0,1,2,3,4,5,6,7\n kmovq %k\\i, 136+8*\\i(%rax)\n .endr\n vzeroupper\n")
            RUN("run128",
                ".irp i," ALL16 "\n movdqu 256+64*\\i(%rax), %xmm\\i\n .endr\n",
                ".irp i," ALL16 "\n movdqu %xmm\\i, 256+64*\\i(%rax)\n .endr\n", "", ""));

static uint64_t seed = 0x9e3779b97f4a7c15u;
static uint64_t next(void) {
    seed ^= seed << 13;
    seed ^= seed >> 7;
    seed ^= seed << 17;
    return seed;
}

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || ftruncate(fd, 4096)) return 2;
    volatile uint32_t *mem = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (mem == MAP_FAILED) return 2;
    unsigned a, b, c, d;
    int wide = __get_cpuid_count(7, 0, &a, &b, &c, &d) && (b & (1u << 16)) && (b & (1u << 30));
    long rounds = atol(argv[2]);
    static struct ctx in, out;
    for (long r = 0; r < rounds; r++) {
        uint8_t *bytes = (uint8_t *)&in;
        for (size_t i = 0; i < sizeof in; i += 8) {
            uint64_t x = next();
            memcpy(bytes + i, &x, 8);
        }
        in.g[0] = (uint64_t)(uintptr_t)mem;
        in.flags = 0x202 | (next() & 0xcd5) | (next() & 0x4400); /* CF PF AF ZF SF OF, DF, NT */
        in.mxcsr = 0x1f80 | (uint32_t)(next() & 0x803f) | (uint32_t)(next() & 0x6000) | (uint32_t)(next() & 0x40);
        in.fcw = (uint16_t)(0x037f & ~0x0f00) | (uint16_t)(next() & 0x0f00);
        in.st0 = (double)(int64_t)next() / 3.0;
        memset(&out, 0, sizeof out);
        (wide ? run512 : run128)(&in, &out, mem);
        struct ctx want = in;
        want.g[2] = (uint32_t)in.g[1]; /* the load */
        if (!wide) {
            memset(want.k, 0, sizeof want.k);
            for (int i = 0; i < 32; i++) memset(want.v[i] + (i < 16 ? 16 : 0), 0, i < 16 ? 48 : 64);
        }
        out.flags &= 0xcd5 | 0x4400 | 0x202;
        out.pad = want.pad;
        memcpy(out.pad2, want.pad2, sizeof out.pad2);
        want.g[15] = out.g[15] = 0;
        const char *bad = NULL;
        if (memcmp(out.g, want.g, sizeof out.g)) bad = "general registers";
        else if (out.flags != want.flags) bad = "rflags";
        else if (memcmp(out.k, want.k, sizeof out.k)) bad = "opmask registers";
        else if (out.mxcsr != want.mxcsr) bad = "MXCSR";
        else if (out.fcw != want.fcw) bad = "x87 control word";
        else if (memcmp(&out.st0, &want.st0, 8)) bad = "st(0)";
        else if (memcmp(out.v, want.v, sizeof out.v)) bad = "vector registers";
        if (bad) {
            printf("round %ld: %s changed\n", r, bad);
            return 1;
        }
        if (mem[0] != (uint32_t)in.g[1]) {
            printf("round %ld: the store did not reach the file\n", r);
            return 1;
        }
    }
    printf("%ld rounds, everything kept (%s)\n", rounds, wide ? "zmm0-31, k0-k7" : "xmm0-15");
    return 0;
}
