// The fork/exec child path.
//
// The supervisor is multi-threaded, so between fork and exec the child may only make
// async-signal-safe calls; and since the child shares the parent's memory until exec (vfork
// semantics, see tether_spawn), it writes to nothing but its own stack: raw syscalls and the few libc wrappers POSIX lists as safe. Nothing
// here allocates, takes a lock or calls back into Swift. Every step that can fail reports
// {stage, errno} over a CLOEXEC pipe: EOF on that pipe means execve succeeded.
#define _GNU_SOURCE
#include "child.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/close_range.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/prctl.h>
#include <sched.h>
#include <linux/sched.h>   // struct clone_args, CLONE_INTO_CGROUP
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

// Reports the failing stage to the parent and exits. write(2) and _exit(2) are async-signal-safe.
void tether_child_fail(int pipe_fd, int stage, int err) {
    int msg[2] = {stage, err};
    ssize_t n;
    do { n = write(pipe_fd, msg, sizeof msg); } while (n < 0 && errno == EINTR);
    _exit(127);
}

// write(2) of the whole buffer, retrying EINTR and short writes. 0, or -1 with errno set.
static int write_all(int fd, const char *buf, size_t len) {
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return -1;
        if (n == 0) { errno = EIO; return -1; }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

// Writes `text` to a /proc file of this process (uid_map, gid_map, setgroups).
static int write_file(const char *file, const char *text) {
    int fd = open(file, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    int rc = write_all(fd, text, strlen(text));
    int e = errno;
    close(fd);
    errno = e;
    return rc;
}

int tether_write_id_maps(const char *uid_map, const char *gid_map) {
    if (write_file("/proc/self/uid_map", uid_map) != 0) return -1;
    if (write_file("/proc/self/setgroups", "deny") != 0) return -1;
    return write_file("/proc/self/gid_map", gid_map);
}

// Marks every descriptor >= 3 close-on-exec. close_range(2) (5.11) does it in one call; the
// fallback walks up to RLIMIT_NOFILE with fcntl, both async-signal-safe.
static int child_cloexec_all(void) {
    if (syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) == 0) return 0;
    struct rlimit rl;
    if (syscall(SYS_prlimit64, 0, RLIMIT_NOFILE, NULL, &rl) != 0) return -1;
    rlim_t max = rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > 65536 ? 65536 : rl.rlim_cur;
    for (rlim_t fd = 3; fd < max; fd++) {
        int flags = fcntl((int)fd, F_GETFD);
        if (flags >= 0) (void)fcntl((int)fd, F_SETFD, flags | FD_CLOEXEC);
    }
    return 0;
}


void tether_child_enter(const struct tether_spawn_attr *a, int pipe_fd, int born_in_cgroup) {
    // 1. Signal dispositions back to default (handlers die with exec anyway; SIG_IGN would not).
    //    All signals are still blocked, as the parent blocked them around fork.
    tether_signals_all_default();

    // 1b. The supervisor's raised scheduling priority stays with the supervisor: the worker
    //     (and its init) run at the nice value the supervisor itself was started with.
    tether_child_reset_nice();

    // 2. Own process group, checked: group signals must reach the whole tree and nothing else.
    if (setpgid(0, 0) != 0) tether_child_fail(pipe_fd, TETHER_STAGE_SETPGID, errno);

    // 3. Foreground of the caller's terminal, so an interactive worker can read. SIGTTOU is
    //    blocked here, so tcsetpgrp from a background group is allowed.
    if (a->tty_fd >= 0 && tcsetpgrp(a->tty_fd, getpid()) != 0)
        tether_child_fail(pipe_fd, TETHER_STAGE_TCSETPGRP, errno);

    // 4. Into the worker's cgroup before anything of the worker runs: "0" means "this process".
    //    When the start gate holds the cgroup frozen, this process stops on its way back.
    //    Not when it was born there (tether_spawn: clone3 into the cgroup, frozen alike).
    if (a->cgroup_procs_fd >= 0 && !born_in_cgroup) {
        ssize_t n;
        do { n = write(a->cgroup_procs_fd, "0", 1); } while (n < 0 && errno == EINTR);
        if (n != 1) tether_child_fail(pipe_fd, TETHER_STAGE_CGROUP, n < 0 ? errno : EIO);
    }
}

// `fd` itself, or a copy of it on another number (the original stays open: the caller's dup2
// onto `taken` closes it) when it holds `taken`.
static int child_move_off(int fd, int taken, int pipe_fd) {
    if (fd < 0 || fd != taken) return fd;
    int moved = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    if (moved < 0) tether_child_fail(pipe_fd, TETHER_STAGE_EXEC_FD, errno);
    return moved;
}

void tether_worker_finish(const struct tether_spawn_attr *a, int pipe_fd, pid_t parent, int go_fd) {
    // 5. Resource limits.
    for (size_t i = 0; i < a->rlimit_count; i++) {
        struct rlimit rl = {.rlim_cur = a->rlimits[i].soft, .rlim_max = a->rlimits[i].hard};
        if (syscall(SYS_prlimit64, 0, a->rlimits[i].resource, &rl, NULL) != 0)
            tether_child_fail(pipe_fd, TETHER_STAGE_RLIMIT, errno);
    }

    // 6. Credentials, through raw syscalls: glibc's wrappers broadcast to all threads with a
    //    signal, which is not a thing to do in a forked child. Groups first, uid last.
    if (a->set_ids) {
        if (syscall(SYS_setgroups, 0, NULL) != 0) tether_child_fail(pipe_fd, TETHER_STAGE_SETGROUPS, errno);
        if (syscall(SYS_setresgid, a->gid, a->gid, a->gid) != 0)
            tether_child_fail(pipe_fd, TETHER_STAGE_SETGID, errno);
        if (syscall(SYS_setresuid, a->uid, a->uid, a->uid) != 0)
            tether_child_fail(pipe_fd, TETHER_STAGE_SETUID, errno);
    }
    // 6b. Root in a user namespace of its own: unprivileged outside (the ids just set), uid 0
    //     inside. Its capabilities reach nothing but that namespace: the mount, PID and IPC
    //     namespaces it lives in belong to the supervisor's side, so it cannot unmount what
    //     hides the supervisor's state or remount the cgroup file system.
    if (a->contain.enabled && a->contain.root_in_userns) {
        // The uid change made this memory non-dumpable, which gives /proc/self/uid_map to
        // root: dumpable again, until the exec decides afresh. It is this process's own copy
        // (a plain fork, see contain.c), and nothing of the worker runs yet to read it.
        if (prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) != 0) tether_child_fail(pipe_fd, TETHER_STAGE_ID_MAP, errno);
        if (unshare(CLONE_NEWUSER) != 0) tether_child_fail(pipe_fd, TETHER_STAGE_NAMESPACES, errno);
        if (tether_write_id_maps(a->contain.worker_uid_map, a->contain.worker_gid_map) != 0)
            tether_child_fail(pipe_fd, TETHER_STAGE_ID_MAP, errno);
        if (syscall(SYS_setresgid, 0, 0, 0) != 0) tether_child_fail(pipe_fd, TETHER_STAGE_SETGID, errno);
        if (syscall(SYS_setresuid, 0, 0, 0) != 0) tether_child_fail(pipe_fd, TETHER_STAGE_SETUID, errno);
    }

    // 7. Parent-death signal. After the credential change, which clears it. It fires when the
    //    spawning *thread* exits; TetherSystem spawns from one thread that never exits. If the
    //    parent is already gone the signal will never come: stop here. (Inside a PID namespace
    //    the init's death ends every process in it: nothing to set.)
    if (a->pdeathsig > 0 && parent > 0) {
        if (prctl(PR_SET_PDEATHSIG, a->pdeathsig, 0, 0, 0) != 0)
            tether_child_fail(pipe_fd, TETHER_STAGE_PDEATHSIG, errno);
        if (getppid() != parent) tether_child_fail(pipe_fd, TETHER_STAGE_PDEATHSIG, ESRCH);
    }

    // 8. No new privileges: setuid binaries cannot regain what was dropped, and seccomp may be
    //    installed without CAP_SYS_ADMIN.
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) tether_child_fail(pipe_fd, TETHER_STAGE_NO_NEW_PRIVS, errno);

    if (a->cwd != NULL && chdir(a->cwd) != 0) tether_child_fail(pipe_fd, TETHER_STAGE_CHDIR, errno);

    // 9. Standard streams. The parent passes descriptors >= 3, so no dup2 overwrites a source.
    for (int i = 0; i < 3; i++) {
        if (a->stdio[i] >= 0 && dup2(a->stdio[i], i) < 0) tether_child_fail(pipe_fd, TETHER_STAGE_STDIO, errno);
    }

    // 10. Nothing else of the supervisor's reaches the worker.
    if (child_cloexec_all() != 0) tether_child_fail(pipe_fd, TETHER_STAGE_CLOSE_FDS, errno);

    // 11. Profiles that forbid exec allow exactly one: execveat through this descriptor, which
    //     their filter also protects from close and dup2. dup2 closes whatever held that
    //     number, and in a supervisor holding a few hundred descriptors one this child still
    //     needs can hold it (the errno pipe, the go pipe, Landlock's ruleset, the gates' ack
    //     pipe): those move off it first. fcntl(F_DUPFD_CLOEXEC) is async-signal-safe.
    int landlock_fd = a->landlock_fd, gate_ack_fd = a->gate_ack_fd;
    if (a->exec_fd >= 0) {
        pipe_fd = child_move_off(pipe_fd, a->exec_fd, pipe_fd);
        go_fd = child_move_off(go_fd, a->exec_fd, pipe_fd);
        landlock_fd = child_move_off(landlock_fd, a->exec_fd, pipe_fd);
        gate_ack_fd = child_move_off(gate_ack_fd, a->exec_fd, pipe_fd);
        int fd = open(a->path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) tether_child_fail(pipe_fd, TETHER_STAGE_EXEC_FD, errno);
        if (fd != a->exec_fd) {
            if (dup2(fd, a->exec_fd) < 0) tether_child_fail(pipe_fd, TETHER_STAGE_EXEC_FD, errno);
            close(fd);
        } else if (fcntl(fd, F_SETFD, 0) != 0) {
            tether_child_fail(pipe_fd, TETHER_STAGE_EXEC_FD, errno);
        }
    }

    // 11b. ...and since a filter cannot read the path execveat is given (an absolute one
    //      ignores the descriptor), Landlock keeps every other program from being executed.
    if (landlock_fd >= 0) {
        if (syscall(446 /* landlock_restrict_self */, landlock_fd, 0) != 0)
            tether_child_fail(pipe_fd, TETHER_STAGE_LANDLOCK, errno);
    }

    // 11c. Inside a namespace: nothing of the worker runs until its init is through its exec
    //      and no longer dumpable (until then PID 1 could be attached to by the worker's uid).
    //      EOF: the init never got there.
    if (go_fd >= 0) {
        char go;
        ssize_t n;
        do { n = read(go_fd, &go, 1); } while (n < 0 && errno == EINTR);
        if (n != 1) tether_child_fail(pipe_fd, TETHER_STAGE_INIT, n < 0 ? errno : ECHILD);
        close(go_fd);
    }

    // 12. Unblock signals before the filter, so the filter does not need to allow it.
    sigset_t none;
    sigemptyset(&none);
    if (sigprocmask(SIG_SETMASK, &none, NULL) != 0) tether_child_fail(pipe_fd, TETHER_STAGE_SIGNALS, errno);

    // 13. The seccomp filters, compiled in the parent. From here on every syscall passes them:
    //     only write (to report), execve/execveat and exit_group follow. The gates' filter
    //     first: it is installed with seccomp(2), which the profile may refuse.
    tether_child_install_gate(a, pipe_fd, gate_ack_fd);
    for (size_t i = 0; i < a->filter_count; i++) {
        if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &a->filters[i], 0, 0) != 0)
            tether_child_fail(pipe_fd, TETHER_STAGE_SECCOMP, errno);
    }

    if (a->exec_fd >= 0) {
        syscall(SYS_execveat, a->exec_fd, "", a->argv, a->envp, AT_EMPTY_PATH);
    } else {
        execve(a->path, a->argv, a->envp);
    }
    tether_child_fail(pipe_fd, TETHER_STAGE_EXEC, errno);
}

