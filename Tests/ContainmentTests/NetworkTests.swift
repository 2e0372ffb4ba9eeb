import Foundation
import Glibc
import Testing
import TetherSystem
import TetherTestKit

/// What a worker shares with the host, attacked from the worker's side (`Probes/netprobe.c`):
/// its network (the host's loopback, its abstract sockets, its ports), connections that outlive
/// a closed `net` gate, the gates' side doors (io_uring, a second thread), the terminal, the
/// user's session and the decision sockets. docs/threat-model.md has the table.
@Suite("containment: nothing shared with the host", .serialized, .timeLimit(.minutes(10)))
struct NetworkTests {
    static let probe: String = Escape.build("netprobe")

    /// A report file every uid may write, and its "name: result" lines.
    struct Report {
        let path: String
        init() {
            let dir = workerDirectory("tether-net")
            path = dir + "/report"
        }
        var results: [String: String] { Escape.parse((try? String(contentsOfFile: path, encoding: .utf8)) ?? "") }
        var done: Bool { results["done"] != nil }
    }

    /// Runs the probe to its end under `tether run`; its report.
    static func probeRun(
        _ a: LiveAuthority, _ surface: String, _ extra: [String], _ args: [String],
        env: [String: String] = [:]
    ) async throws -> (Report, Int32?, String) {
        let r = Report()
        let p = try a.run(surface, extra, [probe] + args + [r.path], env: env)
        let code = await p.exitCode(within: 30)
        return (r, code, p.stderr)
    }

    @Test(
        "egress: the outside host is reachable; the host's loopback (127.0.0.1, ::1, the stack's gateway) and its abstract sockets are not")
    func egress() async throws {
        let a = try await LiveAuthority(lease: "5s")
        let outside = try OutsideHost()
        defer { outside.stop() }
        let port = a.server.port
        let abstract = AbstractListener()
        defer { abstract.close() }
        for (target, want) in [
            ("\(outside.address) \(outside.port)", "ok"), ("127.0.0.1 \(port)", "ECONNREFUSED"),
            ("::1 \(port)", "ECONNREFUSED"), ("10.0.2.2 \(port)", "ENETUNREACH"),
        ] {
            let t = target.split(separator: " ").map(String.init)
            let (r, code, err) = try await Self.probeRun(a, "net-egress", [], ["connect", t[0], t[1]])
            #expect(code == 0, "\(err.suffix(800))")
            #expect(r.results["connect \(t[0]):\(t[1])"] == want, "\(target): \(r.results)")
        }
        let (r, _, _) = try await Self.probeRun(a, "net-egress", [], ["abstract", abstract.name])
        #expect(r.results["abstract connect"] == "ECONNREFUSED", "the host's abstract socket: \(r.results)")
        // --net none: no route out; --net host-loopback: the gateway is the host's 127.0.0.1.
        let (n, _, _) = try await Self.probeRun(a, "net-egress", ["--net", "none"], ["connect", outside.address, "\(outside.port)"])
        #expect(n.results["connect \(outside.address):\(outside.port)"] == "ENETUNREACH", "\(n.results)")
        let (h, _, herr) = try await Self.probeRun(a, "net-egress", ["--net", "host-loopback"], ["connect", "10.0.2.2", "\(port)"])
        #expect(h.results["connect 10.0.2.2:\(port)"] == "ok", "\(h.results)")
        #expect(herr.contains("host-loopback"), "the opt-out is logged: \(herr.suffix(600))")
    }

    @Test(
        "a connection hidden from the descriptor sweep stops at a closed net gate, and carries on when it opens",
        arguments: ["park", "thread"])
    func hiddenConnection(_ mode: String) async throws {
        let a = try await LiveAuthority(lease: "5s")
        let outside = try OutsideHost()
        defer { outside.stop() }
        let surface = "net-hide-\(mode)"
        let r = Report()
        let p = try a.run(surface, ["--gate", "net=\(surface).net"], [Self.probe, mode, outside.address, "\(outside.port)", r.path])
        defer { p.signal(SIGTERM) }
        #expect(await eventually(20) { outside.lines.count >= 5 }, "sending: \(r.results) \(p.stderr.suffix(800))")
        let (rc, out, _) = try a.op(["revoke", "\(surface).net", "--wait", "10s"])
        #expect(rc == 0 && out.contains("gate_closed"), "\(out)")
        // What was on its way when the revoke was answered lands at once; nothing after.
        try await Task.sleep(for: .milliseconds(200))
        let atCut = outside.lines.count
        try await Task.sleep(for: .milliseconds(1500))
        #expect(outside.lines.count == atCut, "\(mode): \(outside.lines.count - atCut) lines after the gate closed")
        #expect(p.stderr.contains("link=cut"), "\(p.stderr.suffix(800))")
        let (rc2, _, _) = try a.op(["restore", "\(surface).net", "--wait", "10s"])
        #expect(rc2 == 0)
        #expect(await eventually(10) { outside.lines.count > atCut + 5 }, "the link is back")
    }

