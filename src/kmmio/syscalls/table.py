"""Every x86-64 syscall and how it uses user memory, in the vocabulary of :mod:`kmmio.syscalls.spec`.

The numbers and names are the Linux 6.18 kernel's ``arch/x86/entry/syscalls/syscall_64.tbl``
(the ``common`` and ``64`` ABIs; the x32-only numbers 512-547 are left out): 0-336 and
424-469, the same as ``asm/unistd_64.h`` up to 450.  Argument indexes are 0-based in the order
of the kernel's ``SYSCALL_DEFINEn`` (rdi, rsi, rdx, r10, r8, r9); sizes are the x86-64 ones.
Numbers the kernel keeps without an implementation (``create_module``, ``tuxcall``...) return
``ENOSYS`` and are listed with no uses.  :data:`I386_NAMES` names the few ``int 0x80`` numbers
of the mapping family the tracer must recognise in a 32-bit entry.
"""

from __future__ import annotations

from kmmio.syscalls.spec import (
    ArgLen,
    Buf,
    Dir,
    Fixed,
    Iov,
    MMsg,
    Msg,
    Opaque,
    Syscall,
    Unsized,
    Use,
    Waitv,
)

__all__ = ["BY_NAME", "I386_NAMES", "SYSCALLS", "lookup"]

R, W, U, A = Dir.READS, Dir.WRITES, Dir.UPDATES, Dir.ACCESSES
B, F, L = Buf, Fixed, ArgLen
#: A size the kernel decides: NUL-terminated strings, sizes read from memory, bitmaps.
S = Unsized()
OPAQUE = Opaque()

# x86-64 sizes of the structures the kernel copies whole.
INT = F(4)  # int, socklen_t, pid_t, u32, struct sched_param
LONG = F(8)  # long, loff_t, u64, time_t, int[2] (pipe, socketpair)
TIMESPEC = F(16)  # also struct timeval, struct utimbuf
TIMESPEC2 = F(32)  # struct itimerspec, struct itimerval, utimes'/utimensat's pair
STAT = F(144)
STATFS = F(120)
RUSAGE = F(144)
SIGINFO = F(128)
SIGACTION = F(32)  # struct kernel_sigaction: handler, flags, restorer, 8-byte mask
STACK_T = F(24)
RLIMIT = F(16)
TIMEX = F(208)  # struct __kernel_timex
SIGEVENT = F(64)
MQ_ATTR = F(64)
IOCB = F(64)
IO_EVENT = 32  # struct io_event, per element
EPOLL_EVENT = 12  # packed on x86-64, per element
POLLFD = 8  # per element
SEMBUF = 6  # per element


def _path(arg: int) -> Buf:
    """A NUL-terminated path or name the kernel reads."""
    return Buf(arg, R, S)


_ALL: list[Syscall] = []


def _s(nr: int, name: str, *uses: Use) -> None:
    _ALL.append(Syscall(nr, name, uses))


# -- file I/O ------------------------------------------------------------------------------------
_s(0, "read", B(1, W, L(2), True))
_s(1, "write", B(1, R, L(2), True))
_s(3, "close")
_s(5, "fstat", B(1, W, STAT))
_s(8, "lseek")
_s(16, "ioctl", OPAQUE)
_s(17, "pread64", B(1, W, L(2), True))
_s(18, "pwrite64", B(1, R, L(2), True))
_s(19, "readv", Iov(1, 2, W))
_s(20, "writev", Iov(1, 2, R))
_s(22, "pipe", B(0, W, LONG))
_s(32, "dup")
_s(33, "dup2")
_s(40, "sendfile", B(2, U, LONG))  # out_fd, in_fd, *offset, count
_s(72, "fcntl", B(2, U, F(32)))  # struct flock (F_GETLK...), f_owner_ex, u64 hints
_s(73, "flock")
_s(74, "fsync")
_s(75, "fdatasync")
_s(77, "ftruncate")
_s(78, "getdents", B(1, W, L(2), True))
_s(81, "fchdir")
_s(91, "fchmod")
_s(93, "fchown")
_s(138, "fstatfs", B(1, W, STATFS))
_s(187, "readahead")
_s(217, "getdents64", B(1, W, L(2), True))
_s(221, "fadvise64")
_s(275, "splice", B(1, U, LONG), B(3, U, LONG))  # fd_in, *off_in, fd_out, *off_out
_s(276, "tee")
_s(277, "sync_file_range")
_s(278, "vmsplice", Iov(1, 2, A))  # reads or writes by the pipe end; may keep the pages
_s(285, "fallocate")
_s(292, "dup3")
_s(293, "pipe2", B(0, W, LONG))
_s(295, "preadv", Iov(1, 2, W))
_s(296, "pwritev", Iov(1, 2, R))
_s(306, "syncfs")
_s(326, "copy_file_range", B(1, U, LONG), B(3, U, LONG))
_s(327, "preadv2", Iov(1, 2, W))
_s(328, "pwritev2", Iov(1, 2, R))
_s(436, "close_range")
_s(451, "cachestat", B(1, R, F(16)), B(2, W, F(40)))  # cachestat_range, struct cachestat

