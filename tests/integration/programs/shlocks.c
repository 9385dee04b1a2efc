/* shlocks.c: process-shared locks living in a traced shared mapping, contended by 2
 * processes x 2 threads; their futexes are the kernel's business.
 * Usage: shlocks FILE ROUNDS.  FILE (one page, MAP_SHARED) holds a process-shared mutex, a
 * process-shared condition variable, a counter and a "turn" word, and a robust mutex.
 * Prints "ready PID", waits for a line on standard input (so that a tracer can attach
 * first), then:
 * 1. forks; in each process 2 threads add 1 to the counter ROUNDS times under the mutex,
 *    and the 4 threads take turns through the condition variable (thread k waits until
 *    turn % 4 == k, then advances it) ROUNDS / 10 times;
 * 2. a child takes the robust mutex and exits holding it; the parent then locks it and
 *    must get EOWNERDEAD.
 * Prints "counter N", "turns N", "robust EOWNERDEAD" and "ok", or what went wrong. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

struct shared {
    pthread_mutex_t mutex;
    pthread_cond_t cond;
    long counter;
    long turn;
    pthread_mutex_t robust;
};

static struct shared *sh;
static long rounds;

struct who {
    int slot; /* 0..3: which turn is ours */
};

static void *worker(void *arg) {
    int slot = ((struct who *)arg)->slot;
    for (long i = 0; i < rounds; i++) {
        pthread_mutex_lock(&sh->mutex);
        sh->counter++;
        pthread_mutex_unlock(&sh->mutex);
    }
    for (long i = 0; i < rounds / 10; i++) {
        pthread_mutex_lock(&sh->mutex);
        while (sh->turn % 4 != slot) pthread_cond_wait(&sh->cond, &sh->mutex);
        sh->turn++;
        pthread_cond_broadcast(&sh->cond);
        pthread_mutex_unlock(&sh->mutex);
    }
    return 0;
}

static void run_pair(int first_slot) {
    pthread_t t[2];
    struct who w[2] = {{first_slot}, {first_slot + 1}};
    for (int i = 0; i < 2; i++) pthread_create(&t[i], 0, worker, &w[i]);
    for (int i = 0; i < 2; i++) pthread_join(t[i], 0);
}

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    rounds = atol(argv[2]);
    int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || ftruncate(fd, 4096)) return 1;
    sh = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (sh == MAP_FAILED) return 1;
    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
    pthread_mutex_init(&sh->mutex, &ma);
    pthread_mutexattr_setrobust(&ma, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(&sh->robust, &ma);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setpshared(&ca, PTHREAD_PROCESS_SHARED);
    pthread_cond_init(&sh->cond, &ca);
    printf("ready %d\n", getpid());
    fflush(stdout);
    char line[16];
    if (!fgets(line, sizeof line, stdin)) return 3;

    pid_t child = fork();
    if (child == 0) {
        run_pair(2);
        _exit(0);
    }
    run_pair(0);
    int status;
    waitpid(child, &status, 0);
    printf("counter %ld\nturns %ld\n", sh->counter, sh->turn);
    fflush(stdout);

    child = fork();
    if (child == 0) {
        pthread_mutex_lock(&sh->robust);
        _exit(0); /* dies holding it */
    }
    waitpid(child, &status, 0);
    int r = pthread_mutex_lock(&sh->robust);
    if (r == EOWNERDEAD) {
        printf("robust EOWNERDEAD\n");
        pthread_mutex_consistent(&sh->robust);
    } else {
        printf("robust %s\n", strerror(r));
    }
    pthread_mutex_unlock(&sh->robust);
    int ok = sh->counter == 4 * rounds && sh->turn == 4 * (rounds / 10) && r == EOWNERDEAD;
    printf(ok ? "ok\n" : "BAD\n");
    return !ok;
}