    @Test("io_uring is refused wherever a gate is, even under profile none: no file created behind a closed write gate")
    func ioUring() async throws {
        let a = try await LiveAuthority(lease: "5s")
        let dir = workerDirectory("tether-uring")
        // The gate's surface is never registered: it starts closed.
        let (r, code, err) = try await Self.probeRun(
            a, "net-uring", ["--profile", "none", "--gate", "write=net-uring.write"], ["iouring", dir])
        #expect(code == 0, "\(err.suffix(800))")
        #expect(r.results["io_uring_setup"] == "EPERM", "\(r.results)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/uring-file"))
    }

    @Test("a closed net gate lets a Unix-socket connect through from a second thread")
    func unixFromThread() async throws {
        let a = try await LiveAuthority(lease: "5s")
        let dir = workerDirectory("tether-unix")
        let listener = UnixListener(path: dir + "/s.sock")
        defer { listener.close() }
        // The gate's surface registered (a first run), then revoked: the probe starts behind a closed gate.
        _ = try await Self.probeRun(a, "net-unix", ["--gate", "net=net-unix.net"], ["tiocsti"])
        let (rrc, rout, _) = try a.op(["revoke", "net-unix.net"])
        #expect(rrc == 0, "\(rout)")
        let (r, code, err) = try await Self.probeRun(a, "net-unix", ["--gate", "net=net-unix.net"], ["unixthread", listener.path])
        #expect(err.contains("gate starts closed"), "\(err.suffix(800))")
        #expect(code == 0, "\(err.suffix(800))")
        #expect(r.results["unix connect from a second thread"] == "ok", "\(r.results)")
    }

    @Test("TIOCSTI and TIOCLINUX are refused under a Docker profile that allows every ioctl")
    func terminalInjection() async throws {
        let a = try await LiveAuthority(lease: "5s")
        let dir = workerDirectory("tether-tty")
        let profile = dir + "/allow-all.json"
        try #"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["ioctl"], "action": "SCMP_ACT_ALLOW"}]}"#
            .write(toFile: profile, atomically: true, encoding: .utf8)
        chmod(profile, 0o644)
        let (r, code, err) = try await Self.probeRun(a, "net-tty", ["--profile", profile], ["tiocsti"])
        #expect(code == 0, "\(err.suffix(800))")
        #expect(r.results["ioctl(0, TIOCSTI)"] == "EPERM", "\(r.results)")
        #expect(r.results["ioctl(0, TIOCLINUX)"] == "EPERM", "\(r.results)")
    }

    @Test("the ports a worker binds on its loopback are its own: the host's 127.0.0.1 and ::1 stay free")
    func loopbackPorts() async throws {
        let a = try await LiveAuthority(lease: "5s")
        let port = freePort()
        let r = Report()
        let p = try a.run("net-bind", [], [Self.probe, "bind", "\(port)", r.path])
        defer { p.signal(SIGTERM) }
        #expect(await eventually(20) { r.results["bound"] != nil }, "\(p.stderr.suffix(800))")
        #expect(r.results["bind 127.0.0.1"] == "ok" && r.results["bind ::1"] == "ok", "\(r.results)")
        #expect(canBind(port, v6: false), "the host's 127.0.0.1:\(port) is still free")
        #expect(canBind(port, v6: true), "the host's [::1]:\(port) is still free")
    }

