/* _agent_calls.c: part of _agent.c (one translation unit: _agent.c includes it), the
 * in-process agent's signals (the SIGSEGV handler, the program's own chained) and the program's calls,
 * interposed (sigaction, sigprocmask, mmap and its family). */

/* -- signals ----------------------------------------------------------------------------- */

#define NUDGE ((void *)0x6b6d6d696f) /* "kmmio": the tracer asks us to let go */

/* The program's own action for a SIGSEGV that is not a traced access. */
static void chain(int sig, siginfo_t *si, void *uc)
{
    struct sigaction *p = &prog_segv;
    void (*h)(int) = p->sa_handler;
    if (h == SIG_DFL || h == SIG_IGN) {
        ksigaction(SIGSEGV, (void *)SIG_DFL, 0, NULL);
        if (si->si_code <= 0 && h == SIG_DFL) /* sent, not a fault: send it again */
            sys6(SYS_rt_tgsigqueueinfo, getpid(), tid(), sig, (long)si, 0, 0);
        return; /* a fault happens again, now with the default action */
    }
    struct sigaction act = *p;
    uint64_t block, old;
    memcpy(&block, &act.sa_mask, 8);
    if (!(act.sa_flags & SA_NODEFER)) /* as the kernel would have, shown to the handler */
        block |= 1ull << (SIGSEGV - 1);
    uint64_t was = v_blocked;
    set_mask(SIG_BLOCK, &block, &old);
    if (act.sa_flags & SA_RESETHAND) {
        memset(p, 0, sizeof *p);
        p->sa_handler = SIG_DFL;
    }
    if (act.sa_flags & SA_SIGINFO)
        act.sa_sigaction(sig, si, uc);
    else
        h(sig);
    set_mask(SIG_SETMASK, &old, NULL);
    v_blocked = was;
}

/* -- returning from a handled fault: _resume.h (resume()) -------------------------------- */
#include "_resume.h"

/* kmmio_handler(). */
static void after_fork_child(void);

static void on_segv(int sig, siginfo_t *si, void *ctx)
{
    int saved = errno;
    ucontext_t *uc = ctx;
    greg_t *g = uc->uc_mcontext.gregs;
    uint64_t pc = (uint64_t)g[REG_RIP];
    if (si->si_code == SI_QUEUE && si->si_value.sival_ptr == NUDGE) {
        if (trylock(&table_lock) == 0) {
            detach_all();
            unlock(&table_lock);
        }
        goto out;
    }
    if (si->si_code == SI_KERNEL && tramp_hlt && pc == tramp_hlt) {
        if (t_templated)
            template_done(g);
        else
            reloc_post(g);
        goto done;
    }
    if (si->si_code > 0 && active) {
        if (!is_connected()) /* a fork child not yet connected */
            after_fork_child();
        uint64_t addr = (uint64_t)si->si_addr;
        struct range *r = find_range(addr);
        if (r) {
            if (atomic_load(&ring->detach)) {
                lock(&table_lock);
                detach_all();
                unlock(&table_lock);
                goto out; /* runs again, untraced */
            }
            struct desc local, *d = lookup(pc);
            if (!d) {
                if (decode(pc, addr, &local) < 0) {
                    tracer_gone();
                    goto out; /* runs again, untraced */
                }
                d = &local;
            }
            int genuine = 0;
            if (d->kind == D_QUICK && quick(d, g, pc, r, &genuine))
                goto done;
            if (d->kind == D_TEMPLATE && templated(d, uc, pc, r, &genuine))
                goto done;
            if (!genuine && d->kind != D_NONE && reloc_pre(uc, addr))
                goto done;
        } else if (atomic_load(&changing)) {
            sys6(SYS_sched_yield, 0, 0, 0, 0, 0, 0);
            goto out; /* a mapping being set up: again once it is */
        }
    }
    chain(sig, si, ctx);
out:
    errno = saved;
    return;
done: /* handled: the program's context, maybe changed, goes back */
    errno = saved;
    resume(uc);
}

