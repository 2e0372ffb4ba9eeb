/*
 * Runs a command in an environment that refuses part of what the supervisor may use, as the
 * tests need to start a supervisor there:
 *
 *   refuse namespaces COMMAND [ARGS...]
 *       no new namespace can be made: unshare(2), setns(2) and clone(2) with any CLONE_NEW*
 *       flag fail with EPERM, clone3(2) with ENOSYS (so libc falls back to clone). What a
 *       container without CAP_SYS_ADMIN, or a host with namespaces disabled, looks like.
 *   refuse eagain COMMAND [ARGS...]
 *       clone(2) with CLONE_NEWPID fails with EAGAIN, clone3(2) with ENOSYS: what a supervisor
 *       sees while a fork bomb (anyone's) holds every process slot. Not a refusal of
 *       namespaces: the supervisor must not fall back to weak containment for it.
 *   refuse clone3 COMMAND [ARGS...]
 *       clone3(2) fails with ENOSYS, as under Docker's default seccomp profile or on a kernel
 *       before 5.3: a worker's first process cannot be born in its cgroup (CLONE_INTO_CGROUP),
 *       the supervisor must move it there.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#define CLONE_NEW_ANY 0x7E020000UL /* NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET */
#define LOAD(field) BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, field))
#define FAIL_IF_NR(nr, error)                                                                       \
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (nr), 0, 1), BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (error))
#define ALLOW BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)

static struct sock_filter no_namespaces[] = {
    LOAD(nr),
    FAIL_IF_NR(SYS_unshare, EPERM),
    FAIL_IF_NR(SYS_setns, EPERM),
    FAIL_IF_NR(SYS_clone3, ENOSYS),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_clone, 1, 0),
    ALLOW,
    LOAD(args[0]),
    BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, CLONE_NEW_ANY, 0, 1),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
    ALLOW,
};

static struct sock_filter again[] = {
    LOAD(nr),
    FAIL_IF_NR(SYS_clone3, ENOSYS),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_clone, 1, 0),
    ALLOW,
    LOAD(args[0]),
    BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, 0x20000000UL /* CLONE_NEWPID */, 0, 1),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EAGAIN),
    ALLOW,
};

static struct sock_filter no_clone3[] = {
    LOAD(nr),
    FAIL_IF_NR(SYS_clone3, ENOSYS),
    ALLOW,
};

int main(int argc, char **argv) {
    struct sock_fprog prog;
    if (argc >= 3 && strcmp(argv[1], "namespaces") == 0) {
        prog = (struct sock_fprog){sizeof no_namespaces / sizeof no_namespaces[0], no_namespaces};
    } else if (argc >= 3 && strcmp(argv[1], "eagain") == 0) {
        prog = (struct sock_fprog){sizeof again / sizeof again[0], again};
    } else if (argc >= 3 && strcmp(argv[1], "clone3") == 0) {
        prog = (struct sock_fprog){sizeof no_clone3 / sizeof no_clone3[0], no_clone3};
    } else {
        fprintf(stderr, "usage: refuse namespaces|eagain|clone3 COMMAND [ARGS...]\n");
        return 2;
    }
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) {
        perror("refuse: seccomp");
        return 1;
    }
    execvp(argv[2], argv + 2);
    perror("refuse: exec");
    return 127;
}
