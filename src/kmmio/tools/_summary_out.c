/* kmmio summary's output: the partial rows _summary_impl.c spilled merged into rows, the
 * rows ordered (most accesses first, then by first line), and streamed to the caller as
 * records (kmmio_sum_rows) or as the text table's or JSON's lines (kmmio_sum_format).
 *
 * kmmio_sum_finish spills what the table still holds, so every partial row is in a segment
 * sorted by (register?, key): of the temporary file, or, when nothing was spilled before
 * and the table is small (SUM_IN_MEMORY), of a buffer in memory (a short log needs no
 * file).  The segments are merged (a heap of
 * readers, one per segment): the partials of one key make one row, whose counts are
 * summed, whose first and last access are those of the smallest first and largest last
 * line, and whose values, tids and map ids are the union of the partials' lists, counted
 * up to the caps (a count at its cap means "cap or more": a partial stores no more).
 *
 * The rows are collected in memory up to `budget` bytes; past it, they are sorted and
 * written as a segment of a second temporary file, and the output merges those segments
 * (again a heap).  So the output, too, is bounded by the budget plus a reader's buffer per
 * segment, however many rows there are.  The widths of the text table's columns are known
 * before its first line: each row's cells are measured as it is made.
 */

#define SUM_RBUF (16 * 1024)
#define SUM_IN_MEMORY ((size_t)16 << 20) /* a table never spilled and this small stays here */
#define SUM_VALUE_CHARS 18

enum { SUM_ROWS = 0, SUM_TEXT = 1, SUM_JSON = 2 };
enum { SUM_COLS = 11 };

static const char *const sum_header[SUM_COLS] = {"REGISTER", "MAP",    "READS",      "WRITES",
                                                  "WIDTHS",   "DISTINCT", "FIRST",   "LAST",
                                                  "FIRST TIME", "LAST TIME", "THREADS"};
static const int sum_right[SUM_COLS] = {0, 0, 1, 1, 0, 1, 0, 0, 0, 0, 1};

void sum_out_free(kmmio_summary *s)
{
    for (size_t i = 0; i < s->nreaders; i++)
        free(s->readers[i].buf);
    free(s->readers);
    free(s->heap);
    free(s->outs);
    free(s->oexts);
    free(s->curs);
    sum_spill_close(&s->ospill);
    s->curs = NULL;
    s->readers = NULL;
    s->heap = NULL;
    s->outs = NULL;
    s->oexts = NULL;
    s->nreaders = s->nheap = s->nouts = s->outs_cap = s->noexts = s->oexts_cap = 0;
}

/* ---- readers --------------------------------------------------------------------------- */

static int sum_rd(kmmio_summary *s, sum_reader *r, void *dst, size_t n)
{
    uint8_t *d = dst;
    if (r->mem) {
        if (n > r->end - r->off) {
            s->err = EIO;
            return SUM_IO;
        }
        memcpy(d, r->mem + r->off, n);
        r->off += n;
        return 0;
    }
    while (n) {
        if (r->bpos == r->blen) {
            uint64_t left = r->end - r->off;
            size_t want = left < SUM_RBUF ? (size_t)left : SUM_RBUF;
            ssize_t got = want ? pread(r->fd, r->buf, want, (off_t)r->off) : 0;
            if (got <= 0) {
                s->err = got < 0 ? errno : EIO;
                return SUM_IO;
            }
            r->off += (uint64_t)got;
            r->blen = (size_t)got;
            r->bpos = 0;
        }
        size_t c = r->blen - r->bpos;
        if (c > n)
            c = n;
        memcpy(d, r->buf + r->bpos, c);
        r->bpos += c;
        d += c;
        n -= c;
    }
    return 0;
}

static int sum_read_ext(kmmio_summary *s, sum_reader *r, uint8_t flags, uint8_t fw, uint8_t lw, sum_ext *x)
{
    int rc = 0;
    if (flags & SUM_FIRST_WIDE) {
        memset(x->first + fw, 0, SUM_WIDE - fw);
        rc = sum_rd(s, r, x->first, fw);
    }
    if (!rc && (flags & SUM_LAST_WIDE)) {
        memset(x->last + lw, 0, SUM_WIDE - lw);
        rc = sum_rd(s, r, x->last, lw);
    }
    return rc;
}

static int sum_rd_more(const sum_reader *r) { return r->bpos < r->blen || r->off < r->end; }

