/*
 * The seccomp-cost benchmark's worker: BATCHES batches of ITERS iterations of getppid() and a
 * one-byte read() of /dev/zero, two cheap syscalls whose cost is mostly the kernel entry the
 * filter sits on. Prints the nanoseconds per iteration of every batch, one per line.
 *
 *   syscall_loop BATCHES ITERS
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    int batches = argc > 1 ? atoi(argv[1]) : 100, iters = argc > 2 ? atoi(argv[2]) : 10000;
    int fd = open("/dev/zero", O_RDONLY);
    char b;
    if (fd < 0) { perror("/dev/zero"); return 1; }
    for (int i = 0; i < batches; i++) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (int j = 0; j < iters; j++) {
            (void)getppid();
            if (read(fd, &b, 1) != 1) return 1;
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        printf("%.2f\n", ((t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec)) / iters);
    }
    return 0;
}
