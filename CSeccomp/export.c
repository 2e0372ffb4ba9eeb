// Exporting a libseccomp filter to a BPF program held in memory.
//
// libseccomp 2.5.4 (Debian 12) has no seccomp_export_bpf_mem, so the program is written to an
// anonymous memfd and read back. This runs in the parent, never after fork.
#define _GNU_SOURCE
#include "CSeccomp.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int tether_filter_export(scmp_filter_ctx ctx, struct sock_filter **out, size_t *count) {
    *out = NULL;
    *count = 0;
    int fd = memfd_create("tether-bpf", MFD_CLOEXEC);
    if (fd < 0) return -errno;
    int rc = seccomp_export_bpf(ctx, fd);
    if (rc < 0) { close(fd); return rc; }
    struct stat st;
    if (fstat(fd, &st) < 0) { rc = -errno; close(fd); return rc; }
    size_t size = (size_t)st.st_size;
    if (size == 0 || size % sizeof(struct sock_filter) != 0) { close(fd); return -EINVAL; }
    struct sock_filter *buf = malloc(size);
    if (buf == NULL) { close(fd); return -ENOMEM; }
    size_t done = 0;
    while (done < size) {
        ssize_t n = pread(fd, (char *)buf + done, size - done, (off_t)done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) { rc = n < 0 ? -errno : -EIO; free(buf); close(fd); return rc; }
        done += (size_t)n;
    }
    close(fd);
    *out = buf;
    *count = size / sizeof(struct sock_filter);
    return 0;
}
