/* churn.c: threads touching traced mappings while another thread maps, unmaps and remaps
 * them.  Usage: churn FILE THREADS ITERATIONS.
 * FILE has 4 pages; slot s is a MAP_SHARED mapping of page s.  Each worker thread runs
 * ITERATIONS rounds: under slot s's read lock it writes a value of width 1, 2, 4 or 8 to
 * its own place in the slot and reads it back (every 97th round an atomic `lock xadd`
 * instead, which reads and writes), checking what it reads: two accesses a round.
 * Meanwhile the mapper thread, under a slot's write lock, in turn: munmaps it and maps it
 * again; moves it with mremap; maps a fresh mapping over it with MAP_FIXED.  It paces itself
 * on the workers' progress (one remap each time they all did another 1/256 of their
 * rounds, at least), so that the mappings move all through the run however fast it goes.
 * Prints "remaps N", then "ok" or "BAD", then a checksum of the file. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define SLOTS 4
#define PAGE 4096
static int fd;
static volatile uint8_t *slot[SLOTS];
static pthread_rwlock_t lock[SLOTS];
static long iterations;
static volatile int bad, done;
static long threads_n;
static long progress; /* rounds done by all workers, atomically */

static void *worker(void *arg) {
    long id = (long)arg;
    for (long i = 0; i < iterations; i++) {
        int s = (int)((i + id) % SLOTS);
        pthread_rwlock_rdlock(&lock[s]);
        volatile uint8_t *place = slot[s] + id * 64 + (i % 4) * 8;
        uint64_t v = (uint64_t)id << 56 | (uint64_t)i * 0x10001;
        if (i % 97 == 0) {
            uint64_t old = __atomic_fetch_add((uint64_t *)place, 1, __ATOMIC_SEQ_CST);
            (void)old;
        } else {
            switch (i % 4) {
            case 0: *(volatile uint8_t *)place = (uint8_t)v; bad |= *(volatile uint8_t *)place != (uint8_t)v; break;
            case 1: *(volatile uint16_t *)place = (uint16_t)v; bad |= *(volatile uint16_t *)place != (uint16_t)v; break;
            case 2: *(volatile uint32_t *)place = (uint32_t)v; bad |= *(volatile uint32_t *)place != (uint32_t)v; break;
            default: *(volatile uint64_t *)place = v; bad |= *(volatile uint64_t *)place != v; break;
            }
        }
        pthread_rwlock_unlock(&lock[s]);
        __atomic_add_fetch(&progress, 1, __ATOMIC_RELAXED);
    }
    return 0;
}

static void *mapper(void *arg) {
    long n = 0;
    struct timespec pause = {0, 50000};
    long step = threads_n * iterations / 256;
    while (!done) {
        if (__atomic_load_n(&progress, __ATOMIC_RELAXED) < n * step) {
            nanosleep(&pause, 0);
            continue;
        }
        int s = (int)(n % SLOTS);
        pthread_rwlock_wrlock(&lock[s]);
        void *old = (void *)slot[s], *now = old;
        switch ((n / SLOTS) % 3) {
        case 0:
            munmap(old, PAGE);
            now = mmap(0, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)s * PAGE);
            break;
        case 1: {
            void *to = mmap(0, PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            now = mremap(old, PAGE, PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, to);
            break;
        }
        default:
            now = mmap(old, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, (off_t)s * PAGE);
        }
        if (now == MAP_FAILED) { perror("remap"); exit(3); }
        slot[s] = now;
        pthread_rwlock_unlock(&lock[s]);
        n++;
    }
    return (void *)n;
}

int main(int argc, char **argv) {
    fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || ftruncate(fd, SLOTS * PAGE)) return 1;
    long threads = atol(argv[2]);
    iterations = atol(argv[3]);
    threads_n = threads;
    for (int s = 0; s < SLOTS; s++) {
        pthread_rwlock_init(&lock[s], 0);
        slot[s] = mmap(0, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)s * PAGE);
    }
    pthread_t t[64], m;
    pthread_create(&m, 0, mapper, 0);
    for (long i = 0; i < threads; i++) pthread_create(&t[i], 0, worker, (void *)i);
    for (long i = 0; i < threads; i++) pthread_join(t[i], 0);
    done = 1;
    void *remaps;
    pthread_join(m, &remaps);
    printf("remaps %ld\n%s\n", (long)remaps, bad ? "BAD" : "ok");
    uint64_t sum = 0;
    for (int s = 0; s < SLOTS; s++)
        for (int k = 0; k < PAGE; k += 8) sum = sum * 31 + *(volatile uint64_t *)(slot[s] + k);
    printf("%016llx\n", (unsigned long long)sum);
    return 0;
}
