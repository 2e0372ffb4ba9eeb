import Foundation
import Glibc
import Testing
import TetherSystem
import TetherTestKit

/// Each case: an adversarial worker under `tether run` (profile `default`, a real authority on
/// loopback) tries one way out, reports what the kernel answered, and ticks a file every 10 ms
/// from every process it has. Then a revoke: under `stop` every process of the tree must be in
/// `T` and its cgroup `frozen 1`; under `kill` none may be left; either way the file stops
/// growing. docs/containment.md has the table.
@Suite("containment: adversarial workers against a revoke", .serialized, .timeLimit(.minutes(15)))
struct ContainmentTests {
    struct Case: Sendable, CustomStringConvertible {
        var mode: String
        /// What the worker must have seen, by the names it reports.
        var expect: [String: String]
        var user: String? = nil
        var extra: [String] = []
        /// Processes the tree has at least, once it ticks.
        var processes = 2
        var description: String { mode + (user.map { " as \($0)" } ?? "") }
    }

    static let cases: [Case] = [
        Case(mode: "setsid", expect: ["setsid": "EPERM"]),
        Case(mode: "setpgid", expect: ["setpgid(0, 0)": "EPERM"]),
        Case(mode: "daemon", expect: ["double fork": "ok", "daemon setsid": "EPERM"]),
        Case(mode: "reparent", expect: ["re-parented orphan": "ok", "orphan PR_SET_PDEATHSIG 0": "ok"]),
        Case(mode: "subreaper", expect: ["PR_SET_CHILD_SUBREAPER": "ok", "PR_SET_PDEATHSIG 0": "ok"]),
        Case(mode: "forkbomb", expect: ["fork bomb stopped by": "EAGAIN"], user: "nobody", extra: ["--limit", "nproc=48"], processes: 20),
        Case(
            mode: "ptrace",
            expect: [
                "PTRACE_ATTACH supervisor": "EPERM", "PTRACE_SEIZE supervisor": "EPERM",
                "PTRACE_ATTACH sibling": "EPERM", "process_vm_readv supervisor": "EPERM",
            ]),
        Case(mode: "killsupervisor", expect: ["kill(supervisor, SIGKILL)": "EPERM"], user: "nobody", processes: 1),
        Case(
            mode: "syscalls",
            expect: [
                "x32 getpid": "signal 31", "int 0x80 getpid": "signal 31", "io_uring_setup": "EPERM",
                "unshare(CLONE_NEWUSER)": "EPERM", "unshare(CLONE_NEWNS|CLONE_NEWPID)": "EPERM", "clone(CLONE_NEWPID)": "EPERM",
                "ioctl(0, TIOCSTI)": "EPERM", "setns": "EPERM",
            ], processes: 1),
        Case(
            mode: "ownfilter",
            expect: ["PR_SET_NO_NEW_PRIVS": "ok", "seccomp(SET_MODE_FILTER)": "ok", "kill(self, 0) under its own filter": "EPERM"],
            processes: 1),
    ]

