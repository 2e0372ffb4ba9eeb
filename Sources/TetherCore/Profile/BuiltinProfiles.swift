/// The profiles Tether ships, by name: `default`, `strict` and `none`.
public enum BuiltinProfiles {
    public static let names = ["default", "strict", "none"]

    public static func named(_ name: String) -> SeccompProfile? {
        switch name {
        case "default": return `default`
        case "strict": return strict
        case "none": return none
        default: return nil
        }
    }

    // MARK: - default

    /// What a typical agent runtime needs: a shell, Python, git, curl, a compiler, threads,
    /// sockets. Anything not listed returns ENOSYS, so runtimes take their fallback path for
    /// syscalls newer than this list (glibc's clone3 → clone); the escape and kernel-attack
    /// surface below is refused with EPERM.
    public static let `default` = SeccompProfile(
        defaultAction: .errno,
        defaultErrnoRet: ErrnoCode.ENOSYS,
        architectures: ["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"],
        syscalls: [
            SyscallRule(
                names: defaultAllowed, action: .allow,
                comment: "files, memory, time, signals, threads, sockets, processes"),
            SyscallRule(names: ["arch_prctl"], action: .allow, includes: RuleFilter(arches: ["amd64"])),
            SyscallRule(
                names: ["personality"], action: .allow,
                args: [ArgCondition(index: 0, value: 0x0, op: .equal)],
                comment: "PER_LINUX"),
            SyscallRule(
                names: ["personality"], action: .allow,
                args: [ArgCondition(index: 0, value: 0x8, op: .equal)],
                comment: "PER_LINUX32"),
            SyscallRule(
                names: ["personality"], action: .allow,
                args: [ArgCondition(index: 0, value: 0x20000, op: .equal)],
                comment: "UNAME26"),
            SyscallRule(
                names: ["personality"], action: .allow,
                args: [ArgCondition(index: 0, value: 0xffff_ffff, op: .equal)],
                comment: "query the persona"),
            SyscallRule(
                names: ["clone"], action: .allow,
                args: [ArgCondition(index: 0, value: namespaceFlags, valueTwo: 0, op: .maskedEqual)],
                comment: "fork and threads; not into new namespaces"),
        ]
            + namespaceFlagList.map { flag in
                SyscallRule(
                    names: ["clone"], action: .errno, errnoRet: ErrnoCode.EPERM,
                    args: [ArgCondition(index: 0, value: flag.value, valueTwo: flag.value, op: .maskedEqual)],
                    comment: "clone into a new namespace (\(flag.name))")
            } + [
                SyscallRule(
                    names: ["clone3"], action: .errno, errnoRet: ErrnoCode.ENOSYS,
                    comment: "its flags are in memory a filter cannot read: ENOSYS makes libc fall back to clone"),
                SyscallRule(
                    names: defaultDenied, action: .errno, errnoRet: ErrnoCode.EPERM,
                    comment: "escape from the process group, other processes' memory, kernel attack surface, the host"),
            ] + terminalInjection,
        comment: "Tether default: a typical agent runtime; no escape from the process group, no namespaces, no kernel attack surface"
    )

    /// `ioctl(TIOCSTI)` and `ioctl(TIOCLINUX)` refused: under `default` and `strict` alike.
    static let terminalInjection: [SyscallRule] = [
        SyscallRule(
            names: ["ioctl"], action: .errno, errnoRet: ErrnoCode.EPERM,
            args: [ArgCondition(index: 1, value: 0xffff_ffff, valueTwo: TIOCSTI, op: .maskedEqual)],
            comment: "TIOCSTI: typing into the terminal of the supervisor"),
        SyscallRule(
            names: ["ioctl"], action: .errno, errnoRet: ErrnoCode.EPERM,
            args: [ArgCondition(index: 1, value: 0xffff_ffff, valueTwo: TIOCLINUX, op: .maskedEqual)],
            comment: "TIOCLINUX: console selection and pasting"),
    ]

