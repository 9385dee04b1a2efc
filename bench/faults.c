/* faults.c: the floor of thread scaling for any in-process tracer: T threads taking
 * SIGSEGVs on one PROT_NONE page, the handler doing nothing but step over the faulting
 * 2-byte store and go back as the agent does (_resume.h).  Usage: faults T N: each thread
 * takes N faults.  Prints the time of the parallel part in microseconds (first thread's
 * start to last one's end) and T * N (parallel.h).  Build with -I src/kmmio/agent.
 * What it shows: how the kernel's fault and signal delivery scale with threads of one
 * process on this machine (they share the process's signal lock), whatever a handler does. */
#define _GNU_SOURCE
#include "_resume.h" /* src/kmmio/agent/: the agent's way out of its handler */
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <ucontext.h>

#include "parallel.h"

static volatile uint32_t *page;

static void on_segv(int sig, siginfo_t *si, void *ctx) {
    (void)sig;
    (void)si;
    ((ucontext_t *)ctx)->uc_mcontext.gregs[REG_RIP] += 2; /* movl %eax, (%rdx) */
    resume(ctx); /* back as kmmio's agent goes back: _resume.h */
}

static uint64_t loop(long k, long n) {
    for (long i = 0; i < n; i++) __asm__ volatile("movl %0, (%1)" ::"a"((int)i), "d"(page + k * 16) : "memory");
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    page = mmap(0, 4096, PROT_NONE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    struct sigaction sa = {0};
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigaction(SIGSEGV, &sa, 0);
    return run_parallel(atoi(argv[1]), atol(argv[2]), loop);
}