struct child_args {
    const struct tether_spawn_attr *attr;
    int pipe_fd;
    int read_fd;
    pid_t parent;
    void *worker_stack_top;   // the namespace path: the stack its init forks the worker onto
    int born_in_cgroup;       // cloned into the worker's cgroup: nothing to move
};

static int child_entry(void *p) {
    struct child_args *a = p;
    // Clone without CLONE_FILES copies the descriptor table, so closing the read end here
    // leaves the parent's open.
    close(a->read_fd);
    if (a->attr->contain.enabled) tether_contained_child(a->attr, a->pipe_fd, a->worker_stack_top, a->born_in_cgroup);
    tether_child_enter(a->attr, a->pipe_fd, a->born_in_cgroup);
    tether_worker_finish(a->attr, a->pipe_fd, a->parent, -1);
}

// clone3 with CLONE_INTO_CGROUP: the child is born in the worker's cgroup. Moving a process
// there instead (a write to cgroup.procs) takes the kernel's cgroup_threadgroup_rwsem for
// writing, and the first writer after a quiet spell waits out an RCU grace period: ~7 ms of
// every launch here (bench/probes/cgroup_join.c), against ~0.4 for the clone.
//
// glibc has no clone3 wrapper that runs a function on a new stack, so this is the x86_64
// trampoline glibc's own clone3 uses: the child returns from the syscall on `stack` with the
// parent's registers, calls fn(arg) from the two callee-saved registers holding them, and
// exits with its result; it never returns into this frame (whose stack it does not own).
// Elsewhere, and on a kernel without CLONE_INTO_CGROUP (before 5.7, or clone3 filtered
// away), tether_spawn falls back to clone and the child moves itself.
static pid_t clone_into_cgroup(int (*fn)(void *), void *arg, void *stack, size_t stack_size, int flags, int cgroup_fd) {
#if defined(__x86_64__) && defined(SYS_clone3) && defined(CLONE_INTO_CGROUP)
    struct clone_args ca;
    memset(&ca, 0, sizeof ca);
    ca.flags = (uint64_t)(flags & ~CSIGNAL) | CLONE_INTO_CGROUP;
    ca.exit_signal = (uint64_t)(flags & CSIGNAL);
    ca.stack = (uint64_t)(uintptr_t)stack;
    ca.stack_size = stack_size;
    ca.cgroup = (uint64_t)cgroup_fd;
    register long r12 __asm__("r12") = (long)fn;
    register long r13 __asm__("r13") = (long)arg;
    long ret;
    __asm__ volatile(
        "syscall\n\t"
        "test %%rax, %%rax\n\t"
        "jnz 1f\n\t"
        // The child, on its new stack (16-byte aligned: the top of an mmap'ed region).
        "xor %%ebp, %%ebp\n\t"
        "mov %%r13, %%rdi\n\t"
        "call *%%r12\n\t"
        "mov %%eax, %%edi\n\t"
        "mov %[exit], %%eax\n\t"
        "syscall\n\t"
        "hlt\n"
        "1:"
        : "=a"(ret)
        : "a"((long)SYS_clone3), "D"(&ca), "S"(sizeof ca), "r"(r12), "r"(r13), [exit] "i"(SYS_exit)
        : "rcx", "r11", "memory");
    if (ret < 0) {
        errno = (int)-ret;
        return -1;
    }
    return (pid_t)ret;
#else
    (void)fn; (void)arg; (void)stack; (void)stack_size; (void)flags; (void)cgroup_fd;
    errno = ENOSYS;
    return -1;
#endif
}

