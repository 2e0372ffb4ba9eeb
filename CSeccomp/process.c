// Parent-side process helpers: pidfds (open, signal, wait, poll many with a wake-up), the
// subreaper and dumpable flags, pipes and eventfds, thread names. Used by the spawn path, the
// gates, the network stack's start and the Swift side; nothing here runs in a child.
#define _GNU_SOURCE
#include "child.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

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
