/* _agent_ranges.c: part of _agent.c (one translation unit: _agent.c includes it), the
 * in-process agent's records into the ring; the armed ranges (arm, disarm); the tracer's word on the
 * mappings (maps_changed). */

/* -- records ----------------------------------------------------------------------------- */

static void futex(_Atomic uint64_t *word, int op, uint32_t val, const struct timespec *t)
{
    sys6(SYS_futex, (long)word, op, val, (long)t, 0, 0);
}

static void wake_tracer(void)
{
    uint64_t one = 1;
    sys6(SYS_write, wake_fd, (long)&one, 8, 0, 0, 0);
}

/* A record this thread's emit() was making when a signal handler of the program's, run
 * in the middle of it, never came back (siglongjmp): the slot it had reserved, written
 * as a lost record (REC_LOST), so that its lane goes on. */
static TLS volatile uintptr_t t_emit_sp; /* where the outermost emit() of this thread runs, or 0 */
static TLS volatile uint64_t t_open;     /* its reserved position + 1, until written */
static TLS volatile int t_open_lane;
static TLS volatile uint32_t t_nested;   /* records made by emit()s run inside another */
/* (volatile, and compiler fences around them: a signal handler reads them in between) */

/* Wait until the tracer has taken what lies in the slot of position pos (a full lane);
 * the tail then, or UINT64_MAX when the agent lets go. */
static uint64_t wait_room(struct lane *ln, uint64_t pos, uint64_t cap)
{
    uint64_t tail = atomic_load_explicit(&ln->tail, memory_order_acquire);
    for (int waits = 0; pos - tail >= cap; waits++) { /* full: wait for the tracer, never drop */
        atomic_fetch_add(&ring->waiters, 1);
        wake_tracer();
        struct timespec t = {0, 2000000};
        futex(&ln->tail, FUTEX_WAIT, (uint32_t)tail, &t);
        atomic_fetch_sub(&ring->waiters, 1);
        tail = atomic_load_explicit(&ln->tail, memory_order_acquire);
        if (waits % 256 == 255 && sys6(SYS_kill, ring->tracer_pid, 0, 0, 0, 0, 0) == -ESRCH)
            atomic_store(&ring->detach, 1); /* kmmio is gone (killed): nobody will drain */
        if (atomic_load(&ring->detach))
            return UINT64_MAX;
    }
    return tail;
}

static TLS int t_lane_shared; /* this thread's lane is another's too */

/* A lane for this thread: a free one, or one whose owner is gone (what it left reserved
 * and unwritten is written as lost: nobody else writes there), else one shared. */
static void take_lane(void)
{
    uint32_t me = (uint32_t)tid();
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < LANES; i++) {
            uint32_t was = atomic_load(&ring->owner[i]);
            /* free, or this thread's own (before an exec); then one whose owner is gone */
            if (pass == 0 ? was != 0 && was != me : (was == 0 || sys6(SYS_kill, was, 0, 0, 0, 0, 0) != -ESRCH))
                continue;
            struct lane *ln = &ring->lane[i];
            uint64_t cap = ring->cap, head = atomic_load(&ln->head);
            if (head - atomic_load(&ln->tail) > cap || !atomic_compare_exchange_strong(&ring->owner[i], &was, me))
                continue; /* (reserved beyond its room: left alone) */
            for (uint64_t p = atomic_load(&ln->tail); p < head; p++) {
                struct rec *x = &lane_recs(ring, (unsigned)i, cap)[p & (cap - 1)];
                if (atomic_load_explicit(&x->seq, memory_order_acquire) != p + 1)
                    rec_lost(x, p);
            }
            atomic_store(&ln->written, atomic_load(&ln->inflight)); /* no record on its way */
            my_lane = i;
            t_lane_shared = 0;
            return;
        }
    my_lane = (int)(atomic_fetch_add_explicit(&ring->next_lane, 1, memory_order_relaxed) % LANES);
    t_lane_shared = 1;
}

static void bury(int lane, uint64_t pos)
{
    /* Not taken after all, or maybe by another thread (lanes shared: then it stays). */
    if (atomic_load(&ring->lane[lane].head) <= pos || t_lane_shared)
        return;
    uint64_t cap = ring->cap, tail = wait_room(&ring->lane[lane], pos, cap);
    if (tail == UINT64_MAX || tail > pos)
        return; /* buried already, and taken (a signal came after the burial) */
    rec_lost(&lane_recs(ring, (unsigned)lane, cap)[pos & (cap - 1)], pos);
}

