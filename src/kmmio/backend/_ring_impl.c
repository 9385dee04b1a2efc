/* The tracer's end of the agent's record ring (layout: ring_layout.h): written records as
 * mmiotrace lines.  Compiled with cffi as kmmio.backend._ring (see _ring_build.py). */
#include <limits.h>
#include <linux/futex.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
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

void kmmio_ring_init(uintptr_t base, uint32_t cap, uint32_t tracer_pid, int64_t clock_offset_us)
{
    struct ring_hdr *h = (struct ring_hdr *)base;
    memset(h, 0, sizeof *h);
    h->cap = cap;
    h->tracer_pid = tracer_pid;
    h->clock_offset_us = clock_offset_us;
}

/* One record as its mmiotrace line at p; the end of the line. */
static char *put_record(char *p, const struct rec *r)
{
    int width = r->width > 64 ? 64 : (int)r->width;
    /* "%c %d %lu.%06lu %lu 0x%lx <value> 0x%lx %lu\n", by hand: this is every record */
    *p++ = r->kind == REC_WRITE ? 'W' : 'R';
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

/* Lane i's record at position pos (below the head seen) if it is written, else NULL
 * (reserved, not yet written: its writer is at work, or dead). */
static struct rec *written(struct ring_hdr *h, uint64_t cap, unsigned i, uint64_t pos)
{
    struct rec *r = &lane_recs(h, i, cap)[pos & (cap - 1)];
    return atomic_load_explicit(&r->seq, memory_order_acquire) == pos + 1 ? r : NULL;
}

/* How long a record may stay reserved and not written before the reader stops waiting
 * for it (its writer is likely dead; if not, its record comes out late). */
#define STALE_US 200000

/* Written records as lines into out (size bytes), the lanes merged by timestamp; cap:
 * records per lane (the tracer's own figure, not the header's, which the program could
 * write).  counts[0] += reads, counts[1] += writes, counts[2] += records lost (a slot a
 * writer reserved and abandoned, written as lost by its thread later), counts[3] = written
 * records stamped up to ``now`` held back by a record still on its way.  ``now`` is the
 * tracer's clock, in the stamps' (UINT64_MAX: the end, every written record).
 *
 * Only records stamped up to ``now`` go out, and none stamped after a record that some
 * lane has on its way (stamped, maybe reserved, not written: its stamp is the lane's
 * ``inflight``), so that each take goes on in time order from the last.  Exceptions: a
 * writer stalled more than STALE_US on its way, or between reading the clock and leaving
 * its stamp; writers sharing a lane (more than LANES threads) whose stamps cross.  When a
 * writer waits for room, ``now`` is no limit (the clocks may disagree: a faked one).
 * Returns the bytes written. */
long kmmio_ring_take(uintptr_t base, uint64_t cap, uintptr_t out, long size, uintptr_t counts, uint64_t now)
{
    struct ring_hdr *h = (struct ring_hdr *)base;
    uint64_t *c = (uint64_t *)counts;
    int all = now == UINT64_MAX; /* the end: every written record */
    /* A writer waiting for room gets it whatever the clocks say: no cutoff by now then,
     * only the holds of records on their way (the waiter's own lane is older than its). */
    uint64_t cutoff = all || atomic_load(&h->waiters) ? UINT64_MAX : now;
    uint64_t tail[LANES], start[LANES], end[LANES];
    for (unsigned i = 0; i < LANES; i++) {
        struct lane *ln = &h->lane[i];
        start[i] = tail[i] = atomic_load_explicit(&ln->tail, memory_order_relaxed);
        uint64_t head = atomic_load_explicit(&ln->head, memory_order_acquire);
        uint64_t p = tail[i];
        while (p < head && written(h, cap, i, p))
            p++;
        end[i] = p;
        uint64_t coming = atomic_load_explicit(&ln->inflight, memory_order_relaxed);
        if (!all && (p < head || coming != atomic_load_explicit(&ln->written, memory_order_relaxed)) &&
            coming < cutoff && coming + STALE_US >= now)
            cutoff = coming; /* a record on its way: nothing newer goes before it */
    }
    struct rec *next[LANES];
    unsigned live[LANES], n = 0;
    for (unsigned i = 0; i < LANES; i++)
        if (tail[i] < end[i] && (next[i] = written(h, cap, i, tail[i]))->ts_us <= cutoff)
            live[n++] = i;
    char *o = (char *)out, *p = o;
    while (n && size - (p - o) > 320) {
        unsigned k = 0; /* the live lane whose next record is the oldest */
        for (unsigned j = 1; j < n; j++)
            if (next[live[j]]->ts_us < next[live[k]]->ts_us)
                k = j;
        unsigned i = live[k];
        struct rec *r = next[i];
        if (r->kind == REC_LOST) { /* left by a writer that never came back (see emit()) */
            c[2]++;
        } else {
            p = put_record(p, r);
            c[r->kind == REC_WRITE]++;
        }
        if (++tail[i] >= end[i] || (next[i] = written(h, cap, i, tail[i]))->ts_us > cutoff)
            live[k] = live[--n];
    }
    c[3] = 0;
    for (unsigned i = 0; i < LANES; i++)
        if (tail[i] < end[i] && written(h, cap, i, tail[i])->ts_us <= now)
            c[3]++;
    int moved = 0;
    for (unsigned i = 0; i < LANES; i++)
        if (tail[i] != start[i]) {
            atomic_store_explicit(&h->lane[i].tail, tail[i], memory_order_seq_cst);
            moved = 1;
        }
    if (moved && atomic_load_explicit(&h->waiters, memory_order_seq_cst)) /* after the tails */
        for (unsigned i = 0; i < LANES; i++)
            if (tail[i] != start[i])
                syscall(SYS_futex, (uint32_t *)&h->lane[i].tail, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
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

/* Step over a record reserved by a thread that died before writing it: the first lane
 * whose next record is reserved and not written.  Returns 1, or 0 when there is none. */
int kmmio_ring_skip(uintptr_t base, uint64_t cap)
{
    struct ring_hdr *h = (struct ring_hdr *)base;
    for (unsigned i = 0; i < LANES; i++) {
        struct lane *ln = &h->lane[i];
        uint64_t t = atomic_load(&ln->tail);
        if (t < atomic_load(&ln->head) && !written(h, cap, i, t)) {
            atomic_fetch_add(&ln->tail, 1);
            syscall(SYS_futex, (uint32_t *)&ln->tail, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
            return 1;
        }
    }
    return 0;
}

void kmmio_ring_detach(uintptr_t base)
{
    struct ring_hdr *h = (struct ring_hdr *)base;
    atomic_store(&h->detach, 1);
    for (unsigned i = 0; i < LANES; i++)
        syscall(SYS_futex, (uint32_t *)&h->lane[i].tail, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}
