// Internal to CSeccomp: the steps of the child path (child.c) that spawn.c, contain.c and gate.c share (and, in
// startup.h, what the keeper and the init share with it).
// Everything here runs between clone and exec: async-signal-safe calls only.
#ifndef TETHER_CHILD_H
#define TETHER_CHILD_H

#include "CSeccomp.h"
#include "startup.h"

/// Reports {stage, err} over the errno pipe and exits 127.
__attribute__((noreturn)) void tether_child_fail(int pipe_fd, int stage, int err);

/// Signal dispositions to default, own process group, terminal foreground, the cgroup: what
/// the supervisor's direct child does first, on either path. `born_in_cgroup`: it was cloned
/// into the worker's cgroup (CLONE_INTO_CGROUP), so it does not move itself there.
void tether_child_enter(const struct tether_spawn_attr *a, int pipe_fd, int born_in_cgroup);

/// From resource limits to execve: what becomes the worker. `parent` is the pid PDEATHSIG is
/// checked against, or 0 to skip PDEATHSIG (inside a PID namespace its init's death ends it).
/// `go_fd` >= 0: wait for a byte on it before the filter and the exec (its init is ready).
__attribute__((noreturn)) void tether_worker_finish(const struct tether_spawn_attr *a, int pipe_fd, pid_t parent, int go_fd);

/// Installs the gates' filter (if any) and waits until the parent has copied its listener,
/// which it says with a byte on `ack_fd` (the attribute's `gate_ack_fd`, or where it was moved).
void tether_child_install_gate(const struct tether_spawn_attr *a, int pipe_fd, int ack_fd);

/// Parent side: copies the listener at `fd_in_child` out of `child` (-errno on failure), and
/// sets the synchronous wake-up where the kernel has it.
int tether_gate_take_listener(pid_t child, int fd_in_child);
/// Parent side: answers the child's own gated calls until the exec of the worker's program (1),
/// or until the errno pipe has news (0). -errno on error.
int tether_gate_serve_exec(int listener, int errno_pipe);
/// Parent side: the child of `parent`, found in /proc, or -1.
pid_t tether_find_child(pid_t parent);

/// The namespace path: the body of the supervisor's child, which becomes PID 1 (see contain.c).
__attribute__((noreturn)) void tether_contained_child(const struct tether_spawn_attr *a, int pipe_fd, void *worker_stack_top, int born_in_cgroup);

/// Parent side: starts the user-mode stack of the network namespace of `init` (net.c), waits
/// until it says it is ready; 0 with `*pidfd` and `*exit_fd` set, or -errno.
int tether_net_start(const struct tether_net_helper *h, pid_t init, int *pidfd, int *exit_fd);

/// Maps this process's new user namespace: `uid_map`, then setgroups denied (required before an
/// unprivileged gid_map), then `gid_map`. 0, or -1 with errno set.
int tether_write_id_maps(const char *uid_map, const char *gid_map);

/// In the child: back to the nice value workers start at (`tether_set_worker_nice`).
void tether_child_reset_nice(void);

#endif
