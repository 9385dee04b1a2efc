/* remap.c: the first page of a traced mapping given another page of its file.
 * Usage: remap FILE remap|fixed.
 * FILE gets 8 pages, page k filled with the bytes k*16 + i % 16; its first 4 pages are
 * mapped MAP_SHARED.  Then file page 3 is put at the mapping's first page: "remap" with
 * remap_file_pages (deprecated: the kernel emulates it with a new mapping), "fixed" with a
 * MAP_FIXED mmap of that page.  (The file is longer than the mapping so that an access
 * made at a wrong file offset finds other bytes rather than faulting.)  Then, all made
 * after the move: a read at the first page (file offset 0x3000), a write at its offset 8
 * (file offset 0x3008), a read and a write on the pages that did not move (file offsets
 * 0x1004 and 0x2010), and a read of the first write back.  Prints "R|W OFFSET VALUE" per
 * access, OFFSET being the file offset the access reached; then what pread finds at file
 * offsets 0x3008, 0x2010 and 0x8 (page 0 keeps its bytes), and "done". */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGE 4096

int main(int argc, char **argv) {
    int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0600);
    uint8_t page[PAGE];
    for (int k = 0; k < 8; k++) {
        for (int i = 0; i < PAGE; i++) page[i] = (uint8_t)(k * 16 + i % 16);
        if (fd < 0 || pwrite(fd, page, PAGE, (off_t)k * PAGE) != PAGE) return 3;
    }
    uint8_t *p = mmap(0, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) { perror("mmap"); return 3; }
    if (strcmp(argv[2], "fixed") == 0) {
        if (mmap(p, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 3 * PAGE) != p) { perror("mmap"); return 3; }
    } else if (remap_file_pages(p, PAGE, 0, 3, 0)) {
        perror("remap_file_pages");
        return 3;
    }
    uint32_t v = *(volatile uint32_t *)p;
    printf("R 0x3000 0x%x\n", v);
    *(volatile uint32_t *)(p + 8) = 0xcafef00d;
    printf("W 0x3008 0xcafef00d\n");
    v = *(volatile uint32_t *)(p + PAGE + 4);
    printf("R 0x1004 0x%x\n", v);
    *(volatile uint32_t *)(p + 2 * PAGE + 0x10) = 0x600dcafe;
    printf("W 0x2010 0x600dcafe\n");
    v = *(volatile uint32_t *)(p + 8);
    printf("R 0x3008 0x%x\n", v);
    uint32_t at3008, at2010, at8;
    if (pread(fd, &at3008, 4, 0x3008) != 4 || pread(fd, &at2010, 4, 0x2010) != 4 || pread(fd, &at8, 4, 0x8) != 4)
        return 3;
    printf("file 0x3008 0x%x\nfile 0x2010 0x%x\nfile 0x8 0x%x\n", at3008, at2010, at8);
    munmap(p, 4 * PAGE);
    printf("done\n");
    return 0;
}
