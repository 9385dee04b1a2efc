/* kmmio summary's per-access work: rows counted in a bounded table, spilled to a temporary
 * file when it is full (then merged by _summary_out.c).
 *
 * A kmmio_summary is fed the columns of the tools' reader (scan.py's Batch) batch after
 * batch with kmmio_sum_add() and keeps, between batches:
 *
 *   - one *row* per register (with a map: kmmio_sum_set_map) or per physical address: its
 *     reads and writes, widths, the time, value and line of its first and last access, and
 *     its polling runs.  The rows are a dense array found through an open-addressing index
 *     (linear probing, power-of-two size, at most half full);
 *   - a hash set of (row, tag, number) pairs: the values written (tag 0; a value wider than
 *     64 bits as a 64-bit hash of its bytes), thread ids (tag 1) and map ids (tag 2) seen
 *     on the row, each kept up to a cap per row (cap_vals, cap_tids, cap_maps).  A row
 *     keeps its first value, tid and map id in itself, so a row that sees one of each (a
 *     buffer fill) costs no pair.  A row holding `cap` of a kind stores no more: its count
 *     is then "cap or more";
 *   - values wider than 64 bits that are a row's first or last value, whole (an ext);
 *   - per thread, its polling run: a maximal sequence of consecutive accesses of one
 *     thread that are all reads of one row at one width; other threads' accesses in
 *     between do not end it, the thread's other accesses do, and so does kmmio_sum_break()
 *     (the caller's UNKNOWN and kernel-access records of the thread).  A run of at least
 *     `min_run` reads, when it ends, is counted on its row and offered to a bounded
 *     min-heap of the `top` longest runs (ties: the earliest first line is kept).
 *
 * Memory.  Before each access the table checks that the growth it may need stays within
 * `budget` bytes (rows, index, pairs, exts); when it would not, the table is *spilled*:
 * its rows, sorted by (register?, key), each followed by its ext and its sorted lists of
 * values, tids and map ids, are appended to a temporary file (one segment per spill) and
 * the table starts empty again.  A row spilled and met again is a new partial row; the
 * partials are merged at the end (_summary_out.c).  So memory is bounded by `budget` plus
 * the threads, the kept runs and the register map, whatever the log holds.
 *
 * Every allocation is checked: on failure a function returns -1 (out of memory) or -3
 * (a temporary file could not be written: errno in kmmio_sum_errno) and the summary
 * refuses any further call but kmmio_sum_free.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SUM_WIDE 64 /* bytes of the widest access */
#define SUM_MAPS 8  /* map ids a row lists at most */
#define SUM_MAX_ITEMS ((size_t)1 << 31)

enum { SUM_VAL = 0, SUM_TID = 1, SUM_MAP = 2 };
enum {
    SUM_FIRST_WIDE = 1,
    SUM_LAST_WIDE = 2,
    SUM_DISTINCT_CAPPED = 4,
    SUM_THREADS_CAPPED = 8,
    SUM_MAPS_CAPPED = 16
};
enum { SUM_OK = 0, SUM_OOM = -1, SUM_MISUSE = -2, SUM_IO = -3 };

typedef struct {
    uint8_t first[SUM_WIDE], last[SUM_WIDE];
} sum_ext;

/* A row, or a partial row (see spilling).  A row with no access yet (made to count a run
 * after a spill) has first_line UINT64_MAX and last_line 0. */
typedef struct {
    uint64_t key; /* phys, or the register's index when reg */
    uint64_t reads, writes, widths; /* widths: bit w-1 for width w */
    uint64_t first_line, last_line, first_ts, last_ts, first_value, last_value;
    uint64_t first_written; /* the first value written (a pair, kept here) */
    uint64_t runs, polled, longest;
    uint32_t first_tid;
    int32_t first_map;
    uint32_t nvals, ntids, nmaps; /* values, tids, map ids stored (the first ones included) */
    uint32_t ext;                 /* ext + 1; 0: none */
    uint8_t reg, flags, first_width, last_width;
    uint32_t pad;
} sum_row;

typedef struct {
    uint64_t value;
    uint32_t row1; /* row + 1; 0: empty */
    uint32_t tag;
} sum_pair;

typedef struct {
    uint64_t key, count, first_ts, last_ts, first_value, last_value, first_line, last_line;
    uint32_t tid;
    int32_t map_id; /* of its first read */
    uint8_t reg, width, flags, pad[5];
    uint8_t first[SUM_WIDE], last[SUM_WIDE];
} kmmio_sum_run;

typedef struct {
    uint32_t tid;
    uint32_t tid_row; /* row + 1 whose tid pair this thread last stored; 0: none */
    uint32_t open;    /* whether run is a run going on */
    uint32_t pad;
    kmmio_sum_run run;
} sum_thread;

typedef struct {
    uint64_t phys;
    uint32_t kw; /* kind << 8 | width, + 1 (0: empty) */
    int32_t reg;
} sum_res;

/* A row as printed (the merge of its partials). */
typedef struct {
    uint64_t phys, reads, writes, widths, first_value, last_value, first_ts, last_ts, first_line,
        last_line, runs, polled, longest, distinct, threads;
    uint32_t reg_index, nmaps;
    int32_t maps[SUM_MAPS];
    uint8_t reg, flags, first_width, last_width;
    uint32_t ext; /* while in memory: ext + 1 in the output's exts */
} kmmio_sum_out;

typedef struct {
    uint64_t reads, writes, rows, total_runs, polled, first_ts, last_ts, any, spills, peak_bytes,
        segments;
} kmmio_sum_totals;

/* A buffered reader of a segment of a temporary file. */
typedef struct {
    int fd;
    const uint8_t *mem; /* or, for an in-memory spill, its bytes */
    uint64_t off, end;
    uint8_t *buf;
    size_t blen, bpos;
} sum_reader;

