/*
 * A hostile worker against what it shares with the host: its network, the user's session,
 * the gates' side doors. One mode per run; results go to REPORT as "name: result" lines
 * ("ok" or the errno's name), and a mode that keeps sending writes numbered lines to its peer.
 *
 *   netprobe park HOST PORT REPORT       one TCP connection, its descriptor parked in flight in
 *                                        a Unix socketpair between sends; a line every 50 ms
 *   netprobe thread HOST PORT REPORT     one TCP connection held by a thread cloned without
 *                                        CLONE_FILES (a descriptor table of its own)
 *   netprobe connect HOST PORT REPORT    one TCP connect, reported
 *   netprobe unixthread PATH REPORT      connect to a Unix socket path from a second thread
 *   netprobe abstract NAME REPORT        connect to an abstract Unix socket
 *   netprobe iouring DIR REPORT          io_uring_setup, then (if it was let through) an
 *                                        IORING_OP_OPENAT that creates DIR/uring-file
 *   netprobe bind PORT REPORT            bind 127.0.0.1:PORT and [::1]:PORT, listen, stay
 *   netprobe tiocsti REPORT              ioctl(0, TIOCSTI), ioctl(0, TIOCLINUX)
 *   netprobe replace SOCKET REPORT       remove or replace its own decision socket, list and
 *                                        replace its siblings (other workers' directories)
 * Every mode but connect/unixthread/abstract/tiocsti/iouring/replace then sleeps, so the test
 * can act on it while it runs.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/io_uring.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *report_path;

static const char *ename(int e) {
    switch (e) {
    case 0: return "ok";
    case EPERM: return "EPERM";
    case EACCES: return "EACCES";
    case ENOENT: return "ENOENT";
    case ECONNREFUSED: return "ECONNREFUSED";
    case ENETUNREACH: return "ENETUNREACH";
    case EHOSTUNREACH: return "EHOSTUNREACH";
    case ETIMEDOUT: return "ETIMEDOUT";
    case ENOTTY: return "ENOTTY";
    case EROFS: return "EROFS";
    case ENOSYS: return "ENOSYS";
    case EADDRINUSE: return "EADDRINUSE";
    case EINVAL: return "EINVAL";
    case EBUSY: return "EBUSY";
    case EEXIST: return "EEXIST";
    case ENOTDIR: return "ENOTDIR";
    default: {
        static char buf[32];
        snprintf(buf, sizeof buf, "errno %d", e);
        return buf;
    }
    }
}

static void result(const char *name, int err) {
    FILE *f = fopen(report_path, "a");
    if (!f) return;
    fprintf(f, "%s: %s\n", name, ename(err));
    fclose(f);
}

static int tcp_connect(const char *host, int port) {
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((unsigned short)port);
    if (inet_pton(AF_INET, host, &a.sin_addr) == 1) {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        if (s < 0) return -1;
        struct timeval tv = {.tv_sec = 2};
        setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        if (connect(s, (struct sockaddr *)&a, sizeof a) != 0) { int e = errno; close(s); errno = e; return -1; }
        return s;
    }
    struct sockaddr_in6 a6;
    memset(&a6, 0, sizeof a6);
    a6.sin6_family = AF_INET6;
    a6.sin6_port = htons((unsigned short)port);
    if (inet_pton(AF_INET6, host, &a6.sin6_addr) != 1) { errno = EINVAL; return -1; }
    int s = socket(AF_INET6, SOCK_STREAM, 0);
    if (s < 0) return -1;
    struct timeval tv = {.tv_sec = 2};
    setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(s, (struct sockaddr *)&a6, sizeof a6) != 0) { int e = errno; close(s); errno = e; return -1; }
    return s;
}

static void send_fd(int via, int fd) {
    char c = 'f';
    struct iovec iov = {.iov_base = &c, .iov_len = 1};
    char ctl[CMSG_SPACE(sizeof(int))];
    memset(ctl, 0, sizeof ctl);
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof ctl};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &fd, sizeof fd);
    if (sendmsg(via, &m, 0) != 1) { perror("sendmsg SCM_RIGHTS"); exit(3); }
}

static int recv_fd(int via) {
    char c;
    struct iovec iov = {.iov_base = &c, .iov_len = 1};
    char ctl[CMSG_SPACE(sizeof(int))];
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof ctl};
    if (recvmsg(via, &m, 0) != 1) { perror("recvmsg"); exit(3); }
    int fd;
    memcpy(&fd, CMSG_DATA(CMSG_FIRSTHDR(&m)), sizeof fd);
    return fd;
}

/* park: the connection's only descriptor lives in flight in a socketpair, taken back for each
 * send: a sweep of /proc/PID/fd never sees it. */
