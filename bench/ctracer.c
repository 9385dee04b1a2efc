/* ctracer.c: the floor for bench/run.py, the least a C ptrace tracer can do to trace the
 * workload's accesses the way kmmio's emulation path does.
 *
 * What it does, for each SIGSEGV stop: PTRACE_GETSIGINFO (the fault address, and that it
 * is a fault and not a kill()) and PTRACE_GETREGS; the instruction at rip decoded once
 * and kept per PC (a 4/8-byte `mov` to or from memory, opcodes 89 and 8b, any ModRM form);
 * the access performed through a shadow MAP_SHARED view of /proc/PID/map_files; a store
 * moves rip alone (PTRACE_POKEUSER), a load sets the registers (PTRACE_SETREGS); then
 * PTRACE_CONT.  The same syscalls kmmio makes per access, fewer where it could.
 *
 * What it does not do, and kmmio does: log the accesses (it only counts them, and writes
 * the count to LOG at the end), check that the page is armed and traced, handle other
 * instructions, threads, signals, syscalls or mappings that come and go.
 *
 * Usage: ctracer LOG PROGRAM [ARG ...].  Not part of kmmio: a yardstick. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

static unsigned long long *reg(struct user_regs_struct *r, int n) {
    unsigned long long *t[16] = {&r->rax, &r->rcx, &r->rdx, &r->rbx, &r->rsp, &r->rbp, &r->rsi, &r->rdi,
                                 &r->r8,  &r->r9,  &r->r10, &r->r11, &r->r12, &r->r13, &r->r14, &r->r15};
    return t[n];
}

/* A decoded instruction, kept per PC (the workload's code cannot change). */
struct insn {
    unsigned long rip;
    int op, reg, width, len;
};
#define CACHE 64
static struct insn cache[CACHE];

static const struct insn *decode(int mem, unsigned long rip) {
    struct insn *d = &cache[(rip >> 1) % CACHE];
    if (d->rip == rip) return d;
    uint8_t c[16];
    if (pread(mem, c, sizeof c, rip) <= 0) return 0;
    int i = 0, rex = 0;
    if ((c[i] & 0xf0) == 0x40) rex = c[i++];
    int op = c[i++], modrm = c[i++], mod = modrm >> 6, rm = modrm & 7;
    if (rm == 4 && mod != 3) {
        int sib = c[i++];
        if (mod == 0 && (sib & 7) == 5) i += 4;
    }
    if (mod == 1)
        i += 1;
    else if (mod == 2 || (mod == 0 && rm == 5))
        i += 4;
    *d = (struct insn){rip, op, ((modrm >> 3) & 7) | (rex & 4 ? 8 : 0), rex & 8 ? 8 : 4, i};
    return d;
}

int main(int argc, char **argv) {
    if (argc < 3) return 2;
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
    int mem = open(path, O_RDONLY);
    uint8_t *shadow = 0;
    unsigned long lo = 0, hi = 0, traced = 0;
    const long rip_at = offsetof(struct user_regs_struct, rip);
    ptrace(PTRACE_CONT, pid, 0, 0);
    while (waitpid(pid, &st, 0) == pid && WIFSTOPPED(st)) {
        int sig = WSTOPSIG(st);
        if (sig != SIGSEGV) {
            ptrace(PTRACE_CONT, pid, 0, sig);
            continue;
        }
        siginfo_t si;
        struct user_regs_struct r;
        ptrace(PTRACE_GETSIGINFO, pid, 0, &si);
        ptrace(PTRACE_GETREGS, pid, 0, &r);
        unsigned long addr = (unsigned long)si.si_addr;
        if (si.si_code <= 0) { /* sent with kill(): the program's own */
            ptrace(PTRACE_CONT, pid, 0, SIGSEGV);
            continue;
        }
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
        const struct insn *d = decode(mem, r.rip);
        uint8_t *p = shadow + (addr - lo);
        if (d && d->op == 0x89) {
            unsigned long long v = *reg(&r, d->reg);
            if (d->width == 8)
                *(volatile uint64_t *)p = v;
            else
                *(volatile uint32_t *)p = (uint32_t)v;
            ptrace(PTRACE_POKEUSER, pid, (void *)rip_at, (void *)(r.rip + d->len));
        } else if (d && d->op == 0x8b) {
            /* a 32-bit load clears the register's upper half, as the CPU does */
            *reg(&r, d->reg) = d->width == 8 ? *(volatile uint64_t *)p : *(volatile uint32_t *)p;
            r.rip += d->len;
            ptrace(PTRACE_SETREGS, pid, 0, &r);
        } else {
            ptrace(PTRACE_CONT, pid, 0, SIGSEGV);
            continue;
        }
        traced++;
        ptrace(PTRACE_CONT, pid, 0, 0);
    }
    FILE *log = fopen(argv[1], "w");
    if (log) {
        fprintf(log, "%lu accesses\n", traced);
        fclose(log);
    }
    return 0;
}