#define SUM_WBUF ((size_t)1 << 20)

typedef struct {
    int fd;
    int mem;        /* the "file" is wbuf itself (a small table at the end: no file needed) */
    uint8_t *wbuf;
    size_t wlen, wcap;
    uint64_t size; /* bytes written (buffered ones included) */
    uint64_t *segs; /* start offsets, and the end */
    size_t nsegs, segs_cap;
} sum_spill;

typedef struct kmmio_summary {
    uint64_t min_run;
    size_t top_max, budget;
    uint32_t cap_vals, cap_tids, cap_maps;
    char *tmpdir;
    int err; /* errno of an I/O failure */
    int state; /* 0 adding, 1 finished, 2 output ready, -1 broken */

    /* the register map: disjoint segments, sorted; reg >= 0 one register alone, -1 more */
    uint64_t *seg_start, *seg_end;
    int32_t *seg_reg;
    size_t nseg;
    char **names;
    uint64_t *reg_addr;
    size_t nregs;
    sum_res *res;
    size_t nres, res_cap;
    uint64_t need_phys;
    uint32_t need_kw;

    /* the table */
    sum_row *rows;
    size_t nrows, rows_cap;
    uint64_t *rindex; /* (hash >> 32) << 32 | row + 1; 0: empty */
    size_t rindex_cap;
    sum_pair *pairs;
    size_t npairs, pairs_cap;
    sum_ext *exts;
    size_t nexts, exts_cap;
    int have_last;
    uint64_t last_key;
    uint8_t last_reg;
    size_t last_row;
    int have_lk;
    uint64_t lk_phys, lk_key;
    uint32_t lk_kw;
    uint8_t lk_reg;

    /* threads and runs */
    sum_thread *threads;
    size_t nthreads, threads_cap;
    uint32_t *tindex;
    size_t tindex_cap;
    int have_last_thread;
    uint32_t last_tid;
    size_t last_thread;
    kmmio_sum_run *top;
    size_t ntop, top_alloc;

    kmmio_sum_totals totals;
    sum_spill spill;

    /* the output (_summary_out.c) */
    kmmio_sum_out *outs;
    size_t nouts, outs_cap;
    sum_ext *oexts;
    size_t noexts, oexts_cap;
    sum_spill ospill;
    sum_reader *readers;
    size_t nreaders;
    uint32_t *heap;
    size_t nheap;
    size_t cursor;
    void *curs; /* the readers' current records */
    int mode, header_done, pending;
    kmmio_sum_out pend;
    sum_ext pend_ext;
    size_t colw[11];
    uint64_t *mvals;
    uint32_t *mtids;
    int32_t *mmaps;
    size_t mvals_cap, mtids_cap, mmaps_cap;
} kmmio_summary;

static uint64_t sum_mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

static uint64_t sum_row_hash(uint8_t reg, uint64_t key)
{
    return sum_mix(key ^ ((uint64_t)reg << 63) ^ 0x9e3779b97f4a7c15ULL);
}

/* A value wider than 64 bits: a hash of its bytes without the zero 8-byte words at its top,
 * so that one number written at two widths (16 and 32 bytes) is one value (a collision
 * with another value of the row, about 2^-64 per pair, would count two values as one). */
static uint64_t sum_wide_hash(const uint8_t *p, size_t n)
{
    while (n > 8) {
        uint64_t top = 0;
        memcpy(&top, p + n - 8, 8);
        if (top)
            break;
        n -= 8;
    }
    uint64_t h = 0x243f6a8885a308d3ULL ^ n;
    for (size_t i = 0; i < n; i += 8) {
        uint64_t w = 0;
        memcpy(&w, p + i, n - i < 8 ? n - i : 8);
        h = sum_mix(h ^ w) + 0x9e3779b97f4a7c15ULL;
    }
    return h;
}

/* Whether a little-endian value of n bytes needs more than 64 bits. */
static int sum_is_wide(const uint8_t *p, size_t n)
{
    for (size_t i = 8; i < n; i++)
        if (p[i])
            return 1;
    return 0;
}

static int sum_grow(void **items, size_t *cap, size_t want, size_t size)
{
    if (want <= *cap)
        return 0;
    size_t ncap = *cap ? *cap : 16;
    while (ncap < want) {
        if (ncap > SIZE_MAX / 2 / size)
            return -1;
        ncap *= 2;
    }
    void *p = realloc(*items, ncap * size);
    if (p == NULL)
        return -1;
    *items = p;
    *cap = ncap;
    return 0;
}

static size_t sum_table_bytes(const kmmio_summary *s)
{
    return s->rows_cap * sizeof(sum_row) + s->rindex_cap * sizeof(uint64_t) +
           s->pairs_cap * sizeof(sum_pair) + s->exts_cap * sizeof(sum_ext);
}

/* ---- the temporary file ---------------------------------------------------------------- */

static int sum_spill_open(kmmio_summary *s, sum_spill *sp)
{
    if (sp->wbuf || sp->mem)
        return 0;
    size_t n = strlen(s->tmpdir) + 32;
    char *path = malloc(n);
    if (path == NULL)
        return SUM_OOM;
    snprintf(path, n, "%s/kmmio-summary-XXXXXX", s->tmpdir);
    int fd = mkstemp(path);
    if (fd < 0) {
        s->err = errno;
        free(path);
        return SUM_IO;
    }
    unlink(path);
    free(path);
    sp->wbuf = malloc(SUM_WBUF);
    if (sp->wbuf == NULL) {
        close(fd);
        return SUM_OOM;
    }
    sp->wcap = SUM_WBUF;
    sp->fd = fd;
    return 0;
}

