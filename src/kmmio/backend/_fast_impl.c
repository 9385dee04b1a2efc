/* The ptrace backend's fast loop: plain loads and stores served without Python.
 *
 * Compiled with _sys_impl.c (see _sys_build.py), whose guarded view accesses it uses.
 *
 * Python decides, this only executes.  Python hands over, in plain 64-bit words:
 *  - descriptors (kmmio.x86.quick.QuickOp), one per instruction address of an address
 *    space ("space": an id Python gives each traced process): how to compute the address,
 *    which register or immediate moves, where the instruction ends;
 *  - ranges: per space, the traced bytes a plain access may be performed on right now
 *    (pages armed, covered by the log's probes, the protection the program asked for
 *    allowing it, the tracer's view of them mapped: its address);
 *  - threads: which may be served here (no SIGSEGV action to mend, none held...), and
 *    whether they resume with PTRACE_CONT or PTRACE_SYSCALL.
 *
 * kmmio_serve() then waits for the tracees (waitid, as Python's loop does) and serves every
 * SIGSEGV stop that all of this covers: GETSIGINFO and GETREGS, the access through the
 * view (one instruction of the program's width), the registers (POKEUSER of rip for a
 * store, SETREGS for a load), CONT; and a row for the log.  Anything else (another stop, an
 * instruction or address it does not know, a view that faults) goes back to Python with
 * its status, untouched, before any side effect.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <time.h>

#define W_RIP 16
#define RIP_OFFSET (W_RIP * 8)

struct fast_desc {
    uint64_t space, rip;
    uint64_t write, width;
    int64_t base_i, base_shift;
    uint64_t base_mask;
    int64_t index_i, index_shift;
    uint64_t index_mask, scale, disp;
    int64_t seg_i, reg_i, reg_shift;
    uint64_t reg_mask, has_imm, imm, sign_bit, next_ip;
};
#define DESC_WORDS (sizeof(struct fast_desc) / 8)
#define DESC_CAP 8192
static struct fast_desc descs[DESC_CAP];
static int desc_count;

struct fast_range {
    uint64_t space, lo, hi, view, phys, map_id, can_read, can_write, page_mask;
};
#define RANGE_WORDS (sizeof(struct fast_range) / 8)
#define RANGE_CAP 4096
static struct fast_range ranges[RANGE_CAP];
static int range_count;

struct fast_thread {
    uint64_t tid, space, ok, resume;
};
#define THREAD_WORDS (sizeof(struct fast_thread) / 8)
#define THREAD_CAP 4096
static struct fast_thread threads[THREAD_CAP];

static uint64_t hash64(uint64_t a, uint64_t b)
{
    uint64_t h = a * 0x9E3779B97F4A7C15ull ^ (b + 0x632BE59BD9B4E019ull);
    return h ^ (h >> 29);
}

static struct fast_desc *desc_slot(uint64_t space, uint64_t rip, int for_insert)
{
    uint64_t i = hash64(space, rip) % DESC_CAP;
    for (int n = 0; n < DESC_CAP; n++, i = (i + 1) % DESC_CAP) {
        struct fast_desc *d = &descs[i];
        if (!d->space)
            return for_insert ? d : NULL;
        if (d->space == space && d->rip == rip)
            return d;
    }
    return NULL;
}

/* Add (or replace) a descriptor: DESC_WORDS words at `words`.  -1 when the table is full. */
static int kmmio_fast_desc(uintptr_t words)
{
    const struct fast_desc *d = (const struct fast_desc *)words;
    if (!d->space || desc_count >= DESC_CAP * 3 / 4)
        return -1;
    struct fast_desc *slot = desc_slot(d->space, d->rip, 1);
    if (!slot)
        return -1;
    if (!slot->space)
        desc_count++;
    *slot = *d;
    return 0;
}

