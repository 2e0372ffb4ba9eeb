// The small static `tether-init` program's two roles — the worker's init and the supervisor's
// keeper — and what the supervisor calls to start the keeper (init.c, keeper.c).
//
// Standard C and POSIX headers only (no libseccomp, no kernel headers): the program is built
// from these sources alone, against musl where it is installed (a few KiB of private memory a
// worker) and against glibc otherwise (the Makefile's `init` target).
#ifndef TETHER_INIT_H
#define TETHER_INIT_H

#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

// MARK: - the keeper (dead man's switch)

/// Starts the keeper: execs `exe_fd` (the tether-init program, or the tether binary) as
/// "tether-keeper READ_FD ECHO_FD KILL_FD|- TIMEOUT_MS", a small C process that holds the read
/// end of a pipe from the supervisor.
/// The supervisor writes int32 records: positive, a worker's process group (its init) to watch;
/// negative, one to forget; zero, a heartbeat, which the keeper echoes with one byte on
/// `*echo_fd`. When the pipe reaches EOF — the supervisor exited or was SIGKILLed — or, once
/// heartbeats have started, none arrives for `heartbeat_timeout_ms` — the supervisor is
/// stopped or hung — the keeper writes "1" to `cgroup_kill_fd` (if >= 0), SIGKILLs every
/// watched group and says so on its stderr. It exits at EOF and keeps watching after a timeout.
/// Returns 0 with `*pid`, `*write_fd` and `*echo_fd` (CLOEXEC, echo non-blocking), or -errno
/// (also when the exec failed: the child is reaped). Whether what runs is a keeper, the caller
/// learns from `tether_keeper_await_ready`.
int tether_keeper_start(int exe_fd, int cgroup_kill_fd, int heartbeat_timeout_ms, pid_t *pid, int *write_fd, int *echo_fd);

/// Waits up to `timeout_ms` for the keeper's first byte on `echo_fd` (it writes one when it
/// runs): 0, or -ETIMEDOUT, or -ECHILD when it exited without (not a keeper), or -errno.
int tether_keeper_await_ready(int echo_fd, int timeout_ms);

/// The keeper's entry, for argv = {"tether-keeper", READ_FD, ECHO_FD, KILL_FD or "-",
/// TIMEOUT_MS}: never returns. Returns -1 at once for any other argv.
int tether_keeper_run(int argc, char **argv);

// MARK: - the worker's init

/// PID 1 of a worker's namespace (init.c), for `argv` = {"tether-init", WORKER_PID, STATUS_FD,
/// GO_FD}: makes itself non-dumpable, lets the worker exec (a byte on GO_FD), reaps, writes the
/// worker's wait status to STATUS_FD when it exits, and exits. Never returns for such an
/// argv; returns -1 for any other.
int tether_init_run(int argc, char **argv);

#ifdef __cplusplus
}
#endif

#endif