    /// `ioctl` request numbers compared on the low 32 bits only: the kernel truncates `cmd` to an
    /// unsigned int, so a filter comparing all 64 bits could be passed with high bits set.
    static let TIOCSTI: UInt64 = 0x5412
    static let TIOCLINUX: UInt64 = 0x541C

    public static let namespaceFlagList: [(name: String, value: UInt64)] = [
        ("CLONE_NEWNS", 0x0002_0000), ("CLONE_NEWCGROUP", 0x0200_0000), ("CLONE_NEWUTS", 0x0400_0000),
        ("CLONE_NEWIPC", 0x0800_0000), ("CLONE_NEWUSER", 0x1000_0000), ("CLONE_NEWPID", 0x2000_0000),
        ("CLONE_NEWNET", 0x4000_0000),
    ]
    static let namespaceFlags: UInt64 = namespaceFlagList.reduce(0) { $0 | $1.value }

    /// Refused with EPERM by `default`.
    public static let defaultDenied: [String] = [
        // leaving the process group the supervisor signals
        "setsid", "setpgid",
        // other processes' memory and descriptors
        "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "kcmp",
        // kernel attack surface
        "io_uring_setup", "io_uring_enter", "io_uring_register", "bpf", "perf_event_open",
        "userfaultfd", "keyctl", "add_key", "request_key", "lookup_dcookie", "uselib",
        "modify_ldt", "iopl", "ioperm", "open_by_handle_at", "fanotify_init",
        // namespaces and mounts
        "unshare", "setns", "mount", "umount2", "move_mount", "open_tree", "fsopen", "fsconfig",
        "fsmount", "fspick", "mount_setattr", "pivot_root", "chroot",
        // the host
        "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load", "reboot",
        "swapon", "swapoff", "acct", "quotactl", "settimeofday", "clock_settime", "clock_adjtime",
        "adjtimex", "sethostname", "setdomainname", "syslog", "vhangup", "nfsservctl",
    ]