static void install_handler(void)
{
    /* SA_NODEFER: a handler of the program's (called from on_segv) may touch traced pages */
    ksigaction(SIGSEGV, (void *)on_segv, SA_SIGINFO | SA_ONSTACK | SA_RESTART | SA_NODEFER, NULL);
}

/* -- the program's calls, interposed ----------------------------------------------------- */

EXPORT int sigaction(int sig, const struct sigaction *act, struct sigaction *old)
{
    if (!real_sigaction)
        real_sigaction = dlsym(RTLD_NEXT, "sigaction");
    if ((sig != SIGSEGV && sig != SIGSYS) || !active) {
        if (act && active) {
            struct sigaction copy = *act; /* SIGSEGV is never blocked: a fault in a handler */
            strip_segv(&copy.sa_mask);
            return real_sigaction(sig, &copy, old);
        }
        return real_sigaction(sig, act, old);
    }
    struct sigaction *mine = sig == SIGSEGV ? &prog_segv : &prog_sys;
    if (sig == SIGSYS && !sys_handler) /* not trapping syscalls (yet): the program's own */
        real_sigaction(SIGSYS, act, NULL);
    if (old)
        *old = *mine;
    if (act) {
        *mine = *act;
        strip_segv(&mine->sa_mask);
    }
    return 0;
}

EXPORT __sighandler_t signal(int sig, __sighandler_t h)
{
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = h;
    sa.sa_flags = SA_RESTART;
    if (sigaction(sig, &sa, &old) < 0)
        return SIG_ERR;
    return old.sa_handler;
}

/* A signal mask change (rt_sigprocmask's how and set, set NULL for none) from cur, the
 * thread's real mask: the real mask to set, with the signals kept open left open, and
 * in *shown the mask the thread is to see as its old one (the kept open ones as it asked
 * them).  -1 for a how that is none. */
static int mask_change(int how, const uint64_t *set, uint64_t cur, uint64_t *next, uint64_t *shown)
{
    uint64_t asked = (cur & ~KEPT_OPEN) | v_blocked;
    *shown = asked;
    if (set) {
        if (how == SIG_BLOCK)
            asked |= *set;
        else if (how == SIG_UNBLOCK)
            asked &= ~*set;
        else if (how == SIG_SETMASK)
            asked = *set;
        else
            return -1;
    }
    v_blocked = asked & KEPT_OPEN;
    *next = asked & ~KEPT_OPEN & ~((1ull << (SIGKILL - 1)) | (1ull << (SIGSTOP - 1)));
    return 0;
}

/* rt_sigprocmask for the program, through mask_change(); -errno. */
static long set_mask(int how, const uint64_t *set, uint64_t *old)
{
    uint64_t cur, next, shown;
    sys6(SYS_rt_sigprocmask, SIG_BLOCK, 0, (long)&cur, 8, 0, 0);
    if (mask_change(how, set, cur, &next, &shown) < 0)
        return -EINVAL;
    sys6(SYS_rt_sigprocmask, SIG_SETMASK, (long)&next, 0, 8, 0, 0);
    if (old)
        *old = shown;
    return 0;
}

/* sigprocmask and pthread_sigmask of the program's: 0 or -errno. */
static int masked(int how, const sigset_t *set, sigset_t *old)
{
    uint64_t want, was;
    if (set)
        memcpy(&want, set, 8);
    long r = set_mask(how, set ? &want : NULL, &was);
    if (r < 0)
        return (int)r;
    if (old) {
        sigemptyset(old);
        memcpy(old, &was, 8);
    }
    return 0;
}

EXPORT int sigprocmask(int how, const sigset_t *set, sigset_t *old)
{
    if (!real_sigprocmask)
        real_sigprocmask = dlsym(RTLD_NEXT, "sigprocmask");
    if (!active)
        return real_sigprocmask(how, set, old);
    int r = masked(how, set, old);
    if (r < 0) {
        errno = -r;
        return -1;
    }
    return r;
}