static int sum_flush(kmmio_summary *s, sum_spill *sp)
{
    if (sp->mem)
        return 0;
    size_t done = 0;
    while (done < sp->wlen) {
        ssize_t n = write(sp->fd, sp->wbuf + done, sp->wlen - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            s->err = n < 0 ? errno : EIO;
            return SUM_IO;
        }
        done += (size_t)n;
    }
    sp->wlen = 0;
    return 0;
}

static int sum_write(kmmio_summary *s, sum_spill *sp, const void *p, size_t n)
{
    sp->size += n;
    if (sp->mem) {
        if (sum_grow((void **)&sp->wbuf, &sp->wcap, sp->wlen + n, 1))
            return SUM_OOM;
        memcpy(sp->wbuf + sp->wlen, p, n);
        sp->wlen += n;
        return 0;
    }
    while (n) {
        if (sp->wlen == SUM_WBUF) {
            int rc = sum_flush(s, sp);
            if (rc)
                return rc;
        }
        size_t c = SUM_WBUF - sp->wlen < n ? SUM_WBUF - sp->wlen : n;
        memcpy(sp->wbuf + sp->wlen, p, c);
        sp->wlen += c;
        p = (const uint8_t *)p + c;
        n -= c;
    }
    return 0;
}

/* An ext as written: the wide values' own bytes only (their widths are in the record). */
static int sum_write_ext(kmmio_summary *s, sum_spill *sp, uint8_t flags, uint8_t fw, uint8_t lw,
                         const sum_ext *x)
{
    int rc = 0;
    if (flags & SUM_FIRST_WIDE)
        rc = sum_write(s, sp, x->first, fw);
    if (!rc && (flags & SUM_LAST_WIDE))
        rc = sum_write(s, sp, x->last, lw);
    return rc;
}

/* Start (begin = 1) or end a segment of sp. */
static int sum_segment(kmmio_summary *s, sum_spill *sp, int begin)
{
    if (begin) {
        int rc = sum_spill_open(s, sp);
        if (rc)
            return rc;
    }
    if (sum_grow((void **)&sp->segs, &sp->segs_cap, sp->nsegs + 2, sizeof *sp->segs))
        return SUM_OOM;
    if (begin) {
        sp->segs[sp->nsegs] = sp->size;
    } else {
        sp->nsegs++;
        sp->segs[sp->nsegs] = sp->size;
        return sum_flush(s, sp);
    }
    return 0;
}

static void sum_spill_close(sum_spill *sp)
{
    if (sp->wbuf && !sp->mem)
        close(sp->fd);
    free(sp->wbuf);
    free(sp->segs);
    memset(sp, 0, sizeof *sp);
}

/* ---- the table ------------------------------------------------------------------------- */

typedef struct {
    uint64_t key;
    uint32_t reg, row;
} sum_order;

static int sum_cmp_order(const void *a, const void *b)
{
    const sum_order *x = a, *y = b;
    if (x->reg != y->reg)
        return x->reg < y->reg ? -1 : 1;
    return x->key < y->key ? -1 : x->key > y->key;
}

static int sum_cmp_pair(const void *a, const void *b)
{
    const sum_pair *x = a, *y = b;
    if (x->row1 != y->row1)
        return x->row1 < y->row1 ? -1 : 1;
    if (x->tag != y->tag)
        return x->tag < y->tag ? -1 : 1;
    return x->value < y->value ? -1 : x->value > y->value;
}

static int sum_cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* A partial row's lists (the row's own first items and its pairs), sorted, into the
 * merge buffers: values, then tids, then map ids. */
static int sum_lists(kmmio_summary *s, const sum_row *r, const sum_pair *p, size_t np)
{
    if (sum_grow((void **)&s->mvals, &s->mvals_cap, r->nvals + 1, sizeof *s->mvals) ||
        sum_grow((void **)&s->mtids, &s->mtids_cap, r->ntids + 1, sizeof *s->mtids) ||
        sum_grow((void **)&s->mmaps, &s->mmaps_cap, r->nmaps + 1, sizeof *s->mmaps))
        return SUM_OOM;
    size_t nv = 0, nt = 0, nm = 0;
    if (r->nvals)
        s->mvals[nv++] = r->first_written;
    if (r->ntids)
        s->mtids[nt++] = r->first_tid;
    if (r->nmaps)
        s->mmaps[nm++] = r->first_map;
    for (size_t i = 0; i < np; i++) {
        if (p[i].tag == SUM_VAL && nv < r->nvals)
            s->mvals[nv++] = p[i].value;
        else if (p[i].tag == SUM_TID && nt < r->ntids)
            s->mtids[nt++] = (uint32_t)p[i].value;
        else if (p[i].tag == SUM_MAP && nm < r->nmaps)
            s->mmaps[nm++] = (int32_t)(uint32_t)p[i].value;
    }
    /* The first item is in front of the sorted pairs: move it into place. */
    for (size_t i = 1; i < nv && s->mvals[i - 1] > s->mvals[i]; i++) {
        uint64_t t = s->mvals[i - 1];
        s->mvals[i - 1] = s->mvals[i];
        s->mvals[i] = t;
    }
    for (size_t i = 1; i < nt && s->mtids[i - 1] > s->mtids[i]; i++) {
        uint32_t t = s->mtids[i - 1];
        s->mtids[i - 1] = s->mtids[i];
        s->mtids[i] = t;
    }
    for (size_t i = 1; i < nm && s->mmaps[i - 1] > s->mmaps[i]; i++) {
        int32_t t = s->mmaps[i - 1];
        s->mmaps[i - 1] = s->mmaps[i];
        s->mmaps[i] = t;
    }
    return 0;
}

