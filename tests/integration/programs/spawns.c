/* spawns.c: children started by posix_spawn and posix_spawnp with an empty environment,
 * which the agent's wrappers give its two entries back, and by system() (glibc's runs
 * posix_spawn, which blocks every signal around its clone).
 * Usage: spawns FILE.  Starts "spawns FILE child 1" with posix_spawn and "spawns FILE
 * child 2" with posix_spawnp, each with envp = { NULL }, and waits for both, then
 * "spawns FILE child 3" with system(); a child maps FILE and writes its number to word
 * N.  Prints "spawned 3" when all three exited 0. */
#include <fcntl.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc == 4 && strcmp(argv[2], "child") == 0) {
        int fd = open(argv[1], O_RDWR);
        volatile uint32_t *w = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        int k = atoi(argv[3]);
        w[k] = (uint32_t)k;
        return 0;
    }
    int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || ftruncate(fd, 4096)) return 1;
    char *none[] = {NULL};
    char *one[] = {argv[0], argv[1], "child", "1", NULL}, *two[] = {argv[0], argv[1], "child", "2", NULL};
    pid_t a, b;
    int sa, sb;
    if (posix_spawn(&a, argv[0], NULL, NULL, one, none) || posix_spawnp(&b, argv[0], NULL, NULL, two, none))
        return 1;
    waitpid(a, &sa, 0);
    waitpid(b, &sb, 0);
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s %s child 3", argv[0], argv[1]);
    int sc = system(cmd);
    printf("spawned %d\n", (sa == 0) + (sb == 0) + (sc == 0));
    return 0;
}
