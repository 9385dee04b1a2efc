/* kmmio summary's per-access work: accesses counted per key, exact distinct counts, polling
 * runs.
 *
 * A kmmio_summary is fed the columns of the tools' reader (scan.py's Batch) batch after
 * batch with kmmio_sum_add() and keeps, between batches:
 *
 *   - one entry per key (kind, width, map id, phys), in the order keys first appear: its
 *     count, the time, value and line of its first and last access, how many distinct
 *     values were written with it and how many threads used it, and its polling runs.
 *     The entries are a dense array found through an open-addressing index (linear
 *     probing, power-of-two size, at most half full, doubled as it fills);
 *   - a hash set of (entry, value written): exact distinct counts.  Rows the caller lists
 *     in `skip` (values wider than 64 bits, of which the columns hold the low bits) are
 *     left out of it: the caller counts those itself;
 *   - a hash set of (entry, thread id): exact thread counts;
 *   - per thread, the polling run it is in: a maximal sequence of consecutive accesses of
 *     one thread that are all reads of one key (same map, phys and width); other threads'
 *     accesses in between do not end it, the thread's other accesses do, and so does
 *     kmmio_sum_break() (the caller's UNKNOWN and kernel-access records of the thread).
 *     A run of at least `min_run` reads, when it ends (the thread does something else,
 *     or kmmio_sum_finish), is counted on its entry and offered to a bounded min-heap of
 *     the `top` longest runs (ties: the earliest first line is kept).
 *
 * After kmmio_sum_finish() (which ends the open runs), kmmio_sum_group() merges the sets'
 * counts over groups of entries the caller chooses (a register accessed at several widths
 * or addresses is one group): exact union counts, by sorting the sets in place when a
 * group has more than one contributing entry.  It consumes the sets.
 *
 * Every allocation is checked: on failure a function returns -1 and the summary refuses
 * any further rows (its counts would be partial), but can still be freed.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    uint64_t kind; /* 0 read, 1 write */
    uint64_t width;
    int64_t map_id;
    uint64_t phys;
    uint64_t count;
    uint64_t first_ts, last_ts;
    uint64_t first_value, last_value; /* low 64 bits */
    uint64_t first_line, last_line;
    uint64_t distinct; /* distinct values written (rows not skipped) */
    uint64_t threads;  /* distinct thread ids */
    uint64_t runs;     /* polling runs of at least min_run reads */
    uint64_t polled;   /* reads in those runs */
    uint64_t longest;  /* reads in the longest of them */
} kmmio_sum_entry;

typedef struct {
    uint64_t entry;
    uint64_t tid;
    uint64_t count;
    uint64_t first_ts, last_ts;
    uint64_t first_value, last_value;
    uint64_t first_line, last_line;
} kmmio_sum_run;

typedef struct {
    uint32_t tid;
    uint32_t run_entry; /* entry + 1 of the open run; 0: none */
    uint32_t tid_entry; /* entry + 1 last put in the (entry, tid) set by this thread */
    uint32_t pad;
    kmmio_sum_run run;
} sum_thread;

typedef struct {
    uint64_t value;
    uint64_t entry1; /* entry + 1 (a group after kmmio_sum_group); 0: empty */
} sum_vslot;

typedef struct kmmio_summary {
    kmmio_sum_entry *entries;
    size_t nentries, entries_cap;
    uint32_t *eindex; /* entry + 1; 0: empty */
    size_t eindex_cap;
    sum_thread *threads;
    size_t nthreads, threads_cap;
    uint32_t *tindex; /* thread + 1; 0: empty */
    size_t tindex_cap;
    sum_vslot *values;
    size_t nvalues, values_cap;
    uint64_t *tids; /* (entry + 1) << 32 | tid; 0: empty */
    size_t ntids, tids_cap;
    kmmio_sum_run *top; /* min-heap of the longest runs */
    size_t ntop, top_alloc, top_max;
    uint64_t min_run;
    uint64_t last_phys, last_key;
    size_t last_entry;
    int have_last;
    uint32_t last_tid;
    size_t last_thread;
    int have_last_thread;
    int finished, grouped, broken;
} kmmio_summary;

#define SUM_MAX_ITEMS ((size_t)1 << 31) /* entries, threads: indexes fit 32 bits + 1 */