# -- paths, names, attributes --------------------------------------------------------------------
_s(2, "open", _path(0))
_s(4, "stat", _path(0), B(1, W, STAT))
_s(6, "lstat", _path(0), B(1, W, STAT))
_s(21, "access", _path(0))
_s(76, "truncate", _path(0))
_s(79, "getcwd", B(0, W, L(1), True))  # returns the length with the NUL
_s(80, "chdir", _path(0))
_s(82, "rename", _path(0), _path(1))
_s(83, "mkdir", _path(0))
_s(84, "rmdir", _path(0))
_s(85, "creat", _path(0))
_s(86, "link", _path(0), _path(1))
_s(87, "unlink", _path(0))
_s(88, "symlink", _path(0), _path(1))
_s(89, "readlink", _path(0), B(1, W, L(2), True))
_s(90, "chmod", _path(0))
_s(92, "chown", _path(0))
_s(94, "lchown", _path(0))
_s(95, "umask")
_s(132, "utime", _path(0), B(1, R, TIMESPEC))  # struct utimbuf
_s(133, "mknod", _path(0))
_s(134, "uselib", _path(0))
_s(136, "ustat", B(1, W, F(24)))
_s(137, "statfs", _path(0), B(1, W, STATFS))
_s(139, "sysfs", B(1, R, S), B(2, W, S))  # option 1: fsname; option 2: index, buf
_s(155, "pivot_root", _path(0), _path(1))
_s(161, "chroot", _path(0))
_s(163, "acct", _path(0))
_s(188, "setxattr", _path(0), _path(1), B(2, R, L(3)))
_s(189, "lsetxattr", _path(0), _path(1), B(2, R, L(3)))
_s(190, "fsetxattr", _path(1), B(2, R, L(3)))
_s(191, "getxattr", _path(0), _path(1), B(2, W, L(3), True))
_s(192, "lgetxattr", _path(0), _path(1), B(2, W, L(3), True))
_s(193, "fgetxattr", _path(1), B(2, W, L(3), True))
_s(194, "listxattr", _path(0), B(1, W, L(2), True))
_s(195, "llistxattr", _path(0), B(1, W, L(2), True))
_s(196, "flistxattr", B(1, W, L(2), True))
_s(197, "removexattr", _path(0), _path(1))
_s(198, "lremovexattr", _path(0), _path(1))
_s(199, "fremovexattr", _path(1))
_s(235, "utimes", _path(0), B(1, R, TIMESPEC2))  # struct timeval[2]
_s(253, "inotify_init")
_s(254, "inotify_add_watch", _path(1))
_s(255, "inotify_rm_watch")
_s(257, "openat", _path(1))
_s(258, "mkdirat", _path(1))
_s(259, "mknodat", _path(1))
_s(260, "fchownat", _path(1))
_s(261, "futimesat", _path(1), B(2, R, TIMESPEC2))
_s(262, "newfstatat", _path(1), B(2, W, STAT))
_s(263, "unlinkat", _path(1))
_s(264, "renameat", _path(1), _path(3))
_s(265, "linkat", _path(1), _path(3))
_s(266, "symlinkat", _path(0), _path(2))
_s(267, "readlinkat", _path(1), B(2, W, L(3), True))
_s(268, "fchmodat", _path(1))
_s(269, "faccessat", _path(1))
_s(280, "utimensat", _path(1), B(2, R, TIMESPEC2))  # struct timespec[2]
_s(294, "inotify_init1")
_s(300, "fanotify_init")
_s(301, "fanotify_mark", _path(4))
# handle: reads handle_bytes, writes the handle; mount_id: an int, or a u64 with
# AT_HANDLE_MNT_ID_UNIQUE.
_s(303, "name_to_handle_at", _path(1), B(2, U, S), B(3, W, LONG))
_s(304, "open_by_handle_at", B(1, R, S))
_s(316, "renameat2", _path(1), _path(3))
_s(319, "memfd_create", _path(0))
_s(332, "statx", _path(1), B(4, W, F(256)))
_s(437, "openat2", _path(1), B(2, R, L(3)))  # struct open_how of usize bytes
_s(439, "faccessat2", _path(1))
_s(452, "fchmodat2", _path(1))
_s(463, "setxattrat", _path(1), _path(3), B(4, R, L(5)), OPAQUE)  # xattr_args holds the value pointer
_s(464, "getxattrat", _path(1), _path(3), B(4, R, L(5)), OPAQUE)
_s(465, "listxattrat", _path(1), B(3, W, L(4), True))
_s(466, "removexattrat", _path(1), _path(3))
_s(468, "file_getattr", _path(1), B(2, W, L(3)))  # struct file_attr of usize bytes
_s(469, "file_setattr", _path(1), B(2, R, L(3)))

