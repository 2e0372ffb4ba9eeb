// Gates: seccomp user notification.
//
// A worker with gates runs under one more filter, installed with SECCOMP_FILTER_FLAG_NEW_LISTENER:
// it sends the gated syscalls (and only those) to whoever holds the listener descriptor, and
// that must be the supervisor alone — a worker holding its own listener could answer itself.
// The listener is made in the child, so it has to cross to the parent before the child closes
// it and execs: the child writes its number on the errno pipe, the parent takes a copy with
// pidfd_getfd(2) and says so on the ack pipe. (sendmsg with SCM_RIGHTS would be a gated call
// itself, under a `net` gate, with nobody yet to answer it.)
//
// The filter goes on last, just before the profile's (tether_worker_finish), so the only gated
// call the child path itself makes is the exec of the worker's program. The parent answers that
// one (it is ours, and the exec gate governs what the worker execs, not its start); everything
// after it is the worker's, decided by the supervisor from the gates' leases (GateServer.swift).
#define _GNU_SOURCE
#include "child.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif
// Linux 6.6: wake the answered task on the supervisor's CPU (a synchronous wake-up), which
// saves a scheduler round trip per gated call. Not in Debian 12's headers.
#ifndef SECCOMP_IOCTL_NOTIF_SET_FLAGS
#define SECCOMP_IOCTL_NOTIF_SET_FLAGS SECCOMP_IOW(4, __u64)
#endif
#ifndef SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP
#define SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP (1UL << 0)
#endif

// MARK: - the parent half (the child half, tether_child_install_gate, is in child.c)

int tether_gate_take_listener(pid_t child, int fd_in_child) {
    int pidfd = tether_pidfd_open(child);
    if (pidfd < 0) return -errno;
    int fd = (int)syscall(SYS_pidfd_getfd, pidfd, fd_in_child, 0);
    int e = errno;
    close(pidfd);
    if (fd < 0) return -e;
    __u64 flags = SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP;
    (void)ioctl(fd, SECCOMP_IOCTL_NOTIF_SET_FLAGS, flags);   // EINVAL before 6.6: fine
    return fd;
}

static int is_exec(int nr) { return nr == SYS_execve || nr == SYS_execveat; }

int tether_gate_serve_exec(int listener, int errno_pipe) {
    for (;;) {
        struct pollfd p[2] = {{.fd = listener, .events = POLLIN}, {.fd = errno_pipe, .events = POLLIN}};
        int n = poll(p, 2, -1);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return -errno;
        if (p[0].revents & POLLIN) {
            struct tether_notif req;
            int rc = tether_notif_recv(listener, &req);
            if (rc == -ENOENT || rc == -EINTR) continue;   // the caller was interrupted: it asks again
            if (rc < 0) return rc;
            (void)tether_notif_respond(listener, req.id, 0);
            if (is_exec(req.nr)) return 1;
            continue;
        }
        // The child path reported a failure, or died: the caller reads which.
        if (p[1].revents || (p[0].revents & (POLLHUP | POLLERR))) return 0;
    }
}

// The pid whose parent is `parent` (the worker, inside a namespace whose init is `parent`), from
// /proc: the child cannot tell its pid outside its namespace. Not async-signal-safe: parent only.
pid_t tether_find_child(pid_t parent) {
    DIR *d = opendir("/proc");
    if (d == NULL) return -1;
    pid_t found = -1;
    struct dirent *e;
    while (found < 0 && (e = readdir(d)) != NULL) {
        if (e->d_name[0] < '1' || e->d_name[0] > '9') continue;
        char path[64], buf[512];
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) continue;
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (n <= 0) continue;
        buf[n] = 0;
        // "pid (comm) state ppid ...": comm may hold anything, ')' included: the last one ends it.
        char *end = strrchr(buf, ')');
        if (end == NULL) continue;
        char state;
        int ppid;
        if (sscanf(end + 1, " %c %d", &state, &ppid) == 2 && ppid == parent) found = (pid_t)atoi(e->d_name);
    }
    closedir(d);
    return found;
}

