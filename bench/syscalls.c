/* syscalls.c: a loop of syscalls that never touch traced memory, for bench/run.py.
 * Usage: syscalls FILE N [onerule].  Maps FILE (one page, shared: what a tracer may trace),
 * then times N iterations of getppid() + write(/dev/null, 64 bytes of a local buffer) and
 * prints the loop's time in microseconds.  With "onerule" it first installs, itself, the
 * least filter any seccomp-based tracer needs: one rule (mmap: SECCOMP_RET_TRACE, which
 * never fires here, since the loop makes no mmap), everything else allowed.  That run is
 * the yardstick: the cost of having a seccomp filter at all.  With "tworule" it then adds
 * a second filter, as a tracer that must see buffers in traced memory adds one when such
 * memory appears: write is stopped when its buffer starts in the mapped page (never here).
 * That is the least such a tracer can do (the kernel runs both filters for every write:
 * its verdict now depends on an argument). */
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || ftruncate(fd, 4096)) return 1;
    volatile char *map = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) return 1;
    map[0] = 1;
    long n = atol(argv[2]);
    int two = argc > 3 && !strcmp(argv[3], "tworule");
    if (argc > 3 && (two || !strcmp(argv[3], "onerule"))) {
        struct sock_filter f[] = {
            BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
            BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_mmap, 0, 1),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRACE),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        };
        struct sock_fprog prog = {sizeof f / sizeof f[0], f};
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog)) return 2;
    }
    if (two) {
        unsigned long page = (unsigned long)map;
        struct sock_filter f[] = {
            BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
            BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_write, 0, 5),
            BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[1]) + 4),
            BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)(page >> 32), 0, 3),
            BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[1])),
            BPF_STMT(BPF_ALU | BPF_AND | BPF_K, ~0xfffu),
            BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)page, 1, 0),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRACE),
        };
        struct sock_fprog prog = {sizeof f / sizeof f[0], f};
        if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog)) return 2;
    }
    int null = open("/dev/null", O_WRONLY);
    char buf[64];
    memset(buf, 'x', sizeof buf);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long i = 0; i < n; i++) {
        syscall(SYS_getppid);
        if (write(null, buf, sizeof buf) != sizeof buf) return 3;
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("%.1f\n", (b.tv_sec - a.tv_sec) * 1e6 + (b.tv_nsec - a.tv_nsec) / 1e3);
    return 0;
}
