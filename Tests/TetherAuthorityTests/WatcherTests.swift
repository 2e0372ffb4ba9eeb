import Foundation
import Logging
import Testing
import TetherAuthority
import TetherClient
import TetherCore

final class VerdictLog: @unchecked Sendable {
    private let lock = NSLock()
    private var list: [(Verdict, ContinuousClock.Instant)] = []
    func add(_ v: Verdict) { lock.withLock { list.append((v, .now)) } }
    var all: [(Verdict, ContinuousClock.Instant)] { lock.withLock { list } }

    func wait(timeout: Duration = .seconds(5), after index: Int = 0, _ match: (Verdict) -> Bool) async -> (Verdict, ContinuousClock.Instant)? {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let hit = all.dropFirst(index).first(where: { match($0.0) }) { return hit }
            try? await Task.sleep(for: .milliseconds(5))
        }
        return nil
    }
}

@Suite("Surface watcher: stream, poll, lease", .serialized, .timeLimit(.minutes(2)))
struct WatcherTests {
    @Test func followsChangesAndFailsClosedWhenTheAuthorityDies() async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("tether-watch-\(UUID().uuidString.prefix(8))").path
        let created = try await StateDirectory(path: path).initialize(actor: "test")
        let server = ServerProcess(dir: path, port: Int.random(in: 20000..<60000), extra: ["--lease", "1s"])
        try await server.start()
        defer { server.kill9() }
        let agent = AuthorityClient(endpoint: AuthorityEndpoint(url: server.url, key: created.agentKey))
        let op = AuthorityClient(endpoint: AuthorityEndpoint(url: server.url, key: created.operatorKey))
        _ = try await agent.register("w1")

        var settings = WatchSettings(instance: "test-host")
        settings.pollInterval = .milliseconds(200)
        settings.reconnectMax = .milliseconds(500)
        var logger = Logger(label: "watcher-test")
        logger.logLevel = .critical
        let watcher = SurfaceWatcher(client: agent, surfaces: ["w1"], verifier: try DecisionVerifier(publicKeyBase64: created.publicKey), settings: settings, logger: logger)
        let log = VerdictLog()
        let runner = Task { await watcher.run() }
        let reader = Task { for await v in watcher.verdicts { log.add(v) } }
        defer { runner.cancel(); reader.cancel() }

        #expect(await log.wait { $0.allowed } != nil, "allowed at first")
        let rev = try await op.revoke("w1", reason: "test", wait: nil)
        let revoked = await log.wait { $0.code == .deviceRevoked }
        #expect(revoked?.0.requestID == rev["request_id"] as? String, "the verdict names the revoke, for the ack")
        _ = try await op.restore("w1", reason: nil, wait: nil)
        let n = log.all.count
        #expect(await log.wait(after: n - 1) { $0.allowed } != nil, "restored")

        // Renewals keep it allowed with no new verdicts for a few leases.
        let quiet = log.all.count
        try await Task.sleep(for: .milliseconds(2500))
        #expect(log.all.count == quiet, "renewals are not news")

        let killed = ContinuousClock.now
        server.kill9()
        let expired = try #require(await log.wait(after: quiet) { $0.code == .leaseExpired })
        #expect(expired.1 - killed < .milliseconds(1500), "stopped within the 1 s lease (+ margin): \(expired.1 - killed)")

        try await server.start()
        let back = log.all.count
        #expect(await log.wait(timeout: .seconds(5), after: back - 1) { $0.allowed } != nil, "allowed again once the authority is back")
    }

    @Test func aWrongKeyIsABadSignature() async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("tether-watch-\(UUID().uuidString.prefix(8))").path
        let created = try await StateDirectory(path: path).initialize(actor: "test")
        let server = ServerProcess(dir: path, port: Int.random(in: 20000..<60000))
        try await server.start()
        defer { server.kill9() }
        let agent = AuthorityClient(endpoint: AuthorityEndpoint(url: server.url, key: created.agentKey))
        _ = try await agent.register("w2")
        var logger = Logger(label: "watcher-test")
        logger.logLevel = .critical
        let impostorKey = try DecisionVerifier(publicKeyBase64: DecisionSigner.generate().publicBase64)
        let watcher = SurfaceWatcher(client: agent, surfaces: ["w2"], verifier: impostorKey, settings: WatchSettings(instance: "h"), logger: logger)
        let log = VerdictLog()
        let runner = Task { await watcher.run() }
        let reader = Task { for await v in watcher.verdicts { log.add(v) } }
        defer { runner.cancel(); reader.cancel() }
        #expect(await log.wait { $0.code == .badSignature } != nil)
        #expect(!log.all.contains { $0.0.allowed }, "never allowed")
    }
}
