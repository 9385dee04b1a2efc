/* _agent_start.c: part of _agent.c (one translation unit: _agent.c includes it), the
 * in-process agent's exec (the agent comes back in the new image), start, fork. */

/* -- exec: the agent comes back in the new image --------------------------------------------
 * Its environment entries are put back when the program passes its own environment (a
 * filter of the agent's stays in the process for life: without the agent the syscalls it
 * traps would kill the new image). */
static char env_agent[64];
static char env_preload[4096];
extern char **environ;

static int has(char *const *envp, const char *entry)
{
    size_t n = strchr(entry, '=') - entry + 1;
    for (; envp && *envp; envp++)
        if (!strncmp(*envp, entry, n))
            return 1;
    return 0;
}

/* envp with the agent's entries added where missing, in out (room for count + 3). */
static char *const *with_agent(char *const *envp, char **out, size_t room)
{
    if (!env_agent[0])
        return envp;
    size_t n = 0;
    for (char *const *e = envp; e && *e && n + 3 < room; e++)
        out[n++] = *e;
    if (!has(envp, env_agent))
        out[n++] = env_agent;
    if (!has(envp, env_preload))
        out[n++] = env_preload;
    out[n] = NULL;
    return out;
}

static size_t env_count(char *const *envp)
{
    size_t n = 0;
    while (envp && envp[n])
        n++;
    return n + 3;
}

EXPORT int execve(const char *path, char *const argv[], char *const envp[])
{
    size_t room = env_count(envp);
    char *fixed[room];
    return (int)result(sys6(SYS_execve, (long)path, (long)argv, (long)with_agent(envp, fixed, room), 0, 0, 0));
}

EXPORT int execvpe(const char *file, char *const argv[], char *const envp[])
{
    static int (*real)(const char *, char *const[], char *const[]);
    if (!real)
        real = dlsym(RTLD_NEXT, "execvpe");
    size_t room = env_count(envp);
    char *fixed[room];
    return real(file, argv, with_agent(envp, fixed, room));
}

EXPORT int execvp(const char *file, char *const argv[]) { return execvpe(file, argv, environ); }
EXPORT int execv(const char *path, char *const argv[]) { return execve(path, argv, environ); }

typedef int spawn_fn(pid_t *, const char *, const void *, const void *, char *const[], char *const[]);

/* posix_spawn or posix_spawnp (name), the agent's entries put back in envp. */
static int spawn(spawn_fn **real, const char *name, pid_t *pid, const char *path, const void *fa,
                 const void *attr, char *const argv[], char *const envp[])
{
    if (!*real)
        *real = (spawn_fn *)dlsym(RTLD_NEXT, name);
    size_t room = env_count(envp);
    char *fixed[room];
    return (*real)(pid, path, fa, attr, argv, with_agent(envp, fixed, room));
}

EXPORT int posix_spawn(pid_t *pid, const char *path, const void *fa, const void *attr, char *const argv[],
                       char *const envp[])
{
    static spawn_fn *real;
    return spawn(&real, "posix_spawn", pid, path, fa, attr, argv, envp);
}

EXPORT int posix_spawnp(pid_t *pid, const char *file, const void *fa, const void *attr, char *const argv[],
                        char *const envp[])
{
    static spawn_fn *real;
    return spawn(&real, "posix_spawnp", pid, file, fa, attr, argv, envp);
}

/* -- start, fork ------------------------------------------------------------------------- */

/* Say hello on the inherited socket, handing the tracer this process's own. */
static int connect_tracer(uint64_t why, uint64_t parent)
{
    int sv[2];
    if (sys6(SYS_socketpair, AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, (long)sv, 0, 0) < 0)
        return -1;
    my_pid = (pid_t)sys6(SYS_getpid, 0, 0, 0, 0, 0, 0);
    if (!connected) {
        long m = raw_mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (!(m < 0 && m > -4096) && sys6(SYS_madvise, m, PAGE, 18 /* MADV_WIPEONFORK */, 0, 0, 0) == 0)
            connected = (volatile int *)m;
    }
    if (connected)
        *connected = 1;
    uint64_t hello[4] = {M_HELLO, (uint64_t)my_pid, why, parent};
    struct iovec iov = {hello, sizeof hello};
    char cbuf[CMSG_SPACE(sizeof(int))];
    memset(cbuf, 0, sizeof cbuf);
    struct msghdr mh = {0};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = cbuf;
    mh.msg_controllen = sizeof cbuf;
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &sv[1], sizeof(int));
    if (sys6(SYS_sendmsg, root_fd, (long)&mh, MSG_NOSIGNAL, 0, 0, 0) < 0) { /* never trapped */
        sys6(SYS_close, sv[0], 0, 0, 0, 0, 0);
        sys6(SYS_close, sv[1], 0, 0, 0, 0, 0);
        return -1;
    }
    sys6(SYS_close, sv[1], 0, 0, 0, 0, 0);
    if (sock >= 0)
        sys6(SYS_close, sock, 0, 0, 0, 0, 0);
    sock = sv[0];
    return 0;
}