    @Test("a worker cannot remove or replace its decision socket, nor see another worker's")
    func decisionSockets() async throws {
        let a = try await LiveAuthority(lease: "5s")
        // Another worker of the same supervisor kind, running.
        let other = try a.run("net-other", [], ["sleep", "30"])
        defer { other.signal(SIGTERM) }
        try await Task.sleep(for: .milliseconds(500))
        let r = Report()
        let p = try a.run("net-replace", [], ["/bin/sh", "-c", "\(Self.probe) replace \"$TETHER_DECISION_SOCKET\" \(r.path)"])
        #expect(await p.exitCode(within: 30) == 0, "\(p.stderr.suffix(800))")
        let res = r.results
        #expect(res["unlink own decision socket"] == "EROFS", "\(res)")
        #expect(res["rename own decision socket"] == "EROFS", "\(res)")
        #expect(res["bind a socket beside its own"] == "EROFS", "\(res)")
        #expect(res["other workers' directories seen 0, sockets removed"] == "ok", "\(res)")
        #expect(res["mkdir beside its own directory"] == "EROFS", "\(res)")
    }

    @Test("an ordinary user's worker reaches nothing of the user's session: runtime directory, session variables")
    func session() async throws {
        let a = try await LiveAuthority(lease: "5s")
        // The user's session bus, as a logind session makes it: /run/user/UID/bus.
        let runtime = "/run/user/65534"
        try FileManager.default.createDirectory(atPath: runtime, withIntermediateDirectories: true)
        chown(runtime, 65534, 65534)
        chmod(runtime, 0o700)
        let bus = UnixListener(path: runtime + "/bus")
        defer { bus.close() }
        chown(bus.path, 65534, 65534)
        let state = try ReachTests().nobodyState(a)
        let r = Report()
        let p = try TetherProcess(
            [
                "run", "--dir", state, "--authority", a.url, "--key-file", state + "/agent.key",
                "--public-key", state + "/signing.pub", "--surface", "net-session", "--",
                "/bin/sh", "-c", "env > \(r.path).env; \(Self.probe) unixthread \(bus.path) \(r.path)",
            ],
            env: [
                "HOME": state, "XDG_RUNTIME_DIR": runtime, "DBUS_SESSION_BUS_ADDRESS": "unix:path=\(runtime)/bus",
                "SSH_AUTH_SOCK": "/tmp/ssh-x/agent.1",
            ], asUser: "nobody")
        #expect(await p.exitCode(within: 30) == 0, "\(p.stderr.suffix(800))")
        #expect(r.results["unix connect from a second thread"] == "ENOENT", "the session bus: \(r.results)")
        let env = (try? String(contentsOfFile: r.path + ".env", encoding: .utf8)) ?? ""
        for name in ["DBUS_SESSION_BUS_ADDRESS", "SSH_AUTH_SOCK", "XDG_RUNTIME_DIR"] {
            #expect(!env.contains(name + "="), "\(name) reached the worker")
        }
    }

    @Test("without slirp4netns a worker that asked for a network is refused, and says what to install")
    func noStack() async throws {
        let a = try await LiveAuthority(lease: "5s")
        let dir = workerDirectory("tether-nostack")
        let p = try a.run("net-nostack", [], ["sh", "-c", "touch \(dir)/ran"], env: ["TETHER_SLIRP4NETNS": "/nonexistent/slirp4netns"])
        #expect(await p.exitCode(within: 20) == 69)
        #expect(!FileManager.default.fileExists(atPath: dir + "/ran"))
        #expect(p.stderr.contains("slirp4netns") && p.stderr.contains("--net none"), "\(p.stderr.suffix(800))")
    }

    @Test("an enforcing net gate under --net host is refused at start: the sweep cannot reach hidden connections")
    func netGateNeedsNamespace() throws {
        let (rc, _, err) = try runTether(["run", "--net", "host", "--gate", "net=x.net", "--surface", "x", "--", "true"])
        #expect(rc == 64, "\(err)")
        #expect(err.contains("net gate needs the worker's own network namespace"), "\(err)")
    }
}

// MARK: - the host side

/// A host outside this one: a network namespace the test makes, joined by a veth pair, at an
/// address of its own, with a TCP listener that appends every line it receives to a file. The
/// only address any test targets beyond loopback.
final class OutsideHost: @unchecked Sendable {
    let name: String
    let address: String
    let port = 9100
    let log: String
    private let listener: Process

