// The namespace path of the child: the supervisor's child becomes PID 1 of the worker's own PID
// namespace, in a mount namespace of its own, and then the worker's init.
//
//   supervisor ──clone(CLONE_VM|CLONE_VFORK|CLONE_NEWPID|CLONE_NEWNS|CLONE_NEWIPC[|CLONE_NEWNET][|CLONE_NEWUSER])──▶ C
//   C (PID 1): process group, terminal, cgroup (held here while the start gate is frozen),
//              cgroup namespace, id maps, loopback up, mounts, parent-death signal
//   C ──fork──▶ W (PID 2): asks the parent for its network stack and waits for it (net.c),
//              tether_worker_finish, waits for the init's go, execve(worker)
//   C: execveat(tether-init) "tether-init W STATUS_FD GO_FD": not dumpable, then go; reaps,
//      and reports W's wait status (init.c)
//
// Why a PID namespace: a worker inside cannot name the supervisor, the keeper, the authority or
// another worker's tree — kill(-1), kill(pid), ptrace, pidfd_open all stop at its border — and
// when its init dies, by the supervisor's SIGKILL or by PDEATHSIG when the supervisor dies, the
// kernel kills everything in it: no setsid, double fork or subreaper trick outlives it.
// Why a mount namespace: a fresh /proc shows only the worker's tree; the supervisor's state
// directory and key files are covered; the cgroup file system is read-only.
//
// C and W share the supervisor's memory (vfork semantics) until they exec — except where a user
// namespace map is written: then C is a plain fork, with a copy (see tether_spawn). Either way,
// as in spawn.c, only async-signal-safe calls run here, on stacks the parent mapped, reading
// the attributes the parent prepared (strings included: nothing is formatted but one pid).
#define _GNU_SOURCE
#include "child.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <linux/mount.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif
#ifndef SYS_open_tree
#define SYS_open_tree 428
#endif
#ifndef SYS_move_mount
#define SYS_move_mount 429
#endif
#ifndef OPEN_TREE_CLONE
#define OPEN_TREE_CLONE 1
#endif
#ifndef MOVE_MOUNT_F_EMPTY_PATH
#define MOVE_MOUNT_F_EMPTY_PATH 0x00000004
#endif

// The loopback of a new network namespace starts down: up, so the worker's own 127.0.0.1 and
// ::1 work (under --net none they are all it has). socket and ioctl are plain system calls.
static int loopback_up(void) {
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) return -1;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    memcpy(ifr.ifr_name, "lo", 3);
    int rc = ioctl(s, SIOCGIFFLAGS, &ifr);
    if (rc == 0) {
        ifr.ifr_flags |= IFF_UP;
        rc = ioctl(s, SIOCSIFFLAGS, &ifr);
    }
    int e = errno;
    close(s);
    errno = e;
    return rc;
}

// mkdir of every component of `path` below `top` (which exists), on a stack buffer.
static int make_path_below(const char *top, const char *path) {
    char buf[4096];
    size_t len = strlen(path), start = strlen(top);
    if (len >= sizeof buf || start > len) { errno = ENAMETOOLONG; return -1; }
    memcpy(buf, path, len + 1);
    for (size_t i = start + 1; i <= len; i++) {
        if (buf[i] != '/' && buf[i] != 0) continue;
        char saved = buf[i];
        buf[i] = 0;
        if (mkdir(buf, 0755) != 0 && errno != EEXIST) return -1;
        buf[i] = saved;
    }
    return 0;
}

// Makes `path` and every mount below it read-only. mount_setattr (5.12) does it in one call
// on the whole subtree; the flag is locked for a less privileged namespace.
static int make_readonly(const char *path) {
    struct mount_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.attr_set = MOUNT_ATTR_RDONLY;
    if (syscall(SYS_mount_setattr, AT_FDCWD, path, AT_RECURSIVE, &attr, sizeof attr) == 0) return 0;
    if (errno != EINVAL) return -1;
    // Not a mount point: bind it onto itself first, then the same.
    if (mount(path, path, NULL, MS_BIND | MS_REC, NULL) != 0) return -1;
    return (int)syscall(SYS_mount_setattr, AT_FDCWD, path, AT_RECURSIVE, &attr, sizeof attr);
}