/* One reader per segment of sp, at its start. */
static int sum_readers(kmmio_summary *s, const sum_spill *sp)
{
    s->nreaders = 0;
    s->readers = calloc(sp->nsegs ? sp->nsegs : 1, sizeof *s->readers);
    s->heap = malloc((sp->nsegs ? sp->nsegs : 1) * sizeof *s->heap);
    if (s->readers == NULL || s->heap == NULL)
        return SUM_OOM;
    for (size_t i = 0; i < sp->nsegs; i++) {
        sum_reader *r = &s->readers[i];
        r->buf = sp->mem ? NULL : malloc(SUM_RBUF);
        if (r->buf == NULL && !sp->mem)
            return SUM_OOM;
        s->nreaders = i + 1;
        r->fd = sp->fd;
        r->mem = sp->mem ? sp->wbuf : NULL;
        r->off = sp->segs[i];
        r->end = sp->segs[i + 1];
    }
    return 0;
}

/* Each reader's current record: a partial row (its ext and lists still to read), or an
 * output row and its ext. */
typedef struct {
    sum_row row;
    kmmio_sum_out out;
    sum_ext ext;
} sum_cur;

typedef int (*sum_less_fn)(const kmmio_summary *s, uint32_t a, uint32_t b);

static int sum_less_key(const kmmio_summary *s, uint32_t a, uint32_t b)
{
    const sum_cur *curs = s->curs;
    const sum_row *x = &curs[a].row, *y = &curs[b].row;
    if (x->reg != y->reg)
        return x->reg < y->reg;
    return x->key < y->key;
}

static int sum_out_before(const kmmio_sum_out *x, const kmmio_sum_out *y)
{
    uint64_t cx = x->reads + x->writes, cy = y->reads + y->writes;
    return cx > cy || (cx == cy && x->first_line < y->first_line);
}

static void sum_heap_down(kmmio_summary *s, size_t i, sum_less_fn less)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < s->nheap && less(s, s->heap[l], s->heap[m]))
            m = l;
        if (r < s->nheap && less(s, s->heap[r], s->heap[m]))
            m = r;
        if (m == i)
            return;
        uint32_t t = s->heap[i];
        s->heap[i] = s->heap[m];
        s->heap[m] = t;
        i = m;
    }
}

static void sum_heap_build(kmmio_summary *s, sum_less_fn less)
{
    for (size_t i = s->nheap / 2; i-- > 0;)
        sum_heap_down(s, i, less);
}

/* Pop the heap's top (its reader exhausted) or sift it after its record changed. */
static void sum_heap_fix(kmmio_summary *s, int live, sum_less_fn less)
{
    if (!live)
        s->heap[0] = s->heap[--s->nheap];
    if (s->nheap)
        sum_heap_down(s, 0, less);
}

/* ---- merging partial rows -------------------------------------------------------------- */

static int sum_cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static int sum_cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return x < y ? -1 : x > y;
}

static size_t sum_dedup(void *items, size_t n, size_t size, int (*cmp)(const void *, const void *))
{
    if (n < 2)
        return n;
    qsort(items, n, size, cmp);
    uint8_t *p = items;
    size_t k = 1;
    for (size_t i = 1; i < n; i++)
        if (cmp(p + (k - 1) * size, p + i * size) != 0)
            memmove(p + k++ * size, p + i * size, size);
    return k;
}

static int sum_out_add(kmmio_summary *s, const kmmio_sum_out *o, const sum_ext *x);

/* Read reader i's next partial row header into its cursor: 1, or 0 at its end. */
static int sum_next_partial(kmmio_summary *s, size_t i)
{
    sum_reader *r = &s->readers[i];
    if (!sum_rd_more(r))
        return 0;
    int rc = sum_rd(s, r, &((sum_cur *)s->curs)[i].row, sizeof(sum_row));
    return rc ? rc : 1;
}

