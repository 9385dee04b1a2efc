/* The mmiotrace reader's hot path: R/W lines of a buffer into columns.
 *
 * kmmio_scan() parses consecutive well-formed access lines ("R|W WIDTH S.UUUUUU MAP 0xPHYS
 * 0xVALUE 0xPC TID", fields separated by spaces or tabs, an optional trailing CR) from
 * buf[*pos] on, into the columns at row *rows, until the columns are full, the buffer ends
 * without a newline, or a line is anything else.  It never judges that other line: Python's
 * parser does (other records, ftrace's trace-file prefixes, malformed lines with their exact
 * error, values wider than 64 bits).  Pure: no I/O, no allocation.
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

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
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

int kmmio_scan(const char *buf, long len, long *pos, long *rows, long cap, uint8_t *kind,
               uint8_t *width, uint64_t *ts, int32_t *map_id, uint64_t *phys, uint64_t *value,
               uint64_t *pc, uint32_t *tid)
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
        while (p < e && is_space(*p))
            p++;
        uint64_t w, sec, usec, map, ph, val, ip, t;
        int neg = 0;
        if (e - p < 2 || (p[0] != 'R' && p[0] != 'W') || !is_space(p[1]))
            goto other;
        uint8_t k = p[0] == 'W';
        p = sep(p + 1, e);
        if (!p || !(p = dec_u(p, e, &w)) || w == 0 || w > 255 || !(p = sep(p, e)))
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
        if (!(p = hex_u(p, e, &val)) || !(p = sep(p, e)))
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
