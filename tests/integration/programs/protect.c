/* protect.c: the program re-protects a traced mapping while its threads write to it.
 * Usage: protect FILE THREADS WRITES.  THREADS threads each write WRITES values to their
 * slot while the main thread calls mprotect(PROT_READ|PROT_WRITE) on the mapping over and
 * over (a no-op for the program, but each call un-arms the pages in the kernel until the
 * tracer re-arms them).  Prints "writes N": every one must be in the log. */
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>
static volatile uint32_t *slots;
static long writes;
static volatile int running;
static void *worker(void *arg) {
    long id = (long)arg;
    for (long i = 0; i < writes; i++) slots[id * 16] = (uint32_t)i;
    __sync_fetch_and_sub(&running, 1);
    return 0;
}
int main(int argc, char **argv) {
    int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || ftruncate(fd, 4096)) return 1;
    int n = atoi(argv[2]);
    writes = atol(argv[3]);
    slots = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    pthread_t th[64];
    running = n;
    for (long i = 0; i < n; i++) pthread_create(&th[i], 0, worker, (void *)i);
    long calls = 0;
    while (running) {
        mprotect((void *)slots, 4096, PROT_READ | PROT_WRITE);
        calls++;
    }
    for (int i = 0; i < n; i++) pthread_join(th[i], 0);
    printf("writes %ld\n", n * writes);
    fprintf(stderr, "mprotect calls %ld\n", calls);
    return 0;
}
