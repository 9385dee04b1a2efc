/* devmap: a user-space driver of the fake machine's devices (tests/devices/devices_fake.py).
 *
 *   devmap pci RESOURCE0 RESOURCE2   BAR 0 mapped from 0x1000 into it, BAR 2 from its start
 *   devmap uio UIO                   map 1 (mmap offset 1 page), then map 0 (offset 0)
 *   devmap vfio VFIO_DEVICE          BAR 0 from 0x2000 into its region at 0x10000, and
 *                                    BAR 2's region at 0x20000 (the test's region table)
 *
 * Each access is a volatile load or store of a known width, value and offset, so the test
 * can name every R/W line the trace must hold.  Prints "ok" at the end.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static volatile uint8_t *map(const char *path, size_t len, off_t off) {
    int fd = open(path, O_RDWR);
    if (fd < 0) { perror(path); _exit(2); }
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, off);
    if (p == MAP_FAILED) { perror("mmap"); _exit(2); }
    close(fd);
    return p;
}

#define W(p, off, type, v) (*(volatile type *)((p) + (off)) = (v))
#define R(p, off, type) (*(volatile type *)((p) + (off)))

int main(int argc, char **argv) {
    long page = sysconf(_SC_PAGESIZE);
    uint64_t sum = 0;
    if (argc == 4 && !strcmp(argv[1], "pci")) {
        volatile uint8_t *bar0 = map(argv[2], 0x2000, 0x1000);
        volatile uint8_t *bar2 = map(argv[3], 0x1000, 0);
        W(bar0, 0x18, uint32_t, 0x3);
        sum += R(bar0, 0x8, uint32_t);
        W(bar2, 0x10, uint16_t, 0xbeef);
        sum += R(bar2, 0x4, uint8_t);
    } else if (argc == 3 && !strcmp(argv[1], "uio")) {
        volatile uint8_t *map1 = map(argv[2], page, page);
        volatile uint8_t *map0 = map(argv[2], page, 0);
        sum += R(map1, 0x100, uint32_t);
        W(map1, 0x104, uint32_t, 0x1);
        W(map0, 0x20, uint64_t, 0x1122334455667788ULL);
    } else if (argc == 3 && !strcmp(argv[1], "vfio")) {
        int fd = open(argv[2], O_RDWR);
        if (fd < 0) { perror(argv[2]); return 2; }
        volatile uint8_t *bar0 = mmap(NULL, 0x1000, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0x12000);
        volatile uint8_t *bar2 = mmap(NULL, 0x1000, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0x20000);
        if (bar0 == MAP_FAILED || bar2 == MAP_FAILED) { perror("mmap"); return 2; }
        W(bar0, 0x40, uint32_t, 0x80000000u);
        sum += R(bar2, 0x8, uint16_t);
        close(fd);
    } else {
        fprintf(stderr, "usage: devmap pci R0 R2 | uio UIO | vfio DEV\n");
        return 2;
    }
    printf("ok %llu\n", (unsigned long long)sum);
    return 0;
}
