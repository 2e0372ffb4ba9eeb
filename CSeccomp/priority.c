// The supervisor's nice value over its own threads (Sources/TetherSystem/SupervisorPriority.swift).
//
// Linux keeps a nice value per thread, and libdispatch gives each worker thread it starts the
// nice value of its QoS class — an absolute one (0 for the default class), set through
// setpriority(PRIO_PROCESS, 0, n). A supervisor raised to nice -10 would see the async
// runtime's threads, which run the stop path, drop back to 0 within seconds (libdispatch
// retires idle threads after 5 s and starts new ones). This definition of setpriority takes
// precedence over libc's for every caller in this executable (libdispatch included, statically
// or dynamically linked: an executable's symbols come first): a change of the calling thread's
// own nice value is taken relative to the supervisor's raised base (a value already at or above
// that base stays). Calls for another thread or process, and every call before the supervisor
// raised itself, pass through unchanged.
#define _GNU_SOURCE
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "CSeccomp.h"

static volatile int nice_offset = 0;
static volatile int nice_raised = 20;

void tether_set_nice_offset(int offset, int raised) {
    nice_raised = raised;
    nice_offset = offset;
}

int tether_setpriority_raw(int which, int who, int prio) {
    return (int)syscall(SYS_setpriority, which, who, prio);
}

int setpriority(__priority_which_t which, id_t who, int prio) {
    int off = nice_offset;
    // A value at or above the raised base already (libdispatch passing on a thread's inherited
    // nice value) stays as it is: never raised twice.
    if (off != 0 && which == PRIO_PROCESS && who == 0 && prio > nice_raised) {
        prio += off;
        if (prio < -20) prio = -20;
        if (prio > 19) prio = 19;
    }
    return (int)syscall(SYS_setpriority, which, who, prio);
}