# -- mounts, filesystems, modules, system ---------------------------------------------------------
_s(165, "mount", _path(0), _path(1), _path(2), OPAQUE)  # data: a page of fs-specific options
_s(166, "umount2", _path(0))
_s(167, "swapon", _path(0))
_s(168, "swapoff", _path(0))
_s(169, "reboot", B(3, R, S))  # LINUX_REBOOT_CMD_RESTART2's command string
_s(170, "sethostname", B(0, R, L(1)))
_s(171, "setdomainname", B(0, R, L(1)))
_s(175, "init_module", B(0, R, L(1)), _path(2))
_s(176, "delete_module", _path(0))
_s(179, "quotactl", _path(1), OPAQUE)  # addr: a path, a u32 or a quota struct by cmd
_s(103, "syslog", B(1, W, L(2)))
_s(156, "_sysctl", OPAQUE)
_s(162, "sync")
_s(172, "iopl")
_s(173, "ioperm")
_s(246, "kexec_load", OPAQUE)  # struct kexec_segment[] holding buffer pointers
_s(313, "finit_module", _path(1))
_s(320, "kexec_file_load", B(3, R, L(2)))  # kernel_fd, initrd_fd, cmdline_len, cmdline
_s(428, "open_tree", _path(1))
_s(429, "move_mount", _path(1), _path(3))
_s(430, "fsopen", _path(0))
_s(431, "fsconfig", _path(2), OPAQUE)  # value: a string, a path or aux bytes by cmd
_s(432, "fsmount")
_s(433, "fspick", _path(1))
_s(442, "mount_setattr", _path(1), B(3, R, L(4)))
_s(443, "quotactl_fd", OPAQUE)
_s(457, "statmount", B(0, R, S), B(1, W, L(2)))  # mnt_id_req: its size is read first
_s(458, "listmount", B(0, R, S), B(1, W, L(2, 8)))
_s(467, "open_tree_attr", _path(1), B(3, R, L(4)))

# -- sockets -------------------------------------------------------------------------------------
_s(41, "socket")
_s(42, "connect", B(1, R, L(2)))
_s(43, "accept", B(1, W, S), B(2, U, INT))
_s(44, "sendto", B(1, R, L(2), True), B(4, R, L(5)))
_s(45, "recvfrom", B(1, W, L(2), True), B(4, W, S), B(5, U, INT))
_s(46, "sendmsg", Msg(1, R))
_s(47, "recvmsg", Msg(1, W))
_s(48, "shutdown")
_s(49, "bind", B(1, R, L(2)))
_s(50, "listen")
_s(51, "getsockname", B(1, W, S), B(2, U, INT))
_s(52, "getpeername", B(1, W, S), B(2, U, INT))
_s(53, "socketpair", B(3, W, LONG))
_s(54, "setsockopt", B(3, R, L(4)))
_s(55, "getsockopt", B(3, U, S), B(4, U, INT))  # some options read optval too
_s(288, "accept4", B(1, W, S), B(2, U, INT))
_s(299, "recvmmsg", MMsg(1, 2, W), B(4, U, TIMESPEC))
_s(307, "sendmmsg", MMsg(1, 2, R))