static uint64_t sum_mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

static uint64_t sum_key(uint8_t kind, uint8_t width, int32_t map_id)
{
    return (uint64_t)kind | (uint64_t)width << 8 | (uint64_t)(uint32_t)map_id << 16;
}

/* Grow a dense array of `size`-byte items to hold at least one more. */
static int sum_reserve(void **items, size_t *cap, size_t used, size_t size)
{
    if (used < *cap)
        return 0;
    size_t ncap = *cap ? *cap * 2 : 64;
    if (ncap < *cap || ncap > SIZE_MAX / size)
        return -1;
    void *p = realloc(*items, ncap * size);
    if (p == NULL)
        return -1;
    *items = p;
    *cap = ncap;
    return 0;
}

/* A fresh index of `cap` slots (a power of two) over `n` items keyed by `hash(i)`. */
static uint32_t *sum_reindex(size_t cap, size_t n, uint64_t (*hash)(const void *, size_t),
                             const void *items)
{
    if (cap > SIZE_MAX / sizeof(uint32_t))
        return NULL;
    uint32_t *idx = calloc(cap, sizeof(uint32_t));
    if (idx == NULL)
        return NULL;
    size_t mask = cap - 1;
    for (size_t i = 0; i < n; i++) {
        size_t at = (size_t)hash(items, i) & mask;
        while (idx[at])
            at = (at + 1) & mask;
        idx[at] = (uint32_t)(i + 1);
    }
    return idx;
}

static uint64_t sum_entry_hash_of(uint8_t kind, uint8_t width, int32_t map_id, uint64_t phys)
{
    return sum_mix(phys ^ sum_mix(sum_key(kind, width, map_id) + 0x9e3779b97f4a7c15ULL));
}

static uint64_t sum_entry_hash(const void *items, size_t i)
{
    const kmmio_sum_entry *e = (const kmmio_sum_entry *)items + i;
    return sum_entry_hash_of((uint8_t)e->kind, (uint8_t)e->width, (int32_t)e->map_id, e->phys);
}

static uint64_t sum_thread_hash_of(uint32_t tid) { return sum_mix((uint64_t)tid + 0x51ed27f3ULL); }

static uint64_t sum_thread_hash(const void *items, size_t i)
{
    return sum_thread_hash_of(((const sum_thread *)items)[i].tid);
}

/* The entry of a key, added when new; -1 when out of memory. */
static long sum_entry(kmmio_summary *s, uint8_t kind, uint8_t width, int32_t map_id, uint64_t phys)
{
    uint64_t h = sum_entry_hash_of(kind, width, map_id, phys);
    size_t mask = s->eindex_cap - 1;
    size_t at = (size_t)h & mask;
    for (uint32_t e; (e = s->eindex[at]) != 0; at = (at + 1) & mask) {
        const kmmio_sum_entry *x = &s->entries[e - 1];
        if (x->phys == phys && x->kind == kind && x->width == width && x->map_id == map_id)
            return (long)(e - 1);
    }
    if (s->nentries + 1 >= SUM_MAX_ITEMS)
        return -1;
    if (sum_reserve((void **)&s->entries, &s->entries_cap, s->nentries, sizeof *s->entries))
        return -1;
    if ((s->nentries + 1) * 2 > s->eindex_cap) {
        uint32_t *idx = sum_reindex(s->eindex_cap * 2, s->nentries, sum_entry_hash, s->entries);
        if (idx == NULL)
            return -1;
        free(s->eindex);
        s->eindex = idx;
        s->eindex_cap *= 2;
        mask = s->eindex_cap - 1;
        at = (size_t)h & mask;
        while (s->eindex[at])
            at = (at + 1) & mask;
    }
    size_t i = s->nentries++;
    kmmio_sum_entry *e = &s->entries[i];
    memset(e, 0, sizeof *e);
    e->kind = kind;
    e->width = width;
    e->map_id = map_id;
    e->phys = phys;
    s->eindex[at] = (uint32_t)(i + 1);
    return (long)i;
}