    /// Allowed by `default`.
    public static let defaultAllowed: [String] = [
        "accept", "accept4", "access", "alarm", "bind", "brk", "capget", "capset", "chdir", "chmod",
        "chown", "clock_getres", "clock_gettime", "clock_nanosleep", "close", "close_range",
        "connect", "copy_file_range", "creat", "dup", "dup2", "dup3", "epoll_create",
        "epoll_create1", "epoll_ctl", "epoll_pwait", "epoll_pwait2", "epoll_wait", "eventfd",
        "eventfd2", "execve", "execveat", "exit", "exit_group", "faccessat", "faccessat2",
        "fadvise64", "fallocate", "fanotify_mark", "fchdir", "fchmod", "fchmodat", "fchown",
        "fchownat", "fcntl", "fdatasync", "fgetxattr", "flistxattr", "flock", "fork",
        "fremovexattr", "fsetxattr", "fstat", "fstatfs", "fsync", "ftruncate", "futex",
        "futex_waitv", "futimesat", "get_mempolicy", "get_robust_list", "getcpu", "getcwd",
        "getdents", "getdents64", "getegid", "geteuid", "getgid", "getgroups", "getitimer",
        "getpeername", "getpgid", "getpgrp", "getpid", "getppid", "getpriority", "getrandom",
        "getresgid", "getresuid", "getrlimit", "getrusage", "getsid", "getsockname", "getsockopt",
        "gettid", "gettimeofday", "getuid", "getxattr", "inotify_add_watch", "inotify_init",
        "inotify_init1", "inotify_rm_watch", "io_cancel", "io_destroy", "io_getevents",
        "io_pgetevents", "io_setup", "io_submit", "ioctl", "ioprio_get", "ioprio_set", "kill",
        "landlock_add_rule", "landlock_create_ruleset", "landlock_restrict_self", "lchown",
        "lgetxattr", "link", "linkat", "listen", "listxattr", "llistxattr", "lremovexattr", "lseek",
        "lsetxattr", "lstat", "madvise", "mbind", "membarrier", "memfd_create", "mincore", "mkdir",
        "mkdirat", "mknod", "mknodat", "mlock", "mlock2", "mlockall", "mmap", "mprotect",
        "mq_getsetattr", "mq_notify", "mq_open", "mq_timedreceive", "mq_timedsend", "mq_unlink",
        "mremap", "msgctl", "msgget", "msgrcv", "msgsnd", "msync", "munlock", "munlockall",
        "munmap", "name_to_handle_at", "nanosleep", "newfstatat", "open", "openat", "openat2",
        "pause", "pidfd_open", "pidfd_send_signal", "pipe", "pipe2", "pkey_alloc", "pkey_free",
        "pkey_mprotect", "poll", "ppoll", "prctl", "pread64", "preadv", "preadv2", "prlimit64",
        "process_mrelease", "pselect6", "pwrite64", "pwritev", "pwritev2", "read", "readahead",
        "readlink", "readlinkat", "readv", "recvfrom", "recvmmsg", "recvmsg", "remap_file_pages",
        "removexattr", "rename", "renameat", "renameat2", "restart_syscall", "rmdir", "rseq",
        "rt_sigaction", "rt_sigpending", "rt_sigprocmask", "rt_sigqueueinfo", "rt_sigreturn",
        "rt_sigsuspend", "rt_sigtimedwait", "rt_tgsigqueueinfo", "sched_get_priority_max",
        "sched_get_priority_min", "sched_getaffinity", "sched_getattr", "sched_getparam",
        "sched_getscheduler", "sched_rr_get_interval", "sched_setaffinity", "sched_setattr",
        "sched_setparam", "sched_setscheduler", "sched_yield", "seccomp", "select", "semctl", "semget",
        "semop", "semtimedop", "sendfile", "sendmmsg", "sendmsg", "sendto", "set_mempolicy",
        "set_robust_list", "set_tid_address", "setfsgid", "setfsuid", "setgid", "setgroups",
        "setitimer", "setpriority", "setregid", "setresgid", "setresuid", "setreuid", "setrlimit",
        "setsockopt", "setuid", "setxattr", "shmat", "shmctl", "shmdt", "shmget", "shutdown",
        "sigaltstack", "signalfd", "signalfd4", "socket", "socketpair", "splice", "stat", "statfs",
        "statx", "symlink", "symlinkat", "sync", "sync_file_range", "syncfs", "sysinfo", "tee",
        "tgkill", "time", "timer_create", "timer_delete", "timer_getoverrun", "timer_gettime",
        "timer_settime", "timerfd_create", "timerfd_gettime", "timerfd_settime", "times", "tkill",
        "truncate", "umask", "uname", "unlink", "unlinkat", "utime", "utimensat", "utimes", "vfork",
        "vmsplice", "wait4", "waitid", "write", "writev",
    ]

    // MARK: - strict

    /// The descriptor through which `strict` allows its one exec.
    public static let strictExecFD: Int32 = 253

