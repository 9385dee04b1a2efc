/* ring_layout.h: the record ring shared by the in-process agent (kmmio/agent/_agent.c, the
 * writers) and the tracer (kmmio/backend/_ring_impl.c, the reader), in a memfd only they
 * hold.  One header both compile, so the two ends cannot disagree.
 *
 * The ring is LANES lanes, each its own little ring of ``cap`` records with its own head
 * and tail on cache lines of their own.  A thread takes a lane of its own on its first
 * record (``owner``: a free lane, or one whose owner thread is gone), so threads do not
 * share the position they reserve with (one shared head was the one cache line every
 * access of every thread fought over); with LANES threads alive and recording, a new one
 * shares a lane (round robin: ``next_lane``).
 *
 * The tracer merges the lanes by timestamp.  A writer stamps its record, leaves the stamp
 * in its lane's ``inflight``, reserves a position (noting it first: a signal handler
 * leaving by siglongjmp mid-record has the thread write it as lost later, emit()),
 * writes the record and, once it is written, leaves the stamp in ``written`` too: a reader that finds a position reserved
 * and not written, or ``inflight`` not yet ``written``, knows how old the record on its
 * way is, and takes nothing newer from the other lanes meanwhile.  Stamps are in the
 * tracer's clock (``clock_offset_us``: the agent's process may live in another time
 * namespace).
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
    _Atomic uint64_t head;     /* positions reserved by writers */
    _Atomic uint64_t inflight; /* the stamp of the record being made (see above) */
    _Atomic uint64_t written;  /* and of the record last written */
    char pad1[40];
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
    int64_t clock_offset_us;     /* the tracer's CLOCK_MONOTONIC ahead of the host's (byte 32) */
    _Atomic uint32_t next_lane;  /* lanes handed out to share so far */
    _Atomic uint32_t owner[LANES]; /* the thread id a lane is its own, or 0 (byte 44) */
    char pad[128 - 44 - 4 * LANES];
    struct lane lane[LANES]; /* from byte 128 */
};

enum { REC_READ = 0, REC_WRITE = 1, REC_LOST = 2 }; /* a record's kind */

struct rec {
    _Atomic uint64_t seq; /* position + 1 once written */
    uint32_t kind, width; /* REC_*: a lost one holds nothing else */
    uint64_t ts_us, map_id, phys, pc, tid;
    uint8_t value[64];
};

_Static_assert(sizeof(struct ring_hdr) <= RING_HDR, "the ring's header fits its page");
_Static_assert(sizeof(struct rec) == 120, "records are 120 bytes");

/* Lane ``i``'s records, ``cap`` of them. */
static inline struct rec *lane_recs(struct ring_hdr *h, unsigned i, uint64_t cap)
{
    return (struct rec *)((char *)h + RING_HDR) + (uint64_t)i * cap;
}

/* Write the record at position pos as lost: its writer never came back to it. */
static inline void rec_lost(struct rec *x, uint64_t pos)
{
    x->kind = REC_LOST;
    x->width = 0;
    atomic_store_explicit(&x->seq, pos + 1, memory_order_release);
}

/* A number of records a lane can hold: a power of two, not zero. */
static inline int lane_cap_ok(uint64_t cap)
{
    return cap && !(cap & (cap - 1));
}

#endif