EXPORT int pthread_sigmask(int how, const sigset_t *set, sigset_t *old)
{
    if (!real_pthread_sigmask)
        real_pthread_sigmask = dlsym(RTLD_NEXT, "pthread_sigmask");
    if (!active)
        return real_pthread_sigmask(how, set, old);
    return -masked(how, set, old);
}

static uint64_t round_up(uint64_t n) { return (n + PAGE - 1) & ~(PAGE - 1); }

/* Whether armed pages lie in [lo, hi) (always "yes" before the agent is connected: the
 * tracer is asked anyway). */
static int armed_in(uint64_t lo, uint64_t hi)
{
    int top = atomic_load(&range_top);
    for (int i = 0; i < top; i++)
        if (atomic_load(&ranges[i].live) && ranges[i].lo < hi && lo < ranges[i].hi)
            return 1;
    return 0;
}
static long result(long r)
{
    if (r < 0 && r > -4096) {
        errno = (int)-r;
        return -1;
    }
    return r;
}
/* The program's instruction that made a mapping call (for MAP/UNMAP lines): the caller of
 * the interposed function, or where a trapped syscall was made (call_pc). */
#define CALLER (call_pc ? call_pc : (uint64_t)__builtin_return_address(0))

EXPORT void *mmap(void *a, size_t n, int prot, int flags, int fd, off_t off)
{
    /* Private anonymous memory has no path for a pattern to match: not worth asking,
     * unless it replaces armed pages (MAP_FIXED). */
    int ask_tracer = active && (!((flags & MAP_ANONYMOUS) && (flags & MAP_TYPE) == MAP_PRIVATE) ||
                                ((flags & (MAP_FIXED | MAP_FIXED_NOREPLACE)) && armed_in((uint64_t)a, (uint64_t)a + n)));
    if (!ask_tracer) {
        long r = raw_mmap(a, n, prot, flags, fd, off);
        if (r < 0 && r > -4096) {
            errno = (int)-r;
            return MAP_FAILED;
        }
        return (void *)r;
    }
    /* Made PROT_NONE, given its protection once the tracer has said whether it is traced:
     * no other thread touches it untraced in between (a fault there waits, see on_segv). */
    atomic_fetch_add(&changing, 1);
    long r = raw_mmap(a, n, PROT_NONE, flags, fd, off);
    if (r < 0 && r > -4096) {
        atomic_fetch_sub(&changing, 1);
        errno = (int)-r;
        return MAP_FAILED;
    }
    maps_changed((uint64_t)r, (uint64_t)r + round_up(n), CALLER);
    mprotect((void *)r, n, prot); /* armed pages keep it as theirs, the rest get it */
    atomic_fetch_sub(&changing, 1);
    return (void *)r;
}
EXPORT void *mmap64(void *a, size_t n, int prot, int flags, int fd, off_t off) __attribute__((alias("mmap")));

EXPORT int munmap(void *a, size_t n)
{
    int armed = active && armed_in((uint64_t)a, (uint64_t)a + n);
    if (armed)
        atomic_fetch_add(&changing, 1);
    long r = sys6(SYS_munmap, (long)a, (long)n, 0, 0, 0, 0);
    if (r == 0 && armed)
        maps_changed((uint64_t)a, (uint64_t)a + round_up(n), CALLER);
    if (armed)
        atomic_fetch_sub(&changing, 1);
    return (int)result(r);
}