// /etc as a read-only overlay: the supervisor's layer (the agents' system settings) over the
// host's /etc, which stays visible below it — but for the layer's own directories, bound over
// the host's whole (the overlay gives them a mount point where the host has none). An overlay shows only its layers' file system, not
// the mounts below /etc (a container's /etc/resolv.conf, /etc/hosts): each is cloned (with its
// own submounts) before and attached again at the same path after — its mount point exists in
// the host's /etc, the overlay's lower layer. Read-only and locked to the worker: without
// CAP_SYS_ADMIN over this mount namespace it can neither write below /etc nor unmount the layer.
static void overlay_etc(const struct tether_contain *c, int pipe_fd) {
    int trees[TETHER_ETC_SUBMOUNTS_MAX];
    size_t n = c->etc_submount_count;
    if (n > TETHER_ETC_SUBMOUNTS_MAX) tether_child_fail(pipe_fd, TETHER_STAGE_MOUNTS, E2BIG);
    for (size_t i = 0; i < n; i++) {
        trees[i] = (int)syscall(SYS_open_tree, AT_FDCWD, c->etc_submounts[i], OPEN_TREE_CLONE | AT_RECURSIVE | O_CLOEXEC);
        if (trees[i] < 0) tether_child_fail(pipe_fd, TETHER_STAGE_MOUNTS, errno);
    }
    if (mount("overlay", "/etc", "overlay", MS_RDONLY | MS_NOSUID | MS_NODEV, c->etc_overlay_options) != 0)
        tether_child_fail(pipe_fd, TETHER_STAGE_MOUNTS, errno);
    for (size_t i = 0; i < n; i++) {
        if (syscall(SYS_move_mount, trees[i], "", AT_FDCWD, c->etc_submounts[i], MOVE_MOUNT_F_EMPTY_PATH) != 0)
            tether_child_fail(pipe_fd, TETHER_STAGE_MOUNTS, errno);
        close(trees[i]);
    }
    for (size_t i = 0; i < c->etc_owned_count; i++) {
        if (mount(c->etc_owned_sources[i], c->etc_owned[i], NULL, MS_BIND | MS_REC, NULL) != 0 || make_readonly(c->etc_owned[i]) != 0)
            tether_child_fail(pipe_fd, TETHER_STAGE_MOUNTS, errno);
    }
}

