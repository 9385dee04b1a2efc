/* Test program: waits for a simulated UIO device's interrupts with poll and epoll.
 *   uio_wait /dev/uioN
 * The device is the CRC engine (kmmio.demo.crc): started with IRQ_EN, it interrupts when
 * done.  Prints one line per step:
 *   "idle poll N"      poll() with a 50 ms timeout before any interrupt (N: its result, 0)
 *   "poll N revents R" poll() after a start: 1 and POLLIN
 *   "read C"           the 4-byte read: the interrupt count C
 *   "epoll N data D"   epoll_wait() after another start: 1 event, its user data
 *   "read C"           the count again (2)
 *   "nonblock E"       a non-blocking read with nothing pending: errno (EAGAIN = 11)
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc != 2)
        return 2;
    int fd = open(argv[1], O_RDWR);
    if (fd < 0) {
        perror("open");
        return 1;
    }
    volatile uint32_t *regs = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (regs == MAP_FAILED)
        return 1;
    int32_t on = 1;
    uint32_t count = 0;
    if (write(fd, &on, 4) != 4)
        return 1;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    printf("idle poll %d\n", poll(&p, 1, 50));
    regs[0x04 / 4] = 1 | 4; /* START with IRQ_EN */
    int n = poll(&p, 1, 5000);
    printf("poll %d revents %#x fd %d\n", n, p.revents, p.fd == fd);
    if (read(fd, &count, 4) != 4)
        return 1;
    printf("read %u\n", count);
    (void)regs[0x14 / 4]; /* IRQ_STATUS: clear */
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 0x1234};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
        perror("epoll_ctl");
        return 1;
    }
    if (write(fd, &on, 4) != 4)
        return 1;
    regs[0x04 / 4] = 1 | 4;
    struct epoll_event got = {0};
    n = epoll_wait(ep, &got, 1, 5000);
    printf("epoll %d data %#llx\n", n, (unsigned long long)got.data.u64);
    if (read(fd, &count, 4) != 4)
        return 1;
    printf("read %u\n", count);
    int nb = open(argv[1], O_RDWR | O_NONBLOCK);
    errno = 0;
    ssize_t r = read(nb, &count, 4);
    printf("nonblock %d\n", r < 0 ? errno : 0);
    return 0;
}
