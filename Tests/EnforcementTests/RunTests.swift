import Foundation
import Glibc
import Testing
import TetherCore
import TetherTestKit

@Suite("tether run against a real authority", .serialized, .timeLimit(.minutes(10)))
struct RunTests {
    @Test("denied at start: exit 77 with the code and request id, nothing runs; the worker's code otherwise")
    func deniedAtStart() async throws {
        let a = try await LiveAuthority()
        let file = workerDirectory("e2e") + "/ran"
        // First run registers the surface; the worker's own exit code comes back.
        let first = try a.run("denied-1", [], ["sh", "-c", "exit 3"])
        #expect(await first.exitCode(within: 30) == 3)
        let (rc, out, _) = try a.op(["revoke", "denied-1", "--reason", "test"])
        #expect(rc == 0, "\(out)")
        let second = try a.run("denied-1", [], ["sh", "-c", "touch '\(file)'"])
        #expect(await second.exitCode(within: 30) == 77)
        #expect(second.stderr.contains("DEVICE_REVOKED"))
        #expect(second.stderr.contains("request "))
        #expect(!FileManager.default.fileExists(atPath: file))
    }

    @Test("authority unreachable at start: exit 69, nothing runs")
    func unreachableAtStart() async throws {
        let dir = workerDirectory("e2e")
        try "k\n".write(toFile: dir + "/agent.key", atomically: true, encoding: .utf8)
        chmod(dir + "/agent.key", 0o600)
        let p = try TetherProcess([
            "run", "--authority", "http://127.0.0.1:\(freePort())", "--key-file", dir + "/agent.key",
            "--", "sh", "-c", "touch '\(dir)/ran'",
        ])
        #expect(await p.exitCode(within: 30) == 69)
        #expect(p.stderr.contains("unreachable"))
        #expect(!FileManager.default.fileExists(atPath: dir + "/ran"))
    }

    @Test("a config that does not parse: exit 78 with file:line, nothing runs")
    func badConfig() async throws {
        let dir = workerDirectory("e2e")
        let config = dir + "/worker.toml"
        try """
        [authority]
        url = "http://127.0.0.1:1"

        [[worker]]
        name = "w"
        command = ["sh", "-c", "touch \(dir)/ran"]
        on_revoke = "explode"
        """.write(toFile: config, atomically: true, encoding: .utf8)
        let p = try TetherProcess(["run", "--config", config])
        #expect(await p.exitCode(within: 30) == 78)
        #expect(p.stderr.contains("\(config):7:"), "\(p.stderr)")
        #expect(p.stderr.contains("on_revoke"))
        try "[[worker]]\nname = \"w\"\ncommand = [\"true\"\n".write(toFile: config, atomically: true, encoding: .utf8)
        let q = try TetherProcess(["run", "--config", config])
        #expect(await q.exitCode(within: 30) == 78)
        #expect(q.stderr.contains("\(config):3:"), "\(q.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/ran"))
    }

    @Test("revoke freezes the whole tree (setsid and a double-forked daemon included); restore thaws it; SIGTERM ends it")
    func revokeAndRestore() async throws {
        let a = try await LiveAuthority()
        let m = Workers.marker("freeze")
        let file = workerDirectory("e2e") + "/ticks"
        // Profile none: setsid succeeds, so only the cgroup holds that process.
        let p = try a.run("freeze-1", ["--profile", "none"], Workers.tree(m, file: file))
        #expect(await eventually(20) { liveProcesses(withMarker: m).count >= 4 && fileSize(file) > 0 }, "\(p.stderr)")
        #expect(liveProcesses(withMarker: m).contains { $0.pid == $0.sid && $0.pid != p.pid }, "a worker process has its own session")

        let (rc, out, _) = try a.op(["revoke", "freeze-1", "--reason", "e2e", "--wait", "20s"])
        #expect(rc == 0)
        #expect(out.contains("stopped"), "\(out)")
        #expect(await eventually(5) { Workers.allStopped(m, atLeast: 4) }, "\(liveProcesses(withMarker: m))")
        #expect(await Workers.stoppedGrowing(file))
        #expect(
            await eventually(5) {
                p.stderr.contains("worker stopped") && p.stderr.contains("code=DEVICE_REVOKED") && p.stderr.contains("stopped_in_ms=")
            })

        try a.op(["restore", "freeze-1", "--wait", "20s"])
        #expect(await eventually(5) { Workers.noneStopped(m, atLeast: 4) })
        #expect(await Workers.growing(file))