/* Append the table to the temporary file as one segment and empty it. */
static int sum_spill_table(kmmio_summary *s)
{
    if (s->nrows == 0)
        return 0;
    int rc = sum_segment(s, &s->spill, 1);
    if (rc)
        return rc;
    sum_order *order = malloc(s->nrows * sizeof *order);
    size_t *start = calloc(s->nrows + 1, sizeof *start);
    if (order == NULL || start == NULL) {
        free(order);
        free(start);
        return SUM_OOM;
    }
    size_t np = 0;
    for (size_t i = 0; i < s->pairs_cap; i++)
        if (s->pairs[i].row1)
            s->pairs[np++] = s->pairs[i];
    qsort(s->pairs, np, sizeof *s->pairs, sum_cmp_pair);
    for (size_t i = 0; i < np; i++)
        start[s->pairs[i].row1]++;
    for (size_t i = 0; i < s->nrows; i++)
        start[i + 1] += start[i];
    for (size_t i = 0; i < s->nrows; i++) {
        order[i].key = s->rows[i].key;
        order[i].reg = s->rows[i].reg;
        order[i].row = (uint32_t)i;
    }
    qsort(order, s->nrows, sizeof *order, sum_cmp_order);
    for (size_t k = 0; k < s->nrows && !rc; k++) {
        const sum_row *r = &s->rows[order[k].row];
        const sum_pair *p = s->pairs + start[order[k].row];
        size_t n = start[order[k].row + 1] - start[order[k].row];
        rc = sum_lists(s, r, p, n);
        if (!rc)
            rc = sum_write(s, &s->spill, r, sizeof *r);
        if (!rc && (r->flags & (SUM_FIRST_WIDE | SUM_LAST_WIDE)))
            rc = sum_write_ext(s, &s->spill, r->flags, r->first_width, r->last_width, &s->exts[r->ext - 1]);
        if (!rc)
            rc = sum_write(s, &s->spill, s->mvals, r->nvals * sizeof *s->mvals);
        if (!rc)
            rc = sum_write(s, &s->spill, s->mtids, r->ntids * sizeof *s->mtids);
        if (!rc)
            rc = sum_write(s, &s->spill, s->mmaps, r->nmaps * sizeof *s->mmaps);
    }
    free(order);
    free(start);
    if (!rc)
        rc = sum_segment(s, &s->spill, 0);
    if (rc)
        return rc;
    s->nrows = s->npairs = s->nexts = 0;
    memset(s->rindex, 0, s->rindex_cap * sizeof *s->rindex);
    memset(s->pairs, 0, s->pairs_cap * sizeof *s->pairs);
    s->have_last = 0;
    for (size_t i = 0; i < s->nthreads; i++)
        s->threads[i].tid_row = 0;
    s->totals.spills++;
    return 0;
}

/* Spill first when the growth the next access may need would pass the budget. */
static int sum_make_room(kmmio_summary *s)
{
    if (s->budget == 0) /* a test of the merge: every access in a partial row of its own */
        return sum_spill_table(s);
    size_t more = 0;
    if (s->nrows + 2 > s->rows_cap)
        more += s->rows_cap * sizeof(sum_row);
    if ((s->nrows + 2) * 2 > s->rindex_cap)
        more += s->rindex_cap * sizeof(uint64_t) * 2;
    if ((s->npairs + 3) * 4 > s->pairs_cap * 3)
        more += s->pairs_cap * sizeof(sum_pair) * 2;
    if (s->nexts + 2 > s->exts_cap)
        more += s->exts_cap * sizeof(sum_ext);
    if (more == 0)
        return 0;
    size_t now = sum_table_bytes(s);
    if (now + more <= s->budget || s->nrows == 0)
        return 0;
    return sum_spill_table(s);
}

static void sum_note_peak(kmmio_summary *s)
{
    size_t b = sum_table_bytes(s);
    if (b > s->totals.peak_bytes)
        s->totals.peak_bytes = b;
}

/* The row of (reg, key), added when new: its index, or -1 when out of memory. */
static long sum_row_of(kmmio_summary *s, uint8_t reg, uint64_t key)
{
    uint64_t h = sum_row_hash(reg, key), fp = h & 0xffffffff00000000ULL;
    size_t mask = s->rindex_cap - 1;
    size_t at = (size_t)h & mask;
    for (uint64_t e; (e = s->rindex[at]) != 0; at = (at + 1) & mask) {
        if ((e & 0xffffffff00000000ULL) != fp)
            continue;
        const sum_row *x = &s->rows[(uint32_t)e - 1];
        if (x->key == key && x->reg == reg)
            return (long)((uint32_t)e - 1);
    }
    if (s->nrows + 1 >= SUM_MAX_ITEMS)
        return -1;
    if (sum_grow((void **)&s->rows, &s->rows_cap, s->nrows + 1, sizeof *s->rows))
        return -1;
    if ((s->nrows + 1) * 2 > s->rindex_cap) {
        size_t ncap = s->rindex_cap * 2;
        uint64_t *idx = calloc(ncap, sizeof *idx);
        if (idx == NULL)
            return -1;
        for (size_t i = 0; i < s->nrows; i++) {
            uint64_t hi = sum_row_hash(s->rows[i].reg, s->rows[i].key);
            size_t a = (size_t)hi & (ncap - 1);
            while (idx[a])
                a = (a + 1) & (ncap - 1);
            idx[a] = (hi & 0xffffffff00000000ULL) | (uint64_t)(i + 1);
        }
        free(s->rindex);
        s->rindex = idx;
        s->rindex_cap = ncap;
        mask = ncap - 1;
        at = (size_t)h & mask;
        while (s->rindex[at])
            at = (at + 1) & mask;
    }
    size_t i = s->nrows++;
    sum_row *r = &s->rows[i];
    memset(r, 0, sizeof *r);
    r->key = key;
    r->reg = reg;
    r->first_line = UINT64_MAX;
    s->rindex[at] = fp | (uint64_t)(i + 1);
    sum_note_peak(s);
    return (long)i;
}

