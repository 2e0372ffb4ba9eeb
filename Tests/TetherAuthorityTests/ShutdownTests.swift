import Foundation
import Glibc
import Testing
import TetherAuthority
import TetherClient
import TetherCore

/// A replica always stops: SIGTERM to a PostgreSQL-backed `tether authority serve` with watch
/// streams open (one of them never read) ends it within its `--shutdown-timeout`, whatever the
/// database is doing — stopped before, stopped after, frozen (it answers nothing and closes
/// nothing) — and a second SIGTERM ends it at once.
@Suite("A replica always stops", .serialized, .timeLimit(.minutes(5)))
struct ShutdownTests {
    /// A PostgreSQL cluster of the test's own (it is stopped and frozen), one replica on it with
    /// `bound` as its shutdown timeout, and watch streams: `readers` read, one does not.
    struct Setup {
        let pgDir: String
        let server: ServerProcess
        let streams: [RawSocket]
        var pid: pid_t { server.process!.processIdentifier }
        var log: String { (try? String(contentsOfFile: server.logFile!, encoding: .utf8)) ?? "" }

        func pg(_ cmd: String) async throws {
            let (code, _, err) = try await TestPostgres.run(["bash", TestPostgres.root + "/scripts/pg-cluster.sh", cmd, pgDir])
            guard code == 0 else { throw StoreError("pg-cluster.sh \(cmd): \(err)") }
        }

        /// SIGSTOP or SIGCONT to the postmaster and every backend: a database that answers
        /// nothing and closes nothing (a frozen host, a partition).
        func freezePostgres(_ sig: Int32) throws {
            let text = try String(contentsOfFile: pgDir + "/data/postmaster.pid", encoding: .utf8)
            guard let main = text.split(separator: "\n").first.flatMap({ pid_t($0) }) else { throw StoreError("no postmaster pid") }
            kill(main, sig)
            for p in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
                guard let pid = pid_t(p), let stat = try? String(contentsOfFile: "/proc/\(p)/stat", encoding: .utf8) else { continue }
                let fields = stat.split(separator: ")").last?.split(separator: " ") ?? []
                if fields.count > 1, pid_t(fields[1]) == main { kill(pid, sig) }
            }
        }

        /// PostgreSQL frozen with a write in flight (a revoke that waits on it), then SIGTERM.
        func freezeWriteAndSignal() async throws -> Task<JSONAnswer?, Never> {
            try freezePostgres(SIGSTOP)
            let op = AuthorityClient(endpoint: AuthorityEndpoint(url: server.url, key: try ShutdownTests.operatorKey(self)))
            let pending = Task { try? await op.revoke("w1", reason: "in flight", wait: nil) }
            try await Task.sleep(for: .milliseconds(300))
            kill(pid, SIGTERM)
            return pending
        }

        /// The database thawed and stopped, the replica killed: what each test leaves behind.
        func tearDown() {
            try? freezePostgres(SIGCONT)
            _ = try? TestPostgres.runBlocking(["bash", TestPostgres.root + "/scripts/pg-cluster.sh", "stop", pgDir])
            server.kill9()
        }

        /// Waits up to `seconds` for the replica to exit: its status, or nil if it did not.
        func exit(within seconds: Double) async -> Int32? {
            let p = server.process!
            let deadline = Date().addingTimeInterval(seconds)
            while p.isRunning && Date() < deadline { try? await Task.sleep(for: .milliseconds(20)) }
            return p.isRunning ? nil : p.terminationStatus
        }
    }

    static func setup(bound: String = "3s") async throws -> Setup {
        let pgDir = temporaryDirectory("tether-shutdown-pg")
        let (code, out, err) = try await TestPostgres.run(["bash", TestPostgres.root + "/scripts/pg-cluster.sh", "start", pgDir])
        guard code == 0 else { throw StoreError("pg-cluster.sh start: \(err)") }
        let url = try DatabaseURL(out.trimmingCharacters(in: .whitespacesAndNewlines))
        let r = try await Replicas.start(1, database: url, extra: ["--shutdown-timeout", bound, "--lease", "2s"])
        let agent = r.client(0)
        for i in 0..<20 { _ = try await agent.register("w\(i)") }
        // 20 streams that read (their bytes are read below), and one that never does.
        var streams: [RawSocket] = []
        for i in 0..<21 {
            let s = try RawSocket(port: r.servers[0].port)
            s.send(
                "GET /api/v1/devices/watch?deviceId=w\(i % 20)&instance=host-\(i) HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \(r.agentKey)\r\n\r\n"
            )
            streams.append(s)
        }
        for s in streams.prefix(20) { #expect(!s.readFirst(timeout: .seconds(5)).isEmpty, "a stream answered") }
        return Setup(pgDir: pgDir, server: r.servers[0], streams: streams)
    }

    @Test("the database frozen, then SIGTERM: the replica exits within its bound (69), and says why")
    func databaseFrozen() async throws {
        let s = try await Self.setup()
        defer { s.tearDown() }
        let pending = try await s.freezeWriteAndSignal()
        let status = await s.exit(within: 15)
        #expect(status != nil, "still running 15 s after SIGTERM with a 3 s bound: \(s.log.suffix(2000))")
        #expect(status == 0 || status == 69, "\(String(describing: status))")
        if status == 69 { #expect(s.log.contains("shutdown did not finish in time"), "\(s.log.suffix(2000))") }
        pending.cancel()
    }

    @Test("a second SIGTERM during a stuck shutdown exits at once (69)")
    func secondSignal() async throws {
        let s = try await Self.setup(bound: "60s")
        defer { s.tearDown() }
        let pending = try await s.freezeWriteAndSignal()
        try await Task.sleep(for: .seconds(1))
        try #require(s.server.process!.isRunning, "the shutdown was not held up: nothing to test \(s.log.suffix(1500))")
        kill(s.pid, SIGTERM)
        let status = await s.exit(within: 3)
        #expect(status == 69, "a second SIGTERM: \(String(describing: status)) \(s.log.suffix(1500))")
        #expect(s.log.contains("a second signal during shutdown"))
        pending.cancel()
    }

    @Test("the database stopped before, or just after, the SIGTERM: the replica exits within its bound")
    func databaseStopped() async throws {
        for order in ["database first", "signal first"] {
            let s = try await Self.setup()
            defer {
                _ = try? TestPostgres.runBlocking(["bash", TestPostgres.root + "/scripts/pg-cluster.sh", "stop", s.pgDir])
                s.server.kill9()
            }
            if order == "database first" {
                try await s.pg("stop")
                kill(s.pid, SIGTERM)
            } else {
                kill(s.pid, SIGTERM)
                try await s.pg("stop")
            }
            let status = await s.exit(within: 15)
            #expect(status == 0 || status == 69, "\(order): \(String(describing: status)) \(s.log.suffix(2000))")
        }
    }

    static func operatorKey(_ s: Setup) throws -> String {
        // Replicas.start keeps the keys in the directory `init` wrote, beside the replica's own.
        let dir = String(s.server.dir.dropLast(2))
        return try String(contentsOfFile: dir + "/operator.key", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
