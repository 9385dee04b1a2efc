/* execs.c: mappings across vfork and execve.
 * Usage: execs FILE STAGE.  Stage "first": map FILE, write 0x11 at 0; vfork a child that
 * execs "execs FILE child" and waits for it; write 0x33 at 8; then exec "execs FILE second".
 * Stage "child": map FILE, write 0x22 at 4, exit.  Stage "second": map FILE, read 0 and 4
 * and 8, print them, write 0x44 at 12.  Each stage prints what it did. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
int main(int argc, char **argv) {
    int fd = open(argv[1], O_RDWR | O_CREAT, 0600);
    if (fd < 0 || ftruncate(fd, 4096)) return 1;
    volatile uint32_t *r = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (strcmp(argv[2], "first") == 0) {
        r[0] = 0x11;
        printf("first W 0x0 0x11\n");
        fflush(stdout);
        pid_t child = vfork();
        if (child == 0) {
            execl(argv[0], argv[0], argv[1], "child", (char *)0);
            _exit(127);
        }
        int st;
        waitpid(child, &st, 0);
        r[2] = 0x33;
        printf("first W 0x8 0x33\n");
        fflush(stdout);
        execl(argv[0], argv[0], argv[1], "second", (char *)0);
        return 127;
    }
    if (strcmp(argv[2], "child") == 0) {
        r[1] = 0x22;
        printf("child W 0x4 0x22\n");
        return 0;
    }
    printf("second R %x %x %x\n", r[0], r[1], r[2]);
    r[3] = 0x44;
    printf("second W 0xc 0x44\n");
    return 0;
}
