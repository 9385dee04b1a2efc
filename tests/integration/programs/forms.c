/* forms.c: every instruction form kmmio must trace, each run against a traced file mapping.
 *
 * Usage: forms FILE.  Maps 2 pages of FILE MAP_SHARED, then performs each access with
 * inline assembly and prints its own account of what it did, one line per access:
 *   "R|W WIDTH OFFSET VALUE"  (offset into the file, value as the little-endian bytes moved)
 *   "U OFFSET"               (an access kmmio must report as UNKNOWN)
 * each form's lines preceded by "form NAME" (the instruction form, so that a test can tell
 * per form whether the tracer emulated or single-stepped it), followed by "result ..."
 * lines with what the program computed, which must not change under the tracer.  The
 * tests compare the log with these lines.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static uint8_t *m;
static unsigned long results;

static void val(const uint8_t *p, int n) {
    int i = n - 1;
    while (i > 0 && p[i] == 0) i--;
    printf("0x");
    printf("%x", p[i]);
    for (i--; i >= 0; i--) printf("%02x", p[i]);
}
static void acc(char kind, int width, long off, const void *v) {
    printf("%c %d 0x%lx ", kind, width, off);
    val(v, width);
    printf("\n");
}
static void acc64(char kind, int width, long off, uint64_t v) { acc(kind, width, off, &v); }
static void result(const char *what, uint64_t v) { printf("result %s 0x%llx\n", what, (unsigned long long)v); results++; }
static void form(const char *name) { printf("form %s\n", name); }

int main(int argc, char **argv) {
    int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || ftruncate(fd, 8192)) return 1;
    uint8_t init[8192];
    for (int i = 0; i < 8192; i++) init[i] = (uint8_t)(i * 7 + 3);
    if (pwrite(fd, init, 8192, 0) != 8192) return 1;
    m = mmap(0, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED) return 1;
    uint64_t r;

    /* register stores, every width */
    form("store-reg-1"); asm volatile("movb %b1, (%0)" :: "r"(m + 0x10), "r"(0xa1) : "memory"); acc64('W', 1, 0x10, 0xa1);
    form("store-reg-2"); asm volatile("movw %w1, (%0)" :: "r"(m + 0x12), "r"(0xb2b1) : "memory"); acc64('W', 2, 0x12, 0xb2b1);
    form("store-reg-4"); asm volatile("movl %k1, (%0)" :: "r"(m + 0x14), "r"(0xc4c3c2c1) : "memory"); acc64('W', 4, 0x14, 0xc4c3c2c1);
    form("store-reg-8"); asm volatile("movq %1, (%0)" :: "r"(m + 0x18), "r"(0xd8d7d6d5d4d3d2d1ULL) : "memory"); acc64('W', 8, 0x18, 0xd8d7d6d5d4d3d2d1ULL);
    /* immediate stores (imm32 sign-extended for 8 bytes; SIB addressing) */
    form("store-imm-1"); asm volatile("movb $0x5a, 0x20(%0,%1,1)" :: "r"(m), "r"(0L) : "memory"); acc64('W', 1, 0x20, 0x5a);
    form("store-imm-2"); asm volatile("movw $0x1234, 0x22(%0)" :: "r"(m) : "memory"); acc64('W', 2, 0x22, 0x1234);
    form("store-imm-4"); asm volatile("movl $0x89abcdef, 0x24(%0,%1,4)" :: "r"(m), "r"(0L) : "memory"); acc64('W', 4, 0x24, 0x89abcdef);
    form("store-imm-8"); asm volatile("movq $-2, 0x28(%0)" :: "r"(m) : "memory"); acc64('W', 8, 0x28, 0xfffffffffffffffeULL);
    /* loads, every width */
    form("load-1"); asm volatile("movb (%1), %b0" : "=r"(r) : "r"(m + 0x10) : "memory"); acc64('R', 1, 0x10, 0xa1); result("ld1", r & 0xff);
    form("load-2"); asm volatile("movw (%1), %w0" : "=r"(r) : "r"(m + 0x12) : "memory"); acc64('R', 2, 0x12, 0xb2b1); result("ld2", r & 0xffff);
    form("load-4"); asm volatile("movl (%1), %k0" : "=r"(r) : "r"(m + 0x14) : "memory"); acc64('R', 4, 0x14, 0xc4c3c2c1); result("ld4", r);
    form("load-8"); asm volatile("movq (%1), %0" : "=r"(r) : "r"(m + 0x18) : "memory"); acc64('R', 8, 0x18, 0xd8d7d6d5d4d3d2d1ULL); result("ld8", r);
    /* zero and sign extension: the log has the bytes moved, not the register */
    form("c-store"); m[0x30] = 0x80; acc64('W', 1, 0x30, 0x80);
    form("movzx"); asm volatile("movzbl (%1), %k0" : "=r"(r) : "r"(m + 0x30) : "memory"); acc64('R', 1, 0x30, 0x80); result("movzx", r);
    form("movsx-byte"); asm volatile("movsbl (%1), %k0" : "=r"(r) : "r"(m + 0x30) : "memory"); acc64('R', 1, 0x30, 0x80); result("movsx", r);
    form("movsx-word"); asm volatile("movswq (%1), %0" : "=r"(r) : "r"(m + 0x12) : "memory"); acc64('R', 2, 0x12, 0xb2b1); result("movsxw", r);
    form("movsxd"); asm volatile("movslq (%1), %0" : "=r"(r) : "r"(m + 0x14) : "memory"); acc64('R', 4, 0x14, 0xc4c3c2c1); result("movsxd", r);
    /* SSE 16 bytes and AVX 32 bytes */
    uint8_t v16[16], v32[32], o32[32];
    for (int i = 0; i < 16; i++) v16[i] = (uint8_t)(0x40 + i);
    for (int i = 0; i < 32; i++) v32[i] = (uint8_t)(0x90 + i);
    form("movdqu-store"); asm volatile("movdqu (%1), %%xmm0\n\tmovdqu %%xmm0, (%0)" :: "r"(m + 0x40), "r"(v16) : "xmm0", "memory"); acc('W', 16, 0x40, v16);
    form("movdqu-load"); asm volatile("movdqu (%0), %%xmm1\n\tmovdqu %%xmm1, (%1)" :: "r"(m + 0x40), "r"(o32) : "xmm1", "memory"); acc('R', 16, 0x40, v16); result("sse", o32[15]);
    form("vmovdqu-store"); asm volatile("vmovdqu (%1), %%ymm0\n\tvmovdqu %%ymm0, (%0)\n\tvzeroupper" :: "r"(m + 0x60), "r"(v32) : "xmm0", "memory"); acc('W', 32, 0x60, v32);
    form("vmovdqu-load"); asm volatile("vmovdqu (%0), %%ymm1\n\tvmovdqu %%ymm1, (%1)\n\tvzeroupper" :: "r"(m + 0x60), "r"(o32) : "xmm1", "memory"); acc('R', 32, 0x60, v32); result("avx", o32[31]);
    /* read-modify-write: old value read, new value written */
    uint32_t old = *(uint32_t *)(init + 0x100);
    form("or"); asm volatile("orl $0x100, (%0)" :: "r"(m + 0x100) : "memory", "cc"); acc64('R', 4, 0x100, old); acc64('W', 4, 0x100, old | 0x100); old |= 0x100;
    form("add"); asm volatile("addl %1, (%0)" :: "r"(m + 0x100), "r"(5) : "memory", "cc"); acc64('R', 4, 0x100, old); acc64('W', 4, 0x100, old + 5); old += 5;
    form("and"); asm volatile("andb $0x0f, (%0)" :: "r"(m + 0x100) : "memory", "cc"); acc64('R', 1, 0x100, old & 0xff); acc64('W', 1, 0x100, old & 0x0f); old = (old & ~0xffu) | (old & 0x0f);
    form("inc"); asm volatile("incl (%0)" :: "r"(m + 0x100) : "memory", "cc"); acc64('R', 4, 0x100, old); acc64('W', 4, 0x100, old + 1); old += 1;
    form("not"); asm volatile("notl (%0)" :: "r"(m + 0x100) : "memory"); acc64('R', 4, 0x100, old); acc64('W', 4, 0x100, ~old); old = ~old;
    r = 0x1111;
    form("xchg"); asm volatile("xchgl %k0, (%1)" : "+r"(r) : "r"(m + 0x100) : "memory"); acc64('R', 4, 0x100, old); acc64('W', 4, 0x100, 0x1111); result("xchg", r); old = 0x1111;
    r = 0x22;
    form("lock-xadd"); asm volatile("lock xaddl %k0, (%1)" : "+r"(r) : "r"(m + 0x100) : "memory", "cc"); acc64('R', 4, 0x100, old); acc64('W', 4, 0x100, old + 0x22); result("xadd", r); old += 0x22;
    uint64_t expect = old, desired = 0x7777;
    form("lock-cmpxchg-equal"); asm volatile("lock cmpxchgl %k2, (%1)" : "+a"(expect) : "r"(m + 0x100), "r"(desired) : "memory", "cc"); acc64('R', 4, 0x100, old); acc64('W', 4, 0x100, 0x7777); result("cmpxchg-ok", expect); old = 0x7777;
    expect = 1;
    form("lock-cmpxchg-differ"); asm volatile("lock cmpxchgl %k2, (%1)" : "+a"(expect) : "r"(m + 0x100), "r"(desired) : "memory", "cc"); acc64('R', 4, 0x100, old); acc64('W', 4, 0x100, old); result("cmpxchg-fail", expect);
    /* bts with a register bit offset reaches past the operand: bit 40 of 0x108 is in 0x10c */
    uint32_t o10c = *(uint32_t *)(init + 0x10c);
    r = 40;
    form("bts"); asm volatile("btsl %k1, (%2)\n\tsetc %b0" : "=&r"(r) : "r"(r), "r"(m + 0x108) : "memory", "cc");
    acc64('R', 4, 0x10c, o10c); acc64('W', 4, 0x10c, o10c | 0x100); result("bts", r & 1);
    /* test, cmp, push from memory, pop to memory */
    uint32_t t140 = *(uint32_t *)(init + 0x140);
    form("test"); asm volatile("testl %1, (%2)\n\tsetnz %b0" : "=r"(r) : "r"(0xffffffff), "r"(m + 0x140) : "memory", "cc"); acc64('R', 4, 0x140, t140); result("test", r & 1);
    form("cmp"); asm volatile("cmpw $7, (%1)\n\tseta %b0" : "=r"(r) : "r"(m + 0x140) : "memory", "cc"); acc64('R', 2, 0x140, t140 & 0xffff); result("cmp", r & 1);
    uint64_t q148 = *(uint64_t *)(init + 0x148);
    form("push"); asm volatile("pushq (%1)\n\tpopq %0" : "=r"(r) : "r"(m + 0x148) : "memory"); acc64('R', 8, 0x148, q148); result("push", r);
    form("pop"); asm volatile("pushq %1\n\tpopq (%0)" :: "r"(m + 0x150), "r"(0x0123456789abcdefULL) : "memory"); acc64('W', 8, 0x150, 0x0123456789abcdefULL);
    /* string instructions: one record per element */
    uint8_t *s = m + 0x200, *d = m + 0x300;
    form("movsb"); asm volatile("movsb" : "+S"(s), "+D"(d) :: "memory"); acc64('R', 1, 0x200, init[0x200]); acc64('W', 1, 0x300, init[0x200]);
    s = m + 0x210; d = m + 0x310; r = 3;
    form("rep-movsl"); asm volatile("rep movsl" : "+S"(s), "+D"(d), "+c"(r) :: "memory");
    for (int i = 0; i < 3; i++) { uint32_t v = *(uint32_t *)(init + 0x210 + 4 * i); acc64('R', 4, 0x210 + 4 * i, v); acc64('W', 4, 0x310 + 4 * i, v); }
    d = m + 0x320;
    form("stosq"); asm volatile("stosq" : "+D"(d) : "a"(0xfeedfacecafebeefULL) : "memory"); acc64('W', 8, 0x320, 0xfeedfacecafebeefULL);
    d = m + 0x330; r = 4;
    form("rep-stosb"); asm volatile("rep stosb" : "+D"(d), "+c"(r) : "a"(0x3c) : "memory"); for (int i = 0; i < 4; i++) acc64('W', 1, 0x330 + i, 0x3c);
    s = m + 0x220;
    form("lodsw"); asm volatile("lodsw" : "+S"(s), "=a"(r) :: "memory"); acc64('R', 2, 0x220, *(uint16_t *)(init + 0x220)); result("lods", r & 0xffff);
    s = m + 0x330; d = m + 0x331;
    form("cmpsb"); asm volatile("cmpsb\n\tsetz %b0" : "=r"(r), "+S"(s), "+D"(d) :: "memory", "cc"); acc64('R', 1, 0x330, 0x3c); acc64('R', 1, 0x331, 0x3c); result("cmps", r & 1);
    d = m + 0x330; r = 8;
    form("repe-scasb"); asm volatile("repe scasb" : "+D"(d), "+c"(r) : "a"(0x3c) : "memory", "cc");
    for (int i = 0; i < 5; i++) acc64('R', 1, 0x330 + i, i < 4 ? 0x3c : init[0x334]);
    result("scas", r);
    /* backwards (direction flag set) */
    s = m + 0x21c; d = m + 0x34c; r = 2;
    form("std-rep-movsl"); asm volatile("std\n\trep movsl\n\tcld" : "+S"(s), "+D"(d), "+c"(r) :: "memory");
    for (int i = 0; i < 2; i++) { uint32_t v = *(uint32_t *)(init + 0x21c - 4 * i); acc64('R', 4, 0x21c - 4 * i, v); acc64('W', 4, 0x34c - 4 * i, v); }
    /* an access that straddles the two pages: one record of its full width */
    uint64_t q = *(uint64_t *)(init + 4092);
    form("straddle-load"); asm volatile("movq (%1), %0" : "=r"(r) : "r"(m + 4092) : "memory"); acc64('R', 8, 4092, q); result("straddle", r);
    form("straddle-store"); asm volatile("movq %1, (%0)" :: "r"(m + 4094), "r"(0x1122334455667788ULL) : "memory"); acc64('W', 8, 4094, 0x1122334455667788ULL);
    /* a gather the decoder cannot place: UNKNOWN, and it still runs right */
    uint32_t idx[4] = {0, 1, 2, 3}, out[4];
    form("gather"); asm volatile("vmovdqu (%1), %%xmm1\n\tvpcmpeqd %%xmm2, %%xmm2, %%xmm2\n\t"
                 "vpgatherdd %%xmm2, (%2,%%xmm1,4), %%xmm0\n\tvmovdqu %%xmm0, (%0)"
                 :: "r"(out), "r"(idx), "r"(m + 0x400) : "xmm0", "xmm1", "xmm2", "memory");
    printf("U 0x400\n");
    result("gather", out[0] ^ out[3]);
    /* FNV-1a of the whole file, read with pread (not through the mapping): memory must match */
    uint8_t all[8192];
    if (pread(fd, all, 8192, 0) != 8192) return 1;
    uint64_t h = 1469598103934665603ULL;
    for (int i = 0; i < 8192; i++) h = (h ^ all[i]) * 1099511628211ULL;
    result("memory", h);
    printf("results %lu\n", results);
    munmap(m, 8192);
    return 0;
}
