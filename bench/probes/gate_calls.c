/*
 * The gates benchmark's worker: the calls a gate covers, timed, to run with and without gates
 * in the same run. Prints nanoseconds per iteration of every batch, one per line.
 *
 *   gate_calls exec BATCHES ITERS     execve of itself ITERS times in a chain, per batch
 *   gate_calls connect BATCHES ITERS  socket(AF_INET) + connect to a loopback listener + accept + close
 *   gate_calls open BATCHES ITERS     open(O_RDONLY) + close: a write gate must not see it
 *   gate_calls getppid BATCHES ITERS  a call no gate covers
 *   gate_calls lone BATCHES ITERS     one connect(-1) after 200 µs of sleep, only the call timed:
 *                                     a gated call on its own (EBADF once let through)
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc < 4) { fprintf(stderr, "usage: gate_calls exec|connect|open|getppid BATCHES ITERS\n"); return 2; }
    const char *mode = argv[1];
    int batches = atoi(argv[2]), iters = atoi(argv[3]);
    if (!strcmp(mode, "exec")) {
        // argv: exec BATCHES ITERS [LEFT_IN_BATCH START_NS]: the chain carries its clock.
        int left = argc > 4 ? atoi(argv[4]) : iters;
        double start = argc > 5 ? atof(argv[5]) : now_ns();
        if (left == 0) {
            printf("%.2f\n", (now_ns() - start) / iters);
            fflush(stdout);
            if (--batches == 0) return 0;
            left = iters;
            start = now_ns();
        }
        char b[16], i[16], l[16], s[32];
        snprintf(b, sizeof b, "%d", batches);
        snprintf(i, sizeof i, "%d", iters);
        snprintf(l, sizeof l, "%d", left - 1);
        snprintf(s, sizeof s, "%.0f", start);
        char *const av[] = {argv[0], "exec", b, i, l, s, NULL};
        execv("/proc/self/exe", av);
        perror("execv");
        return 1;
    }
    int listener = -1;
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    if (!strcmp(mode, "connect")) {
        listener = socket(AF_INET, SOCK_STREAM, 0);
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof a;
        if (bind(listener, (struct sockaddr *)&a, sizeof a) != 0 || listen(listener, 64) != 0 ||
            getsockname(listener, (struct sockaddr *)&a, &len) != 0) { perror("listener"); return 1; }
    }
    if (!strcmp(mode, "lone")) {
        for (int n = 0; n < batches; n++) {
            double total = 0;
            for (int j = 0; j < iters; j++) {
                usleep(200);
                double t0 = now_ns();
                (void)syscall(SYS_connect, -1, NULL, 0);
                total += now_ns() - t0;
            }
            printf("%.2f\n", total / iters);
        }
        return 0;
    }
    for (int n = 0; n < batches; n++) {
        double t0 = now_ns();
        for (int j = 0; j < iters; j++) {
            if (!strcmp(mode, "connect")) {
                int s = socket(AF_INET, SOCK_STREAM, 0);
                if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof a) != 0) { perror("connect"); return 1; }
                int c = accept(listener, NULL, NULL);
                close(c);
                close(s);
            } else if (!strcmp(mode, "open")) {
                int fd = open("/etc/hostname", O_RDONLY);
                if (fd < 0) { perror("open"); return 1; }
                close(fd);
            } else {
                (void)getppid();
            }
        }
        printf("%.2f\n", (now_ns() - t0) / iters);
    }
    return 0;
}