/* Forget the descriptors of one space (0: of every space): its code may have changed. */
static void kmmio_fast_forget(uint64_t space)
{
    if (!space) {
        memset(descs, 0, sizeof descs);
        desc_count = 0;
        return;
    }
    static struct fast_desc keep[DESC_CAP];
    int n = 0;
    for (int i = 0; i < DESC_CAP; i++)
        if (descs[i].space && descs[i].space != space)
            keep[n++] = descs[i];
    memset(descs, 0, sizeof descs);
    desc_count = 0;
    for (int i = 0; i < n; i++)
        kmmio_fast_desc((uintptr_t)&keep[i]);
}

/* Replace every range: n of RANGE_WORDS words, sorted by space then lo.  -1: too many. */
static int kmmio_fast_ranges(uintptr_t words, int n)
{
    if (n < 0 || n > RANGE_CAP)
        return -1;
    memcpy(ranges, (const void *)words, (size_t)n * sizeof(struct fast_range));
    range_count = n;
    return 0;
}

/* Replace the thread table: n of THREAD_WORDS words.  -1: too many. */
static int kmmio_fast_threads(uintptr_t words, int n)
{
    if (n < 0 || n > THREAD_CAP / 2)
        return -1;
    memset(threads, 0, sizeof threads);
    const struct fast_thread *t = (const struct fast_thread *)words;
    for (int k = 0; k < n; k++) {
        uint64_t i = hash64(t[k].tid, 0) % THREAD_CAP;
        while (threads[i].tid)
            i = (i + 1) % THREAD_CAP;
        threads[i] = t[k];
    }
    return 0;
}

static const struct fast_thread *find_thread(uint64_t tid)
{
    uint64_t i = hash64(tid, 0) % THREAD_CAP;
    while (threads[i].tid) {
        if (threads[i].tid == tid)
            return &threads[i];
        i = (i + 1) % THREAD_CAP;
    }
    return NULL;
}

static const struct fast_range *find_range(uint64_t space, uint64_t addr)
{
    int lo = 0, hi = range_count; /* the first range not before (space, addr) */
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        const struct fast_range *r = &ranges[mid];
        if (r->space < space || (r->space == space && r->hi <= addr))
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < range_count && ranges[lo].space == space && ranges[lo].lo <= addr && addr < ranges[lo].hi)
        return &ranges[lo];
    return NULL;
}

static uint64_t part(const uint64_t *w, int64_t i, int64_t shift, uint64_t mask)
{
    return i < 0 ? 0 : (w[i] >> shift) & mask;
}

/* A row of the log: kind (0 read, 1 write), width, timestamp (us), map id, physical
 * address, value, pc, tid. */
#define ROW_WORDS 8

