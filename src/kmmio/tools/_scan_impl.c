/* The mmiotrace reader's hot path: R/W lines of a buffer into columns.
 *
 * kmmio_scan() parses consecutive well-formed access lines ("R|W WIDTH S.UUUUUU MAP 0xPHYS
 * 0xVALUE 0xPC TID", fields separated by spaces or tabs, an optional trailing CR) from
 * buf[*pos] on, into the columns at row *rows, until the columns are full, the buffer ends
 * without a newline, or a line is anything else.  It never judges that other line: Python's
 * parser does (other records, ftrace's trace-file prefixes, malformed lines with their exact
 * error, numbers out of range, lines longer than max_line bytes).  Pure: no I/O, no
 * allocation.
 *
 * Widths are 1 to 64 bytes and a value is less than 2**(8 * width).  The value column holds
 * its low 64 bits; the whole value of a row wider than 8 bytes is also written, width bytes
 * little-endian, to wide_data at wide_off[row] (wide_off[row + 1] = wide_off[row] + width,
 * wide_off[row] for the other rows: Arrow's layout of a binary column, wide_off[0] set by the
 * caller); wide_data holds cap * 64 bytes.
 */
#include <stdint.h>
#include <string.h>

#define SCAN_FULL 0     /* the columns are full */
#define SCAN_NEED_MORE 1 /* the buffer ends inside a line (or at its end) */
#define SCAN_OTHER 2    /* the line at *pos is not a plain access line */

static int is_space(char c) { return c == ' ' || c == '\t'; }

/* A decimal number of at most 19 digits; returns the end or NULL. */
static const char *dec_u(const char *p, const char *end, uint64_t *out)
{
    const char *start = p;
    uint64_t v = 0;
    while (p < end && *p >= '0' && *p <= '9' && p - start < 19) {
        v = v * 10 + (uint64_t)(*p - '0');
        p++;
    }
    if (p == start || (p < end && *p >= '0' && *p <= '9'))
        return NULL;
    *out = v;
    return p;
}

#define MAX_WIDTH 64

/* A hex digit's value, -1 for anything else. */
static const signed char HEX[256] = {
    ['0'] = 1, ['1'] = 2, ['2'] = 3, ['3'] = 4, ['4'] = 5, ['5'] = 6, ['6'] = 7, ['7'] = 8,
    ['8'] = 9, ['9'] = 10, ['a'] = 11, ['b'] = 12, ['c'] = 13, ['d'] = 14, ['e'] = 15,
    ['f'] = 16, ['A'] = 11, ['B'] = 12, ['C'] = 13, ['D'] = 14, ['E'] = 15, ['F'] = 16,
};

static int hexval(char c) { return HEX[(unsigned char)c] - 1; }

/* "0x" and a value of at most 2 * w significant hex digits (any leading zeros): its low 64
 * bits to *lo and, when w > 8, its w bytes little-endian to out. */
static const char *hex_value(const char *p, const char *end, unsigned w, uint64_t *lo, uint8_t *out)
{
    if (end - p < 3 || p[0] != '0' || p[1] != 'x')
        return NULL;
    p += 2;
    const char *digits = p;
    while (p < end && *p == '0')
        p++;
    const char *start = p;
    while (p < end && hexval(*p) >= 0)
        p++;
    if (p == digits || p - start > 2 * (long)w)
        return NULL;
    uint64_t v = 0;
    for (const char *q = p - start > 16 ? p - 16 : start; q < p; q++)
        v = (v << 4) | (uint64_t)hexval(*q);
    *lo = v;
    if (w > 8) {
        const char *d = p;
        for (unsigned i = 0; i < w; i++) {
            unsigned b = 0;
            if (d > start) {
                b = (unsigned)hexval(*--d);
                if (d > start)
                    b |= (unsigned)hexval(*--d) << 4;
            }
            out[i] = (uint8_t)b;
        }
    }
    return p;
}

/* "0x" and 1 to 16 hex digits (leading zeros beyond 16 digits are left to Python). */
static const char *hex_u(const char *p, const char *end, uint64_t *out)
{
    if (end - p < 3 || p[0] != '0' || p[1] != 'x')
        return NULL;
    p += 2;
    const char *start = p;
    uint64_t v = 0;
    int d;
    while (p < end && (d = hexval(*p)) >= 0) {
        if (p - start == 16)
            return NULL;
        v = (v << 4) | (uint64_t)d;
        p++;
    }
    if (p == start)
        return NULL;
    *out = v;
    return p;
}

/* The separator after a field: at least one space or tab. */
static const char *sep(const char *p, const char *end)
{
    if (p >= end || !is_space(*p))
        return NULL;
    while (p < end && is_space(*p))
        p++;
    return p;
}

int kmmio_scan(const char *buf, long len, long *pos, long *rows, long cap, long max_line,
               uint8_t *kind, uint8_t *width, uint64_t *ts, int32_t *map_id, uint64_t *phys,
               uint64_t *value, uint64_t *pc, uint32_t *tid, uint32_t *wide_off,
               uint8_t *wide_data)
{
    const char *end = buf + len;
    long row = *rows;
    int status = SCAN_FULL;
    while (row < cap) {
        const char *p = buf + *pos;
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (nl == NULL) {
            status = SCAN_NEED_MORE;
            break;
        }
        const char *e = nl;
        if (e > p && e[-1] == '\r')
            e--;
        if (e - p > max_line)
            goto other;
        while (p < e && is_space(*p))
            p++;
        uint64_t w, sec, usec, map, ph, val, ip, t;
        int neg = 0;
        if (e - p < 2 || (p[0] != 'R' && p[0] != 'W') || !is_space(p[1]))
            goto other;
        uint8_t k = p[0] == 'W';
        p = sep(p + 1, e);
        if (!p || !(p = dec_u(p, e, &w)) || w == 0 || w > MAX_WIDTH || !(p = sep(p, e)))
            goto other;
        if (!(p = dec_u(p, e, &sec)) || sec > 1000000000000ull || p >= e || *p != '.')
            goto other;
        {
            const char *f = p + 1;
            if (!(p = dec_u(f, e, &usec)) || p - f != 6)
                goto other;
        }
        if (!(p = sep(p, e)))
            goto other;
        if (p < e && *p == '-') {
            neg = 1;
            p++;
        }
        if (!(p = dec_u(p, e, &map)) || map > 0x7fffffff || !(p = sep(p, e)))
            goto other;
        if (!(p = hex_u(p, e, &ph)) || !(p = sep(p, e)))
            goto other;
        uint32_t off = wide_off[row];
        if (!(p = hex_value(p, e, (unsigned)w, &val, wide_data + off)) || !(p = sep(p, e)))
            goto other;
        if (!(p = hex_u(p, e, &ip)) || !(p = sep(p, e)))
            goto other;
        if (!(p = dec_u(p, e, &t)) || t > 0xffffffffu)
            goto other;
        while (p < e && is_space(*p))
            p++;
        if (p != e)
            goto other;
        kind[row] = k;
        width[row] = (uint8_t)w;
        ts[row] = sec * 1000000u + usec;
        map_id[row] = neg ? -(int32_t)map : (int32_t)map;
        phys[row] = ph;
        value[row] = val;
        pc[row] = ip;
        tid[row] = (uint32_t)t;
        wide_off[row + 1] = w > 8 ? off + (uint32_t)w : off;
        row++;
        *pos = (long)(nl + 1 - buf);
        continue;
    other:
        status = SCAN_OTHER;
        break;
    }
    *rows = row;
    return status;
}
