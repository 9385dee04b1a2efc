/* stoppable.c: a program that works on a traced mapping until it is told to stop.
 * Usage: stoppable FILE HOW [STOPFILE].  Maps FILE (one page, shared), prints "ready PID",
 * then loops: writes its counter to the mapping, reads it back and checks it, sleeping
 * 200 us every 64 rounds.  It never finishes by itself; what ends it is HOW:
 *   "die":    SIGTERM and SIGHUP keep their default action (they kill it: status 128+N);
 *   "handle": SIGTERM and SIGHUP are caught: the loop ends, it prints "caught SIGTERM"
 *             (or "caught SIGHUP") and exits 0 (1 if a read-back ever differed);
 *   "ignore": SIGTERM and SIGHUP are ignored (only SIGKILL ends it).
 * With STOPFILE, the loop also ends once that file exists (looked for every 64 rounds):
 * it prints "ok" (every read-back matched) or "BAD" and exits 0 or 1.
 * Every line is flushed at once, so what it printed survives a signal that kills it. */
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t caught;
static void on_signal(int sig) { caught = sig; }

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    const char *how = argv[2], *stopfile = argc > 3 ? argv[3] : 0;
    int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || ftruncate(fd, 4096)) return 1;
    volatile uint32_t *reg = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (reg == MAP_FAILED) return 1;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    if (strcmp(how, "handle") == 0) {
        sa.sa_handler = on_signal;
    } else if (strcmp(how, "ignore") == 0) {
        sa.sa_handler = SIG_IGN;
    } else if (strcmp(how, "die") == 0) {
        sa.sa_handler = SIG_DFL;
    } else {
        return 2;
    }
    sigaction(SIGTERM, &sa, 0);
    sigaction(SIGHUP, &sa, 0);
    printf("ready %d\n", getpid());
    fflush(stdout);
    struct timespec pause = {0, 200000};
    int bad = 0;
    for (uint32_t i = 1; !caught; i++) {
        reg[0] = i;
        if (reg[0] != i) bad = 1;
        if (i % 64 == 0) {
            if (stopfile && access(stopfile, F_OK) == 0) {
                printf(bad ? "BAD\n" : "ok\n");
                return bad;
            }
            nanosleep(&pause, 0);
        }
    }
    printf("caught %s\n", caught == SIGTERM ? "SIGTERM" : "SIGHUP");
    return bad;
}