static int sum_merge_partials(kmmio_summary *s)
{
    int rc = 0;
    sum_cur *curs = s->curs;
    s->nheap = 0;
    for (size_t i = 0; i < s->nreaders; i++) {
        int got = sum_next_partial(s, i);
        if (got < 0)
            return got;
        if (got)
            s->heap[s->nheap++] = (uint32_t)i;
    }
    sum_heap_build(s, sum_less_key);
    while (s->nheap) {
        uint8_t reg = curs[s->heap[0]].row.reg;
        uint64_t key = curs[s->heap[0]].row.key;
        kmmio_sum_out o;
        sum_ext x;
        memset(&o, 0, sizeof o);
        o.first_line = UINT64_MAX;
        size_t nv = 0, nt = 0, nm = 0;
        while (s->nheap && curs[s->heap[0]].row.reg == reg && curs[s->heap[0]].row.key == key) {
            size_t ri = s->heap[0];
            sum_reader *rd = &s->readers[ri];
            const sum_row *p = &curs[ri].row;
            sum_ext px;
            if ((rc = sum_read_ext(s, rd, p->flags, p->first_width, p->last_width, &px)) != 0)
                return rc;
            if (sum_grow((void **)&s->mvals, &s->mvals_cap, nv + p->nvals, sizeof *s->mvals) ||
                sum_grow((void **)&s->mtids, &s->mtids_cap, nt + p->ntids, sizeof *s->mtids) ||
                sum_grow((void **)&s->mmaps, &s->mmaps_cap, nm + p->nmaps, sizeof *s->mmaps))
                return SUM_OOM;
            if ((rc = sum_rd(s, rd, s->mvals + nv, p->nvals * sizeof *s->mvals)) ||
                (rc = sum_rd(s, rd, s->mtids + nt, p->ntids * sizeof *s->mtids)) ||
                (rc = sum_rd(s, rd, s->mmaps + nm, p->nmaps * sizeof *s->mmaps)))
                return rc;
            nv += p->nvals;
            nt += p->ntids;
            nm += p->nmaps;
            o.reads += p->reads;
            o.writes += p->writes;
            o.widths |= p->widths;
            o.runs += p->runs;
            o.polled += p->polled;
            if (p->longest > o.longest)
                o.longest = p->longest;
            if (p->first_line < o.first_line) {
                o.first_line = p->first_line;
                o.first_ts = p->first_ts;
                o.first_value = p->first_value;
                o.first_width = p->first_width;
                o.flags = (uint8_t)((o.flags & ~SUM_FIRST_WIDE) | (p->flags & SUM_FIRST_WIDE));
                if (p->flags & SUM_FIRST_WIDE)
                    memcpy(x.first, px.first, SUM_WIDE);
            }
            if (p->reads + p->writes && p->last_line >= o.last_line) {
                o.last_line = p->last_line;
                o.last_ts = p->last_ts;
                o.last_value = p->last_value;
                o.last_width = p->last_width;
                o.flags = (uint8_t)((o.flags & ~SUM_LAST_WIDE) | (p->flags & SUM_LAST_WIDE));
                if (p->flags & SUM_LAST_WIDE)
                    memcpy(x.last, px.last, SUM_WIDE);
            }
            int got = sum_next_partial(s, ri);
            if (got < 0)
                return got;
            sum_heap_fix(s, got, sum_less_key);
        }
        nv = sum_dedup(s->mvals, nv, sizeof *s->mvals, sum_cmp_u64);
        nt = sum_dedup(s->mtids, nt, sizeof *s->mtids, sum_cmp_u32);
        nm = sum_dedup(s->mmaps, nm, sizeof *s->mmaps, sum_cmp_i32);
        o.distinct = nv < s->cap_vals ? nv : s->cap_vals;
        o.threads = nt < s->cap_tids ? nt : s->cap_tids;
        o.nmaps = (uint32_t)(nm < s->cap_maps ? nm : s->cap_maps);
        if (o.distinct == s->cap_vals)
            o.flags |= SUM_DISTINCT_CAPPED;
        if (o.threads == s->cap_tids)
            o.flags |= SUM_THREADS_CAPPED;
        if (o.nmaps == s->cap_maps)
            o.flags |= SUM_MAPS_CAPPED;
        memcpy(o.maps, s->mmaps, o.nmaps * sizeof *o.maps);
        o.reg = reg;
        o.reg_index = reg ? (uint32_t)key : 0;
        o.phys = reg ? s->reg_addr[key] : key;
        if ((rc = sum_out_add(s, &o, &x)) != 0)
            return rc;
    }
    return 0;
}

/* ---- cells ----------------------------------------------------------------------------- */

static size_t sum_dec(uint64_t v, char *out, int commas)
{
    char tmp[32];
    size_t n = 0;
    int d = 0;
    do {
        if (commas && d && d % 3 == 0)
            tmp[n++] = ',';
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
        d++;
    } while (v);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}

static size_t sum_hex64(uint64_t v, char *out)
{
    static const char hx[] = "0123456789abcdef";
    char tmp[16];
    size_t n = 0;
    do {
        tmp[n++] = hx[v & 15];
        v >>= 4;
    } while (v);
    out[0] = '0';
    out[1] = 'x';
    for (size_t i = 0; i < n; i++)
        out[2 + i] = tmp[n - 1 - i];
    return n + 2;
}

/* A value's hex: the whole bytes when wide, else the 64 bits. */
static size_t sum_hex(uint64_t v, const uint8_t *wide, char *out)
{
    static const char hx[] = "0123456789abcdef";
    if (wide == NULL)
        return sum_hex64(v, out);
    size_t top = SUM_WIDE;
    while (top > 1 && wide[top - 1] == 0)
        top--;
    size_t n = 2;
    out[0] = '0';
    out[1] = 'x';
    uint8_t b = wide[top - 1];
    if (b >> 4)
        out[n++] = hx[b >> 4];
    out[n++] = hx[b & 15];
    for (size_t i = top - 1; i-- > 0;) {
        out[n++] = hx[wide[i] >> 4];
        out[n++] = hx[wide[i] & 15];
    }
    return n;
}

