/* readonly.c: a read-only file mapping, and a read-only mapping made writable later.
 * Usage: readonly FILE.  Maps FILE (opened read-only) PROT_READ and reads offset 0; maps
 * it again (opened read-write) PROT_READ, mprotects that RW, writes 0x77 at 4 and reads it.
 * Prints what it read. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>
int main(int argc, char **argv) {
    int rw = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0600);
    uint32_t seed = 0x1234;
    if (rw < 0 || ftruncate(rw, 4096) || pwrite(rw, &seed, 4, 0) != 4) return 1;
    int ro = open(argv[1], O_RDONLY);
    volatile uint32_t *a = mmap(0, 4096, PROT_READ, MAP_SHARED, ro, 0);
    printf("read 0x%x\n", a[0]);
    volatile uint32_t *b = mmap(0, 4096, PROT_READ, MAP_SHARED, rw, 0);
    if (mprotect((void *)b, 4096, PROT_READ | PROT_WRITE)) return 2;
    b[1] = 0x77;
    printf("wrote, read 0x%x\n", b[1]);
    return 0;
}
