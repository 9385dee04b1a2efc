/* ctracer.c: the floor for bench/run.py, a minimal C ptrace tracer doing what kmmio's
 * emulation path does for the workload: on each SIGSEGV, read the instruction at rip,
 * decode the 4/8-byte `mov` to or from memory (opcodes 89 and 8b, any ModRM form),
 * perform the access through a shadow MAP_SHARED view of /proc/PID/map_files, write back
 * the register and rip, log one mmiotrace line, continue.
 * Usage: ctracer LOG PROGRAM [ARG ...].  Not part of kmmio: a yardstick. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static unsigned long long *reg(struct user_regs_struct *r, int n) {
    unsigned long long *t[16] = {&r->rax, &r->rcx, &r->rdx, &r->rbx, &r->rsp, &r->rbp, &r->rsi, &r->rdi,
                                 &r->r8,  &r->r9,  &r->r10, &r->r11, &r->r12, &r->r13, &r->r14, &r->r15};
    return t[n];
}

int main(int argc, char **argv) {
    FILE *log = fopen(argv[1], "w");
    pid_t pid = fork();
    if (pid == 0) {
        ptrace(PTRACE_TRACEME, 0, 0, 0);
        execv(argv[2], argv + 2);
        _exit(127);
    }
    int st;
    waitpid(pid, &st, 0);
    ptrace(PTRACE_SETOPTIONS, pid, 0, PTRACE_O_EXITKILL);
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/mem", pid);
    int mem = open(path, O_RDWR);
    uint8_t *shadow = 0;
    unsigned long lo = 0, hi = 0;
    ptrace(PTRACE_CONT, pid, 0, 0);
    while (waitpid(pid, &st, 0) == pid && WIFSTOPPED(st)) {
        int sig = WSTOPSIG(st);
        if (sig != SIGSEGV) { ptrace(PTRACE_CONT, pid, 0, sig); continue; }
        siginfo_t si;
        struct user_regs_struct r;
        ptrace(PTRACE_GETSIGINFO, pid, 0, &si);
        ptrace(PTRACE_GETREGS, pid, 0, &r);
        unsigned long addr = (unsigned long)si.si_addr;
        if (!shadow || addr < lo || addr >= hi) {
            char line[512];
            snprintf(path, sizeof path, "/proc/%d/maps", pid);
            FILE *maps = fopen(path, "r");
            while (fgets(line, sizeof line, maps)) {
                unsigned long a, b, off;
                if (sscanf(line, "%lx-%lx %*s %lx", &a, &b, &off) == 3 && a <= addr && addr < b) {
                    char mf[96];
                    snprintf(mf, sizeof mf, "/proc/%d/map_files/%lx-%lx", pid, a, b);
                    int fd = open(mf, O_RDWR);
                    shadow = mmap(0, b - a, PROT_READ | PROT_WRITE, MAP_SHARED, fd, off);
                    close(fd);
                    lo = a, hi = b;
                }
            }
            fclose(maps);
        }
        uint8_t c[16];
        pread(mem, c, sizeof c, r.rip);
        int i = 0, rex = 0;
        if ((c[i] & 0xf0) == 0x40) rex = c[i++];
        int op = c[i++], modrm = c[i++], mod = modrm >> 6, rm = modrm & 7, rg = ((modrm >> 3) & 7) | (rex & 4 ? 8 : 0);
        if (rm == 4 && mod != 3) { int sib = c[i++]; if (mod == 0 && (sib & 7) == 5) i += 4; }
        if (mod == 1) i += 1; else if (mod == 2 || (mod == 0 && rm == 5)) i += 4;
        int width = rex & 8 ? 8 : 4;
        uint8_t *p = shadow + (addr - lo);
        unsigned long long v;
        if (op == 0x89) {
            v = *reg(&r, rg);
            if (width == 8) *(volatile uint64_t *)p = v; else *(volatile uint32_t *)p = (uint32_t)v, v = (uint32_t)v;
        } else if (op == 0x8b) {
            v = width == 8 ? *(volatile uint64_t *)p : *(volatile uint32_t *)p;
            *reg(&r, rg) = v;
        } else { ptrace(PTRACE_CONT, pid, 0, SIGSEGV); continue; }
        r.rip += i;
        ptrace(PTRACE_SETREGS, pid, 0, &r);
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        fprintf(log, "%c %d %ld.%06ld 1 0x%lx 0x%llx 0x%llx %d\n", op == 0x89 ? 'W' : 'R', width, (long)ts.tv_sec,
                ts.tv_nsec / 1000, addr - lo, v, r.rip - i, pid);
        ptrace(PTRACE_CONT, pid, 0, 0);
    }
    fclose(log);
    return 0;
}
