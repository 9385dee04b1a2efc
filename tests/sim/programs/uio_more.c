/* Test program: the finer points of a simulated UIO device's interrupts.
 *   uio_more PATH twowait    two fds, a thread blocked in read on each; one interrupt
 *                            (raised by the model when offset 0 is written) wakes both:
 *                            prints "fd 0 count 1" and "fd 1 count 1" (in either order)
 *   uio_more PATH epollpend  an interrupt pending before epoll_ctl: epoll_wait sees it at
 *                            once: prints "epoll 1"
 *   uio_more PATH pollstop   poll() with no interrupt, stopped and continued meanwhile
 *                            (SIGSTOP, SIGCONT from a child): still no event, it times out
 *                            after its whole 600 ms: prints "poll 0 revents 0x0"
 *   uio_more PATH dupfork    an interrupt read on fd; then a dup of fd and a forked child's
 *                            inherited fd have seen it too (UIO keeps it per open file):
 *                            prints "dup -1 11", "child -1 11", then after one more
 *                            interrupt "dup 4 count 2"
 *   uio_more PATH select     select() on the device fd: with nothing pending it times out
 *                            ("idle select 0 set 0"); then a thread raises an interrupt
 *                            100 ms into a 5 s select: "select 1 set 1"
 *   uio_more PATH vectors    memcpy of 300 bytes to offset 0x100 of the device and back
 *                            (glibc's vector copies), then a rep movsb of 20 bytes to offset
 *                            0x400: prints "same" when all the bytes came back
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/select.h>
#include <sys/wait.h>
#include <unistd.h>

static int fds[2];
static volatile uint32_t *regs;

static void *raise_later(void *arg)
{
    (void)arg;
    usleep(100000);
    regs[0] = 1;
    return NULL;
}

static void *waiter(void *arg)
{
    int i = (int)(long)arg;
    uint32_t count = 0;
    if (read(fds[i], &count, 4) == 4)
        printf("fd %d count %u\n", i, count);
    fflush(stdout);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 3)
        return 2;
    int fd = open(argv[1], O_RDWR);
    volatile uint32_t *r = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (fd < 0 || r == MAP_FAILED)
        return 1;
    if (!strcmp(argv[2], "twowait")) {
        fds[0] = fd;
        fds[1] = open(argv[1], O_RDWR);
        pthread_t t[2];
        for (long i = 0; i < 2; i++)
            pthread_create(&t[i], NULL, waiter, (void *)i);
        usleep(200000);
        r[0] = 1;
        alarm(10);
        for (int i = 0; i < 2; i++)
            pthread_join(t[i], NULL);
    } else if (!strcmp(argv[2], "epollpend")) {
        r[0] = 1;
        int ep = epoll_create1(0);
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd}, got;
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
        printf("epoll %d\n", epoll_wait(ep, &got, 1, 2000));
    } else if (!strcmp(argv[2], "pollstop")) {
        pid_t me = getpid(), child = fork();
        if (child == 0) {
            usleep(150000);
            kill(me, SIGSTOP);
            usleep(100000);
            kill(me, SIGCONT);
            _exit(0);
        }
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int n = poll(&p, 1, 600);
        printf("poll %d revents %#x\n", n, p.revents);
        waitpid(child, NULL, 0);
    } else if (!strcmp(argv[2], "select")) {
        regs = r;
        fd_set set;
        FD_ZERO(&set);
        FD_SET(fd, &set);
        struct timeval tv = {0, 50000};
        int n = select(fd + 1, &set, NULL, NULL, &tv);
        printf("idle select %d set %d\n", n, FD_ISSET(fd, &set) ? 1 : 0);
        pthread_t t;
        pthread_create(&t, NULL, raise_later, NULL);
        FD_ZERO(&set);
        FD_SET(fd, &set);
        tv.tv_sec = 5;
        tv.tv_usec = 0;
        n = select(fd + 1, &set, NULL, NULL, &tv);
        printf("select %d set %d\n", n, FD_ISSET(fd, &set) ? 1 : 0);
        pthread_join(t, NULL);
    } else if (!strcmp(argv[2], "dupfork")) {
        uint32_t count = 0;
        r[0] = 1;
        if (read(fd, &count, 4) != 4)
            return 1;
        int d = dup(fd);
        fcntl(d, F_SETFL, O_NONBLOCK); /* the open file's flag: fd's too */
        errno = 0;
        ssize_t got = read(d, &count, 4);
        printf("dup %zd %d\n", got, errno);
        fflush(stdout);
        pid_t child = fork();
        if (child == 0) {
            errno = 0;
            got = read(fd, &count, 4);
            printf("child %zd %d\n", got, errno);
            fflush(stdout);
            _exit(0);
        }
        waitpid(child, NULL, 0);
        r[0] = 1;
        got = read(d, &count, 4);
        printf("dup %zd count %u\n", got, count);
    } else if (!strcmp(argv[2], "vectors")) {
        unsigned char out[300], back[300];
        volatile size_t n = sizeof out; /* not known when compiling: glibc's memcpy, not rep movsq */
        for (int i = 0; i < 300; i++)
            out[i] = (unsigned char)(i * 7 + 1);
        memcpy((void *)(r + 64), out, n);
        memcpy(back, (const void *)(r + 64), n);
        void *dst = (void *)(r + 256); /* offset 0x400 */
        const void *src = out;
        size_t cnt = 20;
        __asm__ volatile("rep movsb" : "+D"(dst), "+S"(src), "+c"(cnt) : : "memory");
        int same = !memcmp(out, back, sizeof out);
        for (int i = 0; i < 20; i++) /* byte by byte: memcmp would compare in the device */
            same &= ((volatile unsigned char *)(r + 256))[i] == out[i];
        printf("%s\n", same ? "same" : "different");
    }
    return 0;
}