int tether_notif_recv(int listener, struct tether_notif *out) {
    struct seccomp_notif req;
    memset(&req, 0, sizeof req);
    if (ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, &req) != 0) return -errno;
    out->id = req.id;
    out->pid = (int32_t)req.pid;
    out->nr = req.data.nr;
    out->arch = req.data.arch;
    for (int i = 0; i < 6; i++) out->args[i] = req.data.args[i];
    return 0;
}

int tether_notif_respond(int listener, uint64_t id, int err) {
    struct seccomp_notif_resp resp;
    memset(&resp, 0, sizeof resp);
    resp.id = id;
    if (err == 0) {
        resp.flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
    } else {
        resp.error = -err;
    }
    return ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, &resp) == 0 ? 0 : -errno;
}

int tether_notif_id_valid(int listener, uint64_t id) {
    return ioctl(listener, SECCOMP_IOCTL_NOTIF_ID_VALID, &id) == 0 ? 0 : -errno;
}

int tether_notif_wait(int listener, int wake_fd) {
    for (;;) {
        struct pollfd p[2] = {{.fd = listener, .events = POLLIN}, {.fd = wake_fd, .events = POLLIN}};
        int n = poll(p, wake_fd >= 0 ? 2 : 1, -1);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return -errno;
        if (wake_fd >= 0 && p[1].revents) return 2;
        if (p[0].revents & POLLIN) return 1;
        // No process uses the filter any more: the worker is gone.
        if (p[0].revents & (POLLHUP | POLLERR | POLLNVAL)) return 0;
    }
}

#ifndef PIDFD_THREAD
#define PIDFD_THREAD O_EXCL
#endif

int tether_socket_domain_of(pid_t pid, int listener, uint64_t id, int fd) {
    // `pid` is the notifying *thread*: any thread of the worker, one cloned without
    // CLONE_FILES included, whose descriptor table is its own. A thread pidfd (6.9) names
    // that thread and its table; a plain pidfd only a thread-group leader (EINVAL otherwise:
    // the caller then counts the call as network, fail closed).
    int pidfd = (int)syscall(SYS_pidfd_open, pid, PIDFD_THREAD);
    if (pidfd < 0 && errno == EINVAL) pidfd = tether_pidfd_open(pid);
    if (pidfd < 0) return -errno;
    // The pid is the notifier's only while its notification is pending: checked after the
    // pidfd exists, so a recycled pid cannot lend us another process's descriptor.
    int rc = tether_notif_id_valid(listener, id);
    if (rc != 0) { close(pidfd); return rc; }
    int copy = (int)syscall(SYS_pidfd_getfd, pidfd, fd, 0);
    int e = errno;
    close(pidfd);
    if (copy < 0) return -e;
    int domain = 0;
    socklen_t len = sizeof domain;
    rc = getsockopt(copy, SOL_SOCKET, SO_DOMAIN, &domain, &len) == 0 ? domain : -errno;
    close(copy);
    return rc;
}

int tether_shutdown_inet_socket(int pidfd, int fd) {
    int copy = (int)syscall(SYS_pidfd_getfd, pidfd, fd, 0);
    if (copy < 0) return -errno;
    int domain = 0;
    socklen_t len = sizeof domain;
    int rc = 0;
    if (getsockopt(copy, SOL_SOCKET, SO_DOMAIN, &domain, &len) != 0) {
        rc = -errno;
    } else if (domain == AF_INET || domain == AF_INET6) {
        // Twice: a listening socket's first shutdown only closes it back to a fresh, unconnected
        // socket (tcp_disconnect clears its shutdown bits); the second marks that one shut, so
        // what it connects afterwards cannot send.
        (void)shutdown(copy, SHUT_RDWR);
        (void)shutdown(copy, SHUT_RDWR);
        rc = 1;
    }
    close(copy);
    return rc;
}
