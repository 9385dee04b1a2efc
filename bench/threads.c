/* threads.c: T threads hammering one traced page, for bench/run.py's scaling figure.
 * Usage: threads FILE T N.  FILE gets one page, mapped shared; T threads, started
 * together, each make N 4-byte accesses (alternately a write and a read back) to its own
 * word of that page.  Prints the time of the parallel part in microseconds (from the first
 * thread's start to the last one's end, each thread taking its own times: parallel.h)
 * and the total accesses made. */
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "parallel.h"

static volatile uint32_t *page;

static uint64_t loop(long k, long n) {
    volatile uint32_t *w = page + k * 16;
    uint32_t sum = 0;
    for (long i = 0; i < n; i += 2) {
        *w = (uint32_t)i;
        sum += *w;
    }
    return sum;
}

int main(int argc, char **argv) {
    if (argc < 4) return 2;
    int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || ftruncate(fd, 4096)) return 1;
    page = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    return run_parallel(atoi(argv[2]), atol(argv[3]), loop);
}
