// Internal to CSeccomp: what the child path (child.h) shares with the sources of the small static
// tether-init program (init.c, keeper.c): the reset of signal dispositions, the numbers passed
// on an exec's command line. Standard headers only, like tether_init.h: that program also
// builds against musl. Everything here is async-signal-safe.
#ifndef TETHER_STARTUP_H
#define TETHER_STARTUP_H

#include <signal.h>
#include <string.h>

/// Every signal's disposition back to SIG_DFL: in a forked child, before it unblocks signals, so
/// no handler of the supervisor's runs there; in the keeper, where an exec kept what the
/// supervisor ignored. Async-signal-safe (sigaction only).
static inline void tether_signals_all_default(void) {
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP) continue;
        (void)sigaction(sig, &dfl, NULL);   // EINVAL for the libc-reserved RT signals: fine
    }
}

/// Decimal digits of a non-negative number into `buf` (16 bytes), NUL-terminated: the numbers
/// a child passes on an exec's command line (async-signal-safe, no stdio).
static inline void tether_format_uint(long v, char *buf) {
    char tmp[16];
    int n = 0;
    do { tmp[n++] = (char)('0' + v % 10); v /= 10; } while (v > 0 && n < 15);
    for (int i = 0; i < n; i++) buf[i] = tmp[n - 1 - i];
    buf[n] = 0;
}

/// The number `tether_format_uint` wrote, or -1 for anything else (or above 2^22).
static inline long tether_parse_uint(const char *s) {
    long v = 0;
    if (s == NULL || *s == 0) return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > 1 << 22) return -1;
        v = v * 10 + (*s - '0');
    }
    return v;
}

#endif
