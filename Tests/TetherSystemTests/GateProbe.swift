import Foundation
import Glibc
import TetherCore
@testable import TetherSystem

/// A worker that does what it is told, one line at a time on stdin, and answers one line each:
/// "OP OK" or "OP ERR errno". What a gated agent does, and what a hostile one tries.
enum GateProbe {
    static let source = #"""
        #define _GNU_SOURCE
        #include <arpa/inet.h>
        #include <errno.h>
        #include <fcntl.h>
        #include <linux/filter.h>
        #include <linux/seccomp.h>
        #include <netinet/in.h>
        #include <stddef.h>
        #include <stdint.h>
        #include <stdio.h>
        #include <stdlib.h>
        #include <string.h>
        #include <sys/socket.h>
        #include <sys/stat.h>
        #include <sys/syscall.h>
        #include <sys/un.h>
        #include <sys/wait.h>
        #include <unistd.h>

        static void say(const char *op, long rc) {
            if (rc < 0) printf("%s ERR %d\n", op, errno); else printf("%s OK\n", op);
            fflush(stdout);
        }

        static struct sockaddr_in loopback(int port) {
            struct sockaddr_in a;
            memset(&a, 0, sizeof a);
            a.sin_family = AF_INET;
            a.sin_port = htons((uint16_t)port);
            a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            return a;
        }