EXPORT void *mremap(void *old, size_t old_n, size_t new_n, int flags, ...)
{
    void *to = NULL;
    if (flags & MREMAP_FIXED) {
        va_list ap;
        va_start(ap, flags);
        to = va_arg(ap, void *);
        va_end(ap);
    }
    if (!active) {
        long r = sys6(SYS_mremap, (long)old, (long)old_n, (long)new_n, flags, (long)to, 0);
        if (r < 0 && r > -4096) {
            errno = (int)-r;
            return MAP_FAILED;
        }
        return (void *)r;
    }
    /* Armed pages move armed (PROT_NONE): the program's protections are kept here and given
     * to them, armed again or not, at their new place; meanwhile a fault there waits. */
    uint64_t lo = (uint64_t)old, pages = round_up(old_n ? old_n : new_n) / PAGE;
    static uint8_t kept[1 << 16]; /* under changing's writer: mapping calls are rare */
    int have = 0;
    atomic_fetch_add(&changing, 1);
    lock(&table_lock);
    for (uint64_t i = 0; i < pages && i < sizeof kept; i++) {
        struct range *r = find_range(lo + i * PAGE);
        kept[i] = r ? (uint8_t)page_prot(r, lo + i * PAGE) : 0xff;
        have |= r != NULL;
    }
    unlock(&table_lock);
    long r = sys6(SYS_mremap, (long)old, (long)old_n, (long)new_n, flags, (long)to, 0);
    if (r < 0 && r > -4096) {
        atomic_fetch_sub(&changing, 1);
        errno = (int)-r;
        return MAP_FAILED;
    }
    uint64_t pc = CALLER;
    if (old_n)
        maps_changed((uint64_t)old, (uint64_t)old + round_up(old_n), pc);
    maps_changed((uint64_t)r, (uint64_t)r + round_up(new_n), pc);
    if (have) {
        uint64_t grow = kept[0] == 0xff ? PROT_READ | PROT_WRITE : kept[0];
        for (uint64_t i = 0; i < round_up(new_n) / PAGE; i++) {
            int p = i < pages && i < sizeof kept ? kept[i] : (int)grow;
            if (p != 0xff)
                mprotect((void *)((uint64_t)r + i * PAGE), PAGE, p);
        }
    }
    atomic_fetch_sub(&changing, 1);
    return (void *)r;
}

/* The program's mprotect of armed pages sets what they are restored to; they stay armed. */
EXPORT int mprotect(void *addr, size_t n, int prot)
{
    uint64_t lo = (uint64_t)addr, hi = lo + round_up(n);
    if (!active)
        return (int)result(raw_mprotect(lo, n, prot));
    lock(&table_lock);
    uint64_t at = lo;
    long rc = 0;
    while (at < hi && rc == 0) {
        struct range *r = find_range(at);
        if (r) {
            uint64_t end = r->hi < hi ? r->hi : hi;
            for (uint64_t p = at; p < end; p += PAGE)
                r->prot[(p - r->lo) / PAGE] = (uint8_t)prot;
            at = end;
            continue;
        }
        uint64_t next = hi; /* up to the next armed range */
        int top = atomic_load(&range_top);
        for (int i = 0; i < top; i++)
            if (atomic_load(&ranges[i].live) && ranges[i].lo > at && ranges[i].lo < next)
                next = ranges[i].lo;
        rc = raw_mprotect(at, next - at, prot);
        at = next;
    }
    unlock(&table_lock);
    if (prot & PROT_EXEC)
        forget_code(lo, hi);
    return (int)result(rc);
}

EXPORT int remap_file_pages(void *a, size_t n, int prot, size_t pgoff, int flags)
{
    long r = sys6(SYS_remap_file_pages, (long)a, (long)n, prot, (long)pgoff, flags, 0);
    if (r == 0)
        maps_changed((uint64_t)a, (uint64_t)a + round_up(n), CALLER);
    return (int)result(r);
}

EXPORT void *shmat(int id, const void *a, int flags)
{
    long r = sys6(SYS_shmat, id, (long)a, flags, 0, 0, 0);
    if (r < 0 && r > -4096) {
        errno = (int)-r;
        return (void *)-1;
    }
    maps_changed((uint64_t)r, (uint64_t)r + 1, CALLER); /* the tracer reads its length */
    return (void *)r;
}

EXPORT int shmdt(const void *a)
{
    long r = sys6(SYS_shmdt, (long)a, 0, 0, 0, 0, 0);
    if (r == 0)
        maps_changed((uint64_t)a, (uint64_t)a + 1, CALLER);
    return (int)result(r);
}
