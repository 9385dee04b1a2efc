/* _agent_access.c: part of _agent.c (one translation unit: _agent.c includes it), the
 * in-process agent's one access: quick ops, kept relocations (templates), relocations asked for. */

/* -- one access -------------------------------------------------------------------------- */

static uint64_t part(const greg_t *g, int64_t i, int64_t shift, uint64_t mask)
{
    if (i < 0)
        return 0;
    uint64_t v;
    if (i == U_FS_BASE || i == U_GS_BASE) {
        sys6(SYS_arch_prctl, i == U_FS_BASE ? ARCH_GET_FS : ARCH_GET_GS, (long)&v, 0, 0, 0, 0);
        return v;
    }
    v = (uint64_t)g[U2G[i]];
    return (v >> shift) & mask;
}

static struct desc *lookup(uint64_t pc)
{
    uint64_t i = (pc * 0x9E3779B97F4A7C15ull >> 20) % DESC_CAP;
    for (int n = 0; n < DESC_CAP; n++, i = (i + 1) % DESC_CAP) {
        uint64_t at = atomic_load_explicit(&descs[i].pc, memory_order_acquire);
        if (at == pc)
            return &descs[i];
        if (at == 0)
            return NULL;
    }
    return NULL;
}

static void keep(const struct desc *d)
{
    uint64_t i = (d->pc * 0x9E3779B97F4A7C15ull >> 20) % DESC_CAP;
    for (int n = 0; n < DESC_CAP; n++, i = (i + 1) % DESC_CAP) {
        uint64_t at = atomic_load(&descs[i].pc);
        if (at == 0 || at == 1) {
            struct desc *s = &descs[i];
            memcpy((char *)s + 8, (const char *)d + 8, sizeof *d - 8);
            atomic_store_explicit(&s->pc, d->pc, memory_order_release);
            return;
        }
    }
    /* full: not kept, asked again next time */
}

/* The tracer's word on the instruction at pc (cached when its code cannot change). */
static int decode(uint64_t pc, uint64_t addr, struct desc *out)
{
    uint64_t req[6] = {M_DECODE, (uint64_t)tid(), pc, addr, 0, 0};
    /* The code, up to 16 bytes: through /proc/self/mem, which stops short at the end of the
     * mapping (an instruction at the very end of the code would make a memcpy fault). */
    if (self_mem < 0 || sys6(SYS_pread64, self_mem, (long)&req[4], 16, (long)pc, 0, 0) <= 0) {
        uint64_t room = PAGE - (pc & (PAGE - 1));
        memcpy(&req[4], (const void *)pc, room < 16 ? room : 16);
    }
    uint64_t reply[20];
    lock(&sock_lock);
    long n = ask(req, sizeof req, reply, sizeof reply);
    unlock(&sock_lock);
    if (n != sizeof reply)
        return -1;
    memset(out, 0, sizeof *out);
    out->pc = pc;
    memcpy((char *)out + 8, &reply[0], 8);                /* kind */
    memcpy((char *)out + 16, &reply[2], 18 * 8);          /* write .. next_ip */
    if (reply[1])
        keep(out);
    return 0;
}

static void load_alias(const struct range *r, uint64_t addr, void *dst, uint64_t width)
{
    if (r->private_kind) {
        if (sys6(SYS_pread64, self_mem, (long)dst, (long)width, (long)addr, 0, 0) != (long)width)
            die("cannot read traced private memory");
        return;
    }
    const volatile void *p = (const volatile void *)(r->alias + (addr - r->lo));
    switch (width) { /* one access of the program's width */
    case 1: *(uint8_t *)dst = *(const volatile uint8_t *)p; break;
    case 2: *(uint16_t *)dst = *(const volatile uint16_t *)p; break;
    case 4: *(uint32_t *)dst = *(const volatile uint32_t *)p; break;
    case 8: *(uint64_t *)dst = *(const volatile uint64_t *)p; break;
    default: memcpy(dst, (const void *)p, width);
    }
}

static void store_alias(const struct range *r, uint64_t addr, const void *src, uint64_t width)
{
    if (r->private_kind) {
        if (sys6(SYS_pwrite64, self_mem, (long)src, (long)width, (long)addr, 0, 0) != (long)width)
            die("cannot write traced private memory");
        return;
    }
    volatile void *p = (volatile void *)(r->alias + (addr - r->lo));
    switch (width) {
    case 1: *(volatile uint8_t *)p = *(const uint8_t *)src; break;
    case 2: *(volatile uint16_t *)p = *(const uint16_t *)src; break;
    case 4: *(volatile uint32_t *)p = *(const uint32_t *)src; break;
    case 8: *(volatile uint64_t *)p = *(const uint64_t *)src; break;
    default: memcpy((void *)p, src, width);
    }
}