/* Put (row, tag, value) in the set: 1 when new, 0 when there, -1 when out of memory. */
static int sum_pair_add(kmmio_summary *s, size_t row, uint32_t tag, uint64_t value)
{
    uint32_t row1 = (uint32_t)(row + 1);
    if ((s->npairs + 1) * 4 > s->pairs_cap * 3) {
        size_t ncap = s->pairs_cap * 2;
        if (ncap < s->pairs_cap || ncap > SIZE_MAX / sizeof(sum_pair))
            return -1;
        sum_pair *np = calloc(ncap, sizeof *np);
        if (np == NULL)
            return -1;
        for (size_t i = 0; i < s->pairs_cap; i++) {
            const sum_pair *o = &s->pairs[i];
            if (!o->row1)
                continue;
            size_t at = (size_t)sum_mix(o->value ^ sum_mix((uint64_t)o->row1 << 2 | o->tag)) & (ncap - 1);
            while (np[at].row1)
                at = (at + 1) & (ncap - 1);
            np[at] = *o;
        }
        free(s->pairs);
        s->pairs = np;
        s->pairs_cap = ncap;
        sum_note_peak(s);
    }
    size_t mask = s->pairs_cap - 1;
    size_t at = (size_t)sum_mix(value ^ sum_mix((uint64_t)row1 << 2 | tag)) & mask;
    for (; s->pairs[at].row1; at = (at + 1) & mask)
        if (s->pairs[at].row1 == row1 && s->pairs[at].tag == tag && s->pairs[at].value == value)
            return 0;
    s->pairs[at].row1 = row1;
    s->pairs[at].tag = tag;
    s->pairs[at].value = value;
    s->npairs++;
    return 1;
}

static sum_ext *sum_ext_of(kmmio_summary *s, sum_row *r)
{
    if (r->ext)
        return &s->exts[r->ext - 1];
    if (sum_grow((void **)&s->exts, &s->exts_cap, s->nexts + 1, sizeof *s->exts))
        return NULL;
    sum_note_peak(s);
    r->ext = (uint32_t)(++s->nexts);
    return &s->exts[r->ext - 1];
}

/* ---- threads and runs ------------------------------------------------------------------ */

static uint64_t sum_thread_hash(uint32_t tid) { return sum_mix((uint64_t)tid + 0x51ed27f3ULL); }

static long sum_thread_of(kmmio_summary *s, uint32_t tid)
{
    size_t mask = s->tindex_cap - 1;
    size_t at = (size_t)sum_thread_hash(tid) & mask;
    for (uint32_t t; (t = s->tindex[at]) != 0; at = (at + 1) & mask)
        if (s->threads[t - 1].tid == tid)
            return (long)(t - 1);
    if (s->nthreads + 1 >= SUM_MAX_ITEMS)
        return -1;
    if (sum_grow((void **)&s->threads, &s->threads_cap, s->nthreads + 1, sizeof *s->threads))
        return -1;
    if ((s->nthreads + 1) * 2 > s->tindex_cap) {
        size_t ncap = s->tindex_cap * 2;
        uint32_t *idx = calloc(ncap, sizeof *idx);
        if (idx == NULL)
            return -1;
        for (size_t i = 0; i < s->nthreads; i++) {
            size_t a = (size_t)sum_thread_hash(s->threads[i].tid) & (ncap - 1);
            while (idx[a])
                a = (a + 1) & (ncap - 1);
            idx[a] = (uint32_t)(i + 1);
        }
        free(s->tindex);
        s->tindex = idx;
        s->tindex_cap = ncap;
        mask = ncap - 1;
        at = (size_t)sum_thread_hash(tid) & mask;
        while (s->tindex[at])
            at = (at + 1) & mask;
    }
    size_t i = s->nthreads++;
    memset(&s->threads[i], 0, sizeof s->threads[i]);
    s->threads[i].tid = tid;
    s->tindex[at] = (uint32_t)(i + 1);
    return (long)i;
}

/* Whether run a ranks below run b: fewer reads, or as many and starting later. */
static int sum_run_below(const kmmio_sum_run *a, const kmmio_sum_run *b)
{
    return a->count < b->count || (a->count == b->count && a->first_line > b->first_line);
}

static void sum_swap_runs(kmmio_sum_run *a, kmmio_sum_run *b)
{
    kmmio_sum_run t = *a;
    *a = *b;
    *b = t;
}

static int sum_offer(kmmio_summary *s, const kmmio_sum_run *run)
{
    if (s->top_max == 0)
        return 0;
    if (s->ntop < s->top_max) {
        if (sum_grow((void **)&s->top, &s->top_alloc, s->ntop + 1, sizeof *s->top))
            return -1;
        size_t i = s->ntop++;
        s->top[i] = *run;
        while (i > 0) {
            size_t p = (i - 1) / 2;
            if (!sum_run_below(&s->top[i], &s->top[p]))
                break;
            sum_swap_runs(&s->top[i], &s->top[p]);
            i = p;
        }
        return 0;
    }
    if (!sum_run_below(&s->top[0], run))
        return 0;
    s->top[0] = *run;
    for (size_t i = 0;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < s->ntop && sum_run_below(&s->top[l], &s->top[m]))
            m = l;
        if (r < s->ntop && sum_run_below(&s->top[r], &s->top[m]))
            m = r;
        if (m == i)
            return 0;
        sum_swap_runs(&s->top[i], &s->top[m]);
        i = m;
    }
}