static void park(const char *host, int port) {
    int s = tcp_connect(host, port);
    result("connect", s < 0 ? errno : 0);
    if (s < 0) exit(1);
    int sp[2];
    socketpair(AF_UNIX, SOCK_STREAM, 0, sp);
    send_fd(sp[0], s);
    close(s);
    result("parked", 0);
    for (int i = 0;; i++) {
        int fd = recv_fd(sp[1]);
        char line[64];
        int n = snprintf(line, sizeof line, "park %d\n", i);
        (void)!write(fd, line, (size_t)n);
        send_fd(sp[0], fd);
        close(fd);
        usleep(50 * 1000);
    }
}

/* thread: a thread (CLONE_THREAD) without CLONE_FILES: its descriptor table is its own. */
static const char *t_host;
static int t_port;
static int private_table_thread(void *arg) {
    (void)arg;
    int s = tcp_connect(t_host, t_port);
    result("thread connect", s < 0 ? errno : 0);
    if (s < 0) syscall(SYS_exit, 1);
    for (int i = 0;; i++) {
        char line[64];
        int n = snprintf(line, sizeof line, "thread %d\n", i);
        (void)!write(s, line, (size_t)n);
        usleep(50 * 1000);
    }
    return 0;
}

static void thread_mode(const char *host, int port) {
    t_host = host;
    t_port = port;
    size_t size = 256 * 1024;
    char *stack = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    int flags = CLONE_VM | CLONE_FS | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM;   // no CLONE_FILES
    if (clone(private_table_thread, stack + size, flags, NULL) < 0) { result("clone", errno); exit(1); }
    result("cloned", 0);
    for (;;) pause();
}

static const char *u_path;
static void *unix_thread(void *arg) {
    (void)arg;
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    strncpy(a.sun_path, u_path, sizeof a.sun_path - 1);
    int rc = connect(s, (struct sockaddr *)&a, sizeof a);
    result("unix connect from a second thread", rc == 0 ? 0 : errno);
    close(s);
    return NULL;
}

static void abstract_mode(const char *name) {
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    size_t n = strlen(name);
    memcpy(a.sun_path + 1, name, n);
    int rc = connect(s, (struct sockaddr *)&a, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n));
    result("abstract connect", rc == 0 ? 0 : errno);
}

static void iouring_mode(const char *dir) {
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    int ring = (int)syscall(__NR_io_uring_setup, 4, &p);
    result("io_uring_setup", ring < 0 ? errno : 0);
    if (ring < 0) return;
    // One IORING_OP_OPENAT with O_CREAT|O_WRONLY: the write gate's side door.
    size_t sq_size = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    size_t cq_size = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    char *sq = mmap(NULL, sq_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring, IORING_OFF_SQ_RING);
    char *cq = (p.features & IORING_FEAT_SINGLE_MMAP) ? sq : mmap(NULL, cq_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring, IORING_OFF_CQ_RING);
    struct io_uring_sqe *sqes = mmap(NULL, p.sq_entries * sizeof(struct io_uring_sqe), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring, IORING_OFF_SQES);
    if (sq == MAP_FAILED || cq == MAP_FAILED || sqes == MAP_FAILED) { result("io_uring mmap", errno); return; }
    static char path[4096];
    snprintf(path, sizeof path, "%s/uring-file", dir);
    struct io_uring_sqe *e = &sqes[0];
    memset(e, 0, sizeof *e);
    e->opcode = IORING_OP_OPENAT;
    e->fd = AT_FDCWD;
    e->addr = (unsigned long)path;
    e->open_flags = O_CREAT | O_WRONLY;
    e->len = 0644;
    unsigned *tail = (unsigned *)(sq + p.sq_off.tail);
    unsigned *array = (unsigned *)(sq + p.sq_off.array);
    array[*tail & *(unsigned *)(sq + p.sq_off.ring_mask)] = 0;
    __atomic_store_n(tail, *tail + 1, __ATOMIC_RELEASE);
    int rc = (int)syscall(__NR_io_uring_enter, ring, 1, 1, IORING_ENTER_GETEVENTS, NULL, 0);
    if (rc < 0) { result("io_uring_enter", errno); return; }
    struct io_uring_cqe *cqe = (struct io_uring_cqe *)(cq + p.cq_off.cqes);
    result("IORING_OP_OPENAT O_CREAT", cqe[0].res < 0 ? -cqe[0].res : 0);
}

