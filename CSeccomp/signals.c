// The supervisor's signal relay: a handler that writes the signal's number to a pipe, and a
// thread (Swift's SignalForwarder) that reads the pipe and acts. No signal source of
// libdispatch's (whose manager thread, once started, also starts libdispatch's once-a-second
// workqueue monitor for the life of the process), and nothing runs when no signal comes.
#include "CSeccomp.h"
#include "child.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

// Written once, before any handler is installed; never closed (a late handler must not write
// into a descriptor number reused for something else).
static int tether_relay_fd = -1;

// Async-signal-safe: write(2) only, errno saved. The pipe is non-blocking: a flood of signals
// that fills it loses bytes, never blocks the interrupted thread.
static void tether_relay_handler(int sig) {
    int saved = errno;
    unsigned char b = (unsigned char)sig;
    (void)write(tether_relay_fd, &b, 1);
    errno = saved;
}

int tether_signal_relay_install(int write_fd, const int *sigs, size_t count) {
    if (tether_relay_fd >= 0 && tether_relay_fd != write_fd) return -EBUSY;
    tether_relay_fd = write_fd;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = tether_relay_handler;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < count; i++) {
        if (sigaction(sigs[i], &sa, NULL) != 0) return -errno;
    }
    return 0;
}

void tether_signal_relay_default(const int *sigs, size_t count) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < count; i++) (void)sigaction(sigs[i], &sa, NULL);
}