# -- polling, events -----------------------------------------------------------------------------
_s(7, "poll", B(0, U, L(1, POLLFD)))
# fd_sets: (n + 63) / 64 longs, which ArgLen cannot say; select writes back the time left.
_s(23, "select", B(1, U, S), B(2, U, S), B(3, U, S), B(4, U, TIMESPEC))
_s(213, "epoll_create")
_s(214, "epoll_ctl_old")
_s(215, "epoll_wait_old")
_s(232, "epoll_wait", B(1, W, L(2, EPOLL_EVENT)))
_s(233, "epoll_ctl", B(3, R, F(EPOLL_EVENT)))
# The sixth argument is {const sigset_t *ss; size_t ss_len}: a pointer in a struct.
_s(270, "pselect6", B(1, U, S), B(2, U, S), B(3, U, S), B(4, U, TIMESPEC), B(5, R, F(16)), OPAQUE)
_s(271, "ppoll", B(0, U, L(1, POLLFD)), B(2, U, TIMESPEC), B(3, R, L(4)))
_s(281, "epoll_pwait", B(1, W, L(2, EPOLL_EVENT)), B(4, R, L(5)))
_s(282, "signalfd", B(1, R, L(2)))
_s(283, "timerfd_create")
_s(284, "eventfd")
_s(289, "signalfd4", B(1, R, L(2)))
_s(290, "eventfd2")
_s(291, "epoll_create1")
_s(441, "epoll_pwait2", B(1, W, L(2, EPOLL_EVENT)), B(3, R, TIMESPEC), B(4, R, L(5)))

# -- asynchronous I/O ----------------------------------------------------------------------------
_s(206, "io_setup", B(1, U, LONG))  # *ctxp must be 0 on entry
_s(207, "io_destroy")
_s(208, "io_getevents", B(3, W, L(2, IO_EVENT)), B(4, R, TIMESPEC))
_s(209, "io_submit", OPAQUE)  # iocb pointers to iocbs pointing at buffers
_s(210, "io_cancel", B(1, R, IOCB))  # reads aio_key; result is no longer written
# The sixth argument is {const sigset_t *sigmask; size_t sigsetsize}.
_s(333, "io_pgetevents", B(3, W, L(2, IO_EVENT)), B(4, R, TIMESPEC), B(5, R, F(16)), OPAQUE)
_s(425, "io_uring_setup", OPAQUE)
_s(426, "io_uring_enter", OPAQUE)
_s(427, "io_uring_register", OPAQUE)

# -- signals -------------------------------------------------------------------------------------
_s(13, "rt_sigaction", B(1, R, SIGACTION), B(2, W, SIGACTION))
_s(14, "rt_sigprocmask", B(1, R, L(3)), B(2, W, L(3)))
# rt_sigreturn takes no arguments: it reads its frame at the stack pointer and reloads every
# register.  Opaque would have registers that merely look like pointers redirected (and
# given back after the call, over the restored context), so: no use.
_s(15, "rt_sigreturn")
_s(34, "pause")
_s(62, "kill")
_s(127, "rt_sigpending", B(0, W, L(1)))
_s(128, "rt_sigtimedwait", B(0, R, L(3)), B(1, W, SIGINFO), B(2, R, TIMESPEC))
_s(129, "rt_sigqueueinfo", B(2, R, SIGINFO))
_s(130, "rt_sigsuspend", B(0, R, L(1)))
_s(131, "sigaltstack", B(0, R, STACK_T), B(1, W, STACK_T))
_s(200, "tkill")
_s(234, "tgkill")
_s(297, "rt_tgsigqueueinfo", B(3, R, SIGINFO))
_s(424, "pidfd_send_signal", B(2, R, SIGINFO))