static void open_self_mem(void)
{
    if (self_mem >= 0)
        sys6(SYS_close, self_mem, 0, 0, 0, 0, 0);
    self_mem = (int)sys6(SYS_openat, AT_FDCWD, (long)"/proc/self/mem", O_RDWR | O_CLOEXEC, 0, 0, 0);
}

static void before_fork(void)
{
    fork_parent = getpid();
    lock(&sock_lock);
    lock(&table_lock);
}

static void after_fork_parent(void)
{
    unlock(&table_lock);
    unlock(&sock_lock);
}

/* A forked child: its own socket and thread ids; its inherited ranges get their own map
 * ids from the tracer (the reply: pairs of old and new ids). */
static void after_fork_child(void)
{
    if (!active || is_connected())
        return; /* done already (a traced access came first) */
    unlock(&table_lock);
    unlock(&sock_lock);
    my_tid = 0;
    my_lane = -1; /* the parent thread's lane is its own */
    t_lane_shared = 0;
    t_emit_sp = 0;
    t_open = 0;
    if (ring) /* the parent may have made itself another time namespace for its children */
        clock_delta_us = ring->clock_offset_us - timens_offset_us();
    if (!active)
        return;
    open_self_mem();
    uint64_t reply[1 + 2 * RANGE_CAP];
    if (connect_tracer(1, (uint64_t)fork_parent) < 0) {
        detach_all();
        return;
    }
    ssize_t n;
    do
        n = sys6(SYS_recvfrom, sock, (long)reply, sizeof reply, 0, 0, 0);
    while (n == -EINTR);
    if (n < 8) {
        detach_all();
        return;
    }
    int top = atomic_load(&range_top);
    for (uint64_t i = 0; i < reply[0]; i++)
        for (int k = 0; k < top; k++)
            if (atomic_load(&ranges[k].live) && ranges[k].map_id == reply[1 + 2 * i]) {
                if (reply[2 + 2 * i])
                    ranges[k].map_id = reply[2 + 2 * i];
                else /* the child did not get it (MADV_DONTFORK) */
                    disarm(&ranges[k], 0);
            }
}

__attribute__((constructor)) static void agent_start(void)
{
    real_sigaction = dlsym(RTLD_NEXT, "sigaction");
    real_sigprocmask = dlsym(RTLD_NEXT, "sigprocmask");
    real_pthread_sigmask = dlsym(RTLD_NEXT, "pthread_sigmask");
    const char *env = getenv("KMMIO_AGENT");
    if (!env)
        return;
    const char *pre = getenv("LD_PRELOAD");
    if (strlen(env) + 13 < sizeof env_agent && pre && strlen(pre) + 12 < sizeof env_preload) {
        strcpy(env_agent, "KMMIO_AGENT=");
        strcat(env_agent, env);
        strcpy(env_preload, "LD_PRELOAD=");
        strcat(env_preload, pre);
    }
    char *end;
    root_fd = (int)strtol(env, &end, 10);
    ring_fd = (int)strtol(end + 1, &end, 10);
    wake_fd = (int)strtol(end + 1, &end, 10);
    long size = lseek(ring_fd, 0, SEEK_END);
    long m = raw_mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED, ring_fd, 0);
    if (size <= RING_HDR || (m < 0 && m > -4096))
        return; /* not ours (a descriptor closed or reused): run untraced */
    struct ring_hdr *h = (struct ring_hdr *)m;
    if (!lane_cap_ok(h->cap) || (uint64_t)size < RING_HDR + (uint64_t)LANES * h->cap * sizeof(struct rec)) {
        sys6(SYS_munmap, m, size, 0, 0, 0, 0);
        return;
    }
    ring = h;
    clock_delta_us = h->clock_offset_us - timens_offset_us();
    make_gadget();
    read_action(SIGSEGV, &prog_segv);
    read_action(SIGSYS, &prog_sys);
    unsigned a, b, c, dd;
    if (__get_cpuid_count(0xd, 5, &a, &b, &c, &dd) && a)
        opmask_offset = b;
    if (in_filter_mode()) /* filters of the agent's before an exec trap here too */
        add_filter(NULL, 0);
    if (atomic_load(&ring->detach))
        return;
    open_self_mem();
    if (connect_tracer(0, (uint64_t)getppid()) < 0)
        return;
    static uint64_t ok[2 + 4096];
    ssize_t n;
    do
        n = sys6(SYS_recvfrom, sock, (long)ok, sizeof ok, 0, 0, 0);
    while (n == -EINTR);
    if (n < 8 || !ok[0])
        return;
    install_handler();
    if (n >= 16 && ok[1]) /* the base filter: raw mapping calls, i386, rt_sigaction */
        add_filter(&ok[2], ok[1]);
    pthread_atfork(before_fork, after_fork_parent, after_fork_child);
    active = 1;
    maps_changed(0, 1ull << 47, 0);
}
