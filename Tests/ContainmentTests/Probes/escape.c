/*
 * An adversarial worker: tries one way to escape, survive or undo a revocation, writes what
 * happened to REPORT ("name: result" lines), then every process it ended up with appends a
 * byte to TICKS every 10 ms, forever. The containment tests run it under `tether run`, revoke
 * it, and read the kernel: no process of the tree may still run, TICKS must stop growing.
 *
 *   escape MODE TICKS REPORT MARKER [ARG]
 *
 * MARKER only rides in argv so the tests find every process in /proc (nothing here execs).
 * Results are "ok", or the errno name, or "signal N" for a child killed by one.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/io_uring.h>
#include <linux/seccomp.h>
#include <linux/filter.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

static const char *ticks, *report_path;

static void report(const char *name, const char *result) {
    int fd = open(report_path, O_WRONLY | O_APPEND | O_CREAT, 0666);
    if (fd < 0) return;
    dprintf(fd, "%s: %s\n", name, result);
    close(fd);
}

/* "ok" for r >= 0, else the errno's name. */
static void outcome(const char *name, long r) {
    report(name, r >= 0 ? "ok" : strerrorname_np(errno));
}

/* Appends to TICKS every 10 ms. Never returns. */
static void tick_forever(void) {
    struct timespec ten_ms = {0, 10 * 1000 * 1000};
    for (;;) {
        int fd = open(ticks, O_WRONLY | O_APPEND | O_CREAT, 0666);
        if (fd >= 0) { (void)!write(fd, "x", 1); close(fd); }
        nanosleep(&ten_ms, NULL);
    }
}

/* Runs fn in a child and reports how that child ended: "exit N" or "signal N". */
static void in_child(const char *name, void (*fn)(void)) {
    pid_t p = fork();
    if (p == 0) { fn(); _exit(0); }
    int st = 0;
    waitpid(p, &st, 0);
    char buf[64];
    if (WIFSIGNALED(st)) snprintf(buf, sizeof buf, "signal %d", WTERMSIG(st));
    else snprintf(buf, sizeof buf, "exit %d", WEXITSTATUS(st));
    report(name, buf);
}

static void x32_getpid(void) { syscall(0x40000000 | SYS_getpid); }

static void int80_getpid(void) {
    long r;
    __asm__ volatile("int $0x80" : "=a"(r) : "a"(20) : "memory"); /* i386 getpid */
    (void)r;
}

/* A child that forks a grandchild and exits: the grandchild is re-parented. */
static void orphan(void (*before_tick)(void)) {
    if (fork() == 0) {
        if (fork() == 0) {
            if (before_tick) before_tick();
            tick_forever();
        }
        _exit(0);
    }
}

static void grandchild_setsid(void) { outcome("daemon setsid", setsid()); }

/* Reads path: "ok" if it gave bytes, "empty" if it opened but held none (a cover), else the
 * errno. */
static void try_open(const char *name, const char *path, int flags) {
    int fd = open(path, flags | O_CLOEXEC);
    if (fd < 0) { outcome(name, -1); return; }
    char buf[64];
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0) outcome(name, -1);
    else report(name, n > 0 ? "ok" : "empty");
    close(fd);
}

/* Writes `text` to `path`: "ok" if the kernel took it. */
static void try_write(const char *name, const char *path, const char *text) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) { outcome(name, -1); return; }
    outcome(name, write(fd, text, strlen(text)));
    close(fd);
}

/*
 * Every way out of reach mode tries, against the processes and files of the supervisor's side
 * that the test names: SUPERVISOR KEEPER AUTHORITY (pids as the host sees them), STATE (the
 * state directory), KEYFILE (the agent key), CGROUP (the worker's cgroup directory as the
 * host sees it). Every result must be an error.
 */