/* End a thread's run: counted on its row and offered when long enough.  May spill. */
static int sum_end_run(kmmio_summary *s, sum_thread *th)
{
    if (!th->open)
        return 0;
    th->open = 0;
    if (th->run.count < s->min_run)
        return 0;
    int rc = sum_make_room(s);
    if (rc)
        return rc;
    long ri = sum_row_of(s, th->run.reg, th->run.key);
    if (ri < 0)
        return SUM_OOM;
    sum_row *r = &s->rows[ri];
    r->runs++;
    r->polled += th->run.count;
    if (th->run.count > r->longest)
        r->longest = th->run.count;
    s->totals.total_runs++;
    s->totals.polled += th->run.count;
    return sum_offer(s, &th->run) ? SUM_OOM : 0;
}

/* ---- the register map ------------------------------------------------------------------ */

void kmmio_sum_free(kmmio_summary *s);
void sum_out_free(kmmio_summary *s);

kmmio_summary *kmmio_sum_new(uint64_t min_run, long top, uint32_t cap_vals, uint32_t cap_tids,
                             uint32_t cap_maps, uint64_t budget, const char *tmpdir)
{
    kmmio_summary *s = calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    s->min_run = min_run < 1 ? 1 : min_run;
    s->top_max = top < 0 ? 0 : (size_t)top;
    s->cap_vals = cap_vals < 1 ? 1 : cap_vals;
    s->cap_tids = cap_tids < 1 ? 1 : cap_tids;
    s->cap_maps = cap_maps < 1 ? 1 : cap_maps > SUM_MAPS ? SUM_MAPS : cap_maps;
    s->budget = (size_t)budget;
    s->rindex_cap = s->tindex_cap = 64;
    s->pairs_cap = 64;
    s->tmpdir = strdup(tmpdir);
    s->rindex = calloc(s->rindex_cap, sizeof *s->rindex);
    s->tindex = calloc(s->tindex_cap, sizeof *s->tindex);
    s->pairs = calloc(s->pairs_cap, sizeof *s->pairs);
    if (!s->tmpdir || !s->rindex || !s->tindex || !s->pairs) {
        kmmio_sum_free(s);
        return NULL;
    }
    return s;
}

static void sum_table_free(kmmio_summary *s)
{
    free(s->rows);
    free(s->rindex);
    free(s->pairs);
    free(s->exts);
    s->rows = NULL;
    s->rindex = NULL;
    s->pairs = NULL;
    s->exts = NULL;
    s->nrows = s->rows_cap = s->rindex_cap = s->npairs = s->pairs_cap = s->nexts = s->exts_cap = 0;
}

void kmmio_sum_free(kmmio_summary *s)
{
    if (s == NULL)
        return;
    sum_table_free(s);
    sum_out_free(s);
    sum_spill_close(&s->spill);
    free(s->threads);
    free(s->tindex);
    free(s->top);
    free(s->res);
    free(s->seg_start);
    free(s->seg_end);
    free(s->seg_reg);
    for (size_t i = 0; i < s->nregs; i++)
        free(s->names[i]);
    free(s->names);
    free(s->reg_addr);
    free(s->mvals);
    free(s->mtids);
    free(s->mmaps);
    free(s->tmpdir);
    free(s);
}

/* The register map: nregs registers (names NUL-separated, one after the other; their
 * addresses), and nseg disjoint segments sorted by address: [start, end) covered by
 * register reg alone, or by several (reg -1: such accesses are resolved by the caller).
 * Once, before any access.  0, -1 out of memory, -2 misuse. */
int kmmio_sum_set_map(kmmio_summary *s, long nregs, const char *names, const uint64_t *addrs,
                      long nseg, const uint64_t *starts, const uint64_t *ends, const int32_t *regs)
{
    if (s->state || s->nregs || s->nseg || nregs < 0 || nseg < 0 || s->totals.any)
        return SUM_MISUSE;
    size_t nr = (size_t)nregs, ns = (size_t)nseg;
    s->names = calloc(nr ? nr : 1, sizeof *s->names);
    s->reg_addr = malloc((nr ? nr : 1) * sizeof *s->reg_addr);
    s->seg_start = malloc((ns ? ns : 1) * sizeof *s->seg_start);
    s->seg_end = malloc((ns ? ns : 1) * sizeof *s->seg_end);
    s->seg_reg = malloc((ns ? ns : 1) * sizeof *s->seg_reg);
    s->res_cap = 64;
    s->res = calloc(s->res_cap, sizeof *s->res);
    if (!s->names || !s->reg_addr || !s->seg_start || !s->seg_end || !s->seg_reg || !s->res)
        return SUM_OOM;
    for (size_t i = 0; i < nr; i++) {
        s->names[i] = strdup(names);
        if (s->names[i] == NULL)
            return SUM_OOM;
        s->nregs = i + 1;
        names += strlen(names) + 1;
        s->reg_addr[i] = addrs[i];
    }
    for (size_t i = 0; i < ns; i++) {
        if (regs[i] >= (int32_t)nr || starts[i] >= ends[i] || (i && starts[i] < ends[i - 1]))
            return SUM_MISUSE;
        s->seg_start[i] = starts[i];
        s->seg_end[i] = ends[i];
        s->seg_reg[i] = regs[i];
    }
    s->nseg = ns;
    return 0;
}

static uint64_t sum_res_hash(uint64_t phys, uint32_t kw) { return sum_mix(phys ^ ((uint64_t)kw << 48)); }

/* The caller's answer for an access the map alone does not settle: register reg (-1: none,
 * the address is its row).  0, -1 out of memory, -2 misuse. */
