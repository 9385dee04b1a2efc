/* lendblock.c: a blocking syscall on a traced private mapping, which only another thread
 * of the program can complete.
 * Usage: lendblock FILE.  FILE (one page) is mapped MAP_PRIVATE (it cannot be aliased: kmmio
 * lends the pages to the syscall and holds the other threads).  The main thread reads 32
 * bytes from a pipe into the mapping; a second thread writes them 200 ms later.  Prints
 * what the read returned and the bytes, then "ok". */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static int p[2];

static void *writer(void *arg) {
    (void)arg;
    struct timespec pause = {0, 200000000};
    nanosleep(&pause, 0);
    if (write(p[1], "the other thread wrote this line", 32) != 32) return (void *)1;
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || ftruncate(fd, 4096)) return 1;
    char *m = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (m == MAP_FAILED || pipe(p)) return 1;
    m[0] = 0;
    pthread_t t;
    pthread_create(&t, 0, writer, 0);
    long n = read(p[0], m + 100, 32);
    pthread_join(t, 0);
    printf("read %ld %.32s\n", n, m + 100);
    printf(n == 32 && !memcmp(m + 100, "the other thread wrote this line", 32) ? "ok\n" : "BAD\n");
    return 0;
}
