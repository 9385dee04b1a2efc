/* _agent_syscalls.c: part of _agent.c (one translation unit: _agent.c includes it), the
 * in-process agent's syscalls reaching traced memory: the agent's seccomp filters, their SIGSYS, the
 * mapping calls they trap. */

/* -- syscalls reaching traced memory (kmmio.syscalls.plan) --------------------------------- */

#define KM_DATA 0x6b6d /* SECCOMP_RET_DATA of the agent's filters: si_errno of their SIGSYS */
static void on_sigsys(int sig, siginfo_t *si, void *ctx);

/* A filter from the tracer (struct sock_filter words), for every thread. */
static void add_filter(const uint64_t *code, uint64_t bytes)
{
    if (!gadget)
        return; /* no way to run the syscalls it would trap */
    if (!sys_handler) { /* from now on SIGSYS is the agent's, the program's action kept */
        ksigaction(SIGSYS, (void *)on_sigsys, SA_SIGINFO | SA_ONSTACK | SA_RESTART | SA_NODEFER, NULL);
        sys_handler = 1;
    }
    if (!code)
        return;
    struct {
        uint16_t len;
        const void *filter;
    } prog = {(uint16_t)(bytes / 8), code};
    long r = sys6(SYS_seccomp, 1 /* SET_MODE_FILTER */, 1 /* TSYNC */, (long)&prog, 0, 0, 0);
    if (r == -EACCES) { /* without CAP_SYS_ADMIN the kernel wants no_new_privs */
        sys6(SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0, 0);
        r = sys6(SYS_seccomp, 1, 1, (long)&prog, 0, 0, 0);
    }
    (void)r; /* refused: syscalls reaching traced memory fail as they would (EFAULT) */
}

EXPORT void *mmap(void *a, size_t n, int prot, int flags, int fd, off_t off);
EXPORT int munmap(void *a, size_t n);
EXPORT void *mremap(void *old, size_t old_n, size_t new_n, int flags, ...);
EXPORT int mprotect(void *addr, size_t n, int prot);
EXPORT void *shmat(int id, const void *a, int flags);
EXPORT int shmdt(const void *a);

static long neg_errno(long r) { return r == -1 ? -errno : r; }

/* A mapping call the base filter trapped (a raw syscall, or libc's own mmap from inside
 * libc): the same as the program calling the interposed function; rt_sigaction of SIGSEGV
 * or SIGSYS answered from the program's copy.  -ENOSYS - 4096: not one of them. */
static long mapping_call_at(long nr, const long *a, greg_t *g);

static long mapping_call(long nr, const long *a, greg_t *g)
{
    call_pc = (uint64_t)g[REG_RIP];
    long r = mapping_call_at(nr, a, g);
    call_pc = 0;
    return r;
}

