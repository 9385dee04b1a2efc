/* signals.c: signals in the middle of traced accesses.
 * Usage: signals FILE ROUNDS [slow] [autodisarm].
 * A SIGALRM timer fires every 2 ms while the main loop writes and reads back the traced
 * mapping, ROUNDS times and then on until the timer has fired at least 64 times (however
 * fast the machine); the SIGALRM handler runs on an alternate signal stack (sigaltstack)
 * and itself reads and increments a counter in the traced mapping (at 0x100).  A SIGSEGV
 * handler, on the alternate stack too, owns a guard page (PROT_NONE, not traced) that the
 * loop touches every 100 rounds: it opens the page, and the loop closes it again.  Each
 * time, that handler also increments a counter in the traced mapping (at 0x200: a read and
 * a write) while SIGSEGV is blocked (as it is inside its own handler), and checks that it is
 * still blocked after.
 * Prints "rounds N" (rounds the loop made), "alarms N" (SIGALRM handler runs), "guard N"
 * (faults the handler caught), "blocked N" (traced accesses made inside the SIGSEGV
 * handler with SIGSEGV blocked, each an increment), "altstack yes|no" (every handler ran
 * on the alternate stack), "ok" or "BAD" (a value read back wrong, a counter in the mapping
 * that does not match, or SIGSEGV unblocked by a traced access).
 * It prints "ready PID" once its handlers are in place; with "slow" it sleeps 100 us every
 * 16 rounds, to be attached to.  With "autodisarm" the alternate stack is SS_AUTODISARM:
 * the kernel disarms it while a handler runs on it and arms it again at rt_sigreturn (a
 * handler's return that skipped that would leave it disarmed: the next handlers would
 * run off it). */
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#ifndef SS_AUTODISARM
#define SS_AUTODISARM (1U << 31)
#endif

static volatile uint8_t *regs;
static uint8_t *guard;
static char *alt;
static volatile long alarms, guard_faults, off_stack, blocked, unblocked;

static int segv_blocked(void) {
    sigset_t now;
    sigprocmask(SIG_BLOCK, 0, &now);
    return sigismember(&now, SIGSEGV);
}

static int on_alt_stack(void) {
    char here;
    return &here >= alt && &here < alt + SIGSTKSZ * 4;
}

static void on_alarm(int sig) {
    (void)sig;
    off_stack += !on_alt_stack();
    *(volatile uint32_t *)(regs + 0x100) = *(volatile uint32_t *)(regs + 0x100) + 1;
    alarms++;
}

static void on_segv(int sig, siginfo_t *si, void *ctx) {
    (void)sig; (void)ctx;
    off_stack += !on_alt_stack();
    if ((uint8_t *)si->si_addr < guard || (uint8_t *)si->si_addr >= guard + 4096) abort();
    guard_faults++;
    if (segv_blocked()) { /* a traced access with SIGSEGV blocked: it must stay so */
        *(volatile uint32_t *)(regs + 0x200) = *(volatile uint32_t *)(regs + 0x200) + 1;
        blocked++;
        unblocked += !segv_blocked();
    }
    mprotect(guard, 4096, PROT_READ | PROT_WRITE);
}

int main(int argc, char **argv) {
    int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || ftruncate(fd, 4096)) return 1;
    long rounds = atol(argv[2]);
    regs = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    guard = mmap(0, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    alt = malloc(SIGSTKSZ * 4);
    int slow = 0, autodisarm = 0;
    for (int k = 3; k < argc; k++) {
        slow |= !strcmp(argv[k], "slow");
        autodisarm |= !strcmp(argv[k], "autodisarm");
    }
    stack_t ss = {.ss_sp = alt, .ss_size = SIGSTKSZ * 4, .ss_flags = autodisarm ? (int)SS_AUTODISARM : 0};
    sigaltstack(&ss, 0);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sa.sa_flags = SA_ONSTACK | SA_RESTART;
    sigaction(SIGALRM, &sa, 0);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_ONSTACK | SA_SIGINFO;
    sigaction(SIGSEGV, &sa, 0);
    printf("ready %d\n", (int)getpid());
    fflush(stdout);
    struct timespec nap = {0, 100000};
    struct itimerval every = {{0, 2000}, {0, 2000}};
    setitimer(ITIMER_REAL, &every, 0);
    int bad = 0;
    long i;
    for (i = 0; i < rounds || alarms < 64; i++) {
        *(volatile uint32_t *)(regs + 0x10) = (uint32_t)i;
        bad |= *(volatile uint32_t *)(regs + 0x10) != (uint32_t)i;
        if (slow && i % 16 == 0) nanosleep(&nap, 0);
        if (i % 100 == 0) {
            guard[8] = 1; /* faults: the handler opens the page */
            mprotect(guard, 4096, PROT_NONE);
        }
    }
    struct itimerval stop = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &stop, 0);
    bad |= *(volatile uint32_t *)(regs + 0x100) != (uint32_t)alarms;
    bad |= *(volatile uint32_t *)(regs + 0x200) != (uint32_t)blocked;
    bad |= unblocked != 0;
    printf("rounds %ld\nalarms %ld\nguard %ld\nblocked %ld\naltstack %s\n%s\n", i, alarms, guard_faults, blocked,
           off_stack ? "no" : "yes", bad ? "BAD" : "ok");
    return 0;
}
