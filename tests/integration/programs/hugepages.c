/* hugepages.c: accesses to huge-page memory.  Usage: hugepages hugetlb | thp FILE.
 * hugetlb: a 4 MiB memfd on hugetlbfs (MFD_HUGETLB, two 2 MiB pages, "/memfd:huge-regs").
 * thp: a 4 MiB file FILE, which the test puts on a tmpfs mounted huge=always (transparent
 * huge pages).  Either way: stores and loads of every width across 4 KiB lines inside a
 * huge page and across the line between the two huge pages, the whole mapping made
 * read-only and writable again (mprotect), a fork whose child reads and writes it, and
 * munmap of the first huge page.  Prints "W offset value" / "R offset value" per access
 * (the child's prefixed "fork-child"), and "done". */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define HUGE (2UL << 20)
static volatile uint8_t *p;

#define W(T, off, val) do { *(volatile T *)(p + (off)) = (T)(val); \
    printf("W 0x%lx 0x%llx\n", (unsigned long)(off), (unsigned long long)(T)(val)); } while (0)
#define R(T, off) do { T v_ = *(volatile T *)(p + (off)); \
    printf("R 0x%lx 0x%llx\n", (unsigned long)(off), (unsigned long long)v_); } while (0)

static long shmem_huge_kb(void) {
    FILE *f = fopen("/proc/meminfo", "r");
    char line[128];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "ShmemHugePages: %ld kB", &kb) == 1) break;
    if (f) fclose(f);
    return kb;
}

int main(int argc, char **argv) {
    int thp = strcmp(argv[1], "thp") == 0;
    int fd = thp ? open(argv[2], O_RDWR | O_CREAT | O_TRUNC, 0600) : memfd_create("huge-regs", MFD_HUGETLB);
    if (fd < 0 || ftruncate(fd, 2 * HUGE)) { perror("huge file"); return 3; }
    if (thp) { /* fill the file: the tmpfs gives it transparent huge pages */
        static char zeros[2UL << 20];
        long before = shmem_huge_kb();
        for (int i = 0; i < 2; i++)
            if (pwrite(fd, zeros, sizeof zeros, i * HUGE) != (ssize_t)sizeof zeros) return 3;
        printf("thp %ld kB\n", shmem_huge_kb() - before);
    }
    p = mmap(0, 2 * HUGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) { perror("mmap"); return 3; }
    W(uint32_t, 0x0, 0x11111111);
    W(uint64_t, 0xffc, 0x2222222233333333ULL);      /* across a 4 KiB line */
    W(uint8_t, 0x1fffff, 0x44);                      /* last byte of the first huge page */
    W(uint16_t, HUGE - 1, 0x5566);                   /* across the huge pages' line */
    W(uint32_t, HUGE + 0x123454, 0x77777777);
    R(uint64_t, 0xffc);
    R(uint16_t, HUGE - 1);
    R(uint32_t, HUGE + 0x123454);
    mprotect((void *)p, 2 * HUGE, PROT_READ);
    R(uint32_t, 0x0);
    mprotect((void *)p, 2 * HUGE, PROT_READ | PROT_WRITE);
    W(uint32_t, 0x4, 0x88888888);
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
        uint32_t c = *(volatile uint32_t *)(p + 0x4);
        printf("fork-child R 0x4 0x%x\n", c);
        *(volatile uint32_t *)(p + HUGE + 8) = 0x99;
        printf("fork-child W 0x%lx 0x99\n", HUGE + 8);
        fflush(stdout);
        _exit(0);
    }
    int st;
    waitpid(child, &st, 0);
    munmap((void *)p, HUGE);
    R(uint32_t, HUGE + 8);
    printf("done\n");
    return 0;
}