static int reap(pid_t pid) {
    int status;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) return -1;
    }
    return 0;
}

// One {stage, errno} message from the errno pipe: its size, or less at EOF.
static size_t read_message(int fd, int msg[2]) {
    size_t got = 0;
    while (got < 2 * sizeof(int)) {
        ssize_t n = read(fd, (char *)msg + got, 2 * sizeof(int) - got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        got += (size_t)n;
    }
    return got;
}

int tether_spawn(const struct tether_spawn_attr *attr, pid_t *pid_out, int *pidfd_out, int *gate_listener,
                 int *net_pidfd, int *net_exit_fd, int *stage, int *err) {
    *gate_listener = -1;
    *net_pidfd = -1;
    *net_exit_fd = -1;
    *stage = TETHER_STAGE_NONE;
    *err = 0;
    int pipe_fds[2];
    if (pipe2(pipe_fds, O_CLOEXEC) != 0) {
        *stage = TETHER_STAGE_PIPE;
        *err = errno;
        return -1;
    }
    pid_t parent = getpid();

    // Block every signal around the clone: the child must not run a handler the parent
    // installed before it has reset the dispositions.
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);

    // vfork semantics, as glibc's posix_spawn: CLONE_VM shares the address space, so nothing is
    // copied (a plain fork of a large Swift process costs milliseconds in page tables and
    // copy-on-write faults), and CLONE_VFORK suspends this thread until the child has exec'd or
    // exited. The child runs on its own stack and writes nothing of the parent's but this
    // thread's errno; no signal handler can run in it (all blocked, then all reset).
    // The namespace path needs a second stack: its init forks the worker the same way, and
    // both run until the worker has exec'd, while this thread is suspended.
    const size_t stack_size = 256 * 1024;
    const int contained = attr->contain.enabled;
    const size_t map_size = contained ? 2 * stack_size : stack_size;
    void *stack = mmap(NULL, map_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    struct child_args args = {.attr = attr, .pipe_fd = pipe_fds[1], .read_fd = pipe_fds[0], .parent = parent,
                              .worker_stack_top = stack == MAP_FAILED ? NULL : (char *)stack + map_size};
    int flags = CLONE_VM | CLONE_VFORK | SIGCHLD;
    // Gates: the parent copies the listener out of the child while the child waits, so the
    // parent cannot be suspended until exec. The child gets its own copy of the memory.
    struct tether_spawn_attr local = *attr;
    int ack[2] = {-1, -1};
    if (attr->gate_filter != NULL) {
        flags &= ~(CLONE_VM | CLONE_VFORK);
        if (pipe2(ack, O_CLOEXEC) != 0) {
            *stage = TETHER_STAGE_PIPE;
            *err = errno;
            close(pipe_fds[0]);
            close(pipe_fds[1]);
            return -1;
        }
        local.gate_ack_fd = ack[0];
        args.attr = &local;
    }
    // The network stack: the worker asks for it on the errno pipe and waits on this pipe.
    int net_ack[2] = {-1, -1};
    if (contained && attr->contain.new_net_ns && attr->contain.net_helper != NULL) {
        if (pipe2(net_ack, O_CLOEXEC) != 0) {
            *stage = TETHER_STAGE_PIPE;
            *err = errno;
            close(pipe_fds[0]);
            close(pipe_fds[1]);
            if (ack[0] >= 0) { close(ack[0]); close(ack[1]); }
            return -1;
        }
        local.contain.net_ack_fd = net_ack[0];
        args.attr = &local;
    }
    if (contained) {
        flags |= CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWIPC;
        if (attr->contain.new_net_ns) flags |= CLONE_NEWNET;
        if (attr->contain.new_user_ns) flags |= CLONE_NEWUSER;
        // A user namespace map is written through /proc/self, whose files belong to root while
        // the memory is not dumpable — and the supervisor's is not (it holds the agent key).
        // So where a map is written the child gets a copy of the memory instead (a plain fork:
        // page tables only) and makes that copy dumpable until it execs.
        if (attr->contain.new_user_ns || attr->contain.root_in_userns) flags &= ~(CLONE_VM | CLONE_VFORK);
    }
    pid_t pid = -1;
    int fork_errno = ENOMEM;
    if (stack != MAP_FAILED) {
        if (attr->cgroup_dir_fd >= 0 && attr->cgroup_procs_fd >= 0) {
            // Set before the clone: a child without CLONE_VM reads its copy of `args`.
            args.born_in_cgroup = 1;
            pid = clone_into_cgroup(child_entry, &args, stack, stack_size, flags, attr->cgroup_dir_fd);
            if (pid < 0) args.born_in_cgroup = 0;   // no child: the plain clone below, which moves itself
        }
        if (pid < 0) pid = clone(child_entry, (char *)stack + stack_size, flags, &args);
        fork_errno = errno;
        munmap(stack, map_size);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    close(pipe_fds[1]);
    if (ack[0] >= 0) close(ack[0]);
    if (net_ack[0] >= 0) close(net_ack[0]);
    if (pid < 0) {
        if (ack[1] >= 0) close(ack[1]);
        if (net_ack[1] >= 0) close(net_ack[1]);
        close(pipe_fds[0]);
        *stage = contained ? TETHER_STAGE_NAMESPACES : TETHER_STAGE_FORK;
        *err = fork_errno;
        return -1;
    }
    // The parent sets the group too, so a signal to -pid right after we return cannot miss.
    // EACCES (the child already exec'd) and ESRCH are fine: the child set it itself.
    (void)setpgid(pid, pid);

    int msg[2];
    size_t got;
    int listener = -1;
    int net_pidfd_local = -1, net_exit_local = -1;
    for (;;) {
        got = read_message(pipe_fds[0], msg);
        if (got == sizeof msg && msg[0] == TETHER_MSG_NETWORK && net_ack[1] >= 0) {
            // The worker's namespace is complete: its stack joins it through the init's pid.
            // An unprivileged stack needs a dumpable process to join through: the worker-to-be
            // (the init's child), which made itself so; root's joins through the init.
            pid_t member = attr->contain.net_helper->join_userns ? tether_find_child(pid) : pid;
            int rc = member > 0 ? tether_net_start(attr->contain.net_helper, member, &net_pidfd_local, &net_exit_local) : -ESRCH;
            int e = rc < 0 ? -rc : 0;
            if (rc == 0) {
                ssize_t n;
                do { n = write(net_ack[1], "1", 1); } while (n < 0 && errno == EINTR);
                if (n != 1) e = n < 0 ? errno : EIO;
            }
            close(net_ack[1]);
            net_ack[1] = -1;
            if (e != 0) {
                kill(pid, SIGKILL);
                reap(pid);
                close(pipe_fds[0]);
                if (ack[1] >= 0) close(ack[1]);
                tether_net_stop(net_pidfd_local, net_exit_local);
                *stage = TETHER_STAGE_NETWORK;
                *err = e;
                return -1;
            }
            continue;
        }
        if (got != sizeof msg || msg[0] != TETHER_MSG_LISTENER || ack[1] < 0) break;
        // The gates' listener, in the worker (inside a namespace: the init's child).
        pid_t owner = contained ? tether_find_child(pid) : pid;
        int l = owner > 0 ? tether_gate_take_listener(owner, msg[1]) : -ESRCH;
        int e = l < 0 ? -l : 0;
        if (l >= 0) {
            listener = l;
            ssize_t n;
            do { n = write(ack[1], "1", 1); } while (n < 0 && errno == EINTR);
            if (n != 1) e = n < 0 ? errno : EIO;
        }
        close(ack[1]);
        ack[1] = -1;
        if (e == 0 && attr->gate_serves_exec) {
            int rc = tether_gate_serve_exec(listener, pipe_fds[0]);
            if (rc < 0) e = -rc;
        }
        if (e != 0) {
            // Killing the first process ends a namespace's every process with it.
            kill(pid, SIGKILL);
            reap(pid);
            close(pipe_fds[0]);
            if (listener >= 0) close(listener);
            if (net_ack[1] >= 0) close(net_ack[1]);
            tether_net_stop(net_pidfd_local, net_exit_local);
            *stage = TETHER_STAGE_GATE_TAKE;
            *err = e;
            return -1;
        }
    }
    if (ack[1] >= 0) close(ack[1]);
    if (net_ack[1] >= 0) close(net_ack[1]);
    close(pipe_fds[0]);
    if (got == sizeof msg) {
        reap(pid);
        if (listener >= 0) close(listener);
        tether_net_stop(net_pidfd_local, net_exit_local);
        *stage = msg[0];
        *err = msg[1];
        return -1;
    }

    int pidfd = tether_pidfd_open(pid);
    if (pidfd < 0) {
        int e = errno;
        kill(pid, SIGKILL);
        reap(pid);
        if (listener >= 0) close(listener);
        tether_net_stop(net_pidfd_local, net_exit_local);
        *stage = TETHER_STAGE_PIDFD;
        *err = e;
        return -1;
    }
    *pid_out = pid;
    *pidfd_out = pidfd;
    *gate_listener = listener;
    *net_pidfd = net_pidfd_local;
    *net_exit_fd = net_exit_local;
    return 0;
}

int tether_pidfd_open(pid_t pid) {
    return (int)syscall(SYS_pidfd_open, pid, 0);
}

int tether_pidfd_send_signal(int pidfd, int sig) {
    if (syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0) == 0) return 0;
    return -errno;
}

int tether_set_child_subreaper(void) {
    return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0 ? 0 : -errno;
}

int tether_set_not_dumpable(void) {
    return prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == 0 ? 0 : -errno;
}

int tether_pidfd_wait(int pidfd, int *code, int *signaled) {
    siginfo_t info;
    memset(&info, 0, sizeof info);
    while (waitid((idtype_t)P_PIDFD, (id_t)pidfd, &info, WEXITED) != 0) {
        if (errno != EINTR) return -errno;
    }
    *signaled = info.si_code == CLD_KILLED || info.si_code == CLD_DUMPED;
    *code = info.si_status;
    return 0;
}

int tether_pidfds_poll(const int *fds, size_t count, int wake_fd, int timeout_ms, uint8_t *ready, int *woken) {
    *woken = 0;
    struct pollfd pfds[count + 1];
    for (size_t i = 0; i < count; i++) {
        pfds[i].fd = fds[i];
        pfds[i].events = POLLIN;
        pfds[i].revents = 0;
        ready[i] = 0;
    }
    pfds[count].fd = wake_fd;
    pfds[count].events = POLLIN;
    pfds[count].revents = 0;
    int n = poll(pfds, (nfds_t)(count + 1), timeout_ms);
    if (n < 0) return errno == EINTR ? 0 : -errno;
    int exited = 0;
    for (size_t i = 0; i < count; i++) {
        if (pfds[i].revents & (POLLIN | POLLHUP | POLLERR)) { ready[i] = 1; exited++; }
    }
    if (pfds[count].revents & POLLIN) {
        *woken = 1;
        uint64_t v;
        (void)!read(wake_fd, &v, sizeof v);
    }
    return exited;
}

int tether_pipe_nonblock(int fds[2]) {
    return pipe2(fds, O_CLOEXEC | O_NONBLOCK) == 0 ? 0 : -errno;
}

int tether_eventfd(void) {
    return eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
}

void tether_set_thread_name(const char *name) {
    (void)prctl(PR_SET_NAME, name, 0, 0, 0);
}

// The nice value workers start at (INT_MIN: the supervisor's own, inherited). Set once by
// the supervisor before it raises its own priority; read by the child after fork.
static volatile int worker_nice = INT_MIN;

void tether_set_worker_nice(int nice) { worker_nice = nice; }

void tether_child_reset_nice(void) {
    // Plain system calls: async-signal-safe. Leaving a real-time policy and raising a nice
    // value never need a privilege, so neither fails for want of one; were one to fail, the
    // worker would only run at the supervisor's priority, which loosens nothing of its tether.
    // The raw system call: this executable's setpriority adds the supervisor's offset.
    if (worker_nice == INT_MIN) return;
    struct sched_param none = {.sched_priority = 0};
    if (sched_getscheduler(0) != SCHED_OTHER) (void)sched_setscheduler(0, SCHED_OTHER, &none);
    (void)tether_setpriority_raw(PRIO_PROCESS, 0, worker_nice);
}