    /// Starts the case's worker and waits until it ticks with its report written.
    func start(_ a: LiveAuthority, _ c: Case, onRevoke: String, files f: Escape.Files, surface: String) async throws -> TetherProcess {
        var extra = ["--on-revoke", onRevoke] + c.extra
        if let u = c.user { extra += ["--user", u] }
        let p = try a.run(surface, extra, f.command(c.mode))
        #expect(
            await eventually(20) { f.ready && liveProcesses(withMarker: f.marker).count >= c.processes },
            "\(c): not ticking: \(f.results) \(liveProcesses(withMarker: f.marker).count) processes\n\(p.stderr.suffix(1500))")
        return p
    }

    @Test("revoke under stop: every process of the tree in T, the cgroup frozen, the file still", arguments: cases)
    func stop(_ c: Case) async throws {
        let a = try await LiveAuthority(lease: "5s")
        let f = Escape.Files(c.mode)
        let surface = "contain-\(c.mode)"
        let p = try await start(a, c, onRevoke: "stop", files: f, surface: surface)
        let results = f.results
        for (name, want) in c.expect { #expect(results[name] == want, "\(c): \(name)") }

        let (rc, out, err) = try a.op(["revoke", surface, "--wait", "20s"])
        #expect(rc == 0, "\(c): the supervisor acknowledges the stop: \(out) \(err)")
        #expect(
            await eventually(5) { Workers.allStopped(f.marker, atLeast: c.processes) },
            "\(c): still running: \(liveProcesses(withMarker: f.marker).filter { !$0.isStopped }.map { "\($0.pid) \($0.state)" })")
        #expect(await eventually(5) { Escape.cgroupFrozen(f.marker) == true }, "\(c): cgroup.events")
        #expect(await Workers.stoppedGrowing(f.ticks), "\(c): the file still grows")
        p.signal(SIGTERM)
        #expect(await p.exitCode(within: 20) != nil)
        #expect(await eventually(5) { Workers.gone(f.marker) }, "\(c): left behind after the supervisor ended")
    }

    @Test("revoke under kill: no process of the tree left, the file still", arguments: cases)
    func kill(_ c: Case) async throws {
        let a = try await LiveAuthority(lease: "5s")
        let f = Escape.Files(c.mode)
        let surface = "contain-\(c.mode)"
        let p = try await start(a, c, onRevoke: "kill", files: f, surface: surface)
        let (rc, _, _) = try a.op(["revoke", surface, "--wait", "20s"])
        #expect(rc == 0)
        #expect(
            await eventually(5) { Workers.gone(f.marker) },
            "\(c): survivors: \(liveProcesses(withMarker: f.marker).map { "\($0.pid) \($0.state)" })")
        #expect(await Workers.stoppedGrowing(f.ticks), "\(c): the file still grows")
        #expect(await p.exitCode(within: 20) == 77)
    }

    @Test("a worker that ignores and blocks SIGTERM under term: killed after the grace")
    func ignoresTerm() async throws {
        let a = try await LiveAuthority(lease: "5s")
        let f = Escape.Files("ignoreterm")
        let c = Case(mode: "ignoreterm", expect: ["block SIGTERM": "ok"], extra: ["--grace", "1s"])
        let p = try await start(a, c, onRevoke: "term", files: f, surface: "contain-term")
        #expect(f.results["block SIGTERM"] == "ok")
        let (rc, _, _) = try a.op(["revoke", "contain-term"])
        #expect(rc == 0)
        try await Task.sleep(for: .milliseconds(300))
        let growing = await Workers.growing(f.ticks, over: .milliseconds(200))
        #expect(!Workers.gone(f.marker) && growing, "SIGTERM alone does not end it")
        #expect(await eventually(15) { Workers.gone(f.marker) }, "killed after the grace")
        #expect(await Workers.stoppedGrowing(f.ticks))
        #expect(await p.exitCode(within: 20) == 77)
    }

    @Test("frozen, then killed: kill_after ends a tree that stays frozen")
    func frozenThenKilled() async throws {
        let a = try await LiveAuthority(lease: "5s")
        let f = Escape.Files("daemon")
        let c = Case(mode: "daemon", expect: [:], extra: ["--kill-after", "1s"])
        let p = try await start(a, c, onRevoke: "stop", files: f, surface: "contain-frozen-kill")
        let (rc, _, _) = try a.op(["revoke", "contain-frozen-kill"])
        #expect(rc == 0)
        #expect(await eventually(5) { Workers.allStopped(f.marker, atLeast: 2) }, "frozen first")
        #expect(await eventually(15) { Workers.gone(f.marker) }, "then killed")
        #expect(await Workers.stoppedGrowing(f.ticks))
        #expect(await p.exitCode(within: 20) == 77)
    }

    @Test("the supervisor's key file and environment are out of reach of a worker run as another user")
    func secrets() async throws {
        let a = try await LiveAuthority(lease: "5s")
        let f = Escape.Files("secrets")
        // The key where a worker could reach the directory: only its mode protects it.
        let key = f.dir + "/agent.key"
        try FileManager.default.copyItem(atPath: a.dir + "/agent.key", toPath: key)
        chmod(key, 0o600)
        let p = try TetherProcess(
            [
                "run", "--dir", a.dir, "--authority", a.url, "--key-file", key,
                "--public-key", a.dir + "/signing.pub", "--surface", "contain-secrets", "--user", "nobody",
                "--",
            ] + f.command("secrets", key),
            env: ["TETHER_SECRET_PROBE_KEY": "hunter2", "AWS_SECRET_ACCESS_KEY": "hunter2"])
        #expect(await eventually(20) { f.ready }, "\(p.stderr.suffix(1000))")
        let r = f.results
        #expect(r["read the key file"] == "EACCES" || r["read the key file"] == "empty", "refused by its mode, or covered")
        #expect(r["read the supervisor's /proc/PID/environ"] == "EACCES")
        #expect(r["open the supervisor's /proc/PID/mem"] == "EACCES")
        #expect(r["TETHER_* or *KEY* variables in its environment"] == "none", "the environment is scrubbed")
        p.signal(SIGTERM)
        #expect(await p.exitCode(within: 20) != nil)
    }
}