static void setup_mounts(const struct tether_contain *c, int pipe_fd) {
    // Nothing mounted here propagates back to the host (a shared / would carry it).
    if (mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) != 0) tether_child_fail(pipe_fd, TETHER_STAGE_MOUNTS, errno);
    // The worker's /proc: this PID namespace only. Stacked on the host's, which it hides.
    if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0)
        tether_child_fail(pipe_fd, TETHER_STAGE_MOUNTS, errno);
    // The worker's own decision-socket directory, taken before its parents are covered (a
    // detached copy of the mount, attached again below).
    int decision_tree = -1;
    if (c->decision_dir != NULL && c->decision_cover != NULL) {
        decision_tree = (int)syscall(SYS_open_tree, AT_FDCWD, c->decision_dir, OPEN_TREE_CLONE | O_CLOEXEC);
        if (decision_tree < 0) tether_child_fail(pipe_fd, TETHER_STAGE_MOUNTS, errno);
    }
    // The pinned /etc, before anything is covered (a covered path below /etc stays covered).
    if (c->etc_overlay_options != NULL) overlay_etc(c, pipe_fd);
    for (size_t i = 0; i < c->hide_dir_count; i++) {
        // The cover that will hold the decision directory is writable until its mount point
        // exists, then read-only like the others.
        int holds = decision_tree >= 0 && strcmp(c->hide_dirs[i], c->decision_cover) == 0;
        unsigned long flags = (holds ? 0 : MS_RDONLY) | MS_NOSUID | MS_NODEV | MS_NOEXEC;
        if (mount("tmpfs", c->hide_dirs[i], "tmpfs", flags, holds ? "size=16k,mode=0755" : "size=4k,mode=0555") != 0 &&
            errno != ENOENT)
            tether_child_fail(pipe_fd, TETHER_STAGE_MOUNTS, errno);
    }
    if (decision_tree >= 0) {
        if (make_path_below(c->decision_cover, c->decision_dir) != 0) tether_child_fail(pipe_fd, TETHER_STAGE_MOUNTS, errno);
        if (syscall(SYS_move_mount, decision_tree, "", AT_FDCWD, c->decision_dir, MOVE_MOUNT_F_EMPTY_PATH) != 0)
            tether_child_fail(pipe_fd, TETHER_STAGE_MOUNTS, errno);
        close(decision_tree);
        // The cover and the socket's directory in it: read-only (a socket can still be
        // connected to; it cannot be removed or replaced).
        if (make_readonly(c->decision_cover) != 0) tether_child_fail(pipe_fd, TETHER_STAGE_MOUNTS, errno);
    }
    for (size_t i = 0; i < c->hide_file_count; i++) {
        if (mount("/dev/null", c->hide_files[i], NULL, MS_BIND, NULL) != 0 && errno != ENOENT)
            tether_child_fail(pipe_fd, TETHER_STAGE_MOUNTS, errno);
    }
    for (size_t i = 0; i < c->readonly_count; i++) {
        if (make_readonly(c->readonly[i]) != 0 && errno != ENOENT)
            tether_child_fail(pipe_fd, TETHER_STAGE_MOUNTS, errno);
    }
}

struct worker_args {
    const struct tether_spawn_attr *attr;
    int pipe_fd;
    int go_read;
    int go_write;
};

static int worker_entry(void *p) {
    struct worker_args *w = p;
    close(w->go_write);   // only the init may say go; its exit is an EOF here
    // The network namespace's link to the outside: the parent starts it once this process
    // exists (so the namespace and its user namespace are complete) and says when it is up.
    // Nothing of the worker runs before: its first connect finds the route there.
    const struct tether_contain *c = &w->attr->contain;
    if (c->new_net_ns && c->net_helper != NULL) {
        // An unprivileged stack joins the namespaces through this process's /proc/PID/ns,
        // which it may open only while this memory is dumpable: a private copy (a plain fork),
        // in which nothing of the worker runs yet; not dumpable again before anything does.
        int dumpable = c->net_helper->join_userns;
        if (dumpable && prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) != 0) tether_child_fail(w->pipe_fd, TETHER_STAGE_NETWORK, errno);
        int msg[2] = {TETHER_MSG_NETWORK, 0};
        ssize_t n;
        do { n = write(w->pipe_fd, msg, sizeof msg); } while (n < 0 && errno == EINTR);
        if (n != (ssize_t)sizeof msg) tether_child_fail(w->pipe_fd, TETHER_STAGE_NETWORK, n < 0 ? errno : EIO);
        char ack;
        do { n = read(c->net_ack_fd, &ack, 1); } while (n < 0 && errno == EINTR);
        if (n != 1) tether_child_fail(w->pipe_fd, TETHER_STAGE_NETWORK, n < 0 ? errno : ENETDOWN);
        close(c->net_ack_fd);
        if (dumpable && prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) tether_child_fail(w->pipe_fd, TETHER_STAGE_NETWORK, errno);
    }
    tether_worker_finish(w->attr, w->pipe_fd, 0, w->go_read);
}