/* A value in decimal (JSON): wide ones by long division. */
static size_t sum_decimal(uint64_t v, const uint8_t *wide, char *out)
{
    if (wide == NULL)
        return sum_dec(v, out, 0);
    uint64_t limb[SUM_WIDE / 8];
    memcpy(limb, wide, SUM_WIDE);
    uint64_t chunk[16];
    size_t nc = 0, top = SUM_WIDE / 8;
    const uint64_t D = 10000000000000000000ULL; /* 10^19 */
    while (top > 0 && limb[top - 1] == 0)
        top--;
    while (top > 0) {
        unsigned __int128 rem = 0;
        for (size_t i = top; i-- > 0;) {
            unsigned __int128 cur = rem << 64 | limb[i];
            limb[i] = (uint64_t)(cur / D);
            rem = cur % D;
        }
        chunk[nc++] = (uint64_t)rem;
        while (top > 0 && limb[top - 1] == 0)
            top--;
    }
    if (nc == 0)
        return sum_dec(0, out, 0);
    size_t n = sum_dec(chunk[nc - 1], out, 0);
    for (size_t c = nc - 1; c-- > 0;) {
        char tmp[24];
        size_t k = sum_dec(chunk[c], tmp, 0);
        memset(out + n, '0', 19 - k);
        memcpy(out + n + 19 - k, tmp, k);
        n += 19;
    }
    return n;
}

static size_t sum_ts(uint64_t us, char *out)
{
    size_t n = sum_dec(us / 1000000, out, 0);
    out[n++] = '.';
    uint64_t f = us % 1000000;
    for (int i = 5; i >= 0; i--, f /= 10)
        out[n + (size_t)i] = (char)('0' + f % 10);
    return n + 6;
}

static size_t sum_widths(uint64_t mask, char *out)
{
    size_t n = 0;
    for (int w = 1; w <= SUM_WIDE; w++)
        if (mask >> (w - 1) & 1) {
            if (n)
                out[n++] = ',';
            n += sum_dec((uint64_t)w, out + n, 0);
        }
    return n;
}

static const char *sum_name(const kmmio_summary *s, const kmmio_sum_out *o)
{
    return o && o->reg && o->reg_index < s->nregs ? s->names[o->reg_index] : NULL;
}

/* Cell c of a row into out (room for 512 bytes plus a register's name); its length in
 * bytes.  *chars gets its length in characters ("≥" is one, three bytes). */
static size_t sum_cell(const kmmio_summary *s, const kmmio_sum_out *o, const sum_ext *x, int c, char *out,
                       size_t *chars)
{
    size_t n = 0;
    *chars = 0;
    switch (c) {
    case 0: {
        const char *name = sum_name(s, o);
        if (name) {
            n = strlen(name);
            memcpy(out, name, n);
            size_t k = 0;
            for (size_t i = 0; i < n; i++)
                k += ((uint8_t)name[i] & 0xC0) != 0x80;
            *chars = k;
            return n;
        }
        n = sum_hex64(o->phys, out);
        break;
    }
    case 1:
        for (uint32_t i = 0; i < o->nmaps; i++) {
            if (i)
                out[n++] = ',';
            if (o->maps[i] < 0) {
                out[n++] = '-';
                n += sum_dec((uint64_t)(-(int64_t)o->maps[i]), out + n, 0);
            } else {
                n += sum_dec((uint64_t)o->maps[i], out + n, 0);
            }
        }
        if (o->flags & SUM_MAPS_CAPPED)
            out[n++] = '+';
        break;
    case 2:
        n = sum_dec(o->reads, out, 1);
        break;
    case 3:
        n = sum_dec(o->writes, out, 1);
        break;
    case 4:
        n = sum_widths(o->widths, out);
        break;
    case 5:
    case 10: {
        int capped = o->flags & (c == 5 ? SUM_DISTINCT_CAPPED : SUM_THREADS_CAPPED);
        if (capped) {
            memcpy(out, "\xe2\x89\xa5", 3); /* ≥ */
            n = 3;
            *chars = (size_t)-2;
        }
        n += sum_dec(c == 5 ? o->distinct : o->threads, out + n, 1);
        break;
    }
    case 6:
    case 7: {
        int first = c == 6;
        const uint8_t *w = (o->flags & (first ? SUM_FIRST_WIDE : SUM_LAST_WIDE)) ? (first ? x->first : x->last) : NULL;
        n = sum_hex(first ? o->first_value : o->last_value, w, out);
        if (n > SUM_VALUE_CHARS) {
            size_t half = (SUM_VALUE_CHARS - 2) / 2, head = SUM_VALUE_CHARS - 2 - half;
            memmove(out + head + 2, out + n - half, half);
            out[head] = out[head + 1] = '.';
            n = SUM_VALUE_CHARS;
        }
        break;
    }
    case 8:
        n = sum_ts(o->first_ts, out);
        break;
    case 9:
        n = sum_ts(o->last_ts, out);
        break;
    }
    *chars += n;
    return n;
}

