/* The tracer's end of the agent's record ring (layout: ring_layout.h): written records as
 * mmiotrace lines.  Compiled with cffi as kmmio.backend._ring (see _ring_build.py). */
#include <limits.h>
#include <linux/futex.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "ring_layout.h"

static const char HEX[] = "0123456789abcdef";

/* A little-endian number of n bytes as 0x... without leading zeros (0x0 for zero). */
static int put_hex(char *o, const uint8_t *v, int n)
{
    int top = n - 1;
    while (top > 0 && !v[top])
        top--;
    char *p = o;
    *p++ = '0';
    *p++ = 'x';
    if (v[top] >> 4)
        *p++ = HEX[v[top] >> 4];
    *p++ = HEX[v[top] & 15];
    for (int i = top - 1; i >= 0; i--) {
        *p++ = HEX[v[i] >> 4];
        *p++ = HEX[v[i] & 15];
    }
    return (int)(p - o);
}

/* A number in decimal, at least ``digits`` of them (zeros in front). */
static char *put_dec(char *o, uint64_t v, int digits)
{
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n < digits)
        tmp[n++] = '0';
    while (n)
        *o++ = tmp[--n];
    return o;
}

/* A 64-bit number as 0x... without leading zeros (0x0 for zero). */
static char *put_word(char *o, uint64_t v)
{
    uint8_t b[8];
    memcpy(b, &v, 8);
    return o + put_hex(o, b, 8);
}

void kmmio_ring_init(uintptr_t base, uint32_t cap, uint32_t tracer_pid)
{
    struct ring_hdr *h = (struct ring_hdr *)base;
    memset(h, 0, sizeof *h);
    h->cap = cap;
    h->tracer_pid = tracer_pid;
}

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* One record as its mmiotrace line at p; the end of the line. */
static char *put_record(char *p, const struct rec *r)
{
    int width = r->width > 64 ? 64 : (int)r->width;
    /* "%c %d %lu.%06lu %lu 0x%lx <value> 0x%lx %lu\n", by hand: this is every record */
    *p++ = r->kind ? 'W' : 'R';
    *p++ = ' ';
    p = put_dec(p, (uint64_t)width, 0);
    *p++ = ' ';
    p = put_dec(p, r->ts_us / 1000000, 0);
    *p++ = '.';
    p = put_dec(p, r->ts_us % 1000000, 6);
    *p++ = ' ';
    p = put_dec(p, r->map_id, 0);
    *p++ = ' ';
    p = put_word(p, r->phys);
    *p++ = ' ';
    p += put_hex(p, r->value, width);
    *p++ = ' ';
    p = put_word(p, r->pc);
    *p++ = ' ';
    p = put_dec(p, r->tid, 0);
    *p++ = '\n';
    return p;
}

/* Lane i's record at position pos if it is written (else NULL: not reserved yet, or
 * reserved and not yet written). */
static struct rec *written(struct ring_hdr *h, unsigned i, uint64_t pos)
{
    if (pos >= atomic_load_explicit(&h->lane[i].head, memory_order_acquire))
        return NULL;
    struct rec *r = &lane_recs(h, i)[pos & (h->cap - 1)];
    return atomic_load_explicit(&r->seq, memory_order_acquire) == pos + 1 ? r : NULL;
}

/* Written records as lines into out (cap bytes), the lanes merged by timestamp;
 * counts[0] += reads, counts[1] += writes.  Unless ``final``, only records stamped up to
 * this call's microsecond: one stamped later may be written in a lane this has looked at
 * already, and goes out next time, still in time order.  Returns the bytes written. */
long kmmio_ring_take(uintptr_t base, uintptr_t out, long cap, uintptr_t counts, int final)
{
    struct ring_hdr *h = (struct ring_hdr *)base;
    uint64_t *c = (uint64_t *)counts;
    uint64_t cutoff = final ? UINT64_MAX : now_us();
    uint64_t tail[LANES], start[LANES];
    struct rec *next[LANES];
    unsigned live[LANES], n = 0;
    for (unsigned i = 0; i < LANES; i++) {
        start[i] = tail[i] = atomic_load_explicit(&h->lane[i].tail, memory_order_relaxed);
        if ((next[i] = written(h, i, tail[i])) && next[i]->ts_us <= cutoff)
            live[n++] = i;
    }
    char *o = (char *)out, *p = o;
    while (n && cap - (p - o) > 320) {
        unsigned k = 0; /* the live lane whose next record is the oldest */
        for (unsigned j = 1; j < n; j++)
            if (next[live[j]]->ts_us < next[live[k]]->ts_us)
                k = j;
        unsigned i = live[k];
        struct rec *r = next[i];
        p = put_record(p, r);
        c[r->kind ? 1 : 0]++;
        tail[i]++;
        if (!(next[i] = written(h, i, tail[i])) || next[i]->ts_us > cutoff)
            live[k] = live[--n];
    }
    for (unsigned i = 0; i < LANES; i++)
        if (tail[i] != start[i]) {
            atomic_store_explicit(&h->lane[i].tail, tail[i], memory_order_release);
            if (atomic_load(&h->waiters))
                syscall(SYS_futex, (uint32_t *)&h->lane[i].tail, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
        }
    return p - o;
}

/* Records reserved and not taken, in all lanes (written or not: a writer may be dead). */
long kmmio_ring_pending(uintptr_t base)
{
    struct ring_hdr *h = (struct ring_hdr *)base;
    long n = 0;
    for (unsigned i = 0; i < LANES; i++)
        n += (long)(atomic_load(&h->lane[i].head) - atomic_load(&h->lane[i].tail));
    return n;
}

/* Step over a record reserved by a thread that died before writing it (the first lane
 * whose next record is reserved and not written). */
void kmmio_ring_skip(uintptr_t base)
{
    struct ring_hdr *h = (struct ring_hdr *)base;
    for (unsigned i = 0; i < LANES; i++) {
        struct lane *ln = &h->lane[i];
        uint64_t t = atomic_load(&ln->tail);
        if (t < atomic_load(&ln->head) && !written(h, i, t)) {
            atomic_fetch_add(&ln->tail, 1);
            syscall(SYS_futex, (uint32_t *)&ln->tail, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
            return;
        }
    }
}

void kmmio_ring_detach(uintptr_t base)
{
    struct ring_hdr *h = (struct ring_hdr *)base;
    atomic_store(&h->detach, 1);
    for (unsigned i = 0; i < LANES; i++)
        syscall(SYS_futex, (uint32_t *)&h->lane[i].tail, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}