        p.signal(SIGTERM)
        #expect(await p.exitCode(within: 20) == 128 + SIGTERM)
        #expect(await eventually(5) { Workers.gone(m) }, "\(liveProcesses(withMarker: m))")
    }

    @Test("on-revoke kill: the tree is gone, exit 77")
    func killOnRevoke() async throws {
        let a = try await LiveAuthority()
        let m = Workers.marker("kill")
        let file = workerDirectory("e2e") + "/ticks"
        let p = try a.run("kill-1", ["--on-revoke", "kill"], Workers.tree(m, file: file))
        #expect(await eventually(20) { liveProcesses(withMarker: m).count >= 3 && fileSize(file) > 0 }, "\(p.stderr)")
        try a.op(["revoke", "kill-1"])
        #expect(await p.exitCode(within: 20) == 77)
        #expect(Workers.gone(m), "\(liveProcesses(withMarker: m))")
        #expect(p.stderr.contains("worker killed"))
        #expect(await Workers.stoppedGrowing(file))
    }

    @Test("on-revoke term: SIGTERM first; a worker that ignores it is killed after the grace")
    func termOnRevoke() async throws {
        let a = try await LiveAuthority()
        let m = Workers.marker("term")
        let dir = workerDirectory("e2e")
        let p = try a.run(
            "term-1", ["--on-revoke", "term", "--grace", "500ms"],
            ["sh", "-c", "trap '' TERM; touch \(dir)/ready; while :; do sleep 0.05; done", m])
        #expect(await eventually(20) { FileManager.default.fileExists(atPath: dir + "/ready") }, "\(p.stderr)")
        try a.op(["revoke", "term-1"])
        #expect(await p.exitCode(within: 20) == 77)
        #expect(Workers.gone(m))
        #expect(p.stderr.contains("still running after the grace period"))
    }

    @Test("the authority goes down: stopped when the lease ends; resumed when it is back")
    func authorityDownMidRun() async throws {
        let a = try await LiveAuthority(lease: "1s")
        let m = Workers.marker("down")
        let file = workerDirectory("e2e") + "/ticks"
        let p = try a.run("down-1", ["--poll-interval", "200ms"], Workers.loop(m, file: file))
        #expect(await eventually(20) { fileSize(file) > 0 }, "\(p.stderr)")
        a.server.kill9()
        #expect(await eventually(5) { Workers.allStopped(m) })
        #expect(await eventually(2) { p.stderr.contains("code=LEASE_EXPIRED") })
        #expect(await Workers.stoppedGrowing(file))
        try await a.server.start()
        #expect(await eventually(10) { Workers.noneStopped(m) }, "\(p.stderr)")
        #expect(await Workers.growing(file))
        p.signal(SIGINT)
        #expect(await p.exitCode(within: 20) != nil)
    }

    @Test("supervisor SIGKILLed: no worker process survives")
    func supervisorKilled() async throws {
        let a = try await LiveAuthority()
        let m = Workers.marker("sigkill")
        let file = workerDirectory("e2e") + "/ticks"
        let p = try a.run("sigkill-1", ["--profile", "none"], Workers.tree(m, file: file))
        #expect(await eventually(20) { liveProcesses(withMarker: m).count >= 4 }, "\(p.stderr)")
        p.signal(SIGKILL)
        #expect(await eventually(5) { Workers.gone(m) }, "\(liveProcesses(withMarker: m))")
        #expect(await Workers.stoppedGrowing(file))
    }

    @Test("signals reach the worker: SIGTERM to tether, the worker's trap runs, its code comes back")
    func forwardsSignals() async throws {
        let a = try await LiveAuthority()
        let dir = workerDirectory("e2e")
        let m = Workers.marker("signal")
        let p = try a.run(
            "signal-1", [], ["sh", "-c", "trap 'echo got > \(dir)/term; exit 0' TERM; touch \(dir)/ready; while :; do sleep 0.05; done", m])
        #expect(await eventually(20) { FileManager.default.fileExists(atPath: dir + "/ready") }, "\(p.stderr)")
        p.signal(SIGTERM)
        #expect(await p.exitCode(within: 20) == 0)
        #expect((try? String(contentsOfFile: dir + "/term", encoding: .utf8)) == "got\n")
    }

    @Test("an authority off this host over plain http, or unpinned, is refused before anything starts (78); the loopback is not")
    func unpinnedRemoteRefused() async throws {
        let a = try await LiveAuthority()
        let dir = workerDirectory("e2e-trust")
        // .invalid never resolves (RFC 6761): nothing leaves this host whatever happens.
        let (rc, _, err) = try runTether([
            "run", "--dir", a.dir, "--authority", "http://authority.invalid:8470",
            "--key-file", a.dir + "/agent.key", "--surface", "trust-1", "--", "touch", dir + "/ran",
        ])
        #expect(rc == 78, "\(err)")
        #expect(err.contains("not on this host") && err.contains("plain http") && err.contains("no public key is pinned"), "\(err)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/ran"))
        // With the loud option it tries (and, the host unresolvable, fails closed: 69).
        let (rc2, _, err2) = try runTether([
            "run", "--dir", a.dir, "--authority", "http://authority.invalid:8470", "--insecure-unpinned-authority",
            "--key-file", a.dir + "/agent.key", "--surface", "trust-1", "--", "touch", dir + "/ran",
        ])
        #expect(rc2 == 69 && err2.contains("INSECURE"), "\(err2)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/ran"))
    }
}