/* Whether an emit() found running on this thread (its frame at outer) was left for good:
 * this one runs on the same stack, not deeper.  One running deeper, or on the other
 * stack (one on the alternate signal stack, the other not), is inside it: it comes back.
 * (An alternate stack disarmed by SS_AUTODISARM does not show: then the addresses alone
 * decide, an alternate stack lying below the thread's own.) */
static int left_behind(uintptr_t outer, uintptr_t here)
{
    stack_t ss;
    if (sys6(SYS_sigaltstack, 0, (long)&ss, 0, 0, 0, 0) == 0 && !(ss.ss_flags & SS_DISABLE)) {
        uintptr_t lo = (uintptr_t)ss.ss_sp, hi = lo + ss.ss_size;
        if ((outer >= lo && outer < hi) != (here >= lo && here < hi))
            return 0;
    }
    return here >= outer;
}

static void emit_record(uint32_t kind, uint32_t width, const struct range *r, uint64_t addr, const void *value,
                        uint64_t pc, int inner)
{
    uint64_t cap = ring->cap;
    if (my_lane < 0)
        take_lane();
    struct lane *ln = &ring->lane[my_lane];
    /* The stamp, then the reservation (ring_layout.h).  An emit() inside this one (a signal
     * handler's access) leaves inflight and written alone: this one's hold covers it. */
    uint32_t nested = t_nested;
    uint64_t ts = now_us();
    if (!inner)
        atomic_store_explicit(&ln->inflight, ts, memory_order_relaxed);
    uint64_t pos;
    if (inner) {
        pos = atomic_fetch_add_explicit(&ln->head, 1, memory_order_release);
        t_nested++;
    } else {
        /* The position is noted before it is taken (an interrupt lands right after a
         * locked instruction as often as not): bury() then looks whether it was. */
        t_open_lane = my_lane;
        pos = atomic_load_explicit(&ln->head, memory_order_relaxed);
        do {
            t_open = pos + 1;
            atomic_signal_fence(memory_order_seq_cst);
        } while (!atomic_compare_exchange_weak_explicit(&ln->head, &pos, pos + 1, memory_order_release,
                                                       memory_order_relaxed));
        atomic_signal_fence(memory_order_seq_cst);
        if (t_nested != nested) { /* one came in before the reservation: stamp after its record */
            ts = now_us();
            atomic_store_explicit(&ln->inflight, ts, memory_order_relaxed);
        }
    }
    uint64_t tail = wait_room(ln, pos, cap);
    if (tail == UINT64_MAX)
        return;
    struct rec *x = &lane_recs(ring, (unsigned)my_lane, cap)[pos & (cap - 1)];
    x->kind = kind;
    x->width = width;
    x->ts_us = ts;
    x->map_id = r->map_id;
    x->phys = r->phys + (addr - r->wlo);
    x->pc = pc;
    x->tid = (uint64_t)tid();
    memcpy(x->value, value, width);
    atomic_store_explicit(&x->seq, pos + 1, memory_order_release);
    atomic_signal_fence(memory_order_seq_cst);
    if (!inner) {
        atomic_store_explicit(&ln->written, ts, memory_order_relaxed);
        t_open = 0;
    }
    if (pos - tail == cap / 2)
        wake_tracer();
}

static void emit(uint32_t kind, uint32_t width, const struct range *r, uint64_t addr, const void *value,
                 uint64_t pc)
{
    if (!ring || atomic_load_explicit(&ring->detach, memory_order_relaxed))
        return;
    if (addr + width <= r->wlo || addr >= r->whi)
        return; /* on an armed page, outside what is traced */
    char here;
    uintptr_t sp = (uintptr_t)&here;
    if (t_emit_sp && left_behind(t_emit_sp, sp)) {
        if (t_open)
            bury(t_open_lane, t_open - 1);
        t_emit_sp = 0;
        t_open = 0;
    }
    if (t_emit_sp) {
        emit_record(kind, width, r, addr, value, pc, 1);
        return;
    }
    t_emit_sp = sp;
    atomic_signal_fence(memory_order_seq_cst);
    emit_record(kind, width, r, addr, value, pc, 0);
    atomic_signal_fence(memory_order_seq_cst);
    t_emit_sp = 0;
}

/* -- armed ranges ------------------------------------------------------------------------ */

static struct range *find_range(uint64_t addr)
{
    int top = atomic_load_explicit(&range_top, memory_order_acquire);
    for (int i = 0; i < top; i++) {
        struct range *r = &ranges[i];
        if (atomic_load_explicit(&r->live, memory_order_acquire) && r->lo <= addr && addr < r->hi)
            return r;
    }
    return NULL;
}

