/* threads.c: T threads hammering one traced page, for bench/run.py's scaling figure.
 * Usage: threads FILE T N.  FILE gets one page, mapped shared; T threads, started
 * together, each make N 4-byte accesses (alternately a write and a read back) to its own
 * word of that page.  Prints the time of the parallel part in microseconds (from the first
 * thread's start to the last one's end, each thread taking its own times) and the total
 * accesses made. */
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static volatile uint32_t *page;
static long n;
static pthread_barrier_t go;
static struct timespec started[64], ended[64];

static double us(struct timespec t) { return t.tv_sec * 1e6 + t.tv_nsec / 1e3; }

static void *work(void *arg) {
    long k = (long)arg;
    volatile uint32_t *w = page + k * 16;
    pthread_barrier_wait(&go);
    clock_gettime(CLOCK_MONOTONIC, &started[k]);
    uint32_t sum = 0;
    for (long i = 0; i < n; i += 2) {
        *w = (uint32_t)i;
        sum += *w;
    }
    clock_gettime(CLOCK_MONOTONIC, &ended[k]);
    return (void *)(uintptr_t)sum;
}

int main(int argc, char **argv) {
    if (argc < 4) return 2;
    int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || ftruncate(fd, 4096)) return 1;
    int t = atoi(argv[2]);
    n = atol(argv[3]);
    page = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (t < 1 || t > 64) return 2;
    pthread_t th[64];
    pthread_barrier_init(&go, 0, t);
    for (long i = 0; i < t; i++) pthread_create(&th[i], 0, work, (void *)i);
    for (int i = 0; i < t; i++) pthread_join(th[i], 0);
    double first = us(started[0]), last = us(ended[0]);
    for (int i = 1; i < t; i++) {
        if (us(started[i]) < first) first = us(started[i]);
        if (us(ended[i]) > last) last = us(ended[i]);
    }
    printf("%.1f %ld\n", last - first, t * n);
    return 0;
}
