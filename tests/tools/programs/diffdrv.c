/* diffdrv.c: a small driver for kmmio diff's tests, whose variants differ in known ways.
 *
 * Usage: diffdrv FILE [VARIANT ...].  FILE (created, one page) stands for the device and is
 * mapped MAP_SHARED; its registers are tdev's (tests/maps/data/tdev.rdl, at offset 0):
 * CTRL 0x0, STATUS 0x4, LEN16 0x8 (16 bits), QUEUE[0] 0x10, QUEUE[1] 0x14.  The driver:
 *
 *   W CTRL = 0x2 (reset); poll STATUS (POLLS1 reads); W CTRL = 0x10000009;
 *   W QUEUE[0] = 0x00abcdef; W QUEUE[1] = 0x03123456; poll STATUS (POLLS2 reads);
 *   W LEN16 = 0x8010; W CTRL = 0x0
 *
 * Variants:
 *   value     QUEUE[0] is written 0x00abcdee (one written value differs)
 *   extra     one more write, QUEUE[1] = 0x1 right after QUEUE[1] = 0x03123456
 *   polls=N   the first polling loop reads STATUS N times (default 3)
 *   polls2=N  the second one reads it N times (default 5)
 *   thread    after the reset, a second thread runs beside the main one: it polls STATUS
 *             4 times then writes LEN16 = 0x10 and LEN16 = 0x20; the main thread joins it
 *             before writing CTRL = 0x0 (the two threads' accesses interleave as they may)
 *
 * Prints "ok" and exits 0.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static volatile uint8_t *dev;

#define REG32(off) (*(volatile uint32_t *)(dev + (off)))
#define REG16(off) (*(volatile uint16_t *)(dev + (off)))

static void poll_status(int n) {
    for (int i = 0; i < n; i++) (void)REG32(0x4);
}

static void *helper(void *arg) {
    (void)arg;
    poll_status(4);
    REG16(0x8) = 0x10;
    REG16(0x8) = 0x20;
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    int value = 0, extra = 0, thread = 0, polls1 = 3, polls2 = 5;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "value")) value = 1;
        else if (!strcmp(argv[i], "extra")) extra = 1;
        else if (!strcmp(argv[i], "thread")) thread = 1;
        else if (!strncmp(argv[i], "polls=", 6)) polls1 = atoi(argv[i] + 6);
        else if (!strncmp(argv[i], "polls2=", 7)) polls2 = atoi(argv[i] + 7);
        else return 2;
    }
    int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || ftruncate(fd, 4096)) return 1;
    dev = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (dev == MAP_FAILED) return 1;
    pthread_t t;
    REG32(0x0) = 0x2;
    if (thread && pthread_create(&t, NULL, helper, NULL)) return 1;
    poll_status(polls1);
    REG32(0x0) = 0x10000009;
    REG32(0x10) = value ? 0x00abcdee : 0x00abcdef;
    REG32(0x14) = 0x03123456;
    if (extra) REG32(0x14) = 0x1;
    poll_status(polls2);
    REG16(0x8) = 0x8010;
    if (thread && pthread_join(t, NULL)) return 1;
    REG32(0x0) = 0x0;
    printf("ok\n");
    return 0;
}
