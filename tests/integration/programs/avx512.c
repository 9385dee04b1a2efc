/* avx512.c: masked vector loads and stores (AVX-512 {k} moves of 1-, 2-, 4- and 8-byte
 * elements, vpcompressd, AVX2 vpmaskmovd, SSE2 maskmovdqu) and plain xmm/ymm/zmm moves
 * (VEX, EVEX, zmm16-31, legacy SSE) on a traced MAP_SHARED file mapping of two pages.
 * Usage: avx512 FILE.
 *
 * The file's bytes are set with pwrite (byte i = i * 7 + 3), never through the mapping, so
 * the accesses below are the only ones the mapping sees, in this order (the test lists them
 * with their exact records).  Every vector loaded is printed whole (all 512 bits of its
 * register: what a load keeps, merges or zeroes must match the CPU's), and what the stores
 * left is read back with pread and printed.  Run untraced and traced: the output must be
 * identical. */
#include <fcntl.h>
#include <immintrin.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#define SIZE 8192
#define BARRIER() __asm__ volatile("" ::: "memory")

static uint8_t *m;
static int fd;
static uint8_t pattern[64] __attribute__((aligned(64)));
static uint8_t other[64] __attribute__((aligned(64)));
static volatile __mmask8 no_element = 0; /* not a constant: the store is kept */

static void hex(const char *what, const void *p, int n) {
    const uint8_t *b = p;
    printf("%s ", what);
    for (int i = n - 1; i >= 0; i--) printf("%02x", b[i]);
    printf("\n");
}

static void back(const char *what, long off, int n) {
    uint8_t buf[64];
    if (pread(fd, buf, n, off) != n) _exit(1);
    hex(what, buf, n);
}

/* Fill register REG (zmm) with `other`, run INSN (its memory operand %0), print REG whole. */
#define REGLOAD(what, insn, reg, off)                                                       \
    do {                                                                                    \
        uint8_t out[64] __attribute__((aligned(64)));                                       \
        __asm__ volatile("vmovdqu64 (%1), %%z" reg "\n\t" insn "\n\tvmovdqu64 %%z" reg ", (%2)" \
                         : : "r"(m + (off)), "r"(other), "r"(out) : "x" reg, "memory");     \
        hex(what, out, 64);                                                                 \
    } while (0)

int main(int argc, char **argv) {
    uint8_t init[SIZE];
    uint8_t out[64] __attribute__((aligned(64)));
    if (argc < 2) return 2;
    fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0600);
    for (int i = 0; i < SIZE; i++) init[i] = (uint8_t)(i * 7 + 3);
    if (fd < 0 || pwrite(fd, init, SIZE, 0) != SIZE) return 1;
    m = mmap(0, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED) return 1;
    for (int i = 0; i < 64; i++) pattern[i] = (uint8_t)(0xa0 + i);
    for (int i = 0; i < 64; i++) other[i] = (uint8_t)(0x40 + i);
    __m512i v = _mm512_load_si512(pattern);
    __m512i w = _mm512_load_si512(other);

    /* masked: single-stepped, one record per run of enabled bytes */
    _mm512_mask_storeu_epi8(m + 0x100, 0xffff010000007c0eULL, v); /* runs 3, 5, 1, 16 */
    BARRIER();
    _mm512_store_si512(out, _mm512_maskz_loadu_epi32(0x8005, m + 0x140));
    hex("maskz_loadu_epi32", out, 64);
    BARRIER();
    _mm512_store_si512(out, _mm512_mask_loadu_epi8(w, 0x5555, m + 0x183)); /* alternate */
    hex("mask_loadu_epi8", out, 64);
    BARRIER();
    __m256i sign = _mm256_setr_epi32(-1, 0, 0, -1, -1, -1, 0x7fffffff, (int)0x80000000);
    _mm256_maskstore_epi32((int *)(m + 0x200), sign, _mm512_castsi512_si256(v));
    BARRIER();
    _mm256_store_si256((__m256i *)out, _mm256_maskload_epi32((int *)(m + 0x240), sign));
    hex("maskload_epi32", out, 32);
    BARRIER();
    _mm_mask_storeu_epi16(m + 0x262, 0x16, _mm512_castsi512_si128(v));
    BARRIER();
    _mm512_mask_storeu_epi64(m + 0x280, no_element, v); /* no element: no access, no fault */
    BARRIER();
    _mm512_mask_compressstoreu_epi32(m + 0x2c0, 0x0f0f, v);
    BARRIER();
    _mm512_mask_storeu_epi8(m + 0xfe0, 0x1ffff000000ULL, v); /* 17 bytes over the page end */
    BARRIER();
    _mm_maskmoveu_si128(_mm512_castsi512_si128(v), _mm_setr_epi8(-1, -1, -1, 0, 0, 0, 0, -128, 0, 0,
                                                                 0, 0, 0, 0, 0, 0), (char *)(m + 0x2f0));
    BARRIER();

    /* plain: emulated in auto mode */
    _mm512_store_si512(out, _mm512_loadu_si512(m + 0x300));
    hex("loadu_si512", out, 64);
    BARRIER();
    _mm512_storeu_si512(m + 0x341, v);
    BARRIER();
    _mm512_store_si512(m + 0x380, v);
    BARRIER();
    REGLOAD("vmovdqu8 zmm20", "vmovdqu8 (%0), %%zmm20", "mm20", 0x3c1);
    REGLOAD("vmovdqu ymm1 (vex)", "vmovdqu (%0), %%ymm1", "mm1", 0x400);
    REGLOAD("movdqu xmm2 (sse)", "movdqu (%0), %%xmm2", "mm2", 0x420);
    REGLOAD("vmovdqu32 xmm21", "vmovdqu32 (%0), %%xmm21", "mm21", 0x430);
    REGLOAD("vmovdqa xmm3 (vex)", "vmovdqa (%0), %%xmm3", "mm3", 0x4c0);
    REGLOAD("vmovdqa64 zmm30", "vmovdqa64 (%0), %%zmm30", "mm30", 0x480);
    REGLOAD("vmovups zmm25 store", "vmovups %%zmm25, (%0)", "mm25", 0x501);
    __asm__ volatile("vzeroupper" ::: "memory");

    back("stored 0x100", 0x100, 64);
    back("stored 0x200", 0x200, 32);
    back("stored 0x260", 0x260, 16);
    back("stored 0x280", 0x280, 64);
    back("stored 0x2c0", 0x2c0, 64);
    back("stored 0xfe0", 0xfe0, 64);
    back("stored 0x2f0", 0x2f0, 16);
    back("stored 0x340", 0x340, 64);
    back("stored 0x381", 0x381, 63);
    back("stored 0x380", 0x380, 64);
    back("stored 0x501", 0x501, 64);
    return 0;
}