/* The state of a thread, added when new; -1 when out of memory. */
static long sum_thread_of(kmmio_summary *s, uint32_t tid)
{
    uint64_t h = sum_thread_hash_of(tid);
    size_t mask = s->tindex_cap - 1;
    size_t at = (size_t)h & mask;
    for (uint32_t t; (t = s->tindex[at]) != 0; at = (at + 1) & mask)
        if (s->threads[t - 1].tid == tid)
            return (long)(t - 1);
    if (s->nthreads + 1 >= SUM_MAX_ITEMS)
        return -1;
    if (sum_reserve((void **)&s->threads, &s->threads_cap, s->nthreads, sizeof *s->threads))
        return -1;
    if ((s->nthreads + 1) * 2 > s->tindex_cap) {
        uint32_t *idx = sum_reindex(s->tindex_cap * 2, s->nthreads, sum_thread_hash, s->threads);
        if (idx == NULL)
            return -1;
        free(s->tindex);
        s->tindex = idx;
        s->tindex_cap *= 2;
        mask = s->tindex_cap - 1;
        at = (size_t)h & mask;
        while (s->tindex[at])
            at = (at + 1) & mask;
    }
    size_t i = s->nthreads++;
    memset(&s->threads[i], 0, sizeof s->threads[i]);
    s->threads[i].tid = tid;
    s->tindex[at] = (uint32_t)(i + 1);
    return (long)i;
}

static uint64_t sum_value_hash(uint64_t entry1, uint64_t value)
{
    return sum_mix(value ^ sum_mix(entry1 * 0x9e3779b97f4a7c15ULL));
}

/* Put (entry, value) in the set: 1 when new, 0 when there, -1 when out of memory. */
static int sum_value_add(kmmio_summary *s, size_t entry, uint64_t value)
{
    uint64_t entry1 = (uint64_t)entry + 1;
    if ((s->nvalues + 1) * 4 > s->values_cap * 3) {
        size_t ncap = s->values_cap * 2;
        if (ncap < s->values_cap || ncap > SIZE_MAX / sizeof(sum_vslot))
            return -1;
        sum_vslot *nv = calloc(ncap, sizeof(sum_vslot));
        if (nv == NULL)
            return -1;
        for (size_t i = 0; i < s->values_cap; i++) {
            const sum_vslot *o = &s->values[i];
            if (!o->entry1)
                continue;
            size_t at = (size_t)sum_value_hash(o->entry1, o->value) & (ncap - 1);
            while (nv[at].entry1)
                at = (at + 1) & (ncap - 1);
            nv[at] = *o;
        }
        free(s->values);
        s->values = nv;
        s->values_cap = ncap;
    }
    size_t mask = s->values_cap - 1;
    size_t at = (size_t)sum_value_hash(entry1, value) & mask;
    for (; s->values[at].entry1; at = (at + 1) & mask)
        if (s->values[at].entry1 == entry1 && s->values[at].value == value)
            return 0;
    s->values[at].entry1 = entry1;
    s->values[at].value = value;
    s->nvalues++;
    return 1;
}

/* Put (entry, tid) in the set: 1 when new, 0 when there, -1 when out of memory. */
static int sum_tid_add(kmmio_summary *s, size_t entry, uint32_t tid)
{
    uint64_t key = ((uint64_t)entry + 1) << 32 | tid;
    if ((s->ntids + 1) * 4 > s->tids_cap * 3) {
        size_t ncap = s->tids_cap * 2;
        if (ncap < s->tids_cap || ncap > SIZE_MAX / sizeof(uint64_t))
            return -1;
        uint64_t *nt = calloc(ncap, sizeof(uint64_t));
        if (nt == NULL)
            return -1;
        for (size_t i = 0; i < s->tids_cap; i++) {
            uint64_t k = s->tids[i];
            if (!k)
                continue;
            size_t at = (size_t)sum_mix(k) & (ncap - 1);
            while (nt[at])
                at = (at + 1) & (ncap - 1);
            nt[at] = k;
        }
        free(s->tids);
        s->tids = nt;
        s->tids_cap = ncap;
    }
    size_t mask = s->tids_cap - 1;
    size_t at = (size_t)sum_mix(key) & mask;
    for (; s->tids[at]; at = (at + 1) & mask)
        if (s->tids[at] == key)
            return 0;
    s->tids[at] = key;
    s->ntids++;
    return 1;
}