int kmmio_sum_resolve(kmmio_summary *s, uint8_t kind, uint8_t width, uint64_t phys, int32_t reg)
{
    if (s->state)
        return SUM_MISUSE;
    if (reg >= (int32_t)s->nregs || s->res == NULL)
        return SUM_MISUSE;
    uint32_t kw = ((uint32_t)(kind != 0) << 8 | width) + 1;
    if ((s->nres + 1) * 2 > s->res_cap) {
        size_t ncap = s->res_cap * 2;
        sum_res *nr = calloc(ncap, sizeof *nr);
        if (nr == NULL)
            return SUM_OOM;
        for (size_t i = 0; i < s->res_cap; i++) {
            if (!s->res[i].kw)
                continue;
            size_t a = (size_t)sum_res_hash(s->res[i].phys, s->res[i].kw) & (ncap - 1);
            while (nr[a].kw)
                a = (a + 1) & (ncap - 1);
            nr[a] = s->res[i];
        }
        free(s->res);
        s->res = nr;
        s->res_cap = ncap;
    }
    size_t mask = s->res_cap - 1, at = (size_t)sum_res_hash(phys, kw) & mask;
    for (; s->res[at].kw; at = (at + 1) & mask)
        if (s->res[at].kw == kw && s->res[at].phys == phys) {
            s->res[at].reg = reg;
            return 0;
        }
    s->res[at].kw = kw;
    s->res[at].phys = phys;
    s->res[at].reg = reg;
    s->nres++;
    return 0;
}

/* The row of an access: 1 with (reg, key) set, 0 when the caller must resolve it. */
static int sum_locate(kmmio_summary *s, uint8_t kind, uint8_t width, uint64_t phys, uint8_t *reg,
                      uint64_t *key)
{
    uint64_t end = phys + width < phys ? UINT64_MAX : phys + width;
    size_t lo = 0, hi = s->nseg; /* the first segment starting at or past end */
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (s->seg_start[mid] < end)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0 || s->seg_end[lo - 1] <= phys) { /* no register byte touched */
        *reg = 0;
        *key = phys;
        return 1;
    }
    size_t g = lo - 1;
    if (s->seg_reg[g] >= 0 && s->seg_start[g] <= phys && end <= s->seg_end[g]) {
        *reg = 1;
        *key = (uint64_t)s->seg_reg[g];
        return 1;
    }
    uint32_t kw = ((uint32_t)(kind != 0) << 8 | width) + 1;
    size_t mask = s->res_cap - 1, at = (size_t)sum_res_hash(phys, kw) & mask;
    for (; s->res[at].kw; at = (at + 1) & mask)
        if (s->res[at].kw == kw && s->res[at].phys == phys) {
            *reg = s->res[at].reg >= 0;
            *key = s->res[at].reg >= 0 ? (uint64_t)s->res[at].reg : phys;
            return 1;
        }
    s->need_phys = phys;
    s->need_kw = kw - 1;
    return 0;
}

/* The access kmmio_sum_add stopped at: kind << 8 | width, and its phys in *phys. */
long kmmio_sum_need(const kmmio_summary *s, uint64_t *phys)
{
    *phys = s->need_phys;
    return (long)s->need_kw;
}

/* ---- accesses -------------------------------------------------------------------------- */

/* Rows start .. n - 1 of columns; row i is line first_line + i.  Rows wider than 8 bytes
 * have their whole value (little-endian, width bytes) at wide_data + wide_off[i] (scan's
 * wide area).  Returns the number of rows done (n, or fewer when an access needs
 * kmmio_sum_resolve: see kmmio_sum_need), or -1 (out of memory), -2 (misuse), -3 (I/O). */
