/*
 * The gates benchmark's control: the least a supervisor can do. Forks PROGRAM under a filter that
 * sends execve to a listener (or under no filter, with 0), and answers every notification
 * "continue" from a plain C loop: what a gated exec costs the kernel, without Tether.
 *
 *   raw_notify 1|0 PROGRAM ARGS…
 */
#define _GNU_SOURCE
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static int send_fd(int s, int fd) {
    char c = 'x', buf[CMSG_SPACE(sizeof(int))];
    struct iovec v = {&c, 1};
    struct msghdr m = {.msg_iov = &v, .msg_iovlen = 1, .msg_control = buf, .msg_controllen = sizeof buf};
    struct cmsghdr *h = CMSG_FIRSTHDR(&m);
    h->cmsg_level = SOL_SOCKET;
    h->cmsg_type = SCM_RIGHTS;
    h->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(h), &fd, sizeof fd);
    return (int)sendmsg(s, &m, 0);
}

static int recv_fd(int s) {
    char c, buf[CMSG_SPACE(sizeof(int))];
    struct iovec v = {&c, 1};
    struct msghdr m = {.msg_iov = &v, .msg_iovlen = 1, .msg_control = buf, .msg_controllen = sizeof buf};
    if (recvmsg(s, &m, 0) <= 0) return -1;
    int fd;
    memcpy(&fd, CMSG_DATA(CMSG_FIRSTHDR(&m)), sizeof fd);
    return fd;
}

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: raw_notify 1|0 PROGRAM ARGS...\n"); return 2; }
    int gated = atoi(argv[1]);
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) { perror("socketpair"); return 1; }
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
        if (gated) {
            struct sock_filter f[] = {
                BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
                BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_execve, 0, 1),
                BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
                BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
            };
            struct sock_fprog prog = {4, f};
            int l = (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
            if (l < 0 || send_fd(sv[0], l) < 0) _exit(1);
            close(l);
        }
        execv(argv[2], argv + 2);
        _exit(127);
    }
    close(sv[0]);
    if (gated) {
        int l = recv_fd(sv[1]);
        unsigned long sync_wake = 1;   // SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP, as Tether asks
        (void)ioctl(l, SECCOMP_IOW(4, __u64), sync_wake);
        for (;;) {
            struct seccomp_notif req;
            memset(&req, 0, sizeof req);
            if (ioctl(l, SECCOMP_IOCTL_NOTIF_RECV, &req) != 0) {
                if (waitpid(pid, NULL, WNOHANG) == pid) return 0;
                continue;
            }
            struct seccomp_notif_resp r;
            memset(&r, 0, sizeof r);
            r.id = req.id;
            r.flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
            (void)ioctl(l, SECCOMP_IOCTL_NOTIF_SEND, &r);
        }
    }
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
}
