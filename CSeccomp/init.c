// The worker's init: PID 1 of its PID namespace (see contain.c).
//
// The supervisor's child execs the small `tether-init` program (init/tether-init.c) — or, where
// it is not installed, the tether binary itself, whose constructor below runs before any Swift
// and never returns into it — as "tether-init WORKER_PID STATUS_FD GO_FD". It reaps every process
// the namespace re-parents to it, and when the worker (PID 2) exits it writes the worker's
// wait status to STATUS_FD and exits, which ends the namespace: the kernel SIGKILLs whatever
// is left in it. It forwards nothing: the supervisor signals the worker's process group
// itself, and as a namespace init it is immune to every signal from inside it (none has a
// handler) and stopped or killed only from outside.
#define _GNU_SOURCE
#include "tether_init.h"
#include "startup.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

__attribute__((noreturn)) static void init_main(pid_t worker, int status_fd, int go_fd) {
    // Nobody in the namespace may read this process's memory or attach to it: only now may
    // the worker (waiting for the go) exec.
    (void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    (void)prctl(PR_SET_NAME, "tether-init", 0, 0, 0);
    ssize_t w;
    do { w = write(go_fd, "g", 1); } while (w < 0 && errno == EINTR);
    close(go_fd);
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    (void)sigprocmask(SIG_SETMASK, &chld, NULL);
    for (;;) {
        int status;
        pid_t p;
        while ((p = waitpid(-1, &status, WNOHANG)) > 0 || (p < 0 && errno == EINTR)) {
            if (p != worker) continue;
            ssize_t n;
            do { n = write(status_fd, &status, sizeof status); } while (n < 0 && errno == EINTR);
            _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
        }
        if (p < 0 && errno == ECHILD) _exit(127);   // the worker was never ours: nothing to wait for
        siginfo_t info;
        (void)sigwaitinfo(&chld, &info);
    }
}

int tether_init_run(int argc, char **argv) {
    if (argc != 4 || argv == NULL || argv[0] == NULL || strcmp(argv[0], "tether-init") != 0) return -1;
    long worker = tether_parse_uint(argv[1]), fd = tether_parse_uint(argv[2]), go = tether_parse_uint(argv[3]);
    if (worker <= 1 || fd < 3 || go < 3) return -1;
    init_main((pid_t)worker, (int)fd, (int)go);
}

// The fallback, where the small tether-init program is not installed beside tether: the tether
// binary exec'd as "tether-init" is the init, or as "tether-keeper" the keeper (keeper.c),
// before any Swift runs.
__attribute__((constructor)) static void tether_init_entry(int argc, char **argv, char **envp) {
    (void)envp;
    (void)tether_init_run(argc, argv);
    (void)tether_keeper_run(argc, argv);
}
