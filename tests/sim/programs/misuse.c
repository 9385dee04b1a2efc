/* Test program: does to a simulated device what no model can answer.
 *   misuse PATH atomic    a lock xadd on a register (kmmio could only single-step it)
 *   misuse PATH syscall   write(2) of the device's memory (the kernel would read the file
 *                         standing for the device)
 *   misuse PATH width     a 2-byte read of ID (the CRC model refuses it: it raises)
 * Prints "done" if it was let through (it must not be).
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc != 3)
        return 2;
    int fd = open(argv[1], O_RDWR);
    volatile uint32_t *r = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (fd < 0 || r == MAP_FAILED)
        return 1;
    if (!strcmp(argv[2], "atomic"))
        __atomic_fetch_add(&r[1], 1, __ATOMIC_SEQ_CST);
    else if (!strcmp(argv[2], "syscall"))
        (void)!write(2, (const void *)r, 4);
    else if (!strcmp(argv[2], "width"))
        (void)((volatile uint16_t *)r)[0];
    printf("done\n");
    return 0;
}