    init() throws {
        let tag = UInt16.random(in: 1...60000)
        name = "tether-out-\(tag)"
        let net = "10.\(200 + Int(tag % 50)).\(Int(tag / 50) % 250).0"
        let base = net.split(separator: ".").prefix(3).joined(separator: ".")
        address = base + ".2"
        let veth = "tov\(tag)"
        log = temporaryDirectory("tether-outside") + "/lines"
        FileManager.default.createFile(atPath: log, contents: nil)
        for cmd in [
            ["netns", "add", name], ["link", "add", veth, "type", "veth", "peer", "name", veth + "p"],
            ["link", "set", veth + "p", "netns", name], ["addr", "add", base + ".1/24", "dev", veth], ["link", "set", veth, "up"],
            ["-n", name, "addr", "add", address + "/24", "dev", veth + "p"], ["-n", name, "link", "set", veth + "p", "up"],
            ["-n", name, "link", "set", "lo", "up"],
        ] {
            let (rc, _, err) = try runToEnd("/usr/sbin/ip", cmd)
            guard rc == 0 else { throw OutsideHostError("ip \(cmd.joined(separator: " ")): \(err)") }
        }
        listener = Process()
        listener.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
        listener.arguments = [
            "netns", "exec", name, "/usr/bin/python3", "-c",
            """
            import socket, sys, threading
            s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("\(address)", \(port))); s.listen(16)
            def serve(c):
                for line in c.makefile("rb"):
                    with open("\(log)", "ab") as f: f.write(line)
            while True:
                c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
            """,
        ]
        try listener.run()
        // Listening once a connect from the namespace succeeds.
        for _ in 0..<100 {
            if (try? runToEnd(
                "/usr/sbin/ip",
                [
                    "netns", "exec", name, "/usr/bin/python3", "-c",
                    "import socket; socket.create_connection((\"\(address)\", \(port)), 1)",
                ]))?.0 == 0
            {
                return
            }
            usleep(50_000)
        }
        throw OutsideHostError("the outside host's listener did not start")
    }

    var lines: [Substring] { ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").split(separator: "\n") }

    func stop() {
        // SIGKILL: the test process may pass a blocked SIGTERM on to its children.
        kill(listener.processIdentifier, SIGKILL)
        for _ in 0..<200 where listener.isRunning { usleep(10_000) }
        _ = try? runToEnd("/usr/sbin/ip", ["netns", "del", name])
    }
}

struct OutsideHostError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

/// A listening Unix socket at a path (other uids may connect).
final class UnixListener: @unchecked Sendable {
    let path: String
    let fd: Int32
    init(path: String) {
        self.path = path
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var a = sockaddr_un()
        a.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &a.sun_path) { raw in
            for (i, b) in path.utf8.enumerated() { raw[i] = b }
        }
        unlink(path)
        _ = withUnsafePointer(to: &a) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        chmod(path, 0o666)
        listen(fd, 16)
    }
    func close() {
        Glibc.close(fd)
        unlink(path)
    }
}

/// A listening abstract Unix socket of the host's network namespace (ssh-agent, X11 and the
/// user's D-Bus use them).
final class AbstractListener: @unchecked Sendable {
    let name = "tether-test-\(UInt32.random(in: 0...UInt32.max))"
    let fd: Int32
    init() {
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var a = sockaddr_un()
        a.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(name.utf8)
        withUnsafeMutableBytes(of: &a.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i + 1] = b }
        }
        let len = socklen_t(MemoryLayout<sa_family_t>.size + 1 + bytes.count)
        _ = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
        listen(fd, 16)
    }
    func close() { Glibc.close(fd) }
}

/// Whether this process can bind the host's loopback at `port`.
func canBind(_ port: Int, v6: Bool) -> Bool {
    let s = socket(v6 ? AF_INET6 : AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    defer { close(s) }
    if v6 {
        var a = sockaddr_in6()
        a.sin6_family = sa_family_t(AF_INET6)
        a.sin6_port = UInt16(port).bigEndian
        a.sin6_addr = in6addr_loopback
        return withUnsafePointer(to: &a) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) }
        } == 0
    }
    var a = sockaddr_in()
    a.sin_family = sa_family_t(AF_INET)
    a.sin_port = UInt16(port).bigEndian
    a.sin_addr.s_addr = inet_addr("127.0.0.1")
    return withUnsafePointer(to: &a) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    } == 0
}
