/* madvise.c: the program's own madvise over traced pages, while another thread touches
 * them.  Usage: madvise FILE ROUNDS.
 * FILE (4 pages) is mapped shared.  A worker thread writes and reads back pages 0 and 3
 * ROUNDS times.  Meanwhile the main thread, ROUNDS / 10 times: MADV_DONTNEED over pages
 * 1-2, writes and reads back page 1 (the file keeps the data), MADV_REMOVE on page 2
 * (the hole reads as zero), MADV_WILLNEED and MADV_COLD over all.  Then a second mapping
 * of FILE is written and marked MADV_DONTFORK, page 0 of the first written, and the
 * program forks: the child has no second mapping, and reads page 0 of the first.  Prints "accesses N" (the traced accesses the program
 * made, the child's included), "child ok|BAD", "ok" or "BAD". */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define PAGE 4096
static volatile uint8_t *p;
static long rounds;
static volatile int bad;

static void *worker(void *arg) {
    (void)arg;
    for (long i = 0; i < rounds; i++) {
        volatile uint32_t *a = (volatile uint32_t *)(p + (i % 2 ? 3 * PAGE : 0) + (i % 64) * 4);
        *a = (uint32_t)i;
        bad |= *a != (uint32_t)i;
    }
    return 0;
}

static int mapped(void *addr) {
    char line[256];
    FILE *f = fopen("/proc/self/maps", "r");
    int found = 0;
    while (fgets(line, sizeof line, f))
        if (strtoul(line, 0, 16) == (unsigned long)addr) found = 1;
    fclose(f);
    return found;
}

int main(int argc, char **argv) {
    int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || ftruncate(fd, 4 * PAGE)) return 1;
    rounds = atol(argv[2]);
    p = mmap(0, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    long accesses = 2 * rounds;
    pthread_t t;
    pthread_create(&t, 0, worker, 0);
    for (long k = 0; k < rounds / 10; k++) {
        if (madvise((void *)(p + PAGE), 2 * PAGE, MADV_DONTNEED)) bad = 1;
        *(volatile uint32_t *)(p + PAGE + 8) = (uint32_t)k;
        bad |= *(volatile uint32_t *)(p + PAGE + 8) != (uint32_t)k;
        *(volatile uint32_t *)(p + 2 * PAGE) = 0xdead;
        if (madvise((void *)(p + 2 * PAGE), PAGE, MADV_REMOVE)) bad = 1;
        bad |= *(volatile uint32_t *)(p + 2 * PAGE) != 0;
        if (madvise((void *)p, 4 * PAGE, MADV_WILLNEED) || madvise((void *)p, 4 * PAGE, MADV_COLD)) bad = 1;
        accesses += 4;
    }
    pthread_join(t, 0);
    void *other = mmap(0, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    *(volatile uint32_t *)other = 7;
    if (madvise(other, PAGE, MADV_DONTFORK)) bad = 1;
    *(volatile uint32_t *)(p + 0x800) = 0x1234;
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
        int ok = !mapped(other) && *(volatile uint32_t *)(p + 0x800) == 0x1234;
        printf("child %s\n", ok ? "ok" : "BAD");
        fflush(stdout);
        _exit(0);
    }
    int st;
    waitpid(child, &st, 0);
    accesses += 3;
    printf("accesses %ld\n%s\n", accesses, bad ? "BAD" : "ok");
    return 0;
}
