/* A driver-like program for kmmio summary's tests: writes, a polling loop, a second thread.
 *
 * Maps FILE (a page, MAP_SHARED) as a register file of 32-bit registers:
 *   CTRL @0x0, DATA @0x4, STATUS @0x8, COUNT @0xc, QUEUE @0x10.
 * The main thread writes CTRL and DATA, then polls STATUS until bit 0 is set: after the 50th
 * read it sets the bit itself with pwrite() on the file (not through the mapping, so the
 * tracer sees only reads), so the loop reads STATUS exactly 51 times (50 x 0, then 1).  A
 * second thread then reads COUNT 10 times in a row and writes QUEUE 5 different values
 * and CTRL once.  Finally the main thread writes CTRL = 0.  Prints "polls 51".
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

static volatile uint32_t *regs;

static void *worker(void *arg)
{
    uint32_t sum = 0;
    (void)arg;
    for (int i = 0; i < 10; i++)
        sum += regs[3];
    for (uint32_t i = 0; i < 5; i++)
        regs[4] = 0x100 + i + sum;
    regs[0] = 0x3;
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 2)
        return 2;
    int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || ftruncate(fd, 4096) != 0)
        return 1;
    void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        return 1;
    regs = p;
    regs[0] = 0x1;
    regs[1] = 0x1234;
    unsigned polls = 0;
    const uint32_t one = 1;
    while (!(regs[2] & 1)) {
        if (++polls == 50 && pwrite(fd, &one, sizeof one, 8) != (ssize_t)sizeof one)
            return 1;
    }
    pthread_t t;
    if (pthread_create(&t, NULL, worker, NULL) != 0 || pthread_join(t, NULL) != 0)
        return 1;
    regs[0] = 0;
    printf("polls %u\n", polls + 1);
    munmap(p, 4096);
    close(fd);
    return 0;
}