/* Whether run a ranks below run b: fewer reads, or as many and starting later. */
static int sum_run_below(const kmmio_sum_run *a, const kmmio_sum_run *b)
{
    return a->count < b->count || (a->count == b->count && a->first_line > b->first_line);
}

static void sum_sift_down(kmmio_sum_run *h, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && sum_run_below(&h[l], &h[m]))
            m = l;
        if (r < n && sum_run_below(&h[r], &h[m]))
            m = r;
        if (m == i)
            return;
        kmmio_sum_run t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

static int sum_offer(kmmio_summary *s, const kmmio_sum_run *run)
{
    if (s->top_max == 0)
        return 0;
    if (s->ntop < s->top_max) {
        if (sum_reserve((void **)&s->top, &s->top_alloc, s->ntop, sizeof *s->top))
            return -1;
        size_t i = s->ntop++;
        s->top[i] = *run;
        while (i > 0) {
            size_t p = (i - 1) / 2;
            if (!sum_run_below(&s->top[i], &s->top[p]))
                break;
            kmmio_sum_run t = s->top[i];
            s->top[i] = s->top[p];
            s->top[p] = t;
            i = p;
        }
        return 0;
    }
    if (sum_run_below(&s->top[0], run)) {
        s->top[0] = *run;
        sum_sift_down(s->top, s->ntop, 0);
    }
    return 0;
}

/* End a thread's open run: counted and offered when long enough. */
static int sum_end_run(kmmio_summary *s, sum_thread *th)
{
    if (!th->run_entry)
        return 0;
    th->run_entry = 0;
    if (th->run.count < s->min_run)
        return 0;
    kmmio_sum_entry *e = &s->entries[th->run.entry];
    e->runs++;
    e->polled += th->run.count;
    if (th->run.count > e->longest)
        e->longest = th->run.count;
    return sum_offer(s, &th->run);
}

void kmmio_sum_free(kmmio_summary *s)
{
    if (s == NULL)
        return;
    free(s->entries);
    free(s->eindex);
    free(s->threads);
    free(s->tindex);
    free(s->values);
    free(s->tids);
    free(s->top);
    free(s);
}

kmmio_summary *kmmio_sum_new(uint64_t min_run, long top)
{
    kmmio_summary *s = calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    s->min_run = min_run < 1 ? 1 : min_run;
    s->top_max = top < 0 ? 0 : (size_t)top;
    s->eindex_cap = s->tindex_cap = 64;
    s->values_cap = s->tids_cap = 256;
    s->eindex = calloc(s->eindex_cap, sizeof(uint32_t));
    s->tindex = calloc(s->tindex_cap, sizeof(uint32_t));
    s->values = calloc(s->values_cap, sizeof(sum_vslot));
    s->tids = calloc(s->tids_cap, sizeof(uint64_t));
    if (!s->eindex || !s->tindex || !s->values || !s->tids) {
        kmmio_sum_free(s);
        return NULL;
    }
    return s;
}

/* n rows of columns; row i is line first_line + i.  `skip` lists (ascending) the rows whose
 * value column holds only the low bits of a wider value: their values are not counted as
 * distinct written values here.  0, or -1 (out of memory), -2 (finished or failed before). */
