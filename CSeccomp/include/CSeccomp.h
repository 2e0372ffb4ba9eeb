// CSeccomp: a thin, prefixed C layer under TetherSystem.
//
// Two jobs that Swift cannot do safely itself:
//  1. libseccomp's function-like macros (SCMP_ACT_ERRNO, ...) and exporting a filter to a BPF
//     program in memory (libseccomp 2.5.4 has no seccomp_export_bpf_mem).
//  2. The fork/exec child path and the keeper: after fork in a multi-threaded process only
//     async-signal-safe calls may run, so these live here and never call back into Swift.
#ifndef TETHER_CSECCOMP_H
#define TETHER_CSECCOMP_H

#include <seccomp.h>
#include <linux/filter.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "tether_init.h"

#ifdef __cplusplus
extern "C" {
#endif

// MARK: - libseccomp actions (the macros are not importable into Swift)

static inline uint32_t tether_act_kill_process(void) { return SCMP_ACT_KILL_PROCESS; }
static inline uint32_t tether_act_kill_thread(void) { return SCMP_ACT_KILL_THREAD; }
static inline uint32_t tether_act_trap(void) { return SCMP_ACT_TRAP; }
static inline uint32_t tether_act_errno(uint16_t e) { return SCMP_ACT_ERRNO(e); }
static inline uint32_t tether_act_trace(uint16_t m) { return SCMP_ACT_TRACE(m); }
static inline uint32_t tether_act_log(void) { return SCMP_ACT_LOG; }
static inline uint32_t tether_act_allow(void) { return SCMP_ACT_ALLOW; }
static inline uint32_t tether_act_notify(void) { return SCMP_ACT_NOTIFY; }
static inline int tether_nr_scmp_error(void) { return __NR_SCMP_ERROR; }

/// Exports `ctx` as a classic BPF program: seccomp_export_bpf into a memfd, read back.
/// On success `*out` is malloc'ed (free with `free`) and holds `*count` instructions.
/// Returns 0 or a negative errno.
int tether_filter_export(scmp_filter_ctx ctx, struct sock_filter **out, size_t *count);

// MARK: - contained spawn

/// The stage of the child path that failed, reported through the errno pipe.
enum tether_spawn_stage {
    TETHER_STAGE_NONE = 0,
    TETHER_STAGE_SIGNALS = 1,
    TETHER_STAGE_SETPGID = 2,
    TETHER_STAGE_TCSETPGRP = 3,
    TETHER_STAGE_CGROUP = 4,
    TETHER_STAGE_RLIMIT = 5,
    TETHER_STAGE_SETGROUPS = 6,
    TETHER_STAGE_SETGID = 7,
    TETHER_STAGE_SETUID = 8,
    TETHER_STAGE_PDEATHSIG = 9,
    TETHER_STAGE_NO_NEW_PRIVS = 10,
    TETHER_STAGE_CHDIR = 11,
    TETHER_STAGE_STDIO = 12,
    TETHER_STAGE_CLOSE_FDS = 13,
    TETHER_STAGE_EXEC_FD = 14,
    TETHER_STAGE_SECCOMP = 15,
    TETHER_STAGE_EXEC = 16,
    TETHER_STAGE_FORK = 17,
    TETHER_STAGE_PIPE = 18,
    TETHER_STAGE_PIDFD = 19,
    TETHER_STAGE_NAMESPACES = 20,   // clone into new PID/mount/IPC (and user) namespaces
    TETHER_STAGE_ID_MAP = 21,       // writing a user namespace's uid_map/gid_map
    TETHER_STAGE_MOUNTS = 22,       // the worker's mount namespace: /proc, hidden paths, read-only cgroups
    TETHER_STAGE_INIT = 23,         // exec of the namespace's init (the tether binary)
    TETHER_STAGE_LANDLOCK = 24,     // the exec allow-list of a profile that permits one program
    TETHER_STAGE_GATE = 25,         // the gates' filter, and handing its listener to the supervisor
    TETHER_STAGE_GATE_TAKE = 26,    // the supervisor's side: copying that listener (pidfd_getfd)
    TETHER_STAGE_NETWORK = 27,      // the worker's network namespace: its loopback, its user-mode stack
};

/// Not a stage: on the errno pipe, {TETHER_MSG_LISTENER, fd} says the gates' listener is at
/// `fd` in the child, to be copied with pidfd_getfd before the child closes it.
#define TETHER_MSG_LISTENER (-1)
/// Not a stage: on the errno pipe, {TETHER_MSG_NETWORK, 0} says the worker's network namespace
/// waits for its user-mode stack; the parent starts it, then says so on the network ack pipe.
#define TETHER_MSG_NETWORK (-2)

/// The user-mode network stack of a worker's network namespace (slirp4netns): its program and
/// leading arguments (NULL-terminated); tether_spawn appends the ready and exit descriptors, the
/// user namespace to join (an unprivileged supervisor's), the init's pid and the device name.
struct tether_net_helper {
    const char *path;
    char *const *argv;
    char *const *envp;
    int join_userns;     // nonzero: --userns-path=/proc/PID/ns/user (the namespaces belong to one)
    int ready_timeout_ms;
};

/// The worker's own namespaces (see contain.c). With `enabled`, the child of the supervisor
/// becomes PID 1 of a new PID namespace (the init), sets up a mount namespace in which the
/// supervisor's state is hidden and the cgroup file system is read-only, forks the worker as
/// PID 2 and execs the tether binary as a small init that reaps and reports the worker's status.
struct tether_contain {
    int enabled;
    /// Nonzero for an unprivileged supervisor: the namespaces are owned by a new user namespace
    /// that maps the supervisor's own uid and gid to themselves (`uid_map`, `gid_map` lines).
    int new_user_ns;
    const char *uid_map;
    const char *gid_map;
    /// Nonzero: the worker is uid 0 in a user namespace of its own, nested below, mapping
    /// 0 to the unprivileged uid/gid it runs as outside (`worker_uid_map`, `worker_gid_map`).
    int root_in_userns;
    const char *worker_uid_map;
    const char *worker_gid_map;
    /// Directories covered by an empty read-only tmpfs; files covered by /dev/null.
    const char *const *hide_dirs;
    size_t hide_dir_count;
    const char *const *hide_files;
    size_t hide_file_count;
    /// Mount points made read-only with everything below them (the cgroup file systems).
    const char *const *readonly;
    size_t readonly_count;
    int exe_fd;          // the tether executable (opened in the parent), exec'd as the init
    int status_fd;       // the init writes the worker's wait status (int) here, then exits
    int parent_pidfd;    // the supervisor: a child that finds it already gone stops
    const char *init_name;   // argv[0] of the init: "tether-init"
    /// Nonzero: a network namespace of the worker's own (CLONE_NEWNET), its loopback up.
    int new_net_ns;
    /// With `new_net_ns`: the user-mode stack that links it to the outside, started by the
    /// parent before anything of the worker runs; NULL: loopback only (`--net none`).
    const struct tether_net_helper *net_helper;
    int net_ack_fd;      // set by tether_spawn: the worker waits here until its stack is up
    /// The worker's own decision-socket directory, bind-mounted read-only at the same path
    /// inside `decision_cover` (one of `hide_dirs`, which is covered writable just long enough
    /// to make the mount point): no other directory of decision sockets is visible, and this
    /// one cannot be changed from inside. NULL: none.
    const char *decision_dir;
    const char *decision_cover;
    /// The agents' pinned settings (docs/agents.md): /etc becomes a read-only overlay with a
    /// directory of the supervisor's on top of the host's /etc (`etc_overlay_options`, the
    /// overlay's "lowerdir=LAYER:/etc"), and the mounts below /etc (`etc_submounts`, at most
    /// TETHER_ETC_SUBMOUNTS_MAX) carried over onto it. NULL: /etc as the host has it.
    const char *etc_overlay_options;
    const char *const *etc_submounts;
    size_t etc_submount_count;
    /// Directories of the layer that replace the host's whole directory of that name, bound
    /// read-only from `etc_owned_sources[i]` over `etc_owned[i]` on the overlay: what an agent
    /// reads there is exactly what the supervisor wrote, no file of the host's beside it.
    const char *const *etc_owned;
    const char *const *etc_owned_sources;
    size_t etc_owned_count;
};

#define TETHER_ETC_SUBMOUNTS_MAX 32

struct tether_rlimit {
    int resource;
    uint64_t soft;
    uint64_t hard;
};

struct tether_spawn_attr {
    const char *path;            // absolute path of the program
    char *const *argv;           // NULL-terminated
    char *const *envp;           // NULL-terminated
    const char *cwd;             // NULL: inherit
    int stdio[3];                // fds (>= 3, opened by the parent) for 0, 1, 2; -1: inherit
    int cgroup_procs_fd;         // open cgroup.procs of the worker's cgroup, or -1
    int cgroup_dir_fd;           // the worker's cgroup directory, or -1: where the kernel can, the
                                 // child is born in it (clone3 CLONE_INTO_CGROUP) and moves nothing
    int tty_fd;                  // terminal whose foreground group the child takes, or -1
    int set_ids;                 // nonzero: drop to uid/gid with supplementary groups cleared
    uid_t uid;
    gid_t gid;
    const struct tether_rlimit *rlimits;
    size_t rlimit_count;
    const struct sock_fprog *filters;   // installed in order; may be empty (profile "none")
    size_t filter_count;
    int exec_fd;                 // >= 0: open `path` at this fd number and execveat through it
    int pdeathsig;               // signal sent to the child when the spawning thread dies
    int landlock_fd;             // >= 0: a Landlock ruleset the worker restricts itself to before exec
    struct tether_contain contain;
    /// The gates' filter (user notification), installed just before `filters`; NULL: no gates.
    const struct sock_fprog *gate_filter;
    int gate_ack_fd;             // set by tether_spawn: the child waits here until the listener is taken
    int gate_make_dumpable;      // nonzero: an unprivileged parent, which may copy the listener only from a dumpable child
    int gate_serves_exec;        // nonzero: the filter sends execve to the listener (the exec gate)
};

/// Forks and execs per `attr`. On success returns 0 with `*pid` and `*pidfd` (CLOEXEC) set.
/// On failure returns -1, `*stage` says where and `*err` the errno; a child that failed is
/// already reaped and no descriptor is leaked.
/// With `attr->gate_filter`, `*gate_listener` is the listener (CLOEXEC) of the worker's gates,
/// held by the caller alone; otherwise -1.
/// With `attr->contain.net_helper`, `*net_pidfd` is a pidfd (CLOEXEC) of the worker's network
/// stack (in a process group of its own) and `*net_exit_fd` the descriptor whose closing ends
/// it; otherwise both -1.
int tether_spawn(const struct tether_spawn_attr *attr, pid_t *pid, int *pidfd, int *gate_listener,
                 int *net_pidfd, int *net_exit_fd, int *stage, int *err);

/// Ends a worker's network stack (net.c): its exit descriptor closed, SIGKILL (a stopped, cut
/// stack would not see the descriptor close), reaped; closes `pidfd`. Nothing for `pidfd` < 0.
void tether_net_stop(int pidfd, int exit_fd);

/// Waits (blocking) for the exit of the child behind `pidfd`. Returns 0 with `*code` and
/// `*signaled` set, or a negative errno. Retries EINTR.
int tether_pidfd_wait(int pidfd, int *code, int *signaled);

/// Polls the pidfds in `fds` (and `wake_fd`, an eventfd) for up to `timeout_ms`.
/// Writes 1 into `ready[i]` for each exited child and sets `*woken` when `wake_fd` fired.
/// Returns the number ready, or -errno.
int tether_pidfds_poll(const int *fds, size_t count, int wake_fd, int timeout_ms, uint8_t *ready, int *woken);

int tether_pidfd_send_signal(int pidfd, int sig);

// MARK: - the keeper and the worker's init: tether_init.h (the small static program's API)

// MARK: - gates (gate.c)

/// One seccomp user notification: who, which syscall, its register arguments. Nothing behind a
/// pointer: the worker may change that memory after any check.
struct tether_notif {
    uint64_t id;
    int32_t pid;     // in the supervisor's PID namespace
    int32_t nr;
    uint32_t arch;
    uint64_t args[6];
};

/// Blocks for the next notification. 0, or -errno (-ENOENT: the caller went away meanwhile).
int tether_notif_recv(int listener, struct tether_notif *out);
/// Answers `id`: `err` 0 lets the call run (SECCOMP_USER_NOTIF_FLAG_CONTINUE), else it fails with
/// `err`. 0, or -errno (-ENOENT: the caller was interrupted and will ask again).
int tether_notif_respond(int listener, uint64_t id, int err);
/// 0 while notification `id` is still pending, else -ENOENT.
int tether_notif_id_valid(int listener, uint64_t id);
/// Waits until `listener` has a notification (1), `wake_fd` fired (2), or no process uses the
/// filter any more (0). -errno on error.
int tether_notif_wait(int listener, int wake_fd);
/// The address family of descriptor `fd` of the process that sent pending notification `id`
/// (copied with pidfd_getfd, checked, closed), or -errno.
int tether_socket_domain_of(pid_t pid, int listener, uint64_t id, int fd);
/// If descriptor `fd` of the process behind `pidfd` is an IPv4/IPv6 socket: shuts it down both
/// ways (1). 0: another kind; -errno: no such descriptor, or not ours to copy.
int tether_shutdown_inet_socket(int pidfd, int fd);

// MARK: - Unix sockets (socket.c)

/// The pid of the peer of a connected Unix socket (SO_PEERCRED, as the kernel recorded it at
/// connect, in this process's PID namespace), or -errno.
int tether_peer_pid(int fd);
/// accept4(SOCK_CLOEXEC), retrying EINTR: the new descriptor, or -errno.
int tether_accept_cloexec(int fd);

// MARK: - small syscalls without a glibc wrapper on Debian 12

int tether_pidfd_open(pid_t pid);
int tether_set_child_subreaper(void);

/// The nice value every worker (and its init) starts at, whatever the supervisor's own: set
/// before the supervisor raises its priority (`SupervisorPriority`).
void tether_set_worker_nice(int nice);

/// From now on, a thread that sets its own nice value (libdispatch does, for each worker thread
/// it starts) gets it `offset` lower, unless it is `raised` or lower already (priority.c).
void tether_set_nice_offset(int offset, int raised);

/// setpriority(2) itself, never adjusted.
int tether_setpriority_raw(int which, int who, int prio);
/// prctl(PR_SET_DUMPABLE, 0): variadic in glibc, so not callable from Swift.
int tether_set_not_dumpable(void);
/// landlock_create_ruleset handling only LANDLOCK_ACCESS_FS_EXECUTE, with one rule per path
/// allowing it: a process restricted to it can execute those files and nothing else. Returns
/// the ruleset descriptor (CLOEXEC) or -errno (-ENOSYS / -EOPNOTSUPP: no Landlock).
int tether_landlock_exec_ruleset(const char *const *paths, size_t count);
/// Names the calling thread (what `ps -L` and /proc/PID/comm of an unexec'd child show).
void tether_set_thread_name(const char *name);
/// pipe2(O_CLOEXEC | O_NONBLOCK): 0, or -errno.
int tether_pipe_nonblock(int fds[2]);
/// A non-blocking, close-on-exec eventfd, for waking a poll loop.
int tether_eventfd(void);

// MARK: - resident pages (pages.c)

/// Unmaps the pages of every file mapping that is not writable and holds no anonymous page
/// (they come back from the page cache on their next use), then returns the heap's free pages
/// (malloc_trim). Returns the resident KiB unmapped and sets `*released_mappings`, or -errno.
long tether_release_file_pages(size_t *released_mappings);

// MARK: - signal relay (signals.c)

/// Handles `sigs` by writing each one's number, a byte, to `write_fd` (a non-blocking pipe
/// kept open for the life of the process). 0, -EBUSY (another relay descriptor), or -errno.
int tether_signal_relay_install(int write_fd, const int *sigs, size_t count);
/// `sigs` back to their default action.
void tether_signal_relay_default(const int *sigs, size_t count);

#ifdef __cplusplus
}
#endif
#endif
