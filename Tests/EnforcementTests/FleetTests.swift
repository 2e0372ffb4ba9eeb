import Foundation
import Glibc
import Testing
import TetherAuthority
import TetherClient
import TetherCore
import TetherTestKit

/// `tether run` against the replicas of one authority on PostgreSQL.
@Suite("tether run against authority replicas", .serialized, .timeLimit(.minutes(5)))
struct FleetTests {
    /// Watches the worker's processes every 50 ms while `body` runs: how many samples found
    /// any of them stopped.
    static func stoppedSamples(_ marker: String, during body: () async throws -> Void) async rethrows -> Int {
        let sampling = Task {
            var stopped = 0
            while !Task.isCancelled {
                if liveProcesses(withMarker: marker).contains(where: { $0.state == "T" }) { stopped += 1 }
                try? await Task.sleep(for: .milliseconds(50))
            }
            return stopped
        }
        try await body()
        sampling.cancel()
        return await sampling.value
    }

    /// `tether run` of a loop worker on `surface`, against `urls`; waits until it runs.
    static func run(_ r: Replicas, _ urls: String, _ surface: String, _ marker: String, extra: [String] = []) async throws -> TetherProcess
    {
        let file = workerDirectory("fleet") + "/ticks"
        let p = try TetherProcess(
            [
                "run", "--dir", r.dir, "--authority", urls, "--key-file", r.dir + "/agent.key",
                "--public-key", r.dir + "/signing.pub", "--surface", surface,
            ] + extra + ["--"] + Workers.loop(marker, file: file))
        #expect(await eventually(20) { fileSize(file) > 0 }, "\(p.stderr)")
        return p
    }

    @Test("a replica SIGKILLed, then another: the worker runs on through several leases, and a revoke through the survivor stops it")
    func failOverWithinTheLease() async throws {
        let r = try await Replicas.start(2, extra: ["--lease", "2s"])
        defer { r.stop() }
        let m = Workers.marker("fleet")
        let p = try await Self.run(r, r.urls, "fleet-1", m, extra: ["--poll-interval", "200ms"])
        defer { p.signal(SIGTERM) }

        // The replica it watches dies; three leases pass.
        var stopped = try await Self.stoppedSamples(m) {
            r.servers[0].kill9()
            try await Task.sleep(for: .seconds(6))
        }
        #expect(stopped == 0, "frozen while another replica answered: \(p.stderr)")
        #expect(Workers.noneStopped(m))
        #expect(p.stderr.contains("authority=\(r.servers[1].url) resumed_after="), "the stream moved to the other replica: \(p.stderr)")

        // A revoke through the survivor stops it; a restore lets it go on.
        let op1 = r.client(1, operator: true)
        _ = try await op1.revoke("fleet-1", reason: "fleet test", wait: nil)
        #expect(await eventually(5) { Workers.allStopped(m) }, "\(p.stderr)")
        _ = try await op1.restore("fleet-1", reason: "back", wait: nil)
        #expect(await eventually(5) { Workers.noneStopped(m) })

        // The first comes back, the second dies: it moves on again.
        try await r.servers[0].start()
        stopped = try await Self.stoppedSamples(m) {
            r.servers[1].kill9()
            try await Task.sleep(for: .seconds(6))
        }
        #expect(stopped == 0, "frozen while another replica answered: \(p.stderr)")
        _ = try await r.client(0, operator: true).revoke("fleet-1", reason: "again", wait: nil)
        #expect(await eventually(5) { Workers.allStopped(m) }, "\(p.stderr)")
    }

    @Test("every replica gone: the worker stops at the end of its lease (fail closed), and runs again when one is back")
    func allReplicasGone() async throws {
        let r = try await Replicas.start(2, extra: ["--lease", "2s"])
        defer { r.stop() }
        let m = Workers.marker("fleetdown")
        let p = try await Self.run(r, r.urls, "fleet-2", m, extra: ["--poll-interval", "200ms"])
        defer { p.signal(SIGTERM) }
        let down = ContinuousClock.now
        r.servers.forEach { $0.kill9() }
        #expect(await eventually(10) { Workers.allStopped(m) }, "\(p.stderr)")
        let after = ContinuousClock.now - down
        #expect(after < .seconds(5), "within the 2 s lease and a poll: \(after)")
        #expect(await eventually(5) { p.stderr.contains("LEASE_EXPIRED") }, "\(p.stderr)")
        try await r.servers[1].start()
        #expect(await eventually(10) { Workers.noneStopped(m) }, "\(p.stderr)")
    }

    @Test("revoke --wait on one replica shows the acknowledgement of a supervisor watching another: stopped, with its pids")
    func acknowledgementsAcrossReplicas() async throws {
        let r = try await Replicas.start(2)
        defer { r.stop() }
        let m = Workers.marker("fleetack")
        let p = try await Self.run(r, r.servers[1].url, "fleet-3", m)
        defer { p.signal(SIGTERM) }
        // The replica tells the others whom it holds with its next heartbeat (every second).
        var listed = false
        for _ in 0..<50 where !listed {
            let list = try await r.client(0, operator: true).list(deviceId: "fleet-3")
            listed = ((list["devices"] as? [[String: Any]])?.first?["watchers"] as? [String])?.count == 1
            if !listed { try await Task.sleep(for: .milliseconds(100)) }
        }
        #expect(listed, "replica 0 lists the watcher replica 1 holds")
        let (rc, out, err) = try await offPool {
            try runTether([
                "revoke", "fleet-3", "--reason", "across", "--wait", "10s", "--authority", r.servers[0].url,
                "--key-file", r.dir + "/operator.key", "--dir", r.dir,
            ])
        }
        #expect(rc == 0, "\(out)\(err)")
        #expect(out.contains("✔ ") && out.contains("(fleet-3): stopped"), "\(out)")
        #expect(!out.contains("✘"), "none missing: \(out)")
        #expect(Workers.allStopped(m))
    }
}