int kmmio_sum_add(kmmio_summary *s, const uint8_t *kind, const uint8_t *width, const uint64_t *ts,
                  const int32_t *map_id, const uint64_t *phys, const uint64_t *value,
                  const uint32_t *tid, long n, uint64_t first_line, const uint32_t *skip, long nskip)
{
    if (s->broken || s->finished)
        return -2;
    long j = 0;
    for (long i = 0; i < n; i++) {
        uint8_t k = kind[i] != 0;
        uint8_t w = width[i];
        int32_t m = map_id[i];
        uint64_t p = phys[i], v = value[i], t = ts[i], line = first_line + (uint64_t)i;
        uint32_t id = tid[i];
        uint64_t key = sum_key(k, w, m);
        size_t ei;
        if (s->have_last && s->last_phys == p && s->last_key == key) {
            ei = s->last_entry;
        } else {
            long r = sum_entry(s, k, w, m, p);
            if (r < 0)
                goto oom;
            ei = (size_t)r;
            s->last_entry = ei;
            s->last_phys = p;
            s->last_key = key;
            s->have_last = 1;
        }
        size_t ti;
        if (s->have_last_thread && s->last_tid == id) {
            ti = s->last_thread;
        } else {
            long r = sum_thread_of(s, id);
            if (r < 0)
                goto oom;
            ti = (size_t)r;
            s->last_thread = ti;
            s->last_tid = id;
            s->have_last_thread = 1;
        }
        while (j < nskip && (long)skip[j] < i)
            j++;
        int exact = !(j < nskip && (long)skip[j] == i);

        kmmio_sum_entry *e = &s->entries[ei];
        if (e->count == 0) {
            e->first_ts = t;
            e->first_value = v;
            e->first_line = line;
        }
        e->count++;
        e->last_ts = t;
        e->last_value = v;
        e->last_line = line;
        if (k && exact) {
            int r = sum_value_add(s, ei, v);
            if (r < 0)
                goto oom;
            e->distinct += (uint64_t)r;
        }
        sum_thread *th = &s->threads[ti];
        if (th->tid_entry != ei + 1) {
            int r = sum_tid_add(s, ei, id);
            if (r < 0)
                goto oom;
            e->threads += (uint64_t)r;
            th->tid_entry = (uint32_t)(ei + 1);
        }
        if (!k && th->run_entry == ei + 1) {
            th->run.count++;
            th->run.last_ts = t;
            th->run.last_value = v;
            th->run.last_line = line;
            continue;
        }
        if (sum_end_run(s, th) < 0)
            goto oom;
        if (!k) {
            th->run_entry = (uint32_t)(ei + 1);
            th->run.entry = ei;
            th->run.tid = id;
            th->run.count = 1;
            th->run.first_ts = th->run.last_ts = t;
            th->run.first_value = th->run.last_value = v;
            th->run.first_line = th->run.last_line = line;
        }
    }
    return 0;
oom:
    s->broken = 1;
    return -1;
}

/* Thread `tid` did something that is not a read (an UNKNOWN fault, the kernel reaching
 * traced memory for its syscall): its open run ends.  0, -1 out of memory, -2 too late. */
int kmmio_sum_break(kmmio_summary *s, uint32_t tid)
{
    if (s->broken || s->finished)
        return -2;
    size_t mask = s->tindex_cap - 1;
    for (size_t at = (size_t)sum_thread_hash_of(tid) & mask; s->tindex[at]; at = (at + 1) & mask) {
        sum_thread *th = &s->threads[s->tindex[at] - 1];
        if (th->tid == tid) {
            if (sum_end_run(s, th) < 0) {
                s->broken = 1;
                return -1;
            }
            return 0;
        }
    }
    return 0;
}

/* End every thread's open run (the log is over).  0, or -1 out of memory. */
int kmmio_sum_finish(kmmio_summary *s)
{
    if (s->broken)
        return -1;
    if (s->finished)
        return 0;
    for (size_t i = 0; i < s->nthreads; i++)
        if (sum_end_run(s, &s->threads[i]) < 0) {
            s->broken = 1;
            return -1;
        }
    s->finished = 1;
    return 0;
}

long kmmio_sum_nentries(const kmmio_summary *s) { return (long)s->nentries; }

const kmmio_sum_entry *kmmio_sum_entries(const kmmio_summary *s) { return s->entries; }

static int sum_cmp_run_desc(const void *a, const void *b)
{
    const kmmio_sum_run *x = a, *y = b;
    if (sum_run_below(x, y))
        return 1;
    if (sum_run_below(y, x))
        return -1;
    return 0;
}

/* The kept runs, longest first, into out[cap]: their number, or -1 when cap is too small. */
long kmmio_sum_runs(const kmmio_summary *s, kmmio_sum_run *out, long cap)
{
    if (cap < 0 || (size_t)cap < s->ntop)
        return -1;
    if (s->ntop) {
        memcpy(out, s->top, s->ntop * sizeof *out);
        qsort(out, s->ntop, sizeof *out, sum_cmp_run_desc);
    }
    return (long)s->ntop;
}

long kmmio_sum_nruns(const kmmio_summary *s) { return (long)s->ntop; }

/* The lines whose values the runs still show: first and last lines of the open runs and of
 * the kept ones.  Written to out[cap] when they fit; returns how many there are. */
