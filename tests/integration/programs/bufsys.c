/* bufsys.c: hands buffers in a traced mapping to the kernel, with every kind of syscall
 * that takes a buffer, and prints what each returned and what it moved.
 * Usage: bufsys FILE [wait].  With "wait" it prints, once FILE is mapped, "ready PID" and waits for a line on
 * standard input (for a tracer to attach).  FILE gets 4 pages, mapped MAP_SHARED at T (traced as "bufsys-regs").
 * An anonymous page U sits right below a second mapping of FILE's page 3 at S, so that
 * [S - 96, S + 96) straddles untraced and traced memory.
 * Each line is "name result [bytes...]"; the output must be the same traced and untraced
 * (getrandom and clock_gettime print only what does not change from run to run). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

static unsigned sum(const unsigned char *p, size_t n) {
    unsigned s = 0;
    for (size_t i = 0; i < n; i++) s = s * 31 + p[i];
    return s;
}

static void show(const char *name, long ret, const void *p, size_t n) {
    printf("%s %ld", name, ret < 0 ? -errno : ret);
    if (p) printf(" %08x", sum(p, n));
    printf("\n");
}

int main(int argc, char **argv) {
    int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || ftruncate(fd, 4 * 4096)) return 1;
    unsigned char *t = mmap(0, 4 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    /* U: an anonymous page, then page 3 of FILE right after it. */
    unsigned char *u = mmap(0, 2 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    unsigned char *s = mmap(u + 4096, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 3 * 4096);
    if (t == MAP_FAILED || u == MAP_FAILED || s != u + 4096) return 2;
    if (argc > 2 && !strcmp(argv[2], "wait")) {
        char line[16];
        printf("ready %d\n", getpid());
        fflush(stdout);
        if (!fgets(line, sizeof line, stdin)) return 5;
    }
    unsigned char local[4096];
    for (int i = 0; i < 4096; i++) {
        t[i] = (unsigned char)(i * 7 + 1);
        u[i] = (unsigned char)(i * 3 + 5);
        local[i] = (unsigned char)(i ^ 0x5a);
    }
    int p[2], sv[2];
    if (pipe(p) || socketpair(AF_UNIX, SOCK_STREAM, 0, sv)) return 3;
    int tmp = open(".", O_TMPFILE | O_RDWR, 0600);
    if (tmp < 0) return 4;

    /* read/write, pread/pwrite */
    show("write", write(p[1], t, 1000), 0, 0);
    show("read", read(p[0], t + 4096, 1000), t + 4096, 1000);
    show("pwrite64", pwrite(tmp, t + 100, 700, 50), 0, 0);
    show("pread64", pread(tmp, t + 8192, 700, 50), t + 8192, 700);
    /* vectored: untraced, traced, untraced */
    struct iovec v[3] = {{local, 100}, {t + 200, 300}, {local + 100, 50}};
    show("writev", writev(p[1], v, 3), 0, 0);
    struct iovec w[3] = {{local + 200, 100}, {t + 4096 + 1500, 300}, {local + 300, 50}};
    show("readv", readv(p[0], w, 3), t + 4096 + 1500, 300);
    show("pwritev2", pwritev2(tmp, v, 3, 0, 0), 0, 0);
    show("preadv2", preadv2(tmp, w, 3, 0, 0), t + 4096 + 1500, 300);
    /* the iovec array itself in traced memory */
    struct iovec *tv = (struct iovec *)(t + 3000);
    tv[0] = (struct iovec){t, 10};
    tv[1] = (struct iovec){local, 10};
    show("writev-array", writev(p[1], tv, 2), 0, 0);
    memset(tv, 0, 2 * sizeof *tv); /* addresses: not part of the checksums */
    show("read", read(p[0], local + 1000, 20), local + 1000, 20);
    /* sockets */
    show("sendto", sendto(sv[0], t + 50, 400, 0, 0, 0), 0, 0);
    show("recvfrom", recvfrom(sv[1], t + 4096 + 2000, 400, 0, 0, 0), t + 4096 + 2000, 400);
    struct iovec m3[3] = {{local, 64}, {t + 4096 + 2600, 64}, {local + 64, 64}};
    struct msghdr mh = {.msg_iov = m3, .msg_iovlen = 3};
    show("sendmsg", sendmsg(sv[0], &mh, 0), 0, 0);
    memset(local, 0, 192);
    struct iovec r3[3] = {{local + 512, 64}, {t + 4096 + 2800, 64}, {local + 576, 64}};
    struct msghdr rh = {.msg_iov = r3, .msg_iovlen = 3};
    show("recvmsg", recvmsg(sv[1], &rh, 0), t + 4096 + 2800, 64);
    printf("recvmsg-untraced %08x %d\n", sum(local + 512, 128), rh.msg_flags);
    /* recvmsg with the control buffer in traced memory: an fd passed with SCM_RIGHTS */
    char one = 'x';
    struct iovec ov = {&one, 1};
    union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } ctl;
    memset(&ctl, 0, sizeof ctl);
    struct msghdr fh = {.msg_iov = &ov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof ctl.buf};
    struct cmsghdr *c = CMSG_FIRSTHDR(&fh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &tmp, sizeof(int));
    show("sendmsg-fd", sendmsg(sv[0], &fh, 0), 0, 0);
    struct msghdr *th = (struct msghdr *)(t + 3500); /* the msghdr itself traced too */
    memset(th, 0, sizeof *th);
    th->msg_iov = &ov;
    th->msg_iovlen = 1;
    th->msg_control = t + 12288 + 100;
    th->msg_controllen = 64;
    long got = recvmsg(sv[1], th, 0);
    printf("recvmsg-fd %ld %zu %d\n", got, (size_t)th->msg_controllen, th->msg_flags);
    memset(th, 0, sizeof *th);
    memset(t + 12288 + 100, 0, 64); /* a descriptor number */
    /* sendmmsg / recvmmsg, one traced iovec each */
    struct iovec a1 = {t + 300, 32}, a2 = {local, 32};
    struct mmsghdr mm[2] = {{.msg_hdr = {.msg_iov = &a1, .msg_iovlen = 1}}, {.msg_hdr = {.msg_iov = &a2, .msg_iovlen = 1}}};
    show("sendmmsg", sendmmsg(sv[0], mm, 2, 0), 0, 0);
    show("recv", recv(sv[1], t + 4096 + 3000, 64, 0), t + 4096 + 3000, 64);
    show("send", send(sv[0], local, 48, 0), 0, 0);
    struct iovec b1 = {t + 4096 + 3100, 20}, b2 = {local + 2000, 28};
    struct mmsghdr rm[2] = {{.msg_hdr = {.msg_iov = &b1, .msg_iovlen = 1}}, {.msg_hdr = {.msg_iov = &b2, .msg_iovlen = 1}}};
    long n = recvmmsg(sv[1], rm, 2, MSG_DONTWAIT, 0);
    printf("recvmmsg %ld %u %u %08x\n", n, rm[0].msg_len, rm[1].msg_len, sum(t + 4096 + 3100, 20));
    /* the kernel writes an int or a struct */
    show("write", write(p[1], local, 77), 0, 0);
    show("ioctl-FIONREAD", ioctl(p[0], FIONREAD, (int *)(t + 8192 + 1000)), t + 8192 + 1000, 4);
    show("read", read(p[0], local, 77), 0, 0);
    long r = getrandom(t + 8192 + 2000, 32, 0);
    printf("getrandom %ld\n", r);
    memset(t + 8192 + 2000, 0, 32); /* random: not part of the checksums */
    struct timespec *ts = (struct timespec *)(t + 8192 + 3000);
    r = clock_gettime(CLOCK_MONOTONIC, ts); /* the vDSO: no syscall */
    printf("clock_gettime %ld %d\n", r, ts->tv_sec > 0 || ts->tv_nsec > 0);
    r = syscall(SYS_clock_gettime, CLOCK_MONOTONIC, ts);
    printf("clock_gettime-syscall %ld %d\n", r, ts->tv_sec > 0 || ts->tv_nsec > 0);
    memset(ts, 0, sizeof *ts);
    /* a path in traced memory */
    strcpy((char *)t + 3900, "/");
    show("access", access((char *)t + 3900, F_OK), 0, 0);
    /* an Opaque syscall: prctl(PR_GET_NAME) writes 16 bytes */
    r = syscall(SYS_prctl, PR_GET_NAME, t + 8192 + 3500, 0, 0, 0);
    printf("prctl %ld %s\n", r, (char *)t + 8192 + 3500);
    /* futexes */
    uint32_t *word = (uint32_t *)(t + 8192 + 3800);
    *word = 7;
    show("futex-wake", syscall(SYS_futex, word, FUTEX_WAKE, 1, 0, 0, 0), 0, 0);
    show("futex-wait-changed", syscall(SYS_futex, word, FUTEX_WAIT, 6, 0, 0, 0), 0, 0);
    struct timespec soon = {0, 1000000};
    show("futex-wait-timeout", syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, 7, &soon, 0, 0), 0, 0);
    /* straddling untraced and traced memory */
    show("write-straddle", write(p[1], s - 96, 192), 0, 0);
    show("read-straddle", read(p[0], s - 64, 192), s - 64, 192);
    show("pwrite-straddle", pwrite(tmp, s - 96, 192, 0), 0, 0);
    show("pread-straddle", pread(tmp, s - 32, 192, 0), s - 32, 192);
    show("sendto-straddle", sendto(sv[0], s - 40, 80, 0, 0, 0), 0, 0);
    show("recv-straddle", recv(sv[1], s - 20, 80, 0), s - 20, 80);
    r = getrandom(s - 8, 16, 0);
    printf("getrandom-straddle %ld\n", r);
    memset(s - 8, 0, 16);
    printf("file %08x\n", sum(t, 4 * 4096));
    return 0;
}