void tether_contained_child(const struct tether_spawn_attr *a, int pipe_fd, void *worker_stack_top, int born_in_cgroup) {
    const struct tether_contain *c = &a->contain;

    // An unprivileged supervisor's namespaces belong to a new user namespace: map the
    // supervisor's uid and gid to themselves (the worker keeps its identity) before anything
    // that checks permissions. /proc/self/uid_map belongs to root while the memory is not
    // dumpable, so this process — its own copy of the memory (see tether_spawn), a copy of the
    // supervisor's, agent key included — is dumpable just for the maps, and not dumpable
    // again before anything of the worker exists.
    if (c->new_user_ns) {
        if (prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) != 0) tether_child_fail(pipe_fd, TETHER_STAGE_ID_MAP, errno);
        if (tether_write_id_maps(c->uid_map, c->gid_map) != 0) tether_child_fail(pipe_fd, TETHER_STAGE_ID_MAP, errno);
        if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) tether_child_fail(pipe_fd, TETHER_STAGE_ID_MAP, errno);
    }

    tether_child_enter(a, pipe_fd, born_in_cgroup);

    // A cgroup namespace rooted at the worker's cgroup (joined just above): /proc/self/cgroup
    // reads "0::/", and the worker learns nothing of the supervisor's hierarchy.
    if (a->cgroup_procs_fd >= 0 && unshare(CLONE_NEWCGROUP) != 0)
        tether_child_fail(pipe_fd, TETHER_STAGE_NAMESPACES, errno);

    if (c->new_net_ns && loopback_up() != 0) tether_child_fail(pipe_fd, TETHER_STAGE_NETWORK, errno);

    setup_mounts(c, pipe_fd);

    // The init dies with the supervisor (and so does everything in its namespace). Inside the
    // namespace getppid() is 0, so whether the supervisor is already gone is asked of its pidfd.
    if (prctl(PR_SET_PDEATHSIG, a->pdeathsig > 0 ? a->pdeathsig : SIGKILL, 0, 0, 0) != 0)
        tether_child_fail(pipe_fd, TETHER_STAGE_PDEATHSIG, errno);
    if (c->parent_pidfd >= 0) {
        struct pollfd pfd = {.fd = c->parent_pidfd, .events = POLLIN};
        if (poll(&pfd, 1, 0) > 0) tether_child_fail(pipe_fd, TETHER_STAGE_PDEATHSIG, ESRCH);
    }

    // The worker, PID 2: a plain fork (its own copy of the memory), which waits before its
    // exec until the init says go — the init is dumpable between its exec and its first
    // instruction, and a worker of the same uid must not attach to it then. (A worker that
    // will be root in a user namespace of its own also makes its copy dumpable to write its
    // map: its copy, never this one.) A worker that fails before exec says why on the errno
    // pipe; the init reaps it and exits at once.
    int go[2];
    if (pipe2(go, O_CLOEXEC) != 0) tether_child_fail(pipe_fd, TETHER_STAGE_PIPE, errno);
    struct worker_args wa = {.attr = a, .pipe_fd = pipe_fd, .go_read = go[0], .go_write = go[1]};
    pid_t w = clone(worker_entry, worker_stack_top, SIGCHLD, &wa);
    if (w < 0) tether_child_fail(pipe_fd, TETHER_STAGE_FORK, errno);
    close(go[0]);

    // The init: the tether binary, through the descriptor the parent opened (the path may be
    // hidden here). Only the status descriptor survives the exec; no environment.
    if (syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) != 0) {
        (void)kill(w, SIGKILL);
        tether_child_fail(pipe_fd, TETHER_STAGE_CLOSE_FDS, errno);
    }
    if (fcntl(c->status_fd, F_SETFD, 0) != 0 || fcntl(go[1], F_SETFD, 0) != 0) {
        (void)kill(w, SIGKILL);
        tether_child_fail(pipe_fd, TETHER_STAGE_INIT, errno);
    }
    char wpid[16], sfd[16], gfd[16];
    tether_format_uint(w, wpid);
    tether_format_uint(c->status_fd, sfd);
    tether_format_uint(go[1], gfd);
    char *const argv[] = {(char *)c->init_name, wpid, sfd, gfd, NULL};
    char *const envp[] = {NULL};
    syscall(SYS_execveat, c->exe_fd, "", argv, envp, AT_EMPTY_PATH);
    int e = errno;
    (void)kill(w, SIGKILL);
    tether_child_fail(pipe_fd, TETHER_STAGE_INIT, e);
}
