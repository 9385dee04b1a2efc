/* segv.c: genuine faults on traced pages must reach the program exactly as untraced.
 * Usage: segv FILE MODE.  MODE "handler": a SIGSEGV handler catches a write to the traced
 * mapping after the program made it read-only, and makes it writable again (as a garbage
 * collector would), then prints the value.  MODE "die": the same write with no handler:
 * the program dies of SIGSEGV. */
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
static uint8_t *p;
static void on_segv(int sig, siginfo_t *si, void *ctx) {
    (void)sig; (void)ctx;
    printf("caught SIGSEGV at offset 0x%lx code %d\n", (long)((uint8_t *)si->si_addr - p), si->si_code);
    mprotect(p, 4096, PROT_READ | PROT_WRITE);
}
int main(int argc, char **argv) {
    int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || ftruncate(fd, 4096)) return 1;
    p = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    *(volatile uint32_t *)(p + 0x10) = 0x11;
    mprotect(p, 4096, PROT_READ);
    uint32_t v = *(volatile uint32_t *)(p + 0x10);
    printf("read 0x%x\n", v);
    fflush(stdout);
    if (strcmp(argv[2], "handler") == 0) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = on_segv;
        sa.sa_flags = SA_SIGINFO;
        sigaction(SIGSEGV, &sa, 0);
    }
    *(volatile uint32_t *)(p + 0x20) = 0x22;
    printf("wrote 0x%x\n", *(volatile uint32_t *)(p + 0x20));
    return 0;
}