# -- time ----------------------------------------------------------------------------------------
_s(35, "nanosleep", B(0, R, TIMESPEC), B(1, W, TIMESPEC))
_s(36, "getitimer", B(1, W, TIMESPEC2))
_s(37, "alarm")
_s(38, "setitimer", B(1, R, TIMESPEC2), B(2, W, TIMESPEC2))
_s(96, "gettimeofday", B(0, W, TIMESPEC), B(1, W, LONG))  # timeval, timezone
_s(100, "times", B(0, W, F(32)))
_s(159, "adjtimex", B(0, U, TIMEX))
_s(164, "settimeofday", B(0, R, TIMESPEC), B(1, R, LONG))
_s(201, "time", B(0, W, LONG))
_s(222, "timer_create", B(1, R, SIGEVENT), B(2, W, INT))
_s(223, "timer_settime", B(2, R, TIMESPEC2), B(3, W, TIMESPEC2))
_s(224, "timer_gettime", B(1, W, TIMESPEC2))
_s(225, "timer_getoverrun")
_s(226, "timer_delete")
_s(227, "clock_settime", B(1, R, TIMESPEC))
_s(228, "clock_gettime", B(1, W, TIMESPEC))
_s(229, "clock_getres", B(1, W, TIMESPEC))
_s(230, "clock_nanosleep", B(2, R, TIMESPEC), B(3, W, TIMESPEC))
_s(286, "timerfd_settime", B(2, R, TIMESPEC2), B(3, W, TIMESPEC2))
_s(287, "timerfd_gettime", B(1, W, TIMESPEC2))
_s(305, "clock_adjtime", B(1, U, TIMEX))

# -- processes, threads, credentials, scheduling -----------------------------------------------
# clone: flags, newsp, parent_tid, child_tid, tls (the new FS base, a value).
_s(56, "clone", B(2, A, INT), B(3, A, INT))
_s(57, "fork")
_s(58, "vfork")
_s(59, "execve", _path(0), OPAQUE)  # argv, envp: arrays of string pointers
_s(60, "exit")
_s(61, "wait4", B(1, W, INT), B(3, W, RUSAGE))
_s(63, "uname", B(0, W, F(390)))
_s(97, "getrlimit", B(1, W, RLIMIT))
_s(98, "getrusage", B(1, W, RUSAGE))
_s(99, "sysinfo", B(0, W, F(112)))
_s(101, "ptrace", OPAQUE)
_s(102, "getuid")
_s(104, "getgid")
_s(105, "setuid")
_s(106, "setgid")
_s(107, "geteuid")
_s(108, "getegid")
_s(109, "setpgid")
_s(39, "getpid")
_s(110, "getppid")
_s(111, "getpgrp")
_s(112, "setsid")
_s(113, "setreuid")
_s(114, "setregid")
_s(115, "getgroups", B(1, W, L(0, 4)))
_s(116, "setgroups", B(1, R, L(0, 4)))
_s(117, "setresuid")
_s(118, "getresuid", B(0, W, INT), B(1, W, INT), B(2, W, INT))
_s(119, "setresgid")
_s(120, "getresgid", B(0, W, INT), B(1, W, INT), B(2, W, INT))
_s(121, "getpgid")
_s(122, "setfsuid")
_s(123, "setfsgid")
_s(124, "getsid")
_s(125, "capget", B(0, U, F(8)), B(1, W, F(24)))  # header (version written back), data[2]
_s(126, "capset", B(0, U, F(8)), B(1, R, F(24)))
_s(135, "personality")
_s(140, "getpriority")
_s(141, "setpriority")
_s(142, "sched_setparam", B(1, R, INT))
_s(143, "sched_getparam", B(1, W, INT))
_s(144, "sched_setscheduler", B(2, R, INT))
_s(24, "sched_yield")
_s(145, "sched_getscheduler")
_s(146, "sched_get_priority_max")
_s(147, "sched_get_priority_min")
_s(148, "sched_rr_get_interval", B(1, W, TIMESPEC))
_s(153, "vhangup")
_s(154, "modify_ldt", B(1, U, L(2)))  # read: up to bytecount; write: a struct user_desc
_s(157, "prctl", OPAQUE)
_s(158, "arch_prctl", B(1, W, LONG))  # ARCH_GET_FS/GS... write a u64; ARCH_SET_* take values
_s(160, "setrlimit", B(1, R, RLIMIT))
_s(186, "gettid")
_s(203, "sched_setaffinity", B(2, R, L(1)))
_s(204, "sched_getaffinity", B(2, W, L(1), True))  # returns the bytes copied
_s(218, "set_tid_address", B(0, A, INT))
_s(219, "restart_syscall", OPAQUE)  # resumes with the pointers the interrupted call saved
_s(231, "exit_group")
_s(247, "waitid", B(2, W, SIGINFO), B(4, W, RUSAGE))
_s(251, "ioprio_set")
_s(252, "ioprio_get")
_s(272, "unshare")
_s(273, "set_robust_list", B(0, A, L(1)))
_s(274, "get_robust_list", B(1, W, LONG), B(2, W, LONG))
# attr: its size is read first and written back on E2BIG; the kprobe and uprobe PMUs read a
# string through attr.config1.
_s(298, "perf_event_open", B(0, U, S), OPAQUE)
_s(302, "prlimit64", B(2, R, RLIMIT), B(3, W, RLIMIT))
_s(308, "setns")
_s(309, "getcpu", B(0, W, INT), B(1, W, INT))
_s(310, "process_vm_readv", Iov(1, 2, W), B(3, R, L(4, 16)))  # remote iovec array: read here
_s(311, "process_vm_writev", Iov(1, 2, R), B(3, R, L(4, 16)))
_s(312, "kcmp", B(4, R, F(12)))  # KCMP_EPOLL_TFD: struct kcmp_epoll_slot
_s(314, "sched_setattr", B(1, U, S))  # size read from attr, written back on E2BIG
_s(315, "sched_getattr", B(1, W, L(2)))
_s(317, "seccomp", OPAQUE)
_s(318, "getrandom", B(0, W, L(1), True))
_s(321, "bpf", OPAQUE)
_s(322, "execveat", _path(1), OPAQUE)
_s(323, "userfaultfd")
_s(324, "membarrier")
_s(334, "rseq", B(0, A, L(1)))
_s(434, "pidfd_open")
_s(435, "clone3", B(0, R, L(1)), OPAQUE)  # clone_args holds pidfd/tid/stack pointers
_s(438, "pidfd_getfd")
_s(444, "landlock_create_ruleset", B(0, R, L(1)))
_s(445, "landlock_add_rule", B(2, R, S))  # struct by rule_type (12 or 16 bytes)
_s(446, "landlock_restrict_self")
_s(459, "lsm_get_self_attr", B(1, W, S), B(2, U, INT))  # ctx of *size bytes
_s(460, "lsm_set_self_attr", B(1, R, L(2)))
_s(461, "lsm_list_modules", B(0, W, S), B(1, U, INT))
# Called only from the kernel's uprobe trampolines (seccomp lets them through unfiltered);
# like rt_sigreturn they take no arguments, read and rewrite the stack and set registers.
_s(335, "uretprobe")
_s(336, "uprobe")

