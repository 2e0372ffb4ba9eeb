import Foundation
import Glibc
import Testing
import TetherSystem
import TetherTestKit

/// The boundary itself: in every way Tether starts a worker, the worker tries to reach its
/// supervisor's side — signal, trace or freeze the supervisor, its keeper, the authority and its
/// init; read the keys, the database, the supervisor's environment; write its cgroup's control
/// files or leave its cgroup; undo the covers from a namespace of its own — and every attempt
/// must fail. Then a revoke, and the kernel must show the tree stopped.
@Suite("containment: a worker cannot reach its supervisor's side", .serialized, .timeLimit(.minutes(10)))
struct ReachTests {
    /// How the worker is started.
    enum Mode: String, CaseIterable, CustomStringConvertible, Sendable {
        /// `tether run` as root, no --user: a dedicated dynamic uid.
        case rootDefault = "tether run as root"
        /// `tether run --user nobody` as root.
        case rootAsNobody = "tether run as root --user nobody"
        /// `tether run --user root` as root: root in a user namespace of its own.
        case rootAsRoot = "tether run as root --user root"
        /// `tether run` as an ordinary user (nobody): a user namespace owns the worker's.
        case unprivileged = "tether run as an ordinary user"
        /// The same, the worker as root in its own user namespace, profile none.
        case unprivilegedRootNone = "tether run as an ordinary user --user root --profile none"
        /// `tether supervise` as root.
        case supervise = "tether supervise as root"
        /// Profile none as root: the worker may unshare, and still cannot undo the covers.
        case rootNone = "tether run as root --profile none"

        var description: String { rawValue }
    }

    /// The attempts that must fail, by the names escape.c reports. Values: what is allowed
    /// instead of success ("empty": opened, but a cover with no bytes).
    static let attempts = [
        "kill(supervisor, SIGSTOP)", "kill(keeper, SIGSTOP)", "kill(authority, SIGSTOP)", "tgkill(supervisor)", "pidfd_open(supervisor)",
        "ptrace(PTRACE_ATTACH, supervisor)",
        "ptrace(PTRACE_ATTACH, init)", "process_vm_readv(supervisor)", "open /proc/SUPERVISOR/environ",
        "open /proc/SUPERVISOR/mem", "open /proc/1/mem (the init)", "open /proc/1/environ (the init)",
        "read operator.key", "read signing.key", "read agent.key", "read authority.sqlite", "read the key file",
        "write own cgroup.freeze", "write own cgroup.kill", "write own cgroup.procs", "write own cgroup.subtree_control",
        "write supervisor's cgroup.freeze", "write supervisor's cgroup.kill", "write supervisor's cgroup.procs",
        "write supervisor's cgroup.subtree_control", "move itself to the root cgroup",
        "move itself to the root cgroup (v2 at /sys/fs/cgroup)", "mkdir in its cgroup", "umount /proc",
        "umount the state directory's cover",
    ]
    // kill(getppid(), SIGSTOP) and kill(1, SIGKILL) aim at the init, which a worker of the same
    // uid may signal: the call succeeds, and the kernel drops the signal (a namespace's init
    // takes only what it handles from inside). Their effect is checked instead.

    /// The worker's init, as the host sees it: the supervisor's child exec'd as tether-init
    /// (by its argv: it names itself only once its constructor runs).
    static func initProcess(of supervisor: pid_t) -> TetherSystem.ProcessInfo? {
        ProcessTable.snapshot().first { p in
            p.ppid == supervisor && !p.isDead
                && FileManager.default.contents(atPath: "/proc/\(p.pid)/cmdline").map { $0.starts(with: Array("tether-init".utf8)) } == true
        }
    }

    /// Where the profile lets the worker make its own user and mount namespace.
    static let fromOwnNamespace = [
        "umount the state directory's cover in its own namespace", "read operator.key from its own namespace",
        "remount the cgroup fs read-write in its own namespace",
    ]

    struct Started {
        var supervisor: TetherProcess
        var files: Escape.Files
        var surface: String
        var state: String
        var keyFile: String
    }

