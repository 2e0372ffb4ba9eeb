/*
 * What joining a cgroup costs a launch (run by hand, as root, on cgroup v2; docs/BENCHMARKS.md,
 * "Launch"): a process born and moved into a fresh cgroup by writing "0" to its cgroup.procs
 * (what the spawn path does today), against one born there by clone3(CLONE_INTO_CGROUP). Each
 * start after a pause, as a launch comes after a quiet spell: moving a process takes the
 * kernel's cgroup_threadgroup_rwsem for writing, whose first writer after a quiet spell waits
 * for an RCU grace period; a clone into the cgroup does not move anything.
 *
 *   cc -O2 -o cgroup_join bench/probes/cgroup_join.c
 *   mkdir /sys/fs/cgroup/probe && ./cgroup_join /sys/fs/cgroup/probe [PAUSE_MS] && rmdir /sys/fs/cgroup/probe
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define RUNS 20

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: cgroup_join CGROUP_DIR [PAUSE_MS]\n");
        return 2;
    }
    const char *base = argv[1];
    useconds_t pause = (useconds_t)(argc > 2 ? atoi(argv[2]) : 150) * 1000;
    double moved[RUNS], born[RUNS];
    for (int i = 0; i < RUNS; i++) {
        char dir[512], procs[600];
        int status;

        // Moved: fork, the child writes itself into cgroup.procs and exits; timed until reaped.
        usleep(pause);
        snprintf(dir, sizeof dir, "%s/moved%d", base, i);
        snprintf(procs, sizeof procs, "%s/cgroup.procs", dir);
        if (mkdir(dir, 0755) != 0) { perror(dir); return 1; }
        int pfd = open(procs, O_WRONLY | O_CLOEXEC);
        if (pfd < 0) { perror(procs); return 1; }
        double t0 = now_ms();
        pid_t p = fork();
        if (p == 0) _exit(write(pfd, "0", 1) == 1 ? 0 : 1);
        waitpid(p, &status, 0);
        moved[i] = now_ms() - t0;
        close(pfd);
        rmdir(dir);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) { fprintf(stderr, "cgroup.procs write failed\n"); return 1; }

        // Born there: clone3 with the cgroup's directory.
        usleep(pause);
        snprintf(dir, sizeof dir, "%s/born%d", base, i);
        if (mkdir(dir, 0755) != 0) { perror(dir); return 1; }
        int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        struct clone_args ca;
        memset(&ca, 0, sizeof ca);
        ca.flags = CLONE_INTO_CGROUP;
        ca.exit_signal = SIGCHLD;
        ca.cgroup = (uint64_t)dfd;
        t0 = now_ms();
        long r = syscall(SYS_clone3, &ca, sizeof ca);
        if (r == 0) _exit(0);
        if (r < 0) { perror("clone3(CLONE_INTO_CGROUP)"); return 1; }
        waitpid((pid_t)r, &status, 0);
        born[i] = now_ms() - t0;
        close(dfd);
        rmdir(dir);
    }
    qsort(moved, RUNS, sizeof moved[0], by_value);
    qsort(born, RUNS, sizeof born[0], by_value);
    printf("moved (fork + cgroup.procs):  median %.3f ms, max %.3f\n", moved[RUNS / 2], moved[RUNS - 1]);
    printf("born (clone3 INTO_CGROUP):    median %.3f ms, max %.3f\n", born[RUNS / 2], born[RUNS - 1]);
    return 0;
}