# -- futexes -------------------------------------------------------------------------------------
_s(202, "futex", B(0, U, INT), B(3, R, TIMESPEC), B(4, U, INT))  # refined by operation
_s(449, "futex_waitv", Waitv(0, 1), B(3, R, TIMESPEC))
_s(454, "futex_wake", B(0, A, INT))  # uaddr, mask, nr, flags
_s(455, "futex_wait", B(0, R, INT), B(4, R, TIMESPEC))  # uaddr, val, mask, flags, timeout, clockid
_s(456, "futex_requeue", Waitv(0, -1))

# -- memory --------------------------------------------------------------------------------------
# Addresses that only name a range are not dereferenced: no use.
_s(9, "mmap")
_s(10, "mprotect")
_s(11, "munmap")
_s(12, "brk")
_s(25, "mremap")
_s(26, "msync")
_s(27, "mincore", B(2, W, S))  # one byte a page of the range
_s(28, "madvise")
_s(149, "mlock")
_s(150, "munlock")
_s(151, "mlockall")
_s(152, "munlockall")
_s(216, "remap_file_pages")
# Node bitmaps of maxnode bits: whole longs, a size ArgLen cannot say.
_s(237, "mbind", B(3, R, S))
_s(238, "set_mempolicy", B(1, R, S))
# MPOL_F_NODE | MPOL_F_ADDR faults in the page at addr to find its node.
_s(239, "get_mempolicy", B(0, W, INT), B(1, W, S), B(3, A, F(1)))
_s(256, "migrate_pages", B(2, R, S), B(3, R, S))
_s(279, "move_pages", OPAQUE)  # arrays of addresses, nodes and status
_s(325, "mlock2")
_s(329, "pkey_mprotect")
_s(330, "pkey_alloc")
_s(331, "pkey_free")
_s(440, "process_madvise", B(1, R, L(2, 16)), OPAQUE)  # ranges of another process
_s(447, "memfd_secret")
_s(448, "process_mrelease")
_s(450, "set_mempolicy_home_node")
_s(453, "map_shadow_stack")  # writes only into the new mapping it creates
_s(462, "mseal")