        int main(void) {
            // Made before any gate closes: what a closed net gate must still hold back.
            int old_tcp = socket(AF_INET, SOCK_STREAM, 0);
            int old_udp = socket(AF_INET, SOCK_DGRAM, 0);
            int held = -1;
            char line[512];
            while (fgets(line, sizeof line, stdin)) {
                line[strcspn(line, "\n")] = 0;
                char op[64] = {0}, arg[400] = {0};
                sscanf(line, "%63s %399s", op, arg);
                int port = atoi(arg);
                if (!strcmp(op, "exec")) {
                    pid_t c = fork();
                    if (c == 0) { char *const av[] = {"true", NULL}; execve("/bin/true", av, environ); _exit(100 + errno); }
                    int st = 0; waitpid(c, &st, 0);
                    if (WIFEXITED(st) && WEXITSTATUS(st) >= 100) { errno = WEXITSTATUS(st) - 100; say(op, -1); } else say(op, 0);
                } else if (!strcmp(op, "connect")) {
                    int s = socket(AF_INET, SOCK_STREAM, 0);
                    if (s < 0) { say(op, -1); continue; }
                    struct sockaddr_in a = loopback(port);
                    say(op, connect(s, (struct sockaddr *)&a, sizeof a));
                    close(s);
                } else if (!strcmp(op, "connect-old")) {
                    struct sockaddr_in a = loopback(port);
                    say(op, connect(old_tcp, (struct sockaddr *)&a, sizeof a));
                } else if (!strcmp(op, "socket-high")) {
                    // AF_INET with high bits set: the kernel reads an int.
                    long s = syscall(SYS_socket, 0x100000002L, SOCK_STREAM, 0);
                    say(op, s);
                    if (s >= 0) close((int)s);
                } else if (!strcmp(op, "udp")) {
                    int s = socket(AF_INET, SOCK_DGRAM, 0);
                    if (s < 0) { say(op, -1); continue; }
                    struct sockaddr_in a = loopback(port);
                    say(op, sendto(s, "x", 1, 0, (struct sockaddr *)&a, sizeof a));
                    close(s);
                } else if (!strcmp(op, "udp-old")) {
                    struct sockaddr_in a = loopback(port);
                    say(op, sendto(old_udp, "x", 1, 0, (struct sockaddr *)&a, sizeof a));
                } else if (!strcmp(op, "sendmsg-old")) {
                    struct sockaddr_in a = loopback(port);
                    struct iovec v = {.iov_base = "x", .iov_len = 1};
                    struct msghdr m = {.msg_name = &a, .msg_namelen = sizeof a, .msg_iov = &v, .msg_iovlen = 1};
                    say(op, sendmsg(old_udp, &m, 0));
                } else if (!strcmp(op, "hold")) {
                    held = socket(AF_INET, SOCK_STREAM, 0);
                    struct sockaddr_in a = loopback(port);
                    say(op, held < 0 ? -1 : connect(held, (struct sockaddr *)&a, sizeof a));
                } else if (!strcmp(op, "send-held")) {
                    say(op, send(held, "x", 1, MSG_NOSIGNAL));
                } else if (!strcmp(op, "unix")) {
                    // Unix sockets stay usable: a pair, and a datagram to an abstract address.
                    int sv[2];
                    if (socketpair(AF_UNIX, SOCK_DGRAM, 0, sv) != 0) { say(op, -1); continue; }
                    struct iovec v = {.iov_base = "x", .iov_len = 1};
                    struct msghdr m = {.msg_iov = &v, .msg_iovlen = 1};
                    long rc = sendmsg(sv[0], &m, 0);
                    int r = socket(AF_UNIX, SOCK_DGRAM, 0), t = socket(AF_UNIX, SOCK_DGRAM, 0);
                    struct sockaddr_un u = {.sun_family = AF_UNIX};
                    snprintf(u.sun_path + 1, sizeof u.sun_path - 1, "tether-gate-probe-%d", getpid());
                    socklen_t len = offsetof(struct sockaddr_un, sun_path) + 1 + strlen(u.sun_path + 1);
                    if (rc >= 0) rc = bind(r, (struct sockaddr *)&u, len);
                    if (rc >= 0) rc = sendto(t, "x", 1, 0, (struct sockaddr *)&u, len);
                    if (rc >= 0) rc = connect(t, (struct sockaddr *)&u, len);
                    say(op, rc);
                    close(sv[0]); close(sv[1]); close(r); close(t);
                } else if (!strcmp(op, "write")) {
                    int fd = open(arg, O_WRONLY | O_CREAT | O_TRUNC, 0600);
                    say(op, fd);
                    if (fd >= 0) close(fd);
                } else if (!strcmp(op, "append")) {
                    int fd = open(arg, O_WRONLY | O_APPEND);
                    say(op, fd);
                    if (fd >= 0) close(fd);
                } else if (!strcmp(op, "read")) {
                    int fd = open(arg, O_RDONLY);
                    say(op, fd);
                    if (fd >= 0) close(fd);
                } else if (!strcmp(op, "read-high")) {
                    // O_RDONLY with high bits set in the flags register: still a read.
                    long fd = syscall(SYS_openat, AT_FDCWD, arg, 0x100000000L | O_RDONLY, 0);
                    say(op, fd);
                    if (fd >= 0) close((int)fd);
                } else if (!strcmp(op, "openat2")) {
                    struct { uint64_t flags, mode, resolve; } how = {O_WRONLY | O_CREAT, 0600, 0};
                    long fd = syscall(437, AT_FDCWD, arg, &how, sizeof how);
                    say(op, fd);
                    if (fd >= 0) close((int)fd);
                } else if (!strcmp(op, "mkdir")) {
                    say(op, mkdir(arg, 0700));
                } else if (!strcmp(op, "unlink")) {
                    say(op, unlink(arg));
                } else if (!strcmp(op, "own-listener")) {
                    // A listener of its own, on a filter that notifies on execve: answered by itself.
                    struct sock_filter f[] = {
                        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
                        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_execve, 0, 1),
                        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
                        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
                    };
                    struct sock_fprog prog = {.len = 4, .filter = f};
                    say(op, syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog));
                } else if (!strcmp(op, "fds")) {
                    // What this process holds: a listener of its own would let it answer itself.
                    char path[64], target[256];
                    int found = 0;
                    for (int fd = 0; fd < 1024; fd++) {
                        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
                        ssize_t n = readlink(path, target, sizeof target - 1);
                        if (n > 0) { target[n] = 0; if (strstr(target, "seccomp")) found++; }
                    }
                    printf("fds seccomp=%d\n", found);
                    fflush(stdout);
                } else {
                    printf("%s UNKNOWN\n", op);
                    fflush(stdout);
                }
            }
            return 0;
        }
        """#

    static let path: String = TestPrograms.build("gateprobe", source)
}

/// A worker spoken to one line at a time.
final class Conversation: @unchecked Sendable {
    // @unchecked: used by one test at a time.
    let worker: Worker
    private let input: Int32
    private let output: Int32
    private var pending: [UInt8] = []

    init(worker: Worker, input: Int32, output: Int32) {
        self.worker = worker
        self.input = input
        self.output = output
    }

    /// Starts `command` as a worker with pipes for stdin and stdout.
    static func start(
        _ command: [String], gates: [GateConfig], open: Set<GateKind>, profile: String = "default"
    ) async throws -> Conversation {
        let filter = try SeccompCompiler.compile(ProfileSource.load(profile).profile)
        var toWorker: [Int32] = [0, 0], fromWorker: [Int32] = [0, 0]
        guard pipe(&toWorker) == 0, pipe(&fromWorker) == 0 else { throw SystemError("pipe", .init(rawValue: errno)) }
        for fd in toWorker + fromWorker { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        // The host's network: these tests judge the gates' calls themselves (the filter, the
        // answers, the sweep) against a peer on the host's loopback. What a worker's own
        // network namespace adds is NetworkTests' (ContainmentTests).
        var spec = WorkerSpec(command: command)
        spec.network = .host
        var launch = Spawner.Launch(
            name: "gated", spec: spec, filter: filter,
            stdin: toWorker[0], stdout: fromWorker[1])
        launch.gates = gates
        launch.openGates = open
        let worker: Worker
        do { worker = try await testSpawner.spawn(launch) } catch {
            [toWorker[0], toWorker[1], fromWorker[0], fromWorker[1]].forEach { close($0) }
            throw error
        }
        close(toWorker[0])
        close(fromWorker[1])
        return Conversation(worker: worker, input: toWorker[1], output: fromWorker[0])
    }

    /// Sends one command, returns the answer line ("" at EOF or after 10 s).
    func ask(_ line: String) -> String {
        let bytes = Array((line + "\n").utf8)
        _ = bytes.withUnsafeBytes { write(input, $0.baseAddress, $0.count) }
        let deadline = Date().addingTimeInterval(10)
        while true {
            if let nl = pending.firstIndex(of: 10) {
                let l = String(decoding: pending[..<nl], as: UTF8.self)
                pending.removeSubrange(...nl)
                return l
            }
            var p = pollfd(fd: output, events: Int16(POLLIN), revents: 0)
            let left = Int32(max(0, deadline.timeIntervalSinceNow * 1000))
            guard left > 0, poll(&p, 1, left) > 0 else { return "" }
            var buf = [UInt8](repeating: 0, count: 4096)
            let n = buf.withUnsafeMutableBytes { read(output, $0.baseAddress, $0.count) }
            if n <= 0 { return "" }
            pending.append(contentsOf: buf[0..<n])
        }
    }

    /// Closes stdin (the probe exits) and waits for the worker.
    func end() async -> ExitStatus {
        close(input)
        let status = await worker.wait()
        close(output)
        return status
    }
}

/// A TCP listener and a UDP socket on 127.0.0.1, in the test process: what the worker reaches.
final class LoopbackPeer: @unchecked Sendable {
    let tcp: Int32
    let udp: Int32
    let tcpPort: Int
    let udpPort: Int

    init() {
        func bound(_ type: Int32) -> (Int32, Int) {
            let s = socket(AF_INET, type | Int32(SOCK_CLOEXEC.rawValue), 0)
            var a = sockaddr_in()
            a.sin_family = sa_family_t(AF_INET)
            a.sin_addr.s_addr = inet_addr("127.0.0.1")
            var len = socklen_t(MemoryLayout<sockaddr_in>.size)
            _ = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s, $0, len) } }
            _ = withUnsafeMutablePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(s, $0, &len) } }
            return (s, Int(UInt16(bigEndian: a.sin_port)))
        }
        (tcp, tcpPort) = bound(Int32(SOCK_STREAM.rawValue))
        listen(tcp, 128)
        (udp, udpPort) = bound(Int32(SOCK_DGRAM.rawValue))
    }

    deinit {
        close(tcp)
        close(udp)
    }
}
