/* The tracer's end of the agent's record ring (layout: _agent.c): committed records as
 * mmiotrace lines.  Compiled with cffi as kmmio.agent._ring (see _ring_build.py). */
#include <limits.h>
#include <linux/futex.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

struct ring_hdr {
    _Atomic uint64_t head;
    char pad1[56];
    _Atomic uint64_t tail;
    char pad2[56];
    _Atomic uint32_t waiters;
    uint32_t cap;
    _Atomic uint32_t detach;
    uint32_t tracer_pid;
    _Atomic uint64_t relocated;
    _Atomic uint64_t relocated_records;
};
struct rec {
    _Atomic uint64_t seq;
    uint32_t kind, width;
    uint64_t ts_us, map_id, phys, pc, tid;
    uint8_t value[64];
};
#define RING_HDR 4096

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

/* Committed records as lines into out (cap bytes); counts[0] += reads, counts[1] += writes.
 * Returns the bytes written. */
long kmmio_ring_take(uintptr_t base, uintptr_t out, long cap, uintptr_t counts)
{
    struct ring_hdr *h = (struct ring_hdr *)base;
    struct rec *recs = (struct rec *)(base + RING_HDR);
    uint64_t *c = (uint64_t *)counts;
    char *o = (char *)out;
    long used = 0;
    uint64_t tail = atomic_load_explicit(&h->tail, memory_order_relaxed);
    uint64_t head = atomic_load_explicit(&h->head, memory_order_acquire);
    uint64_t mask = h->cap - 1;
    while (tail < head && cap - used > 320) {
        struct rec *r = &recs[tail & mask];
        if (atomic_load_explicit(&r->seq, memory_order_acquire) != tail + 1)
            break; /* reserved, not yet written */
        int width = r->width > 64 ? 64 : (int)r->width;
        char *p = o + used;
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
        used = p - o;
        c[r->kind ? 1 : 0]++;
        tail++;
    }
    atomic_store_explicit(&h->tail, tail, memory_order_release);
    if (atomic_load(&h->waiters))
        syscall(SYS_futex, (uint32_t *)&h->tail, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
    return used;
}

/* Records reserved and not written (their writer may be dead). */
long kmmio_ring_pending(uintptr_t base)
{
    struct ring_hdr *h = (struct ring_hdr *)base;
    return (long)(atomic_load(&h->head) - atomic_load(&h->tail));
}

/* Step over the record at the tail, reserved by a thread that died before writing it. */
void kmmio_ring_skip(uintptr_t base)
{
    struct ring_hdr *h = (struct ring_hdr *)base;
    atomic_fetch_add(&h->tail, 1);
    syscall(SYS_futex, (uint32_t *)&h->tail, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

void kmmio_ring_detach(uintptr_t base)
{
    struct ring_hdr *h = (struct ring_hdr *)base;
    atomic_store(&h->detach, 1);
    syscall(SYS_futex, (uint32_t *)&h->tail, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}
