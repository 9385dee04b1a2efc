/* threads.c: T threads each write N values at once into one traced mapping.
 * Usage: threads FILE N T.  Thread i writes (i << 24 | k) for k = 0..N-1 to offset i*64,
 * so the log can be checked per thread: program order, none lost, none duplicated. */
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>
static volatile uint32_t *regs;
static int N;
static pthread_barrier_t go;
static void *worker(void *arg) {
    long id = (long)arg;
    pthread_barrier_wait(&go);
    for (int i = 0; i < N; i++) regs[id * 16] = (uint32_t)(id << 24 | i);
    return 0;
}
int main(int argc, char **argv) {
    int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || ftruncate(fd, 4096)) return 1;
    N = atoi(argv[2]);
    int T = atoi(argv[3]);
    regs = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    pthread_t th[64];
    pthread_barrier_init(&go, 0, T);
    for (long i = 0; i < T; i++) pthread_create(&th[i], 0, worker, (void *)i);
    for (int i = 0; i < T; i++) pthread_join(th[i], 0);
    printf("done\n");
    return 0;
}
