/* workload.c: N 4-byte accesses (alternating write and read) to a mapped file.
 * Usage: workload FILE N [armed].  Prints the elapsed time of the access loop in microseconds
 * and a checksum.  With "armed" the file is mapped PROT_NONE from the start, for the
 * bench's C yardstick tracer, which has no mprotect injection of its own.
 * With a third argument "cold", the loop first spends the same time on work that never
 * touches the mapping, to measure what tracing costs code that does not touch it.
 * The third number printed is its peak resident memory in KiB (getrusage). */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
int main(int argc, char **argv) {
    int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || ftruncate(fd, 4096)) return 1;
    long n = atol(argv[2]);
    int armed = argc > 3 && argv[3][0] == 'a';
    volatile uint32_t *r = mmap(0, 4096, armed ? PROT_NONE : PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    struct timespec a, b;
    uint32_t sum = 0;
    clock_gettime(CLOCK_MONOTONIC, &a);
    if (argc > 3 && argv[3][0] == 'c') {
        /* cold: one access to the mapping, then a hot loop that never touches it */
        r[0] = 1;
        volatile uint64_t x = 0;
        for (long i = 0; i < n; i++) x = x * 6364136223846793005ULL + (uint64_t)i;
        sum = (uint32_t)x;
    } else {
        for (long i = 0; i < n; i += 2) { r[(i >> 1) & 15] = (uint32_t)i; sum += r[(i >> 1) & 15]; }
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru); /* its peak memory: the agent's included when traced by it */
    printf("%.1f %u %ld\n", (b.tv_sec - a.tv_sec) * 1e6 + (b.tv_nsec - a.tv_nsec) / 1e3, sum, ru.ru_maxrss);
    return 0;
}
