/* int80.c: maps, re-protects and unmaps a traced file through the i386 ABI (int 0x80)
 * from a 64-bit program, touching it in between.
 * Usage: int80 FILE.  mmap2 of FILE (one page, shared) below 4 GiB, a 4-byte write and a
 * read at offset 0x10, mprotect read-only and a read at 0x20, munmap; all four calls made
 * with int 0x80.  Prints "mapped", what it read, "done" (or "no int 0x80" when the kernel
 * has no i386 entry, and exits 0). */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <unistd.h>

static long int80(long nr, long a1, long a2, long a3, long a4, long a5, long a6) {
    long ret;
    register long r8 __asm__("r8") = a6;
    __asm__ volatile("push %%rbp\n\tmov %%r8, %%rbp\n\tint $0x80\n\tpop %%rbp"
                     : "=a"(ret)
                     : "a"(nr), "b"(a1), "c"(a2), "d"(a3), "S"(a4), "D"(a5), "r"(r8)
                     : "memory", "r9", "r10", "r11", "cc");
    return ret;
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || ftruncate(fd, 4096)) return 1;
    /* i386: mmap2 = 192, mprotect = 125, munmap = 91 */
    long addr = int80(192, 0, 4096, 3 /* PROT_READ|PROT_WRITE */, 1 /* MAP_SHARED */, fd, 0);
    if (addr == -38 || addr == -14) {
        printf("no int 0x80\n");
        return 0;
    }
    if (addr < 0 || addr >= 1L << 32) {
        printf("mmap2 failed %ld\n", addr);
        return 1;
    }
    volatile uint32_t *p = (volatile uint32_t *)addr;
    printf("mapped\n");
    p[4] = 0xcafef00d;
    printf("read %x\n", p[4]);
    if (int80(125, addr, 4096, 1 /* PROT_READ */, 0, 0, 0) != 0) return 3;
    printf("read %x\n", p[8]);
    if (int80(91, addr, 4096, 0, 0, 0, 0) != 0) return 4;
    printf("done\n");
    return 0;
}