static int page_prot(const struct range *r, uint64_t addr) { return r->prot[(addr - r->lo) / PAGE]; }

/* Whether the program's own protection lets [addr, addr + n) be read (or written). */
static int allowed(const struct range *r, uint64_t addr, uint64_t n, int write)
{
    for (uint64_t a = addr & ~(PAGE - 1); a < addr + n; a += PAGE) {
        int p = page_prot(r, a);
        if (!(p & (write ? PROT_WRITE : PROT_READ)))
            return 0;
    }
    return 1;
}

/* Pages of ranges just disarmed, whose protections a range armed in their place takes
 * (part of a traced mapping unmapped: the rest is armed again, already PROT_NONE). */
struct gone {
    uint64_t lo, hi;
    uint8_t *prot;
};

/* Another kind of alias, for a shared mapping mremap cannot alias (hugetlbfs): the file
 * behind it, opened through /proc/self/map_files (privileged), mapped again; -errno. */
static long map_files_alias(uint64_t lo, uint64_t hi)
{
    static char buf[1 << 16];
    long fd = sys6(SYS_openat, AT_FDCWD, (long)"/proc/self/maps", O_RDONLY | O_CLOEXEC, 0, 0, 0);
    if (fd < 0)
        return fd;
    long n = 0, r;
    while (n < (long)sizeof buf - 1 && (r = sys6(SYS_read, fd, (long)buf + n, (long)sizeof buf - 1 - n, 0, 0, 0)) > 0)
        n += r;
    sys6(SYS_close, fd, 0, 0, 0, 0, 0);
    buf[n > 0 ? n : 0] = 0;
    for (char *line = buf; *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : line + strlen(line)) {
        char *end;
        uint64_t start = strtoull(line, &end, 16), stop = strtoull(end + 1, &end, 16);
        if (!(start <= lo && hi <= stop))
            continue;
        if (end[4] != 's')
            return -EINVAL; /* private: no alias of any kind */
        uint64_t off = strtoull(end + 6, NULL, 16) + (lo - start);
        char path[64] = "/proc/self/map_files/";
        char *p = path + strlen(path);
        for (int half = 0; half < 2; half++) {
            uint64_t v = half ? stop : start;
            char hex[17];
            int k = 0;
            do
                hex[k++] = "0123456789abcdef"[v & 15];
            while (v >>= 4);
            while (k)
                *p++ = hex[--k];
            if (!half)
                *p++ = '-';
        }
        *p = 0;
        long f = sys6(SYS_openat, AT_FDCWD, (long)path, O_RDWR | O_CLOEXEC, 0, 0, 0);
        if (f < 0)
            f = sys6(SYS_openat, AT_FDCWD, (long)path, O_RDONLY | O_CLOEXEC, 0, 0, 0);
        if (f < 0)
            return f;
        long m = sys6(SYS_mmap, 0, (long)(hi - lo), PROT_READ, MAP_SHARED, f, (long)off);
        sys6(SYS_close, f, 0, 0, 0, 0, 0);
        return m;
    }
    return -ENOENT;
}

/* arm_kmmio_fault_page(): alias the range's pages, then make them PROT_NONE. */
static void arm(uint64_t map_id, uint64_t lo, uint64_t hi, uint64_t phys, int prot, const struct gone *gone,
                int ngone)
{
    int slot = -1, top = atomic_load(&range_top);
    for (int i = 0; i < top; i++)
        if (!atomic_load(&ranges[i].live)) {
            slot = i;
            break;
        }
    if (slot < 0) {
        if (top == RANGE_CAP)
            die("too many traced mappings");
        slot = top;
    }
    struct range *r = &ranges[slot];
    r->wlo = lo;
    r->whi = hi;
    lo &= ~(PAGE - 1);
    hi = (hi + PAGE - 1) & ~(PAGE - 1);
    size_t pages = (hi - lo) / PAGE;
    long m = raw_mmap(NULL, pages, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m < 0 && m > -4096)
        die("out of memory");
    r->prot = (uint8_t *)m;
    memset(r->prot, prot, pages);
    for (int g = 0; g < ngone; g++)
        for (uint64_t a = lo; a < hi; a += PAGE)
            if (gone[g].lo <= a && a < gone[g].hi)
                r->prot[(a - lo) / PAGE] = gone[g].prot[(a - gone[g].lo) / PAGE];
    long alias = sys6(SYS_mremap, (long)lo, 0, (long)(hi - lo), MREMAP_MAYMOVE, 0, 0);
    if (alias < 0 && alias > -4096)
        alias = map_files_alias(lo, hi);
    r->private_kind = alias < 0 && alias > -4096;
    r->alias = r->private_kind ? 0 : (uint64_t)alias;
    /* The alias as writable as the pages may ever be (the program may mprotect them so
     * later); a read-only file stays read-only. */
    if (r->alias && raw_mprotect(r->alias, hi - lo, PROT_READ | PROT_WRITE) < 0)
        raw_mprotect(r->alias, hi - lo, PROT_READ);
    r->lo = lo;
    r->hi = hi;
    r->map_id = map_id;
    r->phys = phys;
    atomic_store_explicit(&r->live, 1, memory_order_release);
    if (slot == top)
        atomic_store_explicit(&range_top, top + 1, memory_order_release);
    raw_mprotect(lo, hi - lo, PROT_NONE);
    uint64_t msg[5] = {M_ARMED, map_id, r->alias, (uint64_t)r->private_kind, r->wlo};
    tell(msg, sizeof msg);
}