/* ---- collecting and ordering the rows -------------------------------------------------- */

static size_t sum_out_bytes(const kmmio_summary *s)
{
    return s->outs_cap * sizeof(kmmio_sum_out) + s->oexts_cap * sizeof(sum_ext);
}

static int sum_cmp_out(const void *a, const void *b)
{
    const kmmio_sum_out *x = a, *y = b;
    return sum_out_before(x, y) ? -1 : sum_out_before(y, x) ? 1 : 0;
}

/* Sort the collected rows and write them as a segment of the second file. */
static int sum_out_spill(kmmio_summary *s)
{
    if (s->nouts == 0)
        return 0;
    int rc = sum_segment(s, &s->ospill, 1);
    if (rc)
        return rc;
    qsort(s->outs, s->nouts, sizeof *s->outs, sum_cmp_out);
    for (size_t i = 0; i < s->nouts && !rc; i++) {
        const kmmio_sum_out *o = &s->outs[i];
        rc = sum_write(s, &s->ospill, o, sizeof *o);
        if (!rc && o->ext)
            rc = sum_write_ext(s, &s->ospill, o->flags, o->first_width, o->last_width, &s->oexts[o->ext - 1]);
    }
    if (!rc)
        rc = sum_segment(s, &s->ospill, 0);
    s->nouts = s->noexts = 0;
    return rc;
}

static size_t sum_dec_len(uint64_t v, int commas)
{
    size_t d = 1;
    while (v >= 10) {
        v /= 10;
        d++;
    }
    return commas ? d + (d - 1) / 3 : d;
}

static size_t sum_hex_len(uint64_t v, const uint8_t *wide)
{
    size_t d;
    if (wide == NULL) {
        d = 1;
        while (v >>= 4)
            d++;
    } else {
        size_t top = SUM_WIDE;
        while (top > 1 && wide[top - 1] == 0)
            top--;
        d = 2 * top - (wide[top - 1] < 16);
    }
    return d + 2 > SUM_VALUE_CHARS ? SUM_VALUE_CHARS : d + 2;
}

/* Cell c's length in characters, as sum_cell would make it (without making it). */
static size_t sum_measure(const kmmio_summary *s, const kmmio_sum_out *o, const sum_ext *x, int c)
{
    size_t n = 0;
    switch (c) {
    case 0: {
        const char *name = sum_name(s, o);
        if (name == NULL)
            return sum_hex_len(o->phys, NULL);
        for (; *name; name++)
            n += ((uint8_t)*name & 0xC0) != 0x80;
        return n;
    }
    case 1:
        for (uint32_t i = 0; i < o->nmaps; i++)
            n += (i > 0) + (o->maps[i] < 0) + sum_dec_len((uint64_t)(o->maps[i] < 0 ? -(int64_t)o->maps[i] : o->maps[i]), 0);
        return n + ((o->flags & SUM_MAPS_CAPPED) != 0);
    case 2:
        return sum_dec_len(o->reads, 1);
    case 3:
        return sum_dec_len(o->writes, 1);
    case 4:
        for (int w = 1; w <= SUM_WIDE; w++)
            if (o->widths >> (w - 1) & 1)
                n += (n > 0) + sum_dec_len((uint64_t)w, 0);
        return n;
    case 5:
        return sum_dec_len(o->distinct, 1) + ((o->flags & SUM_DISTINCT_CAPPED) != 0);
    case 10:
        return sum_dec_len(o->threads, 1) + ((o->flags & SUM_THREADS_CAPPED) != 0);
    case 6:
        return sum_hex_len(o->first_value, (o->flags & SUM_FIRST_WIDE) ? x->first : NULL);
    case 7:
        return sum_hex_len(o->last_value, (o->flags & SUM_LAST_WIDE) ? x->last : NULL);
    case 8:
        return sum_dec_len(o->first_ts / 1000000, 0) + 7;
    default:
        return sum_dec_len(o->last_ts / 1000000, 0) + 7;
    }
}

