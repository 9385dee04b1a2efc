/* parallel.h: the timing of bench/threads.c and bench/faults.c.  run_parallel(T, N, loop)
 * starts T threads together (a barrier), thread k running loop(k, N) between its own two
 * clock readings, and prints the time of the parallel part in microseconds (the first
 * thread's start to the last one's end) and T * N.  0, or 2 for a T outside 1..64. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

static long par_n;
static uint64_t (*par_loop)(long k, long n);
static pthread_barrier_t par_go;
static struct timespec par_started[64], par_ended[64];

static double par_us(struct timespec t) { return t.tv_sec * 1e6 + t.tv_nsec / 1e3; }

static void *par_work(void *arg) {
    long k = (long)arg;
    pthread_barrier_wait(&par_go);
    clock_gettime(CLOCK_MONOTONIC, &par_started[k]);
    uint64_t kept = par_loop(k, par_n); /* what the loop computed: not optimised away */
    clock_gettime(CLOCK_MONOTONIC, &par_ended[k]);
    return (void *)(uintptr_t)kept;
}

static int run_parallel(int t, long n, uint64_t (*loop)(long k, long n)) {
    if (t < 1 || t > 64) return 2;
    par_n = n;
    par_loop = loop;
    pthread_t th[64];
    pthread_barrier_init(&par_go, 0, (unsigned)t);
    for (long i = 0; i < t; i++) pthread_create(&th[i], 0, par_work, (void *)i);
    for (int i = 0; i < t; i++) pthread_join(th[i], 0);
    double first = par_us(par_started[0]), last = par_us(par_ended[0]);
    for (int i = 1; i < t; i++) {
        if (par_us(par_started[i]) < first) first = par_us(par_started[i]);
        if (par_us(par_ended[i]) > last) last = par_us(par_ended[i]);
    }
    printf("%.1f %ld\n", last - first, t * n);
    return 0;
}