static void reach(const char *targets) {
    /* The test writes the targets once the supervisor runs (its pid is not known before):
     * six lines, SUPERVISOR KEEPER AUTHORITY STATE KEYFILE CGROUP. */
    static char text[4096];
    char *a[6] = {0};
    for (int tries = 0; tries < 2000; tries++) {
        int fd = open(targets, O_RDONLY);
        if (fd >= 0) {
            ssize_t n = read(fd, text, sizeof text - 1);
            close(fd);
            if (n > 0 && text[n - 1] == '\n') {
                text[n] = 0;
                int k = 0;
                for (char *p = text, *line = text; *p && k < 6; p++)
                    if (*p == '\n') { *p = 0; a[k++] = line; line = p + 1; }
                if (k == 6) break;
            }
        }
        usleep(10000);
    }
    if (!a[5]) { report("targets", "missing"); return; }
    pid_t sup = atoi(a[0]), keeper = atoi(a[1]), auth = atoi(a[2]);
    const char *state = a[3], *keyfile = a[4], *cgroup = a[5];
    char path[512];
    outcome("kill(supervisor, SIGSTOP)", kill(sup, SIGSTOP));
    outcome("kill(keeper, SIGSTOP)", kill(keeper, SIGSTOP));
    outcome("kill(authority, SIGSTOP)", kill(auth, SIGSTOP));
    outcome("kill(getppid(), SIGSTOP)", kill(getppid(), SIGSTOP));
    outcome("kill(1, SIGKILL)", kill(1, SIGKILL));
    outcome("tgkill(supervisor)", syscall(SYS_tgkill, sup, sup, SIGSTOP));
    long pfd = syscall(SYS_pidfd_open, sup, 0);
    outcome("pidfd_open(supervisor)", pfd);
    if (pfd >= 0) outcome("pidfd_send_signal(supervisor)", syscall(SYS_pidfd_send_signal, pfd, SIGSTOP, NULL, 0));
    outcome("ptrace(PTRACE_ATTACH, supervisor)", ptrace(PTRACE_ATTACH, sup, 0, 0));
    outcome("ptrace(PTRACE_ATTACH, init)", ptrace(PTRACE_ATTACH, 1, 0, 0));
    char b;
    struct iovec local = {&b, 1}, remote = {(void *)0x400000, 1};
    outcome("process_vm_readv(supervisor)", syscall(SYS_process_vm_readv, sup, &local, 1, &remote, 1, 0));
    snprintf(path, sizeof path, "/proc/%d/environ", sup);
    try_open("open /proc/SUPERVISOR/environ", path, O_RDONLY);
    snprintf(path, sizeof path, "/proc/%d/mem", sup);
    try_open("open /proc/SUPERVISOR/mem", path, O_RDONLY);
    try_open("open /proc/1/mem (the init)", "/proc/1/mem", O_RDONLY);
    try_open("open /proc/1/environ (the init)", "/proc/1/environ", O_RDONLY);
    snprintf(path, sizeof path, "%s/operator.key", state);
    try_open("read operator.key", path, O_RDONLY);
    snprintf(path, sizeof path, "%s/signing.key", state);
    try_open("read signing.key", path, O_RDONLY);
    snprintf(path, sizeof path, "%s/agent.key", state);
    try_open("read agent.key", path, O_RDONLY);
    snprintf(path, sizeof path, "%s/authority.sqlite", state);
    try_open("read authority.sqlite", path, O_RDONLY);
    try_open("read the key file", keyfile, O_RDONLY);
    const char *controls[] = {"cgroup.freeze", "cgroup.kill", "cgroup.procs", "cgroup.subtree_control"};
    for (size_t i = 0; i < 4; i++) {
        char name[96];
        snprintf(path, sizeof path, "%s/%s", cgroup, controls[i]);
        snprintf(name, sizeof name, "write own %s", controls[i]);
        try_write(name, path, i == 0 ? "0" : i == 1 ? "0" : i == 2 ? "0" : "+pids");
        snprintf(path, sizeof path, "%s/../%s", cgroup, controls[i]);
        snprintf(name, sizeof name, "write supervisor's %s", controls[i]);
        try_write(name, path, i == 0 ? "1" : i == 1 ? "1" : i == 2 ? "0" : "+pids");
    }
    try_write("move itself to the root cgroup", "/sys/fs/cgroup/unified/cgroup.procs", "0");
    try_write("move itself to the root cgroup (v2 at /sys/fs/cgroup)", "/sys/fs/cgroup/cgroup.procs", "0");
    snprintf(path, sizeof path, "%s/escape", cgroup);
    outcome("mkdir in its cgroup", mkdir(path, 0755));
    outcome("umount /proc", umount2("/proc", MNT_DETACH));
    outcome("umount the state directory's cover", umount2(state, MNT_DETACH));
    /* Its own user and mount namespace (where the profile allows it): root there, but the
     * mounts it inherited are locked together; what hides the state stays. */
    if (unshare(CLONE_NEWUSER | CLONE_NEWNS) == 0) {
        report("unshare(CLONE_NEWUSER|CLONE_NEWNS)", "ok");
        outcome("umount the state directory's cover in its own namespace", umount2(state, MNT_DETACH));
        snprintf(path, sizeof path, "%s/operator.key", state);
        try_open("read operator.key from its own namespace", path, O_RDONLY);
        outcome("remount the cgroup fs read-write in its own namespace",
                mount(NULL, "/sys/fs/cgroup", NULL, MS_REMOUNT | MS_BIND, NULL));
    } else {
        outcome("unshare(CLONE_NEWUSER|CLONE_NEWNS)", -1);
    }
}
static void grandchild_pdeathsig(void) { outcome("orphan PR_SET_PDEATHSIG 0", prctl(PR_SET_PDEATHSIG, 0)); }