/* A plain load or store, done here; 0 if it must go another way (not all in one armed
 * range, or the program's protection forbids it: then the fault is the program's). */
/* The effective address of a descriptor's operand; *start: without the index (what a
 * kept relocation's scratch register holds, moved to the alias). */
static uint64_t effective(const struct desc *d, const greg_t *g, uint64_t *start)
{
    uint64_t base = d->disp + part(g, d->base_i, d->base_shift, d->base_mask);
    if (d->seg_i >= 0)
        base += part(g, d->seg_i, 0, ~0ull);
    if (start)
        *start = base;
    return base + part(g, d->index_i, d->index_shift, d->index_mask) * d->scale;
}

/* The armed range at addr: the faulting one (already found) when it holds it. */
static struct range *range_near(struct range *fault, uint64_t addr)
{
    return fault && fault->lo <= addr && addr < fault->hi ? fault : find_range(addr);
}

static int quick(const struct desc *d, greg_t *g, uint64_t pc, struct range *fault, int *genuine)
{
    uint64_t ea = effective(d, g, NULL);
    struct range *r = range_near(fault, ea);
    if (!r || ea + d->width > r->hi)
        return 0;
    if (!allowed(r, ea, d->width, (int)d->write)) {
        *genuine = 1;
        return 0;
    }
    uint64_t v = 0;
    if (d->write) {
        v = d->has_imm ? d->imm : part(g, d->reg_i, d->reg_shift, d->reg_mask);
        store_alias(r, ea, &v, d->width);
        emit(REC_WRITE, (uint32_t)d->width, r, ea, &v, pc);
    } else {
        load_alias(r, ea, &v, d->width);
        emit(REC_READ, (uint32_t)d->width, r, ea, &v, pc);
        uint64_t loaded = v;
        if (d->sign_bit && (loaded & d->sign_bit))
            loaded -= d->sign_bit << 1;
        loaded &= d->reg_mask;
        greg_t *dst = &g[U2G[d->reg_i]];
        if (d->reg_mask == 0xffffffffull || d->reg_mask == ~0ull)
            *dst = (greg_t)loaded;
        else
            *dst = (greg_t)(((uint64_t)*dst & ~(d->reg_mask << d->reg_shift)) | (loaded << d->reg_shift));
    }
    g[REG_RIP] = (greg_t)d->next_ip;
    return 1;
}

static uint8_t *trampoline(void)
{
    if (!tramp) {
        long m = raw_mmap(NULL, PAGE, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m < 0 && m > -4096)
            die("no memory for a trampoline");
        tramp = (uint8_t *)m;
    }
    return tramp;
}

/* A kept relocation: the reads' values taken through the alias, the copy run in the
 * trampoline against the alias; template_done() finishes it at its hlt.  0 if it must go
 * through the tracer (an access outside the range) or the fault is the program's. */
/* Opmask register k of the interrupted thread, from its signal frame's XSAVE area. */
static uint64_t frame_opmask(const ucontext_t *uc, int64_t k)
{
    const uint8_t *fp = (const uint8_t *)uc->uc_mcontext.fpregs;
    uint32_t magic;
    memcpy(&magic, fp + 464, 4);
    if (!fp || magic != 0x46505853u || !opmask_offset)
        return 0;
    uint64_t bv, v;
    memcpy(&bv, fp + 512, 8);
    if (!(bv >> 5 & 1))
        return 0; /* in its initial state: zero */
    memcpy(&v, fp + opmask_offset + 8 * k, 8);
    return v;
}

/* The bytes of a masked operand the instruction touches (bit i: byte i). */
static uint64_t enabled_bytes(const struct desc *d, const ucontext_t *uc)
{
    uint64_t n = d->mask_count, e = d->mask_elem;
    uint64_t bits = frame_opmask(uc, d->mask_k) & (n >= 64 ? ~0ull : (1ull << n) - 1);
    if (d->mask_compress) {
        uint64_t len = (uint64_t)__builtin_popcountll(bits) * e;
        return len >= 64 ? ~0ull : (1ull << len) - 1;
    }
    uint64_t out = 0, one = e >= 64 ? ~0ull : (1ull << e) - 1;
    for (uint64_t i = 0; i < n; i++)
        if (bits >> i & 1)
            out |= one << (i * e);
    return out;
}

/* The next run of set bits of m at or after bit *at: its length (0: none left). */
static int next_run(uint64_t m, int *at)
{
    while (*at < 64 && !(m >> *at & 1))
        (*at)++;
    int len = 0;
    while (*at + len < 64 && (m >> (*at + len) & 1))
        len++;
    return len;
}