/* Serve one SIGSEGV stop of `tid`; 0 when done, -1 when Python must (nothing changed). */
static int serve_one(const struct fast_thread *t, uint64_t *row)
{
    siginfo_t si;
    uint64_t w[27];
    pid_t tid = (pid_t)t->tid;

    if (ptrace(PTRACE_GETSIGINFO, tid, NULL, &si) == -1 || si.si_code <= 0 || si.si_code == 0x80)
        return -1;
    if (ptrace(PTRACE_GETREGS, tid, NULL, w) == -1)
        return -1;
    const struct fast_desc *d = desc_slot(t->space, w[W_RIP], 0);
    if (!d)
        return -1;
    uint64_t addr = d->disp + part(w, d->base_i, d->base_shift, d->base_mask) +
                    part(w, d->index_i, d->index_shift, d->index_mask) * d->scale +
                    (d->seg_i >= 0 ? w[d->seg_i] : 0);
    const struct fast_range *r = find_range(t->space, addr);
    if (!r || addr + d->width > r->hi || ((addr ^ (addr + d->width - 1)) & ~r->page_mask))
        return -1;
    if (d->write ? !r->can_write : !r->can_read)
        return -1;
    uintptr_t at = r->view + (addr - r->lo);
    uint64_t value;
    if (d->write) {
        value = d->has_imm ? d->imm : part(w, d->reg_i, d->reg_shift, d->reg_mask);
        kmmio_store(at, (int)d->width, value);
        if (kmmio_view_fault) {
            kmmio_view_fault = 0;
            return -1;
        }
        ptrace(PTRACE_POKEUSER, tid, (void *)RIP_OFFSET, (void *)d->next_ip);
    } else {
        value = kmmio_load(at, (int)d->width);
        if (kmmio_view_fault) {
            kmmio_view_fault = 0;
            return -1;
        }
        uint64_t v = value;
        if (d->sign_bit && (v & d->sign_bit))
            v |= ~((d->sign_bit << 1) - 1);
        v &= d->reg_mask;
        if (d->reg_mask == 0xFFFFFFFFull || d->reg_mask == ~0ull)
            w[d->reg_i] = v; /* a 32-bit write clears the upper half */
        else
            w[d->reg_i] = (w[d->reg_i] & ~(d->reg_mask << d->reg_shift)) | (v << d->reg_shift);
        w[W_RIP] = d->next_ip;
        ptrace(PTRACE_SETREGS, tid, NULL, w);
    }
    /* The access happened: from here nothing is given back to Python. */
    ptrace((enum __ptrace_request)t->resume, tid, NULL, NULL);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    row[0] = d->write;
    row[1] = d->width;
    row[2] = (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
    row[3] = r->map_id;
    row[4] = r->phys + (addr - r->lo);
    row[5] = value;
    row[6] = d->rip;
    row[7] = t->tid;
    return 0;
}

/* Wait for the tracees and serve what can be served here, writing log rows at `rows` (up
 * to max_rows).  Returns 1 with a status in `info` that Python must handle (as its own
 * waitid would have left it), 0 when the rows are full, -errno when waitid failed (EINTR:
 * a signal for the tracer; ECHILD: nobody left); but for 1, `info` holds no status (its
 * si_pid is 0).  *served counts the rows written. */
static long kmmio_serve(uintptr_t info, int options, uintptr_t rows, int max_rows, uintptr_t served)
{
    siginfo_t *si = (siginfo_t *)info;
    uint64_t *out = (uint64_t *)rows;
    int *count = (int *)served;

    *count = 0;
    while (*count < max_rows) {
        si->si_pid = 0;
        if (waitid(P_ALL, 0, si, options) == -1)
            return -errno;
        if (si->si_code != CLD_TRAPPED || si->si_status != SIGSEGV)
            return 1;
        const struct fast_thread *t = find_thread((uint64_t)si->si_pid);
        if (!t || !t->ok || serve_one(t, out + (size_t)*count * ROW_WORDS) != 0)
            return 1;
        /* Served and resumed: the status is taken.  Returning with the rows full, it must
         * not be left in the buffer as unclaimed (a signal that cuts Python short then
         * keeps what the buffer holds: a stop of a thread that runs on). */
        si->si_pid = 0;
        (*count)++;
    }
    return 0;
}

/* Rows as mmiotrace lines ("R 4 12.000001 1 0x10 0x0 0x401000 1234\n"), into out (cap
 * bytes); the length written, or -1 if cap is too small. */
static long kmmio_format_rows(uintptr_t rows, int n, uintptr_t out, long cap)
{
    const uint64_t *r = (const uint64_t *)rows;
    char *o = (char *)out;
    long used = 0;

    for (int i = 0; i < n; i++, r += ROW_WORDS) {
        int len = snprintf(o + used, (size_t)(cap - used), "%c %d %lu.%06lu %lu 0x%lx 0x%lx 0x%lx %lu\n",
                           r[0] ? 'W' : 'R', (int)r[1], (unsigned long)(r[2] / 1000000),
                           (unsigned long)(r[2] % 1000000), (unsigned long)r[3], (unsigned long)r[4],
                           (unsigned long)r[5], (unsigned long)r[6], (unsigned long)r[7]);
        if (len < 0 || used + len >= cap)
            return -1;
        used += len;
    }
    return used;
}
