/* asyncio.c: asynchronous I/O (Linux AIO, then io_uring) with a buffer in a traced mapping,
 * through the raw syscalls.
 * Usage: asyncio FILE.  FILE (one page, shared) is mapped; a temporary file gets 64 bytes.
 * An AIO read (io_submit) of them into the mapping at 0x100, then an io_uring read
 * (IORING_OP_READ) into the mapping at 0x200.  Prints each request's result: "aio RES"
 * and "uring RES" (RES 64 untraced; -14, EFAULT, when kmmio cannot reach the buffer), or
 * "no aio"/"no io_uring" when the kernel lacks one. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/aio_abi.h>
#include <linux/io_uring.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || ftruncate(fd, 4096)) return 1;
    char *m = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    int data = open(".", O_TMPFILE | O_RDWR, 0600);
    if (m == MAP_FAILED || data < 0) return 1;
    char src[64];
    memset(src, 'a', sizeof src);
    if (write(data, src, 64) != 64) return 1;

    aio_context_t ctx = 0;
    if (syscall(SYS_io_setup, 8, &ctx) != 0) {
        printf("no aio\n");
    } else {
        struct iocb cb = {0};
        struct iocb *cbs[1] = {&cb};
        cb.aio_lio_opcode = IOCB_CMD_PREAD;
        cb.aio_fildes = data;
        cb.aio_buf = (uint64_t)(uintptr_t)(m + 0x100);
        cb.aio_nbytes = 64;
        long n = syscall(SYS_io_submit, ctx, 1, cbs);
        struct io_event ev = {0};
        if (n == 1) syscall(SYS_io_getevents, ctx, 1, 1, &ev, 0);
        printf("aio %lld\n", n == 1 ? (long long)ev.res : (long long)n);
        syscall(SYS_io_destroy, ctx);
    }

    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    int ring = syscall(SYS_io_uring_setup, 4, &p);
    if (ring < 0) {
        printf("no io_uring\n");
        return 0;
    }
    size_t sq_size = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    size_t cq_size = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    char *sq = mmap(0, sq_size, PROT_READ | PROT_WRITE, MAP_SHARED, ring, IORING_OFF_SQ_RING);
    char *cq = mmap(0, cq_size, PROT_READ | PROT_WRITE, MAP_SHARED, ring, IORING_OFF_CQ_RING);
    struct io_uring_sqe *sqes = mmap(0, p.sq_entries * sizeof *sqes, PROT_READ | PROT_WRITE, MAP_SHARED, ring,
                                     IORING_OFF_SQES);
    if (sq == MAP_FAILED || cq == MAP_FAILED || sqes == MAP_FAILED) return 3;
    memset(&sqes[0], 0, sizeof sqes[0]);
    sqes[0].opcode = IORING_OP_READ;
    sqes[0].fd = data;
    sqes[0].addr = (uint64_t)(uintptr_t)(m + 0x200);
    sqes[0].len = 64;
    sqes[0].off = 0;
    unsigned *tail = (unsigned *)(sq + p.sq_off.tail), *array = (unsigned *)(sq + p.sq_off.array);
    array[*tail & *(unsigned *)(sq + p.sq_off.ring_mask)] = 0;
    __atomic_store_n(tail, *tail + 1, __ATOMIC_RELEASE);
    long n = syscall(SYS_io_uring_enter, ring, 1, 1, IORING_ENTER_GETEVENTS, 0, 0);
    unsigned head = *(unsigned *)(cq + p.cq_off.head);
    struct io_uring_cqe *cqe = (struct io_uring_cqe *)(cq + p.cq_off.cqes) + (head & *(unsigned *)(cq + p.cq_off.ring_mask));
    printf("uring %d\n", n == 1 ? cqe->res : (int)n);
    return 0;
}