static int templated(const struct desc *d, ucontext_t *uc, uint64_t pc, struct range *fault, int *genuine)
{
    greg_t *g = uc->uc_mcontext.gregs;
    uint64_t start;
    uint64_t ea = effective(d, g, &start);
    struct range *r = range_near(fault, ea);
    if (d->mask_k >= 0) { /* only the enabled bytes count, and must be in the range */
        t_enabled = enabled_bytes(d, uc);
        int at = 0, len;
        r = NULL;
        while ((len = next_run(t_enabled, &at))) {
            struct range *x = find_range(ea + at);
            if (!x || (r && x != r) || ea + at + len > x->hi)
                return 0;
            if (!allowed(x, ea + at, len, (int)d->tmpl[0].kind)) {
                *genuine = 1;
                return 0;
            }
            r = x;
            at += len;
        }
        if (!r) /* no byte enabled: the instruction still runs, through the range it is in */
            r = range_near(fault, ea);
        if (!r)
            r = find_range(ea + d->tmpl[0].width - 1);
        if (!r || !r->alias)
            return 0;
        t_desc = *d;
        t_ea = ea;
        t_range = r;
        t_pc = pc;
        if (!d->tmpl[0].kind)
            for (at = 0; (len = next_run(t_enabled, &at)); at += len)
                load_alias(r, ea + at, t_vals[0] + at, len);
        goto run;
    }
    if (!r || !r->alias)
        return 0;
    for (uint64_t i = 0; i < d->ntmpl; i++) {
        uint64_t a = ea + d->tmpl[i].off, w = d->tmpl[i].width;
        if (a < r->lo || a + w > r->hi)
            return 0;
        if (!allowed(r, a, w, (int)d->tmpl[i].kind)) {
            *genuine = 1;
            return 0;
        }
    }
    t_desc = *d;
    t_ea = ea;
    t_range = r;
    t_pc = pc;
    for (uint64_t i = 0; i < d->ntmpl; i++)
        if (!d->tmpl[i].kind)
            load_alias(r, ea + d->tmpl[i].off, t_vals[i], d->tmpl[i].width);
run:;
    greg_t *scratch = &g[U2G[d->scratch_i]];
    t_scratch = (uint64_t)*scratch;
    *scratch = (greg_t)(start + (r->alias - r->lo));
    uint8_t *t = trampoline();
    memcpy(t, d->code, d->code_len);
    t[d->code_len] = 0xf4; /* hlt */
    tramp_hlt = (uint64_t)t + d->code_len;
    t_templated = 1;
    g[REG_RIP] = (greg_t)t;
    return 1;
}

static void template_done(greg_t *g)
{
    const struct desc *d = &t_desc;
    if (d->mask_k >= 0) {
        int at, len;
        uint64_t n = 0;
        if (d->tmpl[0].kind)
            for (at = 0; (len = next_run(t_enabled, &at)); at += len)
                load_alias(t_range, t_ea + at, t_vals[0] + at, len);
        for (at = 0; (len = next_run(t_enabled, &at)); at += len, n++)
            emit((uint32_t)d->tmpl[0].kind, (uint32_t)len, t_range, t_ea + at, t_vals[0] + at, t_pc);
        atomic_fetch_add_explicit(&ring->relocated_records, n, memory_order_relaxed);
        atomic_fetch_sub_explicit(&ring->relocated_records, d->ntmpl, memory_order_relaxed);
        goto done;
    }
    for (uint64_t i = 0; i < d->ntmpl; i++)
        if (d->tmpl[i].kind)
            load_alias(t_range, t_ea + d->tmpl[i].off, t_vals[i], d->tmpl[i].width);
    for (uint64_t i = 0; i < d->ntmpl; i++)
        emit((uint32_t)d->tmpl[i].kind, (uint32_t)d->tmpl[i].width, t_range, t_ea + d->tmpl[i].off, t_vals[i], t_pc);
done:
    g[U2G[d->scratch_i]] = (greg_t)t_scratch;
    g[REG_RIP] = (greg_t)d->next_ip;
    t_templated = 0;
    tramp_hlt = 0;
    atomic_fetch_add_explicit(&ring->relocated, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&ring->relocated_records, d->ntmpl, memory_order_relaxed);
}

static void words_of(const greg_t *g, uint64_t *w)
{
    memset(w, 0, NWORDS * 8);
    for (int i = 0; i < NWORDS; i++)
        if (U2G[i] >= 0)
            w[i] = (uint64_t)g[U2G[i]];
    sys6(SYS_arch_prctl, ARCH_GET_FS, (long)&w[U_FS_BASE], 0, 0, 0, 0);
    sys6(SYS_arch_prctl, ARCH_GET_GS, (long)&w[U_GS_BASE], 0, 0, 0, 0);
}