static int sum_out_add(kmmio_summary *s, const kmmio_sum_out *o, const sum_ext *x)
{
    for (int c = 0; c < SUM_COLS; c++) {
        size_t chars = sum_measure(s, o, x, c);
        if (chars > s->colw[c])
            s->colw[c] = chars;
    }
    int wide = (o->flags & (SUM_FIRST_WIDE | SUM_LAST_WIDE)) != 0;
    if ((s->nouts + 1 > s->outs_cap || (wide && s->noexts + 1 > s->oexts_cap)) && s->nouts &&
        sum_out_bytes(s) + (s->nouts + 1 > s->outs_cap ? s->outs_cap * sizeof(kmmio_sum_out) : 0) +
                (wide && s->noexts + 1 > s->oexts_cap ? s->oexts_cap * sizeof(sum_ext) : 0) >
            s->budget) {
        int rc = sum_out_spill(s);
        if (rc)
            return rc;
    }
    if (sum_grow((void **)&s->outs, &s->outs_cap, s->nouts + 1, sizeof *s->outs))
        return SUM_OOM;
    kmmio_sum_out *d = &s->outs[s->nouts++];
    *d = *o;
    d->ext = 0;
    if (wide) {
        if (sum_grow((void **)&s->oexts, &s->oexts_cap, s->noexts + 1, sizeof *s->oexts))
            return SUM_OOM;
        s->oexts[s->noexts++] = *x;
        d->ext = (uint32_t)s->noexts;
    }
    if (sum_out_bytes(s) > s->totals.peak_bytes)
        s->totals.peak_bytes = sum_out_bytes(s);
    s->totals.rows++;
    return 0;
}

static int sum_rewind(kmmio_summary *s);

int sum_out_start(kmmio_summary *s)
{
    uint64_t spills = s->totals.spills; /* while reading: this last one is not counted */
    if (s->spill.nsegs == 0 && sum_table_bytes(s) <= SUM_IN_MEMORY)
        s->spill.mem = 1; /* nothing spilled, and small: no file */
    int rc = sum_spill_table(s);
    if (rc)
        return rc;
    s->totals.spills = spills;
    s->totals.segments = s->spill.nsegs;
    sum_table_free(s);
    for (int c = 0; c < SUM_COLS; c++)
        s->colw[c] = strlen(sum_header[c]);
    rc = sum_readers(s, &s->spill);
    if (!rc) {
        s->curs = calloc(s->nreaders ? s->nreaders : 1, sizeof(sum_cur));
        rc = s->curs ? sum_merge_partials(s) : SUM_OOM;
        free(s->curs);
        s->curs = NULL;
    }
    for (size_t i = 0; i < s->nreaders; i++)
        free(s->readers[i].buf);
    free(s->readers);
    free(s->heap);
    s->readers = NULL;
    s->heap = NULL;
    s->nreaders = 0;
    sum_spill_close(&s->spill);
    if (rc)
        return rc;
    if (s->ospill.nsegs) {
        if ((rc = sum_out_spill(s)) != 0)
            return rc;
        free(s->outs);
        free(s->oexts);
        s->outs = NULL;
        s->oexts = NULL;
        s->outs_cap = s->oexts_cap = 0;
        if ((rc = sum_readers(s, &s->ospill)) != 0)
            return rc;
    } else {
        qsort(s->outs, s->nouts, sizeof *s->outs, sum_cmp_out);
    }
    s->state = 2;
    return sum_rewind(s);
}

/* ---- the cursor ------------------------------------------------------------------------ */

/* The readers' current output rows (one per reader), while the output is read from files. */
typedef struct {
    kmmio_sum_out out;
    sum_ext ext;
} sum_ocur;

static int sum_next_out(kmmio_summary *s, size_t i, sum_ocur *cur)
{
    sum_reader *r = &s->readers[i];
    if (!sum_rd_more(r))
        return 0;
    int rc = sum_rd(s, r, &cur->out, sizeof cur->out);
    if (!rc && cur->out.ext)
        rc = sum_read_ext(s, r, cur->out.flags, cur->out.first_width, cur->out.last_width, &cur->ext);
    return rc ? rc : 1;
}

static int sum_less_ocur(const kmmio_summary *s, uint32_t a, uint32_t b)
{
    const sum_ocur *curs = s->curs;
    return sum_out_before(&curs[a].out, &curs[b].out);
}

/* Back to the first row. */
static int sum_rewind(kmmio_summary *s)
{
    s->cursor = 0;
    s->header_done = 0;
    s->pending = 0;
    if (s->nreaders == 0)
        return 0;
    if (s->curs == NULL) { /* each reader's current row */
        s->curs = calloc(s->nreaders, sizeof(sum_ocur));
        if (s->curs == NULL)
            return SUM_OOM;
    }
    sum_ocur *curs = s->curs;
    s->nheap = 0;
    for (size_t i = 0; i < s->nreaders; i++) {
        sum_reader *r = &s->readers[i];
        r->off = s->ospill.segs[i];
        r->blen = r->bpos = 0;
        int got = sum_next_out(s, i, &curs[i]);
        if (got < 0)
            return got;
        if (got)
            s->heap[s->nheap++] = (uint32_t)i;
    }
    sum_heap_build(s, sum_less_ocur);
    return 0;
}