    /// A directory an ordinary user (nobody) owns, holding copies of the authority's keys as
    /// that user's own state directory would: readable by the worker's uid, were they not hidden.
    func nobodyState(_ a: LiveAuthority) throws -> String {
        let dir = temporaryDirectory("tether-nobody")
        for f in ["agent.key", "operator.key", "signing.key", "signing.pub"] {
            if f == "signing.key" {
                // Signing keys live in the database now; a directory made before keeps the file.
                try "legacy signing key\n".write(toFile: dir + "/" + f, atomically: false, encoding: .utf8)
            } else {
                try FileManager.default.copyItem(atPath: a.dir + "/" + f, toPath: dir + "/" + f)
            }
            chown(dir + "/" + f, 65534, 65534)
            chmod(dir + "/" + f, f.hasSuffix(".pub") ? 0o644 : 0o600)
        }
        _ = FileManager.default.createFile(atPath: dir + "/authority.sqlite", contents: Data("SQLite".utf8))
        chown(dir + "/authority.sqlite", 65534, 65534)
        chown(dir, 65534, 65534)
        chmod(dir, 0o700)
        return dir
    }

    func start(_ mode: Mode, _ a: LiveAuthority) async throws -> Started {
        let f = Escape.Files("reach")
        let surface = "reach-\(Mode.allCases.firstIndex(of: mode)!)"
        let targets = f.dir + "/targets"
        let probe = f.command("reach", targets)
        var state = a.dir, keyFile = a.dir + "/agent.key"
        let p: TetherProcess
        switch mode {
        case .rootDefault, .rootAsNobody, .rootAsRoot, .rootNone:
            var extra: [String] = []
            if mode == .rootAsNobody { extra += ["--user", "nobody"] }
            if mode == .rootAsRoot { extra += ["--user", "root"] }
            if mode == .rootNone { extra += ["--profile", "none"] }
            p = try a.run(surface, extra, probe)
        case .unprivileged, .unprivilegedRootNone:
            state = try nobodyState(a)
            keyFile = state + "/agent.key"
            var extra: [String] = []
            if mode == .unprivilegedRootNone { extra += ["--user", "root", "--profile", "none"] }
            p = try TetherProcess(
                [
                    "run", "--dir", state, "--authority", a.url, "--key-file", keyFile,
                    "--public-key", state + "/signing.pub", "--surface", surface,
                ] + extra + ["--"] + probe,
                env: ["HOME": state], asUser: "nobody")
        case .supervise:
            let path = temporaryDirectory("e2e-sv") + "/s.toml"
            let quoted = probe.map { "\"\($0)\"" }.joined(separator: ", ")
            try """
            \(a.authorityTable)

            [[worker]]
            name = "\(surface)"
            command = [\(quoted)]
            """.write(toFile: path, atomically: true, encoding: .utf8)
            p = try TetherProcess(["supervise", "--config", path, "--dir", a.dir])
        }
        // The supervisor's side, as the host sees it; then the worker tries each.
        var keeper: pid_t = 0
        var cgroup = "/sys/fs/cgroup/unified/none"
        for _ in 0..<2000 where keeper == 0 {
            keeper = ProcessTable.snapshot().first { $0.ppid == p.pid && command(of: $0.pid) == "tether-keeper" }?.pid ?? 0
            if keeper == 0 { try await Task.sleep(for: .milliseconds(10)) }
        }
        if let own = ProcessTable.cgroupPath(of: getpid()), mode != .unprivileged, mode != .unprivilegedRootNone {
            cgroup = "/sys/fs/cgroup/unified\(own == "/" ? "" : own)/tether.\(p.pid).0/\(surface).0"
        }
        let lines = ["\(p.pid)", "\(keeper)", "\(a.server.process?.processIdentifier ?? 0)", state, keyFile, cgroup]
        try (lines.joined(separator: "\n") + "\n").write(toFile: targets, atomically: true, encoding: .utf8)
        chmod(targets, 0o644)  // whatever umask another test in this process left: the worker reads it
        #expect(
            await eventually(20) { f.ready && liveProcesses(withMarker: f.marker).count >= 2 },
            "\(mode): not ticking: \(f.results)\n\(p.stderr.suffix(2000))")
        return Started(supervisor: p, files: f, surface: surface, state: state, keyFile: keyFile)
    }

    @Test("every way to the supervisor's side fails; the revoke stops the tree", arguments: Mode.allCases)
    func reach(_ mode: Mode) async throws {
        let a = try await LiveAuthority(lease: "5s")
        let s = try await start(mode, a)
        let r = s.files.results
        for name in Self.attempts {
            #expect(r[name] != nil && r[name] != "ok", "\(mode): \(name) → \(r[name] ?? "not tried")")
        }
        if mode == .rootNone || mode == .unprivilegedRootNone {
            #expect(r["unshare(CLONE_NEWUSER|CLONE_NEWNS)"] == "ok", "\(mode): profile none lets it try from its own namespace")
        }
        if r["unshare(CLONE_NEWUSER|CLONE_NEWNS)"] == "ok" {
            for name in Self.fromOwnNamespace {
                #expect(r[name] != nil && r[name] != "ok", "\(mode): \(name) → \(r[name] ?? "not tried")")
            }
        }
        // The supervisor and the init kept running, and still hold the worker to its surface.
        #expect(ProcessTable.stat(s.supervisor.pid)?.isStopped == false, "\(mode): the supervisor was stopped")
        _ = await eventually(5) { Self.initProcess(of: s.supervisor.pid) != nil }
        let initProcess = Self.initProcess(of: s.supervisor.pid)
        #expect(
            initProcess != nil && initProcess?.isStopped == false,
            "\(mode): the init was stopped or killed: \(String(describing: initProcess))")
        let (rc, out, err) = try a.op(["revoke", s.surface, "--wait", "20s"])
        #expect(rc == 0 && out.contains("stopped"), "\(mode): the stop is acknowledged: \(out) \(err)")
        #expect(
            await eventually(5) { Workers.allStopped(s.files.marker, atLeast: 2) },
            "\(mode): still running: \(liveProcesses(withMarker: s.files.marker).map { "\($0.pid) \($0.state)" })")
        #expect(await Workers.stoppedGrowing(s.files.ticks), "\(mode): the file still grows")
        s.supervisor.signal(SIGTERM)
        #expect(await s.supervisor.exitCode(within: 20) != nil)
        #expect(await eventually(5) { Workers.gone(s.files.marker) }, "\(mode): left behind")
    }

    @Test(
        "the issue's attack: `kill -STOP $PPID` first, then keep writing — the revoke still stops it",
        arguments: [Mode.rootDefault, .unprivileged])
    func stopParent(_ mode: Mode) async throws {
        let a = try await LiveAuthority(lease: "5s")
        let f = Escape.Files("stopparent")
        let surface = "stopparent-\(Mode.allCases.firstIndex(of: mode)!)"
        let p: TetherProcess
        if mode == .unprivileged {
            let state = try nobodyState(a)
            p = try TetherProcess(
                [
                    "run", "--dir", state, "--authority", a.url, "--key-file", state + "/agent.key",
                    "--public-key", state + "/signing.pub", "--surface", surface, "--",
                ] + f.command("stopparent"),
                env: ["HOME": state], asUser: "nobody")
        } else {
            p = try a.run(surface, [], f.command("stopparent"))
        }
        #expect(await eventually(20) { f.ready }, "\(p.stderr.suffix(1500))")
        // Its parent is the init: the signal is dropped (same uid) or refused (another uid).
        // (The init may still be on its way through exec when the worker first ticks.)
        #expect(ProcessTable.stat(p.pid)?.isStopped == false, "the supervisor runs")
        #expect(await eventually(5) { Self.initProcess(of: p.pid) != nil })
        #expect(Self.initProcess(of: p.pid)?.isStopped == false, "the init runs")
        let (rc, out, _) = try a.op(["revoke", surface, "--wait", "20s"])
        #expect(rc == 0 && out.contains("stopped"), "\(out)")
        #expect(await eventually(5) { Workers.allStopped(f.marker) })
        #expect(await Workers.stoppedGrowing(f.ticks))
        p.signal(SIGTERM)
        #expect(await p.exitCode(within: 20) != nil)
    }

    @Test(
        "from its first instruction a worker cannot read its init, still a copy of the supervisor's memory until its exec",
        arguments: [Mode.unprivileged, .unprivilegedRootNone, .rootAsRoot])
    func earlyInit(_ mode: Mode) async throws {
        let a = try await LiveAuthority(lease: "5s")
        let f = Escape.Files("racemem")
        let surface = "racemem-\(Mode.allCases.firstIndex(of: mode)!)"
        let p: TetherProcess
        switch mode {
        case .unprivileged, .unprivilegedRootNone:
            let state = try nobodyState(a)
            let extra = mode == .unprivilegedRootNone ? ["--user", "root", "--profile", "none"] : []
            p = try TetherProcess(
                [
                    "run", "--dir", state, "--authority", a.url, "--key-file", state + "/agent.key",
                    "--public-key", state + "/signing.pub", "--surface", surface,
                ] + extra + ["--"] + f.command("racemem"),
                env: ["HOME": state], asUser: "nobody")
        default:
            p = try a.run(surface, ["--user", "root"], f.command("racemem"))
        }
        #expect(await eventually(20) { f.ready }, "\(p.stderr.suffix(1500))")
        #expect(f.results["open PID 1's mem or environ from the first moments"] == "EACCES", "\(mode): \(f.results)")
        p.signal(SIGTERM)
        #expect(await p.exitCode(within: 20) != nil)
    }

    @Test("a supervisor stopped from outside (SIGSTOP): the keeper kills the tree within the heartbeat bound, and says so")
    func supervisorStopped() async throws {
        let a = try await LiveAuthority(lease: "15s")
        let m = Workers.marker("sigstop")
        let file = workerDirectory("e2e") + "/ticks"
        let p = try a.run("sigstop-1", [], Workers.tree(m, file: file))
        #expect(await eventually(20) { liveProcesses(withMarker: m).count >= 3 && fileSize(file) > 0 }, "\(p.stderr)")
        let stoppedAt = ContinuousClock.now
        p.signal(SIGSTOP)
        // Bound: the heartbeat timeout (5 s) plus slack for a loaded machine; well inside the 15 s lease.
        #expect(await eventually(10) { Workers.gone(m) }, "survivors: \(liveProcesses(withMarker: m).map { "\($0.pid) \($0.state)" })")
        let took = ContinuousClock.now - stoppedAt
        #expect(took < .seconds(10), "killed \(took) after the supervisor stopped")
        #expect(await Workers.stoppedGrowing(file))
        #expect(p.stderr.contains("missed its heartbeat"), "the keeper says why: \(p.stderr.suffix(800))")
        p.signal(SIGCONT)
        #expect(await p.exitCode(within: 20) != nil, "the supervisor ends once it finds its worker gone")
    }

    @Test("a keeper stopped from outside: the supervisor replaces it, and the new one still kills the tree when the supervisor dies")
    func keeperStopped() async throws {
        let a = try await LiveAuthority(lease: "15s")
        let m = Workers.marker("keeperstop")
        let file = workerDirectory("e2e") + "/ticks"
        let p = try a.run("keeperstop-1", ["--profile", "none"], Workers.tree(m, file: file))
        #expect(await eventually(20) { liveProcesses(withMarker: m).count >= 3 && fileSize(file) > 0 }, "\(p.stderr)")
        func keeper() -> pid_t? {
            ProcessTable.snapshot().first { $0.ppid == p.pid && command(of: $0.pid) == "tether-keeper" && !$0.isDead }?.pid
        }
        let old = try #require(keeper())
        kill(old, SIGSTOP)
        #expect(await eventually(10) { keeper().map { $0 != old } ?? false }, "a new keeper: \(p.stderr.suffix(800))")
        #expect(p.stderr.contains("has not echoed the heartbeat"))
        #expect(await Workers.growing(file), "the worker itself keeps running: the supervisor still enforces")
        p.signal(SIGKILL)
        #expect(await eventually(5) { Workers.gone(m) }, "survivors: \(liveProcesses(withMarker: m).map(\.pid))")
    }
}
