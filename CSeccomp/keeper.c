// The keeper: a dead man's switch for the supervisor.
//
// PR_SET_PDEATHSIG reaches only the worker's direct child. When the supervisor is SIGKILLed the
// rest of each worker's tree would live on, so the supervisor starts this small process first.
// It holds the read end of a pipe; the supervisor holds the only write end (CLOEXEC, so no
// worker inherits it). When the pipe reaches EOF the supervisor is gone, however it died, and
// the keeper kills every worker cgroup (one write to the parent cgroup's cgroup.kill) and every
// worker process group it was told about.
//
// It is exec'd, not forked: the small static `tether-init` program (init/tether-init.c) is also
// the keeper when its argv[0] is "tether-keeper" (or, where that program is not installed, the
// tether binary, whose constructor runs it before any Swift). A forked keeper shared every page
// of the supervisor copy-on-write for the supervisor's whole life: each page the supervisor
// then wrote cost it a fault, a copy and a TLB shootdown, the keeper's own PSS was ~3.5 MiB of
// the supervisor's memory (its heap, its keys), and the fork of a large multi-threaded
// address space was a millisecond of every launch.
#define _GNU_SOURCE
#include "tether_init.h"
#include "startup.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define KEEPER_MAX_GROUPS 8192

static void keeper_close_except(int lo, int hi, int c) {
    // Close every descriptor >= 3 except lo < hi and c (c may be -1).
    int keep[3] = {lo, hi, c};
    for (int i = 2; i > 0 && keep[i] >= 0 && keep[i] < keep[i - 1]; i--) {
        int t = keep[i]; keep[i] = keep[i - 1]; keep[i - 1] = t;
    }
    unsigned int from = 3;
    for (int i = 0; i < 3; i++) {
        if (keep[i] < 3) continue;
        if ((unsigned int)keep[i] > from) syscall(SYS_close_range, from, (unsigned int)keep[i] - 1, 0);
        from = (unsigned int)keep[i] + 1;
    }
    syscall(SYS_close_range, from, ~0U, 0);
}

static void say(const char *msg) {
    size_t n = strlen(msg);
    (void)!write(2, msg, n);
}

// Kills everything the keeper watches: the supervisor's cgroup directory at once, then each
// worker's process group (its init: killing a PID namespace's init ends the namespace).
static void kill_all(int cgroup_kill_fd, const int32_t *groups, size_t ngroups) {
    if (cgroup_kill_fd >= 0) {
        ssize_t n;
        do { n = write(cgroup_kill_fd, "1", 1); } while (n < 0 && errno == EINTR);
    }
    for (size_t i = 0; i < ngroups; i++) {
        (void)kill(-groups[i], SIGKILL);
        (void)kill(groups[i], SIGKILL);
    }
}

__attribute__((noreturn)) static void keeper_run(int read_fd, int echo_fd, int cgroup_kill_fd, int timeout_ms) {
    static int32_t groups[KEEPER_MAX_GROUPS];
    size_t ngroups = 0;

    // Out of the supervisor's process group: a Ctrl-C on the terminal must not take the
    // keeper down with the supervisor, nor may the stop signals of a job shell.
    (void)setpgid(0, 0);
    // The exec reset the supervisor's handlers, but a disposition it ignored stays ignored
    // across an exec: every disposition back to default first, then the keeper's own ignores.
    tether_signals_all_default();
    struct sigaction ign;
    memset(&ign, 0, sizeof ign);
    ign.sa_handler = SIG_IGN;
    int ignored[] = {SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGPIPE, SIGTSTP, SIGTTIN, SIGTTOU, SIGUSR1, SIGUSR2};
    for (size_t i = 0; i < sizeof ignored / sizeof ignored[0]; i++) (void)sigaction(ignored[i], &ign, NULL);
    sigset_t none;
    sigemptyset(&none);
    (void)sigprocmask(SIG_SETMASK, &none, NULL);
    (void)prctl(PR_SET_NAME, "tether-keeper", 0, 0, 0);
    // Stdio stays (its stderr is the supervisor's: the journal, the terminal).
    int keep_lo = read_fd < echo_fd ? read_fd : echo_fd, keep_hi = read_fd < echo_fd ? echo_fd : read_fd;
    keeper_close_except(keep_lo, keep_hi, cgroup_kill_fd);
    // The first byte says this program is a keeper and runs (the supervisor falls back to its
    // own binary when one dies before saying so).
    (void)!write(echo_fd, "", 1);

    int32_t rec;
    size_t have = 0;
    int beating = 0;   // the timeout counts only once the supervisor has started its heartbeat
    for (;;) {
        struct pollfd pfd = {.fd = read_fd, .events = POLLIN};
        int ready = poll(&pfd, 1, beating && timeout_ms > 0 ? timeout_ms : -1);
        if (ready < 0 && errno == EINTR) continue;
        if (ready == 0) {
            // Silence: the supervisor is stopped, or its runtime is hung. It cannot enforce
            // anything now, so nothing of its workers may run.
            kill_all(cgroup_kill_fd, groups, ngroups);
            say("tether-keeper: the supervisor missed its heartbeat (stopped or hung): killed every worker\n");
            ngroups = 0;
            beating = 0;
            continue;
        }
        ssize_t n = read(read_fd, (char *)&rec + have, sizeof rec - have);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;   // EOF: the supervisor is gone
        have += (size_t)n;
        if (have < sizeof rec) continue;
        have = 0;
        if (rec > 0) {
            if (ngroups < KEEPER_MAX_GROUPS) groups[ngroups++] = rec;
        } else if (rec < 0) {
            for (size_t i = 0; i < ngroups; i++) {
                if (groups[i] == -rec) { groups[i] = groups[--ngroups]; break; }
            }
        } else {
            beating = 1;
            (void)!write(echo_fd, "", 1);   // non-blocking: a full pipe just drops the echo
        }
    }

    kill_all(cgroup_kill_fd, groups, ngroups);
    _exit(0);
}

