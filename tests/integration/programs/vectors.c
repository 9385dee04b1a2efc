/* vectors.c: SSE and AVX moves between xmm/ymm registers and a traced mapping.
 * Usage: vectors FILE.  For each load form, ymm0 is first filled with a pattern, then
 * loaded from the mapping, then printed whole (all 256 bits: what the form keeps, zeroes
 * or sets must match the CPU's).  For each store form, ymm0 holds a pattern and the bytes
 * it leaves in the file are printed (read with pread, not through the mapping).
 * Run untraced and traced: the output must be identical. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static uint8_t *m;
static int fd;
static uint8_t pattern[32] __attribute__((aligned(32)));

static void hex(const char *what, const uint8_t *p, int n) {
    printf("%s", what);
    for (int i = n - 1; i >= 0; i--) printf("%02x", p[i]);
    printf("\n");
}

#define LOAD(insn, reg, off)                                                                  \
    do {                                                                                      \
        uint8_t out[32];                                                                      \
        asm volatile("vmovdqu (%1), %%ymm0\n\t" insn " (%0), %%" reg "\n\tvmovdqu %%ymm0, (%2)\n\tvzeroupper" \
                     :: "r"(m + (off)), "r"(pattern), "r"(out) : "xmm0", "memory");         \
        hex("load  " insn " " reg " -> ", out, 32);                                          \
    } while (0)

#define STORE(insn, reg, off, n)                                                              \
    do {                                                                                      \
        uint8_t back[32];                                                                     \
        memset(m + (off), 0x5a, 32);                                                          \
        asm volatile("vmovdqu (%1), %%ymm0\n\t" insn " %%" reg ", (%0)\n\tvzeroupper"         \
                     :: "r"(m + (off)), "r"(pattern) : "xmm0", "memory");                    \
        if (pread(fd, back, 32, (off)) != 32) return 1;                                      \
        hex("store " insn " " reg " -> ", back, 32);                                          \
    } while (0)

int main(int argc, char **argv) {
    fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || ftruncate(fd, 4096)) return 1;
    m = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED) return 1;
    for (int i = 0; i < 32; i++) pattern[i] = (uint8_t)(0xe0 + i);
    for (int i = 0; i < 256; i++) m[0x100 + i] = (uint8_t)(i * 13 + 1);
    LOAD("movdqu", "xmm0", 0x101);
    LOAD("movdqa", "xmm0", 0x110);
    LOAD("movups", "xmm0", 0x103);
    LOAD("movaps", "xmm0", 0x120);
    LOAD("movupd", "xmm0", 0x105);
    LOAD("movapd", "xmm0", 0x130);
    LOAD("movq", "xmm0", 0x107);
    LOAD("movd", "xmm0", 0x109);
    LOAD("movss", "xmm0", 0x10b);
    LOAD("movsd", "xmm0", 0x10d);
    LOAD("vmovdqu", "xmm0", 0x111);
    LOAD("vmovdqu", "ymm0", 0x113);
    LOAD("vmovdqa", "ymm0", 0x140);
    LOAD("vmovups", "ymm0", 0x115);
    LOAD("vmovaps", "xmm0", 0x150);
    LOAD("vmovq", "xmm0", 0x117);
    LOAD("vmovd", "xmm0", 0x119);
    LOAD("vmovss", "xmm0", 0x11b);
    LOAD("vmovsd", "xmm0", 0x11d);
    STORE("movdqu", "xmm0", 0x201, 16);
    STORE("movaps", "xmm0", 0x220, 16);
    STORE("movq", "xmm0", 0x243, 8);
    STORE("movd", "xmm0", 0x265, 4);
    STORE("movss", "xmm0", 0x287, 4);
    STORE("movsd", "xmm0", 0x2a9, 8);
    STORE("vmovdqu", "ymm0", 0x2c1, 32);
    STORE("vmovdqa", "ymm0", 0x300, 32);
    STORE("vmovups", "xmm0", 0x323, 16);
    STORE("vmovq", "xmm0", 0x345, 8);
    return 0;
}