# -- System V and POSIX IPC ----------------------------------------------------------------------
_s(29, "shmget")
_s(30, "shmat")
_s(31, "shmctl", B(2, U, F(112)))  # struct shmid64_ds (the largest form)
_s(64, "semget")
_s(65, "semop", B(1, R, L(2, SEMBUF)))
_s(66, "semctl", B(3, U, S))  # semid_ds, seminfo or the GETALL/SETALL array
_s(67, "shmdt")
_s(68, "msgget")
_s(69, "msgsnd", B(1, R, S))  # mtype and msgsz bytes of mtext
_s(70, "msgrcv", B(1, W, S))
_s(71, "msgctl", B(2, U, F(120)))  # struct msqid64_ds (the largest form)
_s(220, "semtimedop", B(1, R, L(2, SEMBUF)), B(3, R, TIMESPEC))
_s(240, "mq_open", _path(0), B(3, R, MQ_ATTR))
_s(241, "mq_unlink", _path(0))
_s(242, "mq_timedsend", B(1, R, L(2)), B(4, R, TIMESPEC))
_s(243, "mq_timedreceive", B(1, W, L(2), True), B(3, W, INT), B(4, R, TIMESPEC))
_s(244, "mq_notify", B(1, R, SIGEVENT), OPAQUE)  # SIGEV_THREAD: a cookie at sigev_value
_s(245, "mq_getsetattr", B(1, R, MQ_ATTR), B(2, W, MQ_ATTR))

# -- keys ----------------------------------------------------------------------------------------
_s(248, "add_key", _path(0), _path(1), B(2, R, L(3)))
_s(249, "request_key", _path(0), _path(1), _path(2))
_s(250, "keyctl", OPAQUE)

# -- numbers without an implementation (ENOSYS) --------------------------------------------------
_s(174, "create_module")
_s(177, "get_kernel_syms")
_s(178, "query_module")
_s(180, "nfsservctl")
_s(181, "getpmsg")
_s(182, "putpmsg")
_s(183, "afs_syscall")
_s(184, "tuxcall")
_s(185, "security")
_s(205, "set_thread_area")  # i386 only
_s(211, "get_thread_area")  # i386 only
_s(212, "lookup_dcookie")  # removed with the dcookies code
_s(236, "vserver")


SYSCALLS: dict[int, Syscall] = {s.nr: s for s in sorted(_ALL, key=lambda s: s.nr)}
BY_NAME: dict[str, Syscall] = {s.name: s for s in SYSCALLS.values()}


def lookup(nr: int) -> Syscall | None:
    """The x86-64 syscall numbered ``nr``, or ``None`` if the kernel assigns no such number."""
    return SYSCALLS.get(nr)


#: The i386 (``int 0x80``) numbers of the mapping family, with ``execve`` and the exits.
#: 90 is ``old_mmap``: one pointer to a struct of the six arguments.
I386_NAMES: dict[int, str] = {
    1: "exit",
    11: "execve",
    90: "mmap",
    91: "munmap",
    117: "ipc",
    125: "mprotect",
    163: "mremap",
    174: "rt_sigaction",
    192: "mmap2",
    252: "exit_group",
    380: "pkey_mprotect",
    397: "shmat",
    398: "shmdt",
}


#: How many arguments the syscalls with an :class:`Opaque` use take (``SYSCALL_DEFINEn``):
#: registers past them hold whatever the caller left there, not pointers to look at.
ARG_COUNTS: dict[str, int] = {
    "ioctl": 3, "execve": 3, "ptrace": 4, "_sysctl": 1, "prctl": 5, "mount": 5, "quotactl": 4,
    "io_submit": 3, "restart_syscall": 0, "mq_notify": 2, "kexec_load": 4, "keyctl": 5,
    "pselect6": 6, "move_pages": 6, "perf_event_open": 5, "seccomp": 3, "bpf": 3, "execveat": 5,
    "io_pgetevents": 6, "io_uring_setup": 2, "io_uring_enter": 6, "io_uring_register": 4,
    "fsconfig": 5, "clone3": 2, "process_madvise": 5, "quotactl_fd": 4, "setxattrat": 6,
    "getxattrat": 6,
}  # fmt: skip


def syscall_name(number: int) -> str:
    sc = SYSCALLS.get(number)
    return sc.name if sc is not None else f"syscall_{number}"
