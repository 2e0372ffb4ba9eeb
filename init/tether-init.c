// tether-init: PID 1 of a worker's PID namespace (see CSeccomp/init.c, CSeccomp/contain.c), and
// the supervisor's keeper when started as "tether-keeper" (CSeccomp/keeper.c).
//
// A program of its own, linked statically against a libc alone, so that each worker's init costs
// a few KiB of private memory rather than a fresh exec of the whole tether binary (about 2 MiB
// of private pages each: the Swift runtime's relocations). SwiftPM links the Swift runtime into
// every executable, so this one is built with a C compiler by the Makefile's `init` target
// (which `make build`, bench/run.sh and SmallInitTests use):
//
//   musl-gcc -static -O2 -ICSeccomp/include -o tether-init init/tether-init.c
//      CSeccomp/init.c CSeccomp/keeper.c
//
// musl where it is installed (Debian's musl-tools): a worker's init then writes 12–20 KiB of
// its own pages, against ~44 KiB with glibc's static start-up (its TLS on the heap, IRELATIVE
// relocations, stdio and locale data); `cc` otherwise, with the same sources.
//
// The supervisor execs it from beside its own binary, or from ../libexec/tether/; where there is
// none, the tether binary itself serves (its C constructor runs the same code).
#include "tether_init.h"

#include <unistd.h>

int main(int argc, char **argv) {
    tether_init_run(argc, argv);
    tether_keeper_run(argc, argv);
    static const char usage[] = "tether-init: started by the supervisor only (tether-init WORKER_PID STATUS_FD GO_FD, or tether-keeper READ_FD ECHO_FD KILL_FD TIMEOUT_MS)\n";
    (void)!write(2, usage, sizeof usage - 1);
    return 2;
}