/* disarm_kmmio_fault_page(): forget a range (its pages unmapped or remapped: nothing to
 * restore), or, with restore, give the pages back the program's protection. */
static void free_prot(uint8_t *prot, uint64_t lo, uint64_t hi)
{
    sys6(SYS_munmap, (long)prot, (long)((hi - lo + PAGE - 1) / PAGE), 0, 0, 0, 0);
}

static void disarm_keep(struct range *r, int restore, struct gone *keep)
{
    atomic_store_explicit(&r->live, 0, memory_order_release);
    if (restore)
        for (uint64_t a = r->lo; a < r->hi; a += PAGE)
            raw_mprotect(a, PAGE, page_prot(r, a));
    if (r->alias)
        sys6(SYS_munmap, (long)r->alias, (long)(r->hi - r->lo), 0, 0, 0, 0);
    if (keep) {
        keep->lo = r->lo;
        keep->hi = r->hi;
        keep->prot = r->prot;
    } else {
        free_prot(r->prot, r->lo, r->hi);
    }
    r->alias = 0;
}

static void disarm(struct range *r, int restore) { disarm_keep(r, restore, NULL); }

static void forget_code(uint64_t lo, uint64_t hi)
{
    for (int i = 0; i < DESC_CAP; i++) {
        uint64_t pc = atomic_load_explicit(&descs[i].pc, memory_order_relaxed);
        if (pc > 1 && pc >= lo && pc < hi)
            atomic_store(&descs[i].pc, 1);
    }
}

/* Everything goes back as the program asked for it: the tracer is gone or going. */
static void detach_all(void)
{
    if (!active)
        return;
    active = 0;
    int top = atomic_load(&range_top);
    for (int i = 0; i < top; i++)
        if (atomic_load(&ranges[i].live))
            disarm(&ranges[i], 1);
}

static void add_filter(const uint64_t *code, uint64_t bytes);

/* The mappings in [lo, hi) changed: the tracer says what to arm and disarm there. */
static void maps_changed(uint64_t lo, uint64_t hi, uint64_t pc)
{
    if (!active)
        return;
    forget_code(lo, hi);
    uint64_t req[5] = {M_MAPS, (uint64_t)tid(), pc, lo, hi};
    static uint64_t reply[1 + 6 * 64 + 1 + 4096]; /* under sock_lock */
    lock(&sock_lock);
    lock(&table_lock);
    long n = ask(req, sizeof req, reply, sizeof reply);
    if (n < 0 || atomic_load(&ring->detach)) {
        detach_all();
    } else {
        uint64_t at = 1 + 6 * reply[0];
        if (at < (uint64_t)n / 8 && reply[at]) /* a seccomp filter for the new ranges */
            add_filter(&reply[at + 1], reply[at]);
        struct gone gone[16];
        int ngone = 0;
        for (uint64_t i = 0; i < reply[0] && 1 + 6 * (i + 1) <= (uint64_t)n / 8; i++) {
            uint64_t *a = &reply[1 + 6 * i];
            if (a[0] == A_ARM) {
                arm(a[1], a[2], a[3], a[4], (int)a[5], gone, ngone);
            } else if (a[0] == A_DISARM) {
                int top = atomic_load(&range_top);
                for (int k = 0; k < top; k++)
                    if (atomic_load(&ranges[k].live) && ranges[k].map_id == a[1] && ranges[k].wlo == a[2])
                        disarm_keep(&ranges[k], 0, ngone < 16 ? &gone[ngone++] : NULL);
            }
        }
        for (int g = 0; g < ngone; g++)
            free_prot(gone[g].prot, gone[g].lo, gone[g].hi);
    }
    unlock(&table_lock);
    unlock(&sock_lock);
}
