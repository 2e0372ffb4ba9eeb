// Start-up pages a long-running supervisor no longer runs (Sources/TetherSystem/ResidentPages.swift).
//
// A supervisor's resident set is mostly pages of its executable and libraries mapped from the
// page cache, and most of those it touched once, starting: argument parsing, configuration,
// the first TLS handshake, the spawn path. They stay mapped for the supervisor's life — and a
// fault maps a whole neighbourhood of them (fault-around, large page-cache folios). This
// unmaps every read-only file mapping's pages; the ones the supervisor still runs come back on
// their next use as minor faults from the page cache (no disk read while they are cached).
//
// Only mappings that are file-backed, not writable, and hold no anonymous page: dropping one of
// those can lose nothing, because every page of it reads back from the file exactly as it was.
// A read-only mapping with an anonymous page — RELRO, written by the loader before it was made
// read-only, or text a debugger patched — is left alone. Mappings of executables and libraries
// are never unmapped in this process (nothing is dlclose'd), so an address range read from
// smaps still holds the same mapping when it is advised a moment later.
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "CSeccomp.h"

struct range { unsigned long start, end; long rss_kib; };

long tether_release_file_pages(size_t *released_mappings) {
    FILE *f = fopen("/proc/self/smaps", "re");
    if (!f) return -errno;
    struct range *ranges = NULL;
    size_t count = 0, capacity = 0;
    long released_kib = 0;
    int candidate = 0, anonymous = 0;
    long rss_kib = 0;
    struct range current = {0, 0, 0};
    char *line = NULL;
    size_t cap = 0;
    int err = 0;
    while (getline(&line, &cap, f) >= 0) {
        unsigned long start, end, inode;
        char perms[5];
        int path_at = 0;
        if (sscanf(line, "%lx-%lx %4s %*x %*s %lu %n", &start, &end, perms, &inode, &path_at) == 4) {
            // A mapping's header: "start-end perms offset dev inode   path".
            const char *path = path_at > 0 ? line + path_at : "";
            candidate = inode != 0 && path[0] == '/' && perms[0] == 'r' && perms[1] != 'w';
            anonymous = 0;
            rss_kib = 0;
            current.start = start;
            current.end = end;
            continue;
        }
        long kib;
        if (sscanf(line, "Rss: %ld kB", &kib) == 1) { rss_kib = kib; continue; }
        if (sscanf(line, "Anonymous: %ld kB", &kib) == 1) { anonymous = kib != 0; continue; }
        // VmFlags ends each mapping's entry. "lo": mlock'ed (MADV_DONTNEED refuses it), "io" /
        // "pf": device memory, never page-cache pages.
        if (strncmp(line, "VmFlags:", 8) == 0) {
            if (candidate && !anonymous && rss_kib > 0 && !strstr(line, " lo") && !strstr(line, " io") && !strstr(line, " pf")) {
                if (count == capacity) {
                    size_t n = capacity ? capacity * 2 : 64;
                    struct range *r = realloc(ranges, n * sizeof *r);
                    if (!r) { err = ENOMEM; break; }
                    ranges = r;
                    capacity = n;
                }
                current.rss_kib = rss_kib;
                ranges[count++] = current;
            }
            candidate = 0;
        }
    }
    free(line);
    fclose(f);
    size_t done = 0;
    if (!err) {
        for (size_t i = 0; i < count; i++) {
            if (madvise((void *)ranges[i].start, ranges[i].end - ranges[i].start, MADV_DONTNEED) == 0) {
                done++;
                released_kib += ranges[i].rss_kib;
            }
        }
    }
    free(ranges);
    if (err) return -err;
    // The heap's free pages too: glibc keeps what start-up freed in its arenas.
    (void)malloc_trim(0);
    if (released_mappings) *released_mappings = done;
    return released_kib;
}