int tether_keeper_run(int argc, char **argv) {
    if (argc != 5 || argv == NULL || argv[0] == NULL || strcmp(argv[0], "tether-keeper") != 0) return -1;
    long read_fd = tether_parse_uint(argv[1]), echo_fd = tether_parse_uint(argv[2]);
    long kill_fd = strcmp(argv[3], "-") == 0 ? -1 : tether_parse_uint(argv[3]);
    long timeout_ms = tether_parse_uint(argv[4]);
    if (read_fd < 3 || echo_fd < 3 || read_fd == echo_fd || (kill_fd != -1 && kill_fd < 3) || timeout_ms < 0) return -1;
    keeper_run((int)read_fd, (int)echo_fd, (int)kill_fd, (int)timeout_ms);
}

struct keeper_exec {
    int exe_fd;
    char *const *argv;
    const int *keep;   // the descriptors the keeper gets: CLOEXEC cleared in the child
    int nkeep;
    volatile int err;  // set by the child when the exec fails (it shares this memory)
};

// The child, on its own stack in the parent's memory until the exec (CLONE_VM|CLONE_VFORK, as
// posix_spawn does): only fcntl and execveat, both async-signal-safe; all signals stay blocked
// (the exec resets handlers; keeper_run unblocks them once its dispositions are set).
static int keeper_child(void *arg) {
    struct keeper_exec *x = arg;
    for (int i = 0; i < x->nkeep; i++) {
        if (x->keep[i] >= 0 && fcntl(x->keep[i], F_SETFD, 0) != 0) { x->err = errno; _exit(127); }
    }
    static char *const envp[] = {NULL};
    syscall(SYS_execveat, x->exe_fd, "", x->argv, envp, AT_EMPTY_PATH);
    x->err = errno;
    _exit(127);
}

int tether_keeper_start(int exe_fd, int cgroup_kill_fd, int heartbeat_timeout_ms, pid_t *pid_out, int *write_fd, int *echo_fd) {
    int fds[2], echo[2];
    if (pipe2(fds, O_CLOEXEC) != 0) return -errno;
    if (pipe2(echo, O_CLOEXEC | O_NONBLOCK) != 0) {
        int e = errno;
        close(fds[0]);
        close(fds[1]);
        return -e;
    }
    char rbuf[16], ebuf[16], kbuf[16], tbuf[16];
    tether_format_uint(fds[0], rbuf);
    tether_format_uint(echo[1], ebuf);
    if (cgroup_kill_fd >= 0) tether_format_uint(cgroup_kill_fd, kbuf); else { kbuf[0] = '-'; kbuf[1] = 0; }
    tether_format_uint(heartbeat_timeout_ms > 0 ? heartbeat_timeout_ms : 0, tbuf);
    char *argv[] = {"tether-keeper", rbuf, ebuf, kbuf, tbuf, NULL};
    int keep[] = {fds[0], echo[1], cgroup_kill_fd};
    struct keeper_exec x = {.exe_fd = exe_fd, .argv = argv, .keep = keep, .nkeep = 3, .err = 0};

    const size_t stack_size = 64 * 1024;
    void *stack = mmap(NULL, stack_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    int e = 0;
    pid_t pid = -1;
    if (stack == MAP_FAILED) {
        e = errno;
    } else {
        // Blocked across the clone: no handler of the supervisor's may run on the child's stack.
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        pid = clone(keeper_child, (char *)stack + stack_size, CLONE_VM | CLONE_VFORK | SIGCHLD, &x);
        e = pid < 0 ? errno : x.err;
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        munmap(stack, stack_size);
        if (pid > 0 && x.err != 0) {
            int status;
            while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
            pid = -1;
        }
    }
    close(fds[0]);
    close(echo[1]);
    if (pid < 0) {
        close(fds[1]);
        close(echo[0]);
        return -e;
    }
    *pid_out = pid;
    *write_fd = fds[1];
    *echo_fd = echo[0];
    return 0;
}

int tether_keeper_await_ready(int echo_fd, int timeout_ms) {
    struct pollfd pfd = {.fd = echo_fd, .events = POLLIN};
    for (;;) {
        int n = poll(&pfd, 1, timeout_ms);
        if (n < 0 && errno == EINTR) continue;   // a signal: waiting again from the start is fine
        if (n < 0) return -errno;
        if (n == 0) return -ETIMEDOUT;
        char byte;
        ssize_t r = read(echo_fd, &byte, 1);
        if (r == 1) return 0;
        if (r < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        return -ECHILD;   // EOF: it exited without a word
    }
}
