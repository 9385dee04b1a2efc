/* faults.c: the floor of thread scaling for any in-process tracer: T threads taking
 * SIGSEGVs on one PROT_NONE page, the handler doing nothing but step over the faulting
 * 2-byte store and go back as the agent does (_resume.h).  Usage: faults T N: each thread
 * takes N faults.  Prints the time of the parallel part in microseconds (first thread's
 * start to last one's end) and T * N.  Build with -I src/kmmio/agent.
 * What it shows: how the kernel's fault and signal delivery scale with threads of one
 * process on this machine (they share the process's signal lock), whatever a handler does. */
#define _GNU_SOURCE
#include "_resume.h" /* src/kmmio/agent/: the agent's way out of its handler */
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <ucontext.h>

static volatile uint32_t *page;
static long n;
static pthread_barrier_t go;
static struct timespec started[64], ended[64];

static void on_segv(int sig, siginfo_t *si, void *ctx) {
    (void)sig;
    (void)si;
    ((ucontext_t *)ctx)->uc_mcontext.gregs[REG_RIP] += 2; /* movl %eax, (%rdx) */
    resume(ctx); /* back as kmmio's agent goes back: _resume.h */
}

static void *work(void *arg) {
    long k = (long)arg;
    pthread_barrier_wait(&go);
    clock_gettime(CLOCK_MONOTONIC, &started[k]);
    for (long i = 0; i < n; i++) __asm__ volatile("movl %0, (%1)" ::"a"((int)i), "d"(page + k * 16) : "memory");
    clock_gettime(CLOCK_MONOTONIC, &ended[k]);
    return 0;
}

static double us(struct timespec t) { return t.tv_sec * 1e6 + t.tv_nsec / 1e3; }

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    int t = atoi(argv[1]);
    n = atol(argv[2]);
    if (t < 1 || t > 64) return 2;
    page = mmap(0, 4096, PROT_NONE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    struct sigaction sa = {0};
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigaction(SIGSEGV, &sa, 0);
    pthread_barrier_init(&go, 0, t);
    pthread_t th[64];
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
