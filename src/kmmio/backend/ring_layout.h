/* ring_layout.h: the record ring shared by the in-process agent (kmmio/agent/_agent.c, the
 * writers) and the tracer (kmmio/backend/_ring_impl.c, the reader), in a memfd only they
 * hold.  One header both compile, so the two ends cannot disagree.
 *
 * The ring is LANES lanes, each its own little ring of ``cap`` records with its own head
 * and tail on cache lines of their own: a thread writes into lane tid % LANES, so threads
 * do not share the position they reserve with (one shared head was the one cache line
 * every access of every thread fought over).  The tracer merges the lanes by timestamp.
 *
 *   [0, 4096)           struct ring_hdr (lane i's head and tail in lane[i])
 *   [4096, ...)         lane 0's cap records, lane 1's, ...
 */
#ifndef KMMIO_RING_LAYOUT_H
#define KMMIO_RING_LAYOUT_H
#include <stdatomic.h>
#include <stdint.h>

#define LANES 16
#define RING_HDR 4096

struct lane {
    _Atomic uint64_t head; /* positions reserved by writers */
    char pad1[56];
    _Atomic uint64_t tail; /* positions the tracer has taken (writers wait on it when full) */
    char pad2[56];
};

struct ring_hdr {
    _Atomic uint32_t waiters; /* threads waiting for room */
    uint32_t cap;             /* records per lane, a power of two */
    _Atomic uint32_t detach;  /* the tracer is going: disarm everything, record nothing */
    uint32_t tracer_pid;
    _Atomic uint64_t relocated; /* kept relocations run, and their records (byte 16, 24) */
    _Atomic uint64_t relocated_records;
    char pad[128 - 32];
    struct lane lane[LANES]; /* from byte 128 */
};

struct rec {
    _Atomic uint64_t seq; /* position + 1 once written */
    uint32_t kind, width; /* kind 0 R, 1 W */
    uint64_t ts_us, map_id, phys, pc, tid;
    uint8_t value[64];
};

_Static_assert(sizeof(struct ring_hdr) <= RING_HDR, "the ring's header fits its page");
_Static_assert(sizeof(struct rec) == 120, "records are 120 bytes");

/* Lane ``i``'s records. */
static inline struct rec *lane_recs(struct ring_hdr *h, unsigned i)
{
    return (struct rec *)((char *)h + RING_HDR) + (uint64_t)i * h->cap;
}

#endif
