/* The CRC engine's C driver (see __init__.py for the registers):
 *   driver PATH [TEXT] [--wrong] [--poll2] [--irq]
 * maps the device at PATH, checks ID, resets, writes TEXT as 32-bit words to DATA, starts,
 * polls STATUS until BUSY clears, reads RESULT and IRQ_STATUS, prints the CRC and exits 0
 * when it is zlib's CRC-32 of TEXT (computed here too).
 *   --wrong  writes the third word wrong (a driver bug, for replay to catch);
 *   --poll2  reads STATUS twice per loop turn (a driver that polls twice as often);
 *   --irq    enables the interrupt and waits for it with a blocking read of the device.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define ID 0x00
#define CTRL 0x04
#define STATUS 0x08
#define DATA 0x0c
#define RESULT 0x10
#define IRQ_STATUS 0x14

static uint32_t crc32(const unsigned char *p, size_t n)
{
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0xedb88320u & -(c & 1));
    }
    return c ^ 0xffffffffu;
}

static volatile uint32_t *regs;

static uint32_t rd(unsigned off) { return regs[off / 4]; }
static void wr(unsigned off, uint32_t v) { regs[off / 4] = v; }

int main(int argc, char **argv)
{
    const char *path = NULL, *text = "kmmio sim answers every access";
    int wrong = 0, poll2 = 0, irq = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--wrong"))
            wrong = 1;
        else if (!strcmp(argv[i], "--poll2"))
            poll2 = 1;
        else if (!strcmp(argv[i], "--irq"))
            irq = 1;
        else if (!path)
            path = argv[i];
        else
            text = argv[i];
    }
    if (!path) {
        fprintf(stderr, "usage: driver PATH [TEXT] [--wrong] [--poll2] [--irq]\n");
        return 2;
    }
    int fd = open(path, O_RDWR);
    if (fd < 0) {
        perror(path);
        return 1;
    }
    regs = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (regs == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    if (rd(ID) != 0x43524331) {
        fprintf(stderr, "crc: not a CRC engine (ID %#x)\n", rd(ID));
        return 1;
    }
    unsigned char buf[256] = {0};
    size_t n = strlen(text);
    if (n > sizeof buf - 4)
        n = sizeof buf - 4;
    memcpy(buf, text, n);
    n = (n + 3) / 4 * 4;
    wr(CTRL, 2); /* RESET */
    for (size_t i = 0; i < n; i += 4) {
        uint32_t w;
        memcpy(&w, buf + i, 4);
        wr(DATA, wrong && i == 8 ? w ^ 1 : w);
    }
    if (irq) {
        int32_t on = 1;
        uint32_t count = 0;
        if (write(fd, &on, 4) != 4 || (wr(CTRL, 1 | 4), read(fd, &count, 4)) != 4) {
            perror("uio");
            return 1;
        }
        printf("crc: interrupt %u\n", count);
    } else {
        wr(CTRL, 1); /* START */
    }
    unsigned polls = 1;
    while (rd(STATUS) & 1) {
        polls++;
        if (poll2) {
            (void)rd(STATUS);
            polls++;
        }
    }
    uint32_t result = rd(RESULT), pending = rd(IRQ_STATUS);
    uint32_t want = crc32(buf, n);
    printf("crc: %#010x after %u polls, irq status %#x (%s)\n", result, polls, pending,
           result == want ? "ok" : "WRONG");
    return result == want ? 0 : 1;
}
