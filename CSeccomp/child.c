// The child path's own steps, shared by both paths (the plain one in spawn.c, the namespace
// one in contain.c) and by the gates' install: everything here runs between clone and exec.
//
// The supervisor is multi-threaded, so between fork and exec the child may only make
// async-signal-safe calls; and since the child shares the parent's memory until exec (vfork
// semantics, see tether_spawn), it writes to nothing but its own stack: raw syscalls and the
// few libc wrappers POSIX lists as safe. Nothing here allocates, takes a lock or calls back into
// Swift. Every step that can fail reports {stage, errno} over a CLOEXEC pipe: EOF on that pipe
// means execve succeeded.
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

#include <sys/socket.h>

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

// The gates' filter (gate.c describes the handshake): its listener crosses to the parent.

void tether_child_install_gate(const struct tether_spawn_attr *a, int pipe_fd, int ack_fd) {
    if (a->gate_filter == NULL) return;
    // An unprivileged parent may copy a descriptor out of this process only while its memory
    // is dumpable; this is a private copy (gates never share the parent's memory, see
    // tether_spawn) and nothing of the worker runs yet. Back as it was before anything does.
    int dumpable = prctl(PR_GET_DUMPABLE, 0, 0, 0, 0);
    if (a->gate_make_dumpable && dumpable != 1 && prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) != 0)
        tether_child_fail(pipe_fd, TETHER_STAGE_GATE, errno);
    long listener = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, a->gate_filter);
    if (listener < 0) tether_child_fail(pipe_fd, TETHER_STAGE_GATE, errno);
    int msg[2] = {TETHER_MSG_LISTENER, (int)listener};
    ssize_t n;
    do { n = write(pipe_fd, msg, sizeof msg); } while (n < 0 && errno == EINTR);
    if (n != (ssize_t)sizeof msg) tether_child_fail(pipe_fd, TETHER_STAGE_GATE, n < 0 ? errno : EIO);
    char ack;
    do { n = read(ack_fd, &ack, 1); } while (n < 0 && errno == EINTR);
    // EOF: the parent could not take it. It has said why and kills this process.
    if (n != 1) tether_child_fail(pipe_fd, TETHER_STAGE_GATE, n < 0 ? errno : EPIPE);
    close((int)listener);
    close(ack_fd);
    if (a->gate_make_dumpable && dumpable != 1 && prctl(PR_SET_DUMPABLE, dumpable, 0, 0, 0) != 0)
        tether_child_fail(pipe_fd, TETHER_STAGE_GATE, errno);
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
