/* timeouts.c: a poll loop abandoned by a timeout, over and over, the way old driver code
 * does it: an interval timer's SIGALRM handler siglongjmps out of whatever the loop was
 * doing, in the middle of a traced store as often as not.
 * Usage: timeouts FILE N [T].  Writes 0..N-1 to the first word of FILE (mapped shared),
 * the timer firing every 300 us and each time starting the loop again from where it was.
 * With T, T threads first, one after the other, each making 100 writes of its own (to the
 * second word) and ending before the next starts: the loop's thread comes to record after
 * more threads than the agent has lanes for at once.  Prints "N writes, T timeouts". */
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <unistd.h>

static sigjmp_buf again;

static volatile uint32_t *word;

static void *brief(void *arg) {
    for (int i = 0; i < 100; i++) word[1] = (uint32_t)(uintptr_t)arg;
    return 0;
}

static void on_alarm(int sig) {
    (void)sig;
    siglongjmp(again, 1);
}

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || ftruncate(fd, 4096)) return 2;
    word = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    long n = atol(argv[2]);
    for (long t = 0; argc > 3 && t < atol(argv[3]); t++) {
        pthread_t th;
        pthread_create(&th, 0, brief, (void *)(uintptr_t)t);
        pthread_join(th, 0);
    }
    struct sigaction sa = {0};
    sa.sa_handler = on_alarm;
    sigaction(SIGALRM, &sa, 0);
    struct itimerval every = {{0, 300}, {0, 300}}, stop = {{0, 0}, {0, 0}};
    static volatile long done, timeouts;
    if (sigsetjmp(again, 1)) timeouts++;
    setitimer(ITIMER_REAL, &every, 0);
    while (done < n) {
        *word = (uint32_t)done;
        done++;
    }
    setitimer(ITIMER_REAL, &stop, 0);
    printf("%ld writes, %ld timeouts\n", (long)done, (long)timeouts);
    return 0;
}