/* The next row into *o and its ext into *x: 1, 0 at the end, or a failure. */
static int sum_next(kmmio_summary *s, kmmio_sum_out *o, sum_ext *x)
{
    if (s->nreaders == 0) {
        if (s->cursor >= s->nouts)
            return 0;
        *o = s->outs[s->cursor++];
        if (o->ext)
            *x = s->oexts[o->ext - 1];
        return 1;
    }
    if (s->nheap == 0)
        return 0;
    sum_ocur *curs = s->curs;
    size_t i = s->heap[0];
    *o = curs[i].out;
    if (o->ext)
        *x = curs[i].ext;
    int got = sum_next_out(s, i, &curs[i]);
    if (got < 0)
        return got;
    sum_heap_fix(s, got, sum_less_ocur);
    return 1;
}

/* Start the rows again (kmmio_sum_rows and kmmio_sum_format share one cursor). */
int kmmio_sum_rewind(kmmio_summary *s)
{
    if (s->state != 2)
        return SUM_MISUSE;
    int rc = sum_rewind(s);
    if (rc)
        s->state = -1;
    return rc;
}

/* Up to cap rows, in order, into out[cap]; wide gets 2 * 64 bytes per row (its first and
 * last values' bytes, when flagged wide).  The number of rows (0 at the end) or a failure. */
long kmmio_sum_rows(kmmio_summary *s, kmmio_sum_out *out, uint8_t *wide, long cap)
{
    if (s->state != 2)
        return SUM_MISUSE;
    long n = 0;
    while (n < cap) {
        sum_ext x;
        int got = sum_next(s, &out[n], &x);
        if (got < 0) {
            s->state = -1;
            return got;
        }
        if (!got)
            break;
        if (out[n].ext)
            memcpy(wide + (size_t)n * 2 * SUM_WIDE, &x, sizeof x);
        out[n].ext = 0;
        n++;
    }
    return n;
}

/* ---- lines ----------------------------------------------------------------------------- */

static size_t sum_text_line(const kmmio_summary *s, const kmmio_sum_out *o, const sum_ext *x, char *out)
{
    size_t n = 0, last_end = 0;
    for (int c = 0; c < SUM_COLS; c++) {
        char cell[1024];
        const char *text = cell;
        size_t chars, len;
        if (c == 0 && sum_name(s, o)) {
            text = s->names[o->reg_index];
            len = strlen(text);
            chars = 0;
            for (size_t i = 0; i < len; i++)
                chars += ((uint8_t)text[i] & 0xC0) != 0x80;
        } else if (o == NULL) {
            text = sum_header[c];
            len = chars = strlen(text);
        } else {
            len = sum_cell(s, o, x, c, cell, &chars);
        }
        if (c)
            out[n++] = ' ', out[n++] = ' ';
        size_t pad = s->colw[c] > chars ? s->colw[c] - chars : 0;
        if (sum_right[c]) {
            memset(out + n, ' ', pad);
            n += pad;
        }
        memcpy(out + n, text, len);
        n += len;
        last_end = n;
        if (!sum_right[c]) {
            memset(out + n, ' ', pad);
            n += pad;
        }
    }
    n = last_end; /* trailing spaces off */
    out[n++] = '\n';
    return n;
}

static size_t sum_json_str(const char *p, char *out)
{
    static const char hx[] = "0123456789abcdef";
    size_t n = 0;
    out[n++] = '"';
    for (; *p; p++) {
        uint8_t c = (uint8_t)*p;
        if (c == '"' || c == '\\') {
            out[n++] = '\\';
            out[n++] = (char)c;
        } else if (c < 0x20) {
            memcpy(out + n, "\\u00", 4);
            out[n + 4] = hx[c >> 4];
            out[n + 5] = hx[c & 15];
            n += 6;
        } else {
            out[n++] = (char)c;
        }
    }
    out[n++] = '"';
    return n;
}

#define SUM_PUT(lit) (memcpy(out + n, lit, sizeof lit - 1), n += sizeof lit - 1)

static size_t sum_bool(int b, char *out)
{
    memcpy(out, b ? "true" : "false", b ? 4 : 5);
    return b ? 4 : 5;
}