static void bind_mode(int port) {
    int s4 = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(s4, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((unsigned short)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int rc = bind(s4, (struct sockaddr *)&a, sizeof a);
    if (rc == 0) rc = listen(s4, 8);
    result("bind 127.0.0.1", rc == 0 ? 0 : errno);
    int s6 = socket(AF_INET6, SOCK_STREAM, 0);
    struct sockaddr_in6 a6;
    memset(&a6, 0, sizeof a6);
    a6.sin6_family = AF_INET6;
    a6.sin6_port = htons((unsigned short)port);
    a6.sin6_addr = in6addr_loopback;
    rc = bind(s6, (struct sockaddr *)&a6, sizeof a6);
    if (rc == 0) rc = listen(s6, 8);
    result("bind ::1", rc == 0 ? 0 : errno);
    result("bound", 0);
    for (;;) pause();
}

static void tiocsti_mode(void) {
    char c = 'x';
    result("ioctl(0, TIOCSTI)", ioctl(0, TIOCSTI, &c) == 0 ? 0 : errno);
    char sel[2] = {2, 0};   // TIOCL_SETSEL's subcode: any request number reaches the check
    result("ioctl(0, TIOCLINUX)", ioctl(0, TIOCLINUX, sel) == 0 ? 0 : errno);
}

/* replace: its own decision socket (the directory is read-only to it), then every sibling
 * directory its mount namespace shows (none but its own should be there). */
static void replace_mode(const char *sock) {
    static char dir[4096], parent[4096], other[4096];
    snprintf(dir, sizeof dir, "%s", sock);
    char *slash = strrchr(dir, '/');
    if (!slash) exit(2);
    *slash = 0;
    snprintf(parent, sizeof parent, "%s", dir);
    slash = strrchr(parent, '/');
    if (!slash) exit(2);
    *slash = 0;
    result("unlink own decision socket", unlink(sock) == 0 ? 0 : errno);
    static char moved[4200];
    snprintf(moved, sizeof moved, "%s.moved", sock);
    result("rename own decision socket", rename(sock, moved) == 0 ? 0 : errno);
    // A socket of its own bound in its place.
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    snprintf(a.sun_path, sizeof a.sun_path, "%s/fake.sock", dir);
    result("bind a socket beside its own", bind(s, (struct sockaddr *)&a, sizeof a) == 0 ? 0 : errno);
    int others = 0, replaced = 0;
    DIR *d = opendir(parent);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] == '.') continue;
            snprintf(other, sizeof other, "%s/%s", parent, e->d_name);
            if (strcmp(other, dir) == 0) continue;
            others++;
            static char victim[4200];
            snprintf(victim, sizeof victim, "%s/decision.sock", other);
            if (unlink(victim) == 0) replaced++;
        }
        closedir(d);
    }
    char line[64];
    snprintf(line, sizeof line, "other workers' directories seen %d, sockets removed", others);
    result(line, replaced);
    result("mkdir beside its own directory", mkdir(strcat(parent, "/x"), 0755) == 0 ? 0 : errno);
}

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    const char *mode = argv[1];
    report_path = argv[argc - 1];
    signal(SIGPIPE, SIG_IGN);
    if (!strcmp(mode, "park") && argc == 5) park(argv[2], atoi(argv[3]));
    else if (!strcmp(mode, "thread") && argc == 5) thread_mode(argv[2], atoi(argv[3]));
    else if (!strcmp(mode, "connect") && argc == 5) {
        int s = tcp_connect(argv[2], atoi(argv[3]));
        static char name[300];
        snprintf(name, sizeof name, "connect %s:%s", argv[2], argv[3]);
        result(name, s < 0 ? errno : 0);
    } else if (!strcmp(mode, "unixthread") && argc == 4) {
        u_path = argv[2];
        pthread_t t;
        pthread_create(&t, NULL, unix_thread, NULL);
        pthread_join(t, NULL);
    } else if (!strcmp(mode, "abstract") && argc == 4) abstract_mode(argv[2]);
    else if (!strcmp(mode, "iouring") && argc == 4) iouring_mode(argv[2]);
    else if (!strcmp(mode, "bind") && argc == 4) bind_mode(atoi(argv[2]));
    else if (!strcmp(mode, "tiocsti") && argc == 3) tiocsti_mode();
    else if (!strcmp(mode, "replace") && argc == 4) replace_mode(argv[2]);
    else return 2;
    result("done", 0);
    return 0;
}