int main(int argc, char **argv) {
    if (argc < 5) { fprintf(stderr, "usage: escape MODE TICKS REPORT MARKER [ARG]\n"); return 2; }
    const char *mode = argv[1], *arg = argc > 5 ? argv[5] : "";
    ticks = argv[2];
    report_path = argv[3];
    pid_t supervisor = getppid();

    if (!strcmp(mode, "setsid")) {
        if (fork() == 0) { outcome("setsid", setsid()); tick_forever(); }
    } else if (!strcmp(mode, "setpgid")) {
        if (fork() == 0) { outcome("setpgid(0, 0)", setpgid(0, 0)); tick_forever(); }
    } else if (!strcmp(mode, "daemon")) {
        orphan(grandchild_setsid); /* double fork, re-parented, then a new session */
        report("double fork", "ok");
    } else if (!strcmp(mode, "reparent")) {
        orphan(grandchild_pdeathsig);
        report("re-parented orphan", "ok");
    } else if (!strcmp(mode, "subreaper")) {
        outcome("PR_SET_CHILD_SUBREAPER", prctl(PR_SET_CHILD_SUBREAPER, 1));
        outcome("PR_SET_PDEATHSIG 0", prctl(PR_SET_PDEATHSIG, 0));
        orphan(NULL);
    } else if (!strcmp(mode, "forkbomb")) {
        /* Every process forks as fast as it can until fork fails, then ticks. */
        int n = 0, failed = 0;
        for (int i = 0; i < 100000 && !failed; i++) {
            pid_t p = fork();
            if (p == 0) { n = 0; continue; }
            if (p < 0) failed = errno;
            else n++;
        }
        if (failed) report("fork bomb stopped by", strerrorname_np(failed));
    } else if (!strcmp(mode, "ptrace")) {
        pid_t sibling = fork();
        if (sibling == 0) tick_forever();
        outcome("PTRACE_ATTACH supervisor", ptrace(PTRACE_ATTACH, supervisor, 0, 0));
        outcome("PTRACE_SEIZE supervisor", ptrace(PTRACE_SEIZE, supervisor, 0, 0));
        outcome("PTRACE_ATTACH sibling", ptrace(PTRACE_ATTACH, sibling, 0, 0));
        outcome("process_vm_readv supervisor", syscall(SYS_process_vm_readv, supervisor, NULL, 0, NULL, 0, 0));
    } else if (!strcmp(mode, "killsupervisor")) {
        outcome("kill(supervisor, SIGKILL)", kill(supervisor, SIGKILL));
    } else if (!strcmp(mode, "syscalls")) {
        in_child("x32 getpid", x32_getpid);
        in_child("int 0x80 getpid", int80_getpid);
        struct io_uring_params params;
        memset(&params, 0, sizeof params);
        outcome("io_uring_setup", syscall(SYS_io_uring_setup, 8, &params));
        outcome("unshare(CLONE_NEWUSER)", unshare(CLONE_NEWUSER));
        outcome("unshare(CLONE_NEWNS|CLONE_NEWPID)", unshare(CLONE_NEWNS | CLONE_NEWPID));
        long c = syscall(SYS_clone, CLONE_NEWPID | SIGCHLD, 0, 0, 0, 0);
        if (c == 0) _exit(0);
        if (c > 0) waitpid(c, NULL, 0);
        outcome("clone(CLONE_NEWPID)", c);
        char ch = 'x';
        outcome("ioctl(0, TIOCSTI)", ioctl(0, TIOCSTI, &ch));
        outcome("setns", syscall(SYS_setns, -1, 0));
    } else if (!strcmp(mode, "ownfilter")) {
        /* A stricter filter of its own: refuses kill() with EPERM. Harmless to the supervisor:
         * seccomp filters the worker's own syscalls, never signals sent to it. */
        struct sock_filter f[] = {
            BPF_STMT(BPF_LD | BPF_W | BPF_ABS, 0 /* offsetof(struct seccomp_data, nr) */),
            BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_kill, 0, 1),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        };
        struct sock_fprog prog = {sizeof f / sizeof f[0], f};
        outcome("PR_SET_NO_NEW_PRIVS", prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0));
        outcome("seccomp(SET_MODE_FILTER)", syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog));
        outcome("kill(self, 0) under its own filter", kill(getpid(), 0));
    } else if (!strcmp(mode, "reach")) {
        /* ARG: the targets file */
        reach(arg);
        if (fork() == 0) tick_forever();
    } else if (!strcmp(mode, "racemem")) {
        /* From its first instruction, before its init is through its exec: PID 1 is then still
         * a copy of the supervisor's memory. Any open of its mem or environ is a leak. */
        int opened = 0;
        for (int i = 0; i < 20000 && !opened; i++) {
            int fd = open("/proc/1/mem", O_RDONLY | O_CLOEXEC);
            if (fd < 0) fd = open("/proc/1/environ", O_RDONLY | O_CLOEXEC);
            if (fd >= 0) { opened = 1; close(fd); }
        }
        report("open PID 1's mem or environ from the first moments", opened ? "ok" : "EACCES");
    } else if (!strcmp(mode, "stopparent")) {
        /* The first attack: `kill -STOP $PPID`, then keep writing. */
        outcome("kill(getppid(), SIGSTOP)", kill(getppid(), SIGSTOP));
    } else if (!strcmp(mode, "ignoreterm")) {
        signal(SIGTERM, SIG_IGN);
        sigset_t s;
        sigemptyset(&s);
        sigaddset(&s, SIGTERM);
        outcome("block SIGTERM", sigprocmask(SIG_BLOCK, &s, NULL));
        if (fork() == 0) tick_forever(); /* inherits both */
    } else if (!strcmp(mode, "secrets")) {
        /* ARG: the supervisor's key file. */
        char path[64], buf[256];
        try_open("read the key file", arg, O_RDONLY);
        int fd;
        snprintf(path, sizeof path, "/proc/%d/environ", supervisor);
        fd = open(path, O_RDONLY);
        outcome("read the supervisor's /proc/PID/environ", fd < 0 ? -1 : read(fd, buf, sizeof buf));
        snprintf(path, sizeof path, "/proc/%d/mem", supervisor);
        fd = open(path, O_RDONLY);
        outcome("open the supervisor's /proc/PID/mem", fd);
        int leaked = 0;
        /* TETHER_DECISION_SOCKET is the worker's own: the path of its decision socket. */
        for (char **e = environ; *e; e++)
            if ((!strncmp(*e, "TETHER_", 7) && strncmp(*e, "TETHER_DECISION_SOCKET=", 23)) || strstr(*e, "KEY")) leaked++;
        report("TETHER_* or *KEY* variables in its environment", leaked ? "present" : "none");
    } else {
        fprintf(stderr, "escape: unknown mode %s\n", mode);
        return 2;
    }
    report("ticking", mode);
    tick_forever();
}