static long mapping_call_at(long nr, const long *a, greg_t *g)
{
    switch (nr) {
    case SYS_mmap: {
        void *r = mmap((void *)a[0], (size_t)a[1], (int)a[2], (int)a[3], (int)a[4], a[5]);
        return r == MAP_FAILED ? -errno : (long)r;
    }
    case SYS_munmap:
        return neg_errno(munmap((void *)a[0], (size_t)a[1]));
    case SYS_mremap: {
        void *r = mremap((void *)a[0], (size_t)a[1], (size_t)a[2], (int)a[3], (void *)a[4]);
        return r == MAP_FAILED ? -errno : (long)r;
    }
    case SYS_mprotect:
        return neg_errno(mprotect((void *)a[0], (size_t)a[1], (int)a[2]));
    case SYS_shmat: {
        void *r = shmat((int)a[0], (const void *)a[1], (int)a[2]);
        return r == (void *)-1 ? -errno : (long)r;
    }
    case SYS_shmdt:
        return neg_errno(shmdt((const void *)a[0]));
    case SYS_pkey_mprotect:
    case SYS_remap_file_pages: {
        long r = sys6(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
        if (r >= 0)
            maps_changed((uint64_t)a[0], (uint64_t)a[0] + (uint64_t)a[1], (uint64_t)g[REG_RIP]);
        return r;
    }
    case SYS_rt_sigaction:
        if (a[0] == SIGSEGV || a[0] == SIGSYS) {
            struct kact {
                void *handler;
                unsigned long flags;
                void *restorer;
                uint64_t mask;
            };
            struct sigaction *mine = a[0] == SIGSEGV ? &prog_segv : &prog_sys;
            struct kact old = {(void *)mine->sa_handler, (unsigned long)mine->sa_flags, NULL, 0};
            memcpy(&old.mask, &mine->sa_mask, 8);
            if (a[1]) {
                const struct kact *k = (const struct kact *)a[1];
                memset(mine, 0, sizeof *mine);
                mine->sa_handler = (void (*)(int))k->handler;
                mine->sa_flags = (int)k->flags;
                memcpy(&mine->sa_mask, &k->mask, 8);
                strip_segv(&mine->sa_mask);
            }
            if (a[2])
                memcpy((void *)a[2], &old, sizeof old);
            return 0;
        }
        return sys6(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
    }
    return -ENOSYS - 4096;
}

/* Whether the process has seccomp filters ("Seccomp: 2" in /proc/self/status). */
static int in_filter_mode(void)
{
    char buf[4096];
    if (read_small("/proc/self/status", buf, sizeof buf) <= 0)
        return 0;
    const char *at = strstr(buf, "\nSeccomp:");
    return at && strtol(at + 9, NULL, 10) == 2;
}

/* Open (prot from the program) or close again the pages of [lo, hi) in armed ranges. */
static void lend(uint64_t lo, uint64_t hi, int open)
{
    for (uint64_t a = lo & ~(PAGE - 1); a < hi; a += PAGE) {
        struct range *r = find_range(a);
        if (r)
            raw_mprotect(a, PAGE, open ? page_prot(r, a) : PROT_NONE);
    }
}

/* A syscall the filter trapped: the tracer says how to run it (its pointers moved to the
 * aliases, structures copied, pages lent), the agent runs it, the tracer takes what it
 * needs of the result (MARK lines, data copied back). */
static void on_sigsys(int sig, siginfo_t *si, void *ctx)
{
    int saved = errno;
    ucontext_t *uc = ctx;
    greg_t *g = uc->uc_mcontext.gregs;
    if (si->si_code != 1 /* SYS_SECCOMP */ || si->si_errno != KM_DATA) {
        struct sigaction *p = &prog_sys;
        if (p->sa_handler == SIG_DFL || p->sa_handler == SIG_IGN) {
            ksigaction(SIGSYS, (void *)p->sa_handler, 0, NULL);
            sys6(SYS_rt_tgsigqueueinfo, getpid(), tid(), sig, (long)si, 0, 0);
        } else if (p->sa_flags & SA_SIGINFO) {
            p->sa_sigaction(sig, si, ctx);
        } else {
            p->sa_handler(sig);
        }
        errno = saved;
        return;
    }
    long nr = si->si_syscall;
    if (si->si_arch != AUDIT_ARCH_X86_64) { /* int 0x80: run it, then see what changed */
        long b[6] = {g[REG_RBX] & 0xffffffff, g[REG_RCX] & 0xffffffff, g[REG_RDX] & 0xffffffff,
                     g[REG_RSI] & 0xffffffff, g[REG_RDI] & 0xffffffff, g[REG_RBP] & 0xffffffff};
        long ret;
        if (nr == 125) /* i386 mprotect: armed pages stay armed */
            ret = mprotect((void *)b[0], (size_t)b[1], (int)b[2]) < 0 ? -errno : 0;
        else
            ret = int80 ? int80(nr, b[0], b[1], b[2], b[3], b[4], b[5]) : -ENOSYS;
        if (ret >= 0 && (nr == 90 || nr == 91 || nr == 117 || nr == 163 || nr == 192 || nr == 257 || nr == 380))
            maps_changed(0, 1ull << 47, (uint64_t)g[REG_RIP]); /* a mapping call: look again */
        g[REG_RAX] = ret;
        errno = saved;
        return;
    }
    long a[6] = {g[REG_RDI], g[REG_RSI], g[REG_RDX], g[REG_R10], g[REG_R8], g[REG_R9]};
    if (nr == SYS_rt_sigprocmask) { /* libc's own (posix_spawn, pthread_create...): on the frame's mask */
        uint64_t set, cur, next, shown;
        memcpy(&cur, &uc->uc_sigmask, 8);
        if (a[1])
            memcpy(&set, (const void *)a[1], 8);
        if (a[3] != 8 || mask_change((int)a[0], a[1] ? &set : NULL, cur, &next, &shown) < 0) {
            g[REG_RAX] = -EINVAL;
        } else {
            memcpy(&uc->uc_sigmask, &next, 8); /* what rt_sigreturn sets */
            if (a[2])
                memcpy((void *)a[2], &shown, 8);
            g[REG_RAX] = 0;
        }
        errno = saved;
        return;
    }
    long mine = mapping_call(nr, a, g);
    if (mine != -ENOSYS - 4096) {
        g[REG_RAX] = mine;
        errno = saved;
        return;
    }
    uint64_t req[11] = {M_SYSCALL, (uint64_t)tid(), (uint64_t)nr};
    for (int i = 0; i < 6; i++)
        req[3 + i] = (uint64_t)a[i];
    req[9] = (uint64_t)g[REG_RSP];
    req[10] = (uint64_t)g[REG_RIP];
    static TLS uint64_t reply[2 + 6 + 2 + 2 * 16];
    long n = -1;
    if (active && is_connected()) {
        lock(&sock_lock);
        n = ask(req, sizeof req, reply, sizeof reply);
        unlock(&sock_lock);
    }
    if (n < 8 * 9) { /* no tracer: as it is */
        g[REG_RAX] = sys6(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
        errno = saved;
        return;
    }
    /* reply: nr, 6 args, post?, lend count, lend ranges */
    uint64_t nlend = reply[8] > 16 ? 16 : reply[8];
    int dying = nr == SYS_exit_group || nr == SYS_exit;
    if (nr == SYS_exit_group && nlend) {
        lock(&table_lock);
        detach_all(); /* the kernel walks robust lists as the process dies */
        unlock(&table_lock);
    }
    for (uint64_t i = 0; i < nlend; i++)
        lend(reply[9 + 2 * i], reply[10 + 2 * i], 1);
    long ret = sys6((long)reply[0], (long)reply[1], (long)reply[2], (long)reply[3], (long)reply[4], (long)reply[5],
                    (long)reply[6]);
    if (!dying)
        for (uint64_t i = 0; i < nlend; i++)
            lend(reply[9 + 2 * i], reply[10 + 2 * i], 0);
    if (reply[7]) {
        uint64_t done[3] = {M_SYSDONE, (uint64_t)tid(), (uint64_t)ret};
        uint64_t ok[1];
        lock(&sock_lock);
        ask(done, sizeof done, ok, sizeof ok);
        unlock(&sock_lock);
    }
    g[REG_RAX] = ret;
    errno = saved;
}

/* The tracer went away (killed): every process it traced lets go of its pages. */
static void tracer_gone(void)
{
    atomic_store(&ring->detach, 1);
    if (trylock(&table_lock) == 0) {
        detach_all();
        unlock(&table_lock);
    }
}