long kmmio_sum_live(const kmmio_summary *s, uint64_t *out, long cap)
{
    size_t n = 0, c = cap < 0 ? 0 : (size_t)cap;
    for (size_t i = 0; i < s->nthreads; i++) {
        const sum_thread *th = &s->threads[i];
        if (!th->run_entry)
            continue;
        if (n + 2 <= c) {
            out[n] = th->run.first_line;
            out[n + 1] = th->run.last_line;
        }
        n += 2;
    }
    for (size_t i = 0; i < s->ntop; i++) {
        if (n + 2 <= c) {
            out[n] = s->top[i].first_line;
            out[n + 1] = s->top[i].last_line;
        }
        n += 2;
    }
    return (long)n;
}

static int sum_cmp_vslot(const void *a, const void *b)
{
    const sum_vslot *x = a, *y = b;
    if (x->entry1 != y->entry1)
        return x->entry1 < y->entry1 ? -1 : 1;
    return x->value < y->value ? -1 : x->value > y->value;
}

static int sum_cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Whether some group has more than one entry whose `field` is not zero. */
static int sum_shared(const kmmio_summary *s, const uint32_t *group, uint32_t *seen, size_t ngroups,
                      int threads)
{
    memset(seen, 0, ngroups * sizeof *seen);
    for (size_t i = 0; i < s->nentries; i++) {
        uint64_t f = threads ? s->entries[i].threads : s->entries[i].distinct;
        if (f && ++seen[group[i]] > 1)
            return 1;
    }
    return 0;
}

/* Distinct written values and threads per group of entries (entry i is in group[i], each
 * below ngroups): exact unions.  Consumes the sets; call once, after kmmio_sum_finish.
 * 0, -1 out of memory, -2 misuse (not finished, called twice, a group out of range). */
int kmmio_sum_group(kmmio_summary *s, const uint32_t *group, long ngroups, uint64_t *distinct,
                    uint64_t *threads)
{
    if (s->broken)
        return -1;
    if (!s->finished || s->grouped || ngroups < 0)
        return -2;
    size_t ng = (size_t)ngroups;
    for (size_t i = 0; i < s->nentries; i++)
        if (group[i] >= ng)
            return -2;
    memset(distinct, 0, ng * sizeof *distinct);
    memset(threads, 0, ng * sizeof *threads);
    uint32_t *seen = calloc(ng ? ng : 1, sizeof *seen);
    if (seen == NULL)
        return -1;
    s->grouped = 1;

    if (!sum_shared(s, group, seen, ng, 0)) {
        for (size_t i = 0; i < s->nentries; i++)
            distinct[group[i]] += s->entries[i].distinct;
    } else {
        size_t n = 0;
        for (size_t i = 0; i < s->values_cap; i++) {
            sum_vslot v = s->values[i];
            if (!v.entry1)
                continue;
            v.entry1 = group[v.entry1 - 1];
            s->values[n++] = v;
        }
        qsort(s->values, n, sizeof *s->values, sum_cmp_vslot);
        for (size_t i = 0; i < n; i++)
            if (i == 0 || sum_cmp_vslot(&s->values[i - 1], &s->values[i]) != 0)
                distinct[s->values[i].entry1]++;
    }
    free(s->values);
    s->values = NULL;
    s->values_cap = s->nvalues = 0;

    if (!sum_shared(s, group, seen, ng, 1)) {
        for (size_t i = 0; i < s->nentries; i++)
            threads[group[i]] += s->entries[i].threads;
    } else {
        size_t n = 0;
        for (size_t i = 0; i < s->tids_cap; i++) {
            uint64_t k = s->tids[i];
            if (!k)
                continue;
            s->tids[n++] = (uint64_t)group[(k >> 32) - 1] << 32 | (k & 0xffffffffu);
        }
        qsort(s->tids, n, sizeof *s->tids, sum_cmp_u64);
        for (size_t i = 0; i < n; i++)
            if (i == 0 || s->tids[i - 1] != s->tids[i])
                threads[s->tids[i] >> 32]++;
    }
    free(s->tids);
    s->tids = NULL;
    s->tids_cap = s->ntids = 0;
    free(seen);
    return 0;
}
