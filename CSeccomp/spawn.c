// The fork/exec path, parent side: tether_spawn clones the child (into its cgroup where the
// kernel can), runs the handshake over the errno pipe, takes the gates' listener, and starts
// a contained worker's network. The child's own steps are in child.c, the namespace path's in
// contain.c.
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
