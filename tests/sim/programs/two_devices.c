/* Test program: two threads, each driving its own CRC engine (kmmio.demo.crc).
 *   two_devices PATH_A PATH_B
 * Thread 1 computes the CRC of "first device" on PATH_A, thread 2 that of "second device,
 * other words" on PATH_B, at the same time; each prints its result; exit 0 when both are
 * zlib's CRC-32.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static uint32_t crc32(const unsigned char *p, size_t n)
{
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0xedb88320u & -(c & 1));
    }
    return c ^ 0xffffffffu;
}

struct job {
    const char *path, *text;
    int ok;
};

static void *drive(void *arg)
{
    struct job *j = arg;
    int fd = open(j->path, O_RDWR);
    volatile uint32_t *r = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (fd < 0 || r == MAP_FAILED)
        return NULL;
    unsigned char buf[64] = {0};
    size_t n = (strlen(j->text) + 3) / 4 * 4;
    memcpy(buf, j->text, strlen(j->text));
    r[1] = 2;
    for (size_t i = 0; i < n; i += 4) {
        uint32_t w;
        memcpy(&w, buf + i, 4);
        r[3] = w;
    }
    r[1] = 1;
    while (r[2] & 1)
        ;
    uint32_t got = r[4];
    j->ok = got == crc32(buf, n);
    printf("%s %#010x %s\n", j->path, got, j->ok ? "ok" : "WRONG");
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 3)
        return 2;
    struct job a = {argv[1], "first device", 0}, b = {argv[2], "second device, other words", 0};
    pthread_t t1, t2;
    pthread_create(&t1, NULL, drive, &a);
    pthread_create(&t2, NULL, drive, &b);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    return a.ok && b.ok ? 0 : 1;
}
