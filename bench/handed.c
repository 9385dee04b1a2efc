/* handed.c: a traced buffer handed to the kernel, for bench/run.py.
 * Usage: handed FILE N shared|private.  Maps FILE (one page) MAP_SHARED or MAP_PRIVATE,
 * then times N pwrite(2)s of 64 bytes from it to a temporary file and prints the loop's
 * time in microseconds.  Traced, each pwrite stops: a shared mapping's buffer goes through
 * its alias; a private mapping has none, and its page is lent to the syscall (opened,
 * then armed again). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || ftruncate(fd, 4096) || argc < 4) return 1;
    long n = atol(argv[2]);
    int shared = !strcmp(argv[3], "shared");
    char *m = mmap(0, 4096, PROT_READ | PROT_WRITE, shared ? MAP_SHARED : MAP_PRIVATE, fd, 0);
    int out = open(".", O_TMPFILE | O_RDWR, 0600);
    if (m == MAP_FAILED || out < 0) return 1;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long i = 0; i < n; i++)
        if (pwrite(out, m + 64, 64, 0) != 64) return 2;
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("%.1f\n", (b.tv_sec - a.tv_sec) * 1e6 + (b.tv_nsec - a.tv_nsec) / 1e3);
    return 0;
}