static size_t sum_json_line(const kmmio_summary *s, const kmmio_sum_out *o, const sum_ext *x, char *out)
{
    size_t n = 0;
    const char *name = sum_name(s, o);
    SUM_PUT("{\"type\": \"row\", \"register\": ");
    if (name)
        n += sum_json_str(name, out + n);
    else
        SUM_PUT("null");
    SUM_PUT(", \"phys\": ");
    n += sum_dec(o->phys, out + n, 0);
    SUM_PUT(", \"maps\": [");
    for (uint32_t i = 0; i < o->nmaps; i++) {
        if (i)
            SUM_PUT(", ");
        if (o->maps[i] < 0) {
            out[n++] = '-';
            n += sum_dec((uint64_t)(-(int64_t)o->maps[i]), out + n, 0);
        } else {
            n += sum_dec((uint64_t)o->maps[i], out + n, 0);
        }
    }
    SUM_PUT("], \"maps_capped\": ");
    n += sum_bool(o->flags & SUM_MAPS_CAPPED, out + n);
    SUM_PUT(", \"reads\": ");
    n += sum_dec(o->reads, out + n, 0);
    SUM_PUT(", \"writes\": ");
    n += sum_dec(o->writes, out + n, 0);
    SUM_PUT(", \"widths\": [");
    int any = 0;
    for (int w = 1; w <= SUM_WIDE; w++)
        if (o->widths >> (w - 1) & 1) {
            if (any)
                SUM_PUT(", ");
            any = 1;
            n += sum_dec((uint64_t)w, out + n, 0);
        }
    SUM_PUT("], \"distinct\": ");
    n += sum_dec(o->distinct, out + n, 0);
    SUM_PUT(", \"distinct_capped\": ");
    n += sum_bool(o->flags & SUM_DISTINCT_CAPPED, out + n);
    SUM_PUT(", \"first_value\": ");
    n += sum_decimal(o->first_value, (o->flags & SUM_FIRST_WIDE) ? x->first : NULL, out + n);
    SUM_PUT(", \"last_value\": ");
    n += sum_decimal(o->last_value, (o->flags & SUM_LAST_WIDE) ? x->last : NULL, out + n);
    SUM_PUT(", \"first_ts\": \"");
    n += sum_ts(o->first_ts, out + n);
    SUM_PUT("\", \"last_ts\": \"");
    n += sum_ts(o->last_ts, out + n);
    SUM_PUT("\", \"first_line\": ");
    n += sum_dec(o->first_line, out + n, 0);
    SUM_PUT(", \"last_line\": ");
    n += sum_dec(o->last_line, out + n, 0);
    SUM_PUT(", \"threads\": ");
    n += sum_dec(o->threads, out + n, 0);
    SUM_PUT(", \"threads_capped\": ");
    n += sum_bool(o->flags & SUM_THREADS_CAPPED, out + n);
    SUM_PUT(", \"runs\": ");
    n += sum_dec(o->runs, out + n, 0);
    SUM_PUT(", \"polled\": ");
    n += sum_dec(o->polled, out + n, 0);
    SUM_PUT(", \"longest_run\": ");
    n += sum_dec(o->longest, out + n, 0);
    SUM_PUT("}\n");
    return n;
}

/* The room a row's line may need: the fixed parts, and a register's name (escaped). */
static size_t sum_line_room(const kmmio_summary *s, const kmmio_sum_out *o)
{
    const char *name = o ? sum_name(s, o) : NULL;
    size_t room = 2048;
    for (int c = 0; c < SUM_COLS; c++)
        room += s->colw[c] + 2;
    return room + (name ? 6 * strlen(name) : 0);
}

/* Lines of the text table (mode 1: its header first) or of JSON rows (mode 2) into
 * buf[cap], whole lines only: the bytes written, 0 at the end, -4 when cap cannot hold one
 * line (call again with more), or a failure. */
long kmmio_sum_format(kmmio_summary *s, int mode, char *buf, long cap)
{
    if (s->state != 2 || (mode != SUM_TEXT && mode != SUM_JSON) || cap < 0)
        return SUM_MISUSE;
    size_t n = 0, c = (size_t)cap;
    if (mode == SUM_TEXT && !s->header_done) {
        if (sum_line_room(s, NULL) > c)
            return -4;
        n += sum_text_line(s, NULL, NULL, buf);
        s->header_done = 1;
    }
    for (;;) {
        if (!s->pending) {
            int got = sum_next(s, &s->pend, &s->pend_ext);
            if (got < 0) {
                s->state = -1;
                return got;
            }
            if (!got)
                break;
            s->pending = 1;
        }
        if (n + sum_line_room(s, &s->pend) > c) {
            if (n == 0)
                return -4;
            break;
        }
        n += mode == SUM_TEXT ? sum_text_line(s, &s->pend, &s->pend_ext, buf + n)
                              : sum_json_line(s, &s->pend, &s->pend_ext, buf + n);
        s->pending = 0;
    }
    return (long)n;
}
