/* window.c: accesses at both ends of a two-page shared mapping, for a trace of part of it.
 * Usage: window FILE.  FILE gets 2 pages, mapped MAP_SHARED; writes 4 bytes at 0x10, 0x1010,
 * 0x1020 and 0x10f8 (8 bytes) and 0x1100, then reads each back, printing the sum. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || ftruncate(fd, 8192)) return 1;
    volatile uint8_t *m = mmap(0, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED) return 1;
    *(volatile uint32_t *)(m + 0x10) = 0x11;
    *(volatile uint32_t *)(m + 0x1010) = 0x22;
    *(volatile uint32_t *)(m + 0x1020) = 0x33;
    *(volatile uint64_t *)(m + 0x10f8) = 0x44;
    *(volatile uint32_t *)(m + 0x1100) = 0x55;
    uint64_t sum = *(volatile uint32_t *)(m + 0x10) + *(volatile uint32_t *)(m + 0x1010) +
                   *(volatile uint32_t *)(m + 0x1020) + *(volatile uint64_t *)(m + 0x10f8) +
                   *(volatile uint32_t *)(m + 0x1100);
    printf("sum %llu\n", (unsigned long long)sum);
    return 0;
}