static void apply_sets(greg_t *g, const uint64_t *sets, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++) {
        uint64_t idx = sets[2 * i];
        if (idx < NWORDS && U2G[idx] >= 0)
            g[U2G[idx]] = (greg_t)sets[2 * i + 1];
    }
}

#define PRE_MAX (5 + NWORDS + 512)
/* Anything but a plain load or store: the tracer re-encodes it against the alias; it runs
 * in this thread's trampoline, whose hlt brings it back to reloc_post(). */
static int reloc_pre(ucontext_t *uc, uint64_t addr)
{
    greg_t *g = uc->uc_mcontext.gregs;
    trampoline();
    static TLS uint64_t req[PRE_MAX];
    req[0] = M_PRE;
    req[1] = (uint64_t)tid();
    req[2] = (uint64_t)tramp;
    req[3] = addr;
    words_of(g, &req[5]);
    size_t len = (5 + NWORDS) * 8;
    const uint8_t *fp = (const uint8_t *)uc->uc_mcontext.fpregs;
    uint32_t magic, xsize = 512;
    memcpy(&magic, fp + 464, 4);
    if (magic == 0x46505853u)
        memcpy(&xsize, fp + 464 + 16, 4);
    if (xsize > 512 * 8)
        xsize = 512 * 8;
    req[4] = xsize;
    memcpy(&req[5 + NWORDS], fp, xsize);
    len += xsize;
    static TLS uint64_t reply[2 + 2 * NWORDS + 1 + 4 + 40];
    lock(&sock_lock);
    long n = ask(req, len, reply, sizeof reply);
    unlock(&sock_lock);
    if (n < 16) {
        tracer_gone();
        return 1; /* runs again, untraced */
    }
    if (reply[0] == P_GENUINE)
        return 0;
    uint64_t nsets = reply[1];
    apply_sets(g, &reply[2], nsets);
    if (reply[0] == P_RUN) {
        uint64_t clen = reply[2 + 2 * nsets];
        const uint64_t *code = &reply[3 + 2 * nsets];
        memcpy(tramp, code, clen);
        tramp[clen] = 0xf4; /* hlt: a fault in user mode */
        tramp_hlt = (uint64_t)tramp + clen;
        g[REG_RIP] = (greg_t)tramp;
        /* Then, maybe, the same run to keep for this pc: the address words, scratch,
         * code, accesses (kmmio.agent.plan.Template.words). */
        const uint64_t *k = code + (clen + 7) / 8;
        if ((const char *)(k + 1) <= (const char *)reply + n && k[0]) {
            struct desc d;
            memset(&d, 0, sizeof d);
            d.pc = req[5 + U_RIP];
            d.kind = D_TEMPLATE;
            d.base_i = (int64_t)k[1];
            d.base_shift = 0;
            d.base_mask = ~0ull;
            d.index_i = (int64_t)k[2];
            d.index_shift = 0;
            d.index_mask = ~0ull;
            d.scale = k[3];
            d.disp = k[4];
            d.seg_i = (int64_t)k[5];
            d.next_ip = k[6];
            d.scratch_i = (int64_t)k[7];
            d.code_len = k[8];
            memcpy(d.code, &k[9], 32);
            d.ntmpl = k[13];
            for (uint64_t i = 0; i < d.ntmpl && i < 4; i++) {
                d.tmpl[i].kind = k[14 + 3 * i];
                d.tmpl[i].off = k[15 + 3 * i];
                d.tmpl[i].width = k[16 + 3 * i];
            }
            const uint64_t *mk = &k[14 + 3 * d.ntmpl];
            d.mask_k = (int64_t)mk[0];
            d.mask_elem = mk[1];
            d.mask_count = mk[2];
            d.mask_compress = mk[3];
            struct desc *old = lookup(d.pc);
            if (old)
                atomic_store(&old->pc, 1);
            keep(&d);
        }
    }
    return 1;
}

static void reloc_post(greg_t *g)
{
    uint64_t req[2 + NWORDS];
    req[0] = M_POST;
    req[1] = (uint64_t)tid();
    words_of(g, &req[2]);
    uint64_t reply[1 + 2 * NWORDS];
    tramp_hlt = 0;
    lock(&sock_lock);
    long n = ask(req, sizeof req, reply, sizeof reply);
    unlock(&sock_lock);
    if (n < 8)
        die("the tracer is gone");
    apply_sets(g, &reply[1], reply[0]);
}
