import Foundation
import Glibc
import Logging
import TetherCore
@testable import TetherSystem
@_exported import TetherTestKit

/// One spawner for the test process: like a supervisor, it is a subreaper with a keeper.
let testSpawner = Spawner(
    logger: {
        var l = Logger(label: "tether-test")
        l.logLevel = .error
        return l
    }())

/// Small C programs the tests build with the system compiler: what a worker might try.
enum TestPrograms {
    static let probeSource = #"""
        #define _GNU_SOURCE
        #include <errno.h>
        #include <sched.h>
        #include <stdio.h>
        #include <stdlib.h>
        #include <string.h>
        #include <sys/ioctl.h>
        #include <sys/mount.h>
        #include <sys/ptrace.h>
        #include <sys/stat.h>
        #include <sys/syscall.h>
        #include <sys/wait.h>
        #include <unistd.h>

        static int report(const char *what, long rc) {
            if (rc < 0) printf("%s ERR %d\n", what, errno); else printf("%s OK\n", what);
            fflush(stdout);
            return 0;
        }

        int main(int argc, char **argv) {
            for (int i = 1; i < argc; i++) {
                const char *op = argv[i];
                if (!strcmp(op, "unshare")) report(op, unshare(CLONE_NEWUSER));
                else if (!strcmp(op, "setsid")) {
                    // A group leader may never setsid; a child of it may, unless filtered.
                    pid_t c = fork();
                    if (c == 0) { report(op, syscall(SYS_setsid)); _exit(0); }
                    int st; waitpid(c, &st, 0);
                }
                else if (!strcmp(op, "setpgid")) report(op, setpgid(0, 0));
                else if (!strcmp(op, "ptrace")) report(op, ptrace(PTRACE_TRACEME, 0, 0, 0));
                else if (!strcmp(op, "mount")) report(op, mount("none", "/nonexistent-tether-probe", "tmpfs", 0, NULL));
                else if (!strcmp(op, "tiocsti")) { char c = 'x'; report(op, ioctl(0, TIOCSTI, &c)); }
                else if (!strcmp(op, "tiocsti-high")) { char c = 'x'; report(op, syscall(SYS_ioctl, 0, 0x100005412UL, &c)); }
                else if (!strcmp(op, "io_uring")) report(op, syscall(425, 1, NULL));
                else if (!strcmp(op, "getpid")) report(op, getpid());
                else if (!strcmp(op, "fork")) { pid_t c = fork(); if (c == 0) _exit(0); report(op, c); if (c > 0) waitpid(c, NULL, 0); }
                else if (!strcmp(op, "close253")) report(op, close(253));
                else if (!strcmp(op, "execveat-abs")) {
                    // execveat through the allowed descriptor, but an absolute path: the kernel
                    // ignores the descriptor. Runs /bin/true in a child; "OK" if it ran.
                    pid_t c = fork();
                    if (c == 0) {
                        char *const av[] = {"true", NULL}, *const ev[] = {NULL};
                        syscall(SYS_execveat, 253, "/bin/true", av, ev, 0x1000);
                        _exit(100 + errno);
                    }
                    int st = 0; waitpid(c, &st, 0);
                    if (WIFEXITED(st) && WEXITSTATUS(st) == 0) report(op, 0);
                    else { errno = WIFEXITED(st) && WEXITSTATUS(st) >= 100 ? WEXITSTATUS(st) - 100 : EIO; report(op, -1); }
                }
                else if (!strcmp(op, "execveat-abs-here")) {
                    // The same from the worker's own process (no fork needed under strict).
                    char *const av[] = {"true", NULL}, *const ev[] = {NULL};
                    report(op, syscall(SYS_execveat, 253, "/bin/true", av, ev, 0x1000));
                }
                else if (!strcmp(op, "socket")) report(op, syscall(SYS_socket, 2, 1, 0));
                else if (!strcmp(op, "mkdir")) { char p[64]; snprintf(p, sizeof p, "/tmp/tether-probe-%d", getpid()); long r = mkdir(p, 0700); report(op, r); rmdir(p); }
                else if (!strcmp(op, "int80")) {
                    long r; __asm__ volatile("int $0x80" : "=a"(r) : "a"(20) : "memory");
                    printf("int80 returned %ld\n", r); fflush(stdout);
                }
                else if (!strcmp(op, "x32")) {
                    long r; __asm__ volatile("syscall" : "=a"(r) : "a"(0x40000000L | 39) : "rcx", "r11", "memory");
                    printf("x32 returned %ld\n", r); fflush(stdout);
                }
                else { printf("%s UNKNOWN\n", op); return 2; }
            }
            return 0;
        }
        """#

    /// Paths of the built programs, built once per test process.
    static let directory: String = {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tether-tests-\(getpid())").path
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        // Workers run as a dedicated uid: the programs must be theirs to run, whatever umask
        // another test in this process left.
        chmod(dir, 0o755)
        return dir
    }()

    static let probe: String = build("probe", probeSource)

    static func build(_ name: String, _ source: String) -> String {
        let src = "\(directory)/\(name).c"
        let out = "\(directory)/\(name)"
        try! source.write(toFile: src, atomically: true, encoding: .utf8)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/cc")
        p.arguments = ["-O1", "-o", out, src]
        try! p.run()
        p.waitUntilExit()
        precondition(p.terminationStatus == 0, "cc failed for \(name)")
        chmod(out, 0o755)
        return out
    }
}

/// Runs a command as a worker under `profile`, collecting its stdout.
func runWorker(
    _ command: [String], profile: String = "default", supervisorEnvironment: [String: String] = ProcessInfoEnvironment.current,
    spec: (inout WorkerSpec) -> Void = { _ in }, launch: (inout Spawner.Launch) -> Void = { _ in }
) async throws -> (status: ExitStatus, output: String) {
    let filter = try SeccompCompiler.compile(ProfileSource.load(profile).profile)
    var workerSpec = WorkerSpec(command: command)
    spec(&workerSpec)
    var fds: [Int32] = [0, 0]
    guard pipe(&fds) == 0 else { throw SystemError("pipe2", .init(rawValue: errno)) }
    let worker: Worker
    do {
        var l = Spawner.Launch(name: "test", spec: workerSpec, filter: filter, stdout: fds[1], supervisorEnvironment: supervisorEnvironment)
        launch(&l)
        worker = try await testSpawner.spawn(l)
    } catch {
        close(fds[0])
        close(fds[1])
        throw error
    }
    close(fds[1])
    let reader = fds[0]
    let output = await Task.detached { readAll(reader) }.value
    close(reader)
    return (await worker.wait(), output)
}

func readAll(_ fd: Int32) -> String {
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { break }
        out.append(contentsOf: buf[0..<n])
    }
    return String(decoding: out, as: UTF8.self)
}

/// Open descriptors of this process.
func openFDs() -> Set<Int32> {
    Set(((try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []).compactMap { Int32($0) })
}

/// What each open descriptor of this process refers to (`/proc/self/fd/N`'s link).
func openDescriptorTargets() -> [Int32: String] {
    var out: [Int32: String] = [:]
    for fd in openFDs() {
        if let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\(fd)") { out[fd] = target }
    }
    return out
}
