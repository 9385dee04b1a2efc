/* sysvshm.c: a System V shared memory segment, attached twice.  Usage: sysvshm.
 * Makes a 2-page segment (shmget IPC_PRIVATE: in /proc/PID/maps "/SYSV00000000 (deleted)"),
 * attaches it read-write at A and read-only at B (shmat, SHM_RDONLY), marks it for removal
 * at once (IPC_RMID: it lives until its last detach, so no segment outlives a failed run),
 * writes through A (4 bytes at 0, 8 across the pages' line at 0xffc, 2 at the end), reads
 * them back through B, detaches A (shmdt) and reads through B again, then detaches B.
 * Prints "W A|B OFFSET VALUE" / "R A|B OFFSET VALUE" per access (offset into the segment),
 * then "done". */
#include <stdint.h>
#include <stdio.h>
#include <sys/ipc.h>
#include <sys/shm.h>

#define SIZE 8192

static volatile uint8_t *a, *b;

#define W(T, off, val) do { *(volatile T *)(a + (off)) = (T)(val); \
    printf("W A 0x%x 0x%llx\n", (unsigned)(off), (unsigned long long)(T)(val)); } while (0)
#define R(T, off) do { T v_ = *(volatile T *)(b + (off)); \
    printf("R B 0x%x 0x%llx\n", (unsigned)(off), (unsigned long long)v_); } while (0)

int main(void) {
    int id = shmget(IPC_PRIVATE, SIZE, IPC_CREAT | 0600);
    if (id < 0) { perror("shmget"); return 3; }
    a = shmat(id, 0, 0);
    b = shmat(id, 0, SHM_RDONLY);
    shmctl(id, IPC_RMID, 0);
    if (a == (void *)-1 || b == (void *)-1) { perror("shmat"); return 3; }
    W(uint32_t, 0x0, 0x11223344);
    W(uint64_t, 0xffc, 0x5566778899aabbccULL);
    W(uint16_t, SIZE - 2, 0xddee);
    R(uint32_t, 0x0);
    R(uint64_t, 0xffc);
    if (shmdt((void *)a)) { perror("shmdt"); return 3; }
    R(uint16_t, SIZE - 2);
    R(uint32_t, 0x1000);
    if (shmdt((void *)b)) { perror("shmdt"); return 3; }
    printf("done\n");
    return 0;
}
