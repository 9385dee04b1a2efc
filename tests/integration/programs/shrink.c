/* shrink.c: the file behind a traced mapping shrinks under it.  Usage: shrink FILE.
 * Maps FILE (2 pages), writes and reads both pages, truncates FILE to one page, then
 * reads the second page again: the program dies of SIGBUS, traced or not (and the tracer,
 * which reaches the pages through its own view of the file, must not). */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>
int main(int argc, char **argv) {
    int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || ftruncate(fd, 8192)) return 1;
    volatile uint32_t *p = mmap(0, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    p[0] = 1;
    p[1024] = 2;
    printf("before %u %u\n", p[0], p[1024]);
    fflush(stdout);
    if (ftruncate(fd, 4096)) return 1;
    printf("after %u\n", p[1024]);
    return 0;
}
