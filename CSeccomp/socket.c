// Unix-socket calls that Swift's Glibc module does not show (they need _GNU_SOURCE).
#define _GNU_SOURCE
#include "CSeccomp.h"

#include <errno.h>
#include <sys/socket.h>

int tether_peer_pid(int fd) {
    struct ucred cred;
    socklen_t len = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return -errno;
    return cred.pid;
}

int tether_accept_cloexec(int fd) {
    int c;
    do { c = accept4(fd, NULL, NULL, SOCK_CLOEXEC); } while (c < 0 && errno == EINTR);
    return c < 0 ? -errno : c;
}