long kmmio_sum_add(kmmio_summary *s, const uint8_t *kind, const uint8_t *width, const uint64_t *ts,
                   const int32_t *map_id, const uint64_t *phys, const uint64_t *value,
                   const uint32_t *tid, const uint32_t *wide_off, const uint8_t *wide_data, long n,
                   long start, uint64_t first_line)
{
    if (s->state)
        return SUM_MISUSE;
    int rc = 0;
    long i;
    for (i = start; i < n; i++) {
        uint8_t k = kind[i] != 0, w = width[i];
        uint64_t p = phys[i], v = value[i], t = ts[i], line = first_line + (uint64_t)i;
        uint32_t id = tid[i];
        int32_t m = map_id[i];
        if (w == 0 || w > SUM_WIDE)
            return SUM_MISUSE;
        uint8_t reg = 0;
        uint64_t key = p;
        if (s->nseg) {
            uint32_t kw = (uint32_t)k << 8 | w;
            if (s->have_lk && s->lk_phys == p && s->lk_kw == kw) {
                reg = s->lk_reg;
                key = s->lk_key;
            } else {
                if (!sum_locate(s, k, w, p, &reg, &key))
                    return i;
                s->have_lk = 1;
                s->lk_phys = p;
                s->lk_kw = kw;
                s->lk_reg = reg;
                s->lk_key = key;
            }
        }
        const uint8_t *wb = NULL; /* the whole value, when wider than 64 bits */
        if (w > 8 && sum_is_wide(wide_data + wide_off[i], w))
            wb = wide_data + wide_off[i];

        /* the thread's polling run */
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
        sum_thread *th = &s->threads[ti];
        kmmio_sum_run *run = &th->run;
        if (!k && th->open && run->key == key && run->reg == reg && run->width == w) {
            run->count++;
            run->last_ts = t;
            run->last_value = v;
            run->last_line = line;
            run->flags &= (uint8_t)~SUM_LAST_WIDE;
            if (wb) {
                memcpy(run->last, wb, w);
                memset(run->last + w, 0, SUM_WIDE - w);
                run->flags |= SUM_LAST_WIDE;
            }
        } else {
            if ((rc = sum_end_run(s, th)) != 0)
                goto fail;
            if (!k) {
                th->open = 1;
                run->key = key;
                run->reg = reg;
                run->width = w;
                run->tid = id;
                run->map_id = m;
                run->count = 1;
                run->first_ts = run->last_ts = t;
                run->first_value = run->last_value = v;
                run->first_line = run->last_line = line;
                run->flags = 0;
                if (wb) {
                    memcpy(run->first, wb, w);
                    memset(run->first + w, 0, SUM_WIDE - w);
                    memcpy(run->last, run->first, SUM_WIDE);
                    run->flags = SUM_FIRST_WIDE | SUM_LAST_WIDE;
                }
            }
        }

        /* the row */
        if ((rc = sum_make_room(s)) != 0)
            goto fail;
        size_t ri;
        if (s->have_last && s->last_key == key && s->last_reg == reg) {
            ri = s->last_row;
        } else {
            long r = sum_row_of(s, reg, key);
            if (r < 0)
                goto oom;
            ri = (size_t)r;
            s->have_last = 1;
            s->last_key = key;
            s->last_reg = reg;
            s->last_row = ri;
        }
        sum_row *e = &s->rows[ri];
        int fresh = e->reads + e->writes == 0;
        if (fresh) {
            e->first_ts = t;
            e->first_value = v;
            e->first_line = line;
            e->first_width = w;
            e->first_tid = id;
            e->first_map = m;
            e->ntids = e->nmaps = 1;
            th->tid_row = (uint32_t)(ri + 1);
        }
        if (k)
            e->writes++;
        else
            e->reads++;
        e->widths |= (uint64_t)1 << (w - 1);
        e->last_ts = t;
        e->last_value = v;
        e->last_line = line;
        e->last_width = w;
        e->flags &= (uint8_t)~SUM_LAST_WIDE;
        if (wb) {
            sum_ext *x = sum_ext_of(s, e);
            if (x == NULL)
                goto oom;
            if (fresh) {
                memcpy(x->first, wb, w);
                memset(x->first + w, 0, SUM_WIDE - w);
                e->flags |= SUM_FIRST_WIDE;
            }
            memcpy(x->last, wb, w);
            memset(x->last + w, 0, SUM_WIDE - w);
            e->flags |= SUM_LAST_WIDE;
        }
        if (k) {
            uint64_t hv = wb ? sum_wide_hash(wb, w) : v;
            if (e->nvals == 0) {
                e->first_written = hv;
                e->nvals = 1;
            } else if (e->nvals < s->cap_vals && hv != e->first_written) {
                int r = sum_pair_add(s, ri, SUM_VAL, hv);
                if (r < 0)
                    goto oom;
                e->nvals += (uint32_t)r;
            }
        }
        if (!fresh && th->tid_row != ri + 1) {
            th->tid_row = (uint32_t)(ri + 1);
            if (id != e->first_tid && e->ntids < s->cap_tids) {
                int r = sum_pair_add(s, ri, SUM_TID, id);
                if (r < 0)
                    goto oom;
                e->ntids += (uint32_t)r;
            }
        }
        if (!fresh && m != e->first_map && e->nmaps < s->cap_maps) {
            int r = sum_pair_add(s, ri, SUM_MAP, (uint32_t)m);
            if (r < 0)
                goto oom;
            e->nmaps += (uint32_t)r;
        }
        if (!s->totals.any) {
            s->totals.any = 1;
            s->totals.first_ts = t;
        }
        s->totals.last_ts = t;
        if (k)
            s->totals.writes++;
        else
            s->totals.reads++;
    }
    return i;
oom:
    rc = SUM_OOM;
fail:
    s->state = -1;
    return rc;
}

/* Thread `tid` did something that is not a read (an UNKNOWN fault, the kernel reaching
 * traced memory for its syscall): its run ends.  A tid above 32 bits is no access's (the
 * reader holds them to 32 bits): nothing to end.  0, or a failure as kmmio_sum_add. */
int kmmio_sum_break(kmmio_summary *s, uint64_t tid)
{
    if (s->state)
        return SUM_MISUSE;
    if (tid > UINT32_MAX)
        return 0;
    size_t mask = s->tindex_cap - 1;
    for (size_t at = (size_t)sum_thread_hash((uint32_t)tid) & mask; s->tindex[at]; at = (at + 1) & mask) {
        sum_thread *th = &s->threads[s->tindex[at] - 1];
        if (th->tid == tid) {
            int rc = sum_end_run(s, th);
            if (rc)
                s->state = -1;
            return rc;
        }
    }
    return 0;
}

int sum_out_start(kmmio_summary *s);

/* The log is over: every thread's run ends, the table is merged with what was spilled and
 * the rows are ordered (_summary_out.c).  0, or a failure as kmmio_sum_add. */
int kmmio_sum_finish(kmmio_summary *s)
{
    if (s->state)
        return s->state < 0 ? SUM_MISUSE : 0;
    for (size_t i = 0; i < s->nthreads; i++) {
        int rc = sum_end_run(s, &s->threads[i]);
        if (rc) {
            s->state = -1;
            return rc;
        }
    }
    s->state = 1;
    int rc = sum_out_start(s);
    if (rc)
        s->state = -1;
    return rc;
}

static int sum_cmp_run_desc(const void *a, const void *b)
{
    const kmmio_sum_run *x = a, *y = b;
    return sum_run_below(x, y) ? 1 : sum_run_below(y, x) ? -1 : 0;
}

/* The kept runs, longest first, into out[cap] (after kmmio_sum_finish): their number, or
 * -2 when cap is too small. */
long kmmio_sum_runs(kmmio_summary *s, kmmio_sum_run *out, long cap)
{
    if (cap < 0 || (size_t)cap < s->ntop)
        return SUM_MISUSE;
    if (s->ntop) {
        memcpy(out, s->top, s->ntop * sizeof *out);
        qsort(out, s->ntop, sizeof *out, sum_cmp_run_desc);
    }
    return (long)s->ntop;
}

void kmmio_sum_totals_of(const kmmio_summary *s, kmmio_sum_totals *out)
{
    *out = s->totals;
}

int kmmio_sum_errno(const kmmio_summary *s) { return s->err; }
