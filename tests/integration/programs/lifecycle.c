/* lifecycle.c: mappings that come and go.  Usage: lifecycle FILE.
 * mmap 3 pages, write each; munmap the middle page; write page 0 and 2; mremap page 2 away
 * (MREMAP_MAYMOVE|MREMAP_FIXED to a new place) and write it there; mprotect page 0
 * read-only and read it; fork a child that writes page 0's neighbour... then munmap all.
 * Prints "W offset value" / "R offset value" for each access, and "fork-child" lines. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
int main(int argc, char **argv) {
    int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || ftruncate(fd, 3 * 4096)) return 1;
    uint8_t *p = mmap(0, 3 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    for (int i = 0; i < 3; i++) { *(volatile uint32_t *)(p + i * 4096) = 0x100 + i; printf("W 0x%x 0x%x\n", i * 4096, 0x100 + i); }
    munmap(p + 4096, 4096);
    *(volatile uint32_t *)(p + 4) = 0x200; printf("W 0x4 0x200\n");
    *(volatile uint32_t *)(p + 2 * 4096 + 4) = 0x202; printf("W 0x2004 0x202\n");
    uint8_t *dst = mmap(0, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    uint8_t *q = mremap(p + 2 * 4096, 4096, 4096, MREMAP_MAYMOVE | MREMAP_FIXED, dst);
    if (q != dst) return 2;
    *(volatile uint32_t *)(q + 8) = 0x302; printf("W 0x2008 0x302\n");
    mprotect(p, 4096, PROT_READ);
    uint32_t v = *(volatile uint32_t *)(p + 4); printf("R 0x4 0x%x\n", v);
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
        uint32_t c = *(volatile uint32_t *)(q + 8); printf("fork-child R 0x2008 0x%x\n", c);
        *(volatile uint32_t *)(q + 12) = 0x403; printf("fork-child W 0x200c 0x403\n");
        fflush(stdout);
        _exit(0);
    }
    int st;
    waitpid(child, &st, 0);
    munmap(p, 4096);
    munmap(q, 4096);
    printf("done\n");
    return 0;
}
