/* newcode.c: the same code address runs different instructions over time, which the
 * tracer's decode caches must notice.  Usage: newcode FILE.
 * Part 1: a code page mapped from a file, private and read-execute (the kind of page whose
 * decoded instructions the tracer keeps), stores a 4-byte value to the traced mapping, is
 * re-protected writable, patched to a 1-byte store at the same address, made executable
 * again and run.  Part 2: anonymous read-write-execute memory (JIT style) is patched with no
 * syscall at all between two runs.  Prints the traced mapping's first 8 bytes at the end. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

typedef void (*store_fn)(volatile void *where, uint64_t value);
static const unsigned char STORE4[] = {0x89, 0x37, 0xc3};       /* mov [rdi],esi; ret */
static const unsigned char STORE1[] = {0x40, 0x88, 0x37, 0xc3}; /* mov [rdi],sil; ret */
static const unsigned char STORE2[] = {0x66, 0x89, 0x37, 0xc3}; /* mov [rdi],si; ret */

int main(int argc, char **argv) {
    int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || ftruncate(fd, 4096)) return 1;
    volatile uint8_t *regs = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    char path[] = "/tmp/newcode-XXXXXX";
    int code_fd = mkstemp(path);
    unsigned char page[4096];
    memset(page, 0xcc, sizeof page);
    memcpy(page, STORE4, sizeof STORE4);
    if (code_fd < 0 || write(code_fd, page, sizeof page) != sizeof page) return 1;
    unlink(path);
    unsigned char *code = mmap(0, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE, code_fd, 0);
    for (int i = 0; i < 3; i++) ((store_fn)code)(regs, 0x11223344);
    mprotect(code, 4096, PROT_READ | PROT_WRITE);
    memcpy(code, STORE1, sizeof STORE1);
    mprotect(code, 4096, PROT_READ | PROT_EXEC);
    for (int i = 0; i < 3; i++) ((store_fn)code)(regs + 4, 0x55);
    unsigned char *jit = mmap(0, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    memcpy(jit, STORE4, sizeof STORE4);
    ((store_fn)jit)(regs, 0x0a0b0c0d);
    memcpy(jit, STORE2, sizeof STORE2);
    ((store_fn)jit)(regs + 2, 0xbeef);
    printf("%016llx\n", (unsigned long long)*(volatile uint64_t *)regs);
    return 0;
}
