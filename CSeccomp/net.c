// The worker's network: the parent's half (nothing here runs in a child before exec).
//
// A contained worker gets a network namespace of its own: its own loopback, no route out, and
// none of the host's abstract Unix sockets. Its link to the outside is a user-mode stack —
// slirp4netns, started here by the parent for each worker — that owns a tap device inside the
// namespace and makes ordinary sockets on the host side: the worker's packets never enter the
// host's network stack as packets, and (with --disable-host-loopback) the host's loopback is
// not an address it can reach. The stack is not in the worker's PID namespace, cgroup or uid:
// the worker cannot signal, trace or stop it. The supervisor can: a closed `net` gate stops it
// (SIGSTOP), which stops every byte between the namespace and the outside at once, whatever
// descriptors the worker holds or hides.
#define _GNU_SOURCE
#include "child.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

int tether_net_start(const struct tether_net_helper *h, pid_t init, int *pidfd_out, int *exit_fd_out) {
    *pidfd_out = -1;
    *exit_fd_out = -1;
    int ready[2], quit[2];
    if (pipe2(ready, O_CLOEXEC) != 0) return -errno;
    if (pipe2(quit, O_CLOEXEC) != 0) {
        int e = errno;
        close(ready[0]);
        close(ready[1]);
        return -e;
    }

    // The helper's ends at 3 and 4 (moved above 4 first, so neither dup2 overwrites the other's
    // source), and nothing else of the supervisor's: a descriptor without CLOEXEC (a pipe a
    // caller made for a worker's output) held open by the stack would keep its reader from
    // ever seeing EOF.
    int r_hi = fcntl(ready[1], F_DUPFD_CLOEXEC, 5), q_hi = fcntl(quit[0], F_DUPFD_CLOEXEC, 5);
    close(ready[1]);
    close(quit[0]);
    if (r_hi < 0 || q_hi < 0) {
        int e = errno;
        if (r_hi >= 0) close(r_hi);
        if (q_hi >= 0) close(q_hi);
        close(ready[0]);
        close(quit[1]);
        return -e;
    }
    ready[1] = r_hi;
    quit[0] = q_hi;

    // argv: the helper's own, then what only this spawn knows.
    char ready_arg[32], exit_arg[32], userns_arg[64], pid_arg[16];
    snprintf(ready_arg, sizeof ready_arg, "--ready-fd=%d", 3);
    snprintf(exit_arg, sizeof exit_arg, "--exit-fd=%d", 4);
    snprintf(userns_arg, sizeof userns_arg, "--userns-path=/proc/%d/ns/user", (int)init);
    snprintf(pid_arg, sizeof pid_arg, "%d", (int)init);
    size_t n = 0;
    while (h->argv[n] != NULL) n++;
    char *argv[n + 6];
    size_t i = 0;
    for (; i < n; i++) argv[i] = h->argv[i];
    argv[i++] = ready_arg;
    argv[i++] = exit_arg;
    if (h->join_userns) argv[i++] = userns_arg;
    argv[i++] = pid_arg;
    argv[i++] = "tap0";
    argv[i] = NULL;

    // Its own process group (a terminal's signals are the worker's, not its network's); signals
    // default and unblocked; the ready and exit descriptors at 3 and 4, every other closed;
    // no output on the supervisor's streams (the worker's may be the same terminal).
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t sa;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&sa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, ready[1], 3);
    posix_spawn_file_actions_adddup2(&fa, quit[0], 4);
    posix_spawn_file_actions_addclosefrom_np(&fa, 5);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&sa, &none);
    posix_spawnattr_setsigdefault(&sa, &all);
    posix_spawnattr_setpgroup(&sa, 0);
    posix_spawnattr_setflags(&sa, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);
    pid_t helper = -1;
    int rc = posix_spawn(&helper, h->path, &fa, &sa, argv, h->envp);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&sa);
    close(ready[1]);
    close(quit[0]);
    if (rc != 0) {
        close(ready[0]);
        close(quit[1]);
        return -rc;
    }
    int pidfd = (int)syscall(SYS_pidfd_open, helper, 0);
    if (pidfd < 0) {
        int e = errno;
        kill(helper, SIGKILL);
        while (waitpid(helper, NULL, 0) < 0 && errno == EINTR) {}
        close(ready[0]);
        close(quit[1]);
        return -e;
    }

    // Ready: it writes "1" once the tap device is up and configured. EOF: it failed (its exit
    // status says how); nothing for the timeout: it is killed.
    int err = 0;
    long deadline = now_ms() + (h->ready_timeout_ms > 0 ? h->ready_timeout_ms : 10000);
    for (;;) {
        long left = deadline - now_ms();
        if (left <= 0) { err = ETIMEDOUT; break; }
        struct pollfd p = {.fd = ready[0], .events = POLLIN};
        int k = poll(&p, 1, (int)left);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) { err = errno; break; }
        if (k == 0) { err = ETIMEDOUT; break; }
        char c;
        ssize_t r = read(ready[0], &c, 1);
        if (r < 0 && errno == EINTR) continue;
        err = (r == 1 && c == '1') ? 0 : ENETDOWN;
        break;
    }
    close(ready[0]);
    if (err != 0) {
        tether_net_stop(pidfd, quit[1]);
        return -err;
    }
    *pidfd_out = pidfd;
    *exit_fd_out = quit[1];
    return 0;
}

void tether_net_stop(int pidfd, int exit_fd) {
    if (pidfd < 0) return;
    if (exit_fd >= 0) close(exit_fd);
    (void)tether_pidfd_send_signal(pidfd, SIGKILL);   // a stopped (cut) stack sees no exit descriptor
    int code, signaled;
    (void)tether_pidfd_wait(pidfd, &code, &signaled);
    close(pidfd);
}
