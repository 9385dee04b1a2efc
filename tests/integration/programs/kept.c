/* kept.c: the same instructions at the same addresses, again and again, on a traced mapping:
 * the agent keeps each relocated instruction (its "template") after the tracer planned it
 * once, and runs it from then on without asking.  Usage: kept FILE.
 * 200 rounds of: or to memory, lock xadd, an SSE store and load, xchg with memory; then
 * glibc's memset and memcpy (vector and masked moves on this machine) and a byte loop.
 * Prints one line with a sum of everything it read back. */
#include <fcntl.h>
#include <stdio.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <immintrin.h>
int main(int argc, char **argv) {
    int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0600);
    ftruncate(fd, 8192);
    char *m = mmap(0, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    uint64_t acc = 0;
    for (int i = 0; i < 200; i++) {
        uint32_t *p = (uint32_t *)(m + (i % 16) * 64);
        asm volatile("orl %1, (%0)" :: "r"(p), "r"(i) : "memory", "cc");
        uint32_t r = i;
        asm volatile("lock xaddl %0, (%1)" : "+r"(r) : "r"(p + 1) : "memory", "cc");
        acc += r;
        __m128i v = _mm_set1_epi32(i);
        _mm_storeu_si128((__m128i *)(p + 4), v);
        __m128i w = _mm_loadu_si128((__m128i *)(p + 4));
        acc += _mm_extract_epi32(w, 2);
        uint64_t q = i * 77;
        asm volatile("xchgq %0, (%1)" : "+r"(q) : "r"(p + 8) : "memory");
        acc += q;
    }
    memset(m + 4096, 0x5a, 1000);
    memcpy(m + 2048, m + 4096, 700);
    for (int i = 0; i < 1000; i++) acc += m[2048 + i];
    printf("acc %lu\n", acc);
    return 0;
}
