/* attachee.c: a long-running multi-threaded program to attach to and detach from.
 * Usage: attachee FILE THREADS ROUNDS.  Maps FILE, prints "ready PID" and the mapping's
 * address, then each thread, ROUNDS times (0: until SIGUSR1 arrives): writes its counter
 * to its slot, reads it back and checks it, sleeping 200 us every 64 rounds.  At the end
 * it prints "ok" if every read-back matched and the final slots hold each thread's last
 * count, else "BAD". */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
static volatile uint32_t *slots;
static long rounds;
static volatile int bad;
static volatile sig_atomic_t stop;
static long last[64];
static void on_usr1(int sig) { (void)sig; stop = 1; }
static void *worker(void *arg) {
    long id = (long)arg;
    struct timespec pause = {0, 200000};
    for (long i = 1; rounds ? i <= rounds : !stop; i++) {
        slots[id * 16] = (uint32_t)i;
        if (slots[id * 16] != (uint32_t)i) bad = 1;
        last[id] = i;
        if (i % 64 == 0) nanosleep(&pause, 0);
    }
    return 0;
}
int main(int argc, char **argv) {
    int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || ftruncate(fd, 4096)) return 1;
    int n = atoi(argv[2]);
    rounds = atol(argv[3]);
    signal(SIGUSR1, on_usr1);
    slots = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    printf("ready %d %p\n", getpid(), (void *)slots);
    fflush(stdout);
    pthread_t th[64];
    for (long i = 0; i < n; i++) pthread_create(&th[i], 0, worker, (void *)i);
    for (int i = 0; i < n; i++) pthread_join(th[i], 0);
    for (int i = 0; i < n; i++) if (slots[i * 16] != (uint32_t)last[i]) bad = 1;
    printf(bad ? "BAD\n" : "ok\n");
    return bad;
}