    /// Compute and file I/O: no network, no new processes, no exec of another program. The
    /// worker's own program is exec'd through `strictExecFD`, which the filter keeps from being
    /// closed or replaced (fd arguments compared on their low 32 bits, as the kernel reads them).
    public static let strict = SeccompProfile(
        defaultAction: .errno,
        defaultErrnoRet: ErrnoCode.EPERM,
        architectures: ["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"],
        syscalls: [
            SyscallRule(names: strictAllowed, action: .allow, comment: "files, memory, time, signals to itself, threads"),
            SyscallRule(names: ["arch_prctl"], action: .allow, includes: RuleFilter(arches: ["amd64"])),
            SyscallRule(
                names: ["clone"], action: .allow,
                args: [ArgCondition(index: 0, value: 0x10000, valueTwo: 0x10000, op: .maskedEqual)],
                comment: "threads only (CLONE_THREAD): no new processes"),
            SyscallRule(
                names: ["clone3"], action: .errno, errnoRet: ErrnoCode.ENOSYS,
                comment: "ENOSYS makes libc fall back to clone, whose flags the filter can read"),
            SyscallRule(
                names: ["execveat"], action: .allow,
                args: [
                    ArgCondition(index: 0, value: UInt64(strictExecFD), op: .equal),
                    ArgCondition(index: 4, value: 0x1000, valueTwo: 0x1000, op: .maskedEqual),
                ],
                comment:
                    "the one exec: the worker's own program, through its descriptor (AT_EMPTY_PATH); an absolute path would ignore the descriptor, so Landlock allows executing that program and its ELF interpreter only"
            ),
            SyscallRule(
                names: ["close"], action: .errno, errnoRet: ErrnoCode.EPERM,
                args: [ArgCondition(index: 0, value: 0xffff_ffff, valueTwo: UInt64(strictExecFD), op: .maskedEqual)],
                comment: "keep the exec descriptor"),
            SyscallRule(
                names: ["dup2"], action: .errno, errnoRet: ErrnoCode.EPERM,
                args: [ArgCondition(index: 1, value: 0xffff_ffff, valueTwo: UInt64(strictExecFD), op: .maskedEqual)],
                comment: "keep the exec descriptor"),
            SyscallRule(
                names: ["dup3"], action: .errno, errnoRet: ErrnoCode.EPERM,
                args: [ArgCondition(index: 1, value: 0xffff_ffff, valueTwo: UInt64(strictExecFD), op: .maskedEqual)],
                comment: "keep the exec descriptor"),
        ] + terminalInjection,
        execFD: strictExecFD,
        comment: "Tether strict: compute and file I/O only; no network, no new processes, no exec of another program"
    )

    /// Allowed by `strict`.
    public static let strictAllowed: [String] = [
        "access", "brk", "chdir", "chmod", "clock_getres", "clock_gettime", "clock_nanosleep",
        "close", "copy_file_range", "creat", "dup", "dup2", "dup3", "epoll_create1", "epoll_ctl",
        "epoll_pwait", "epoll_wait", "eventfd2", "exit", "exit_group", "faccessat", "faccessat2",
        "fadvise64", "fallocate", "fchdir", "fchmod", "fchmodat", "fcntl", "fdatasync", "flock",
        "fstat", "fstatfs", "fsync", "ftruncate", "futex", "get_robust_list", "getcpu", "getcwd",
        "getdents", "getdents64", "getegid", "geteuid", "getgid", "getgroups", "getpgrp",
        "getpid", "getppid", "getrandom", "getresgid", "getresuid", "getrlimit", "getrusage",
        "gettid", "gettimeofday", "getuid", "ioctl", "link", "linkat", "lseek", "lstat",
        "madvise", "membarrier", "memfd_create", "mincore", "mkdir", "mkdirat", "mmap",
        "mprotect", "mremap", "msync", "munmap", "nanosleep", "newfstatat", "open", "openat",
        "pipe", "pipe2", "poll", "ppoll", "pread64", "preadv", "preadv2", "prlimit64", "pselect6",
        "pwrite64", "pwritev", "pwritev2", "read", "readlink", "readlinkat", "readv", "rename",
        "renameat", "renameat2", "restart_syscall", "rmdir", "rseq", "rt_sigaction",
        "rt_sigpending", "rt_sigprocmask", "rt_sigreturn", "rt_sigsuspend", "rt_sigtimedwait",
        "sched_getaffinity", "sched_yield", "select", "sendfile", "set_robust_list",
        "set_tid_address", "sigaltstack", "splice", "stat", "statfs", "statx", "symlink",
        "symlinkat", "sysinfo", "tee", "tgkill", "time", "timerfd_create", "timerfd_gettime",
        "timerfd_settime", "truncate", "umask", "uname", "unlink", "unlinkat", "utimensat",
        "write", "writev",
    ]

    // MARK: - none

    /// Every syscall allowed. Only the ABI check remains: a syscall through x32 or `int 0x80`
    /// still kills the process. Tether logs loudly whenever it is used.
    public static let none = SeccompProfile(
        defaultAction: .allow,
        architectures: ["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"],
        comment: "Tether none: no syscall filtering beyond the foreign-ABI check"
    )
}
