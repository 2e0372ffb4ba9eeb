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

    func wait(
        timeout: Duration = .seconds(5), after index: Int = 0, _ match: (Verdict) -> Bool
    ) async -> (Verdict, ContinuousClock.Instant)? {
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
        // 2 s leases, renewed every 667 ms: a 1 s lease left a renewal 667 ms to be late, which
        // the whole suite on 2 loaded cores once took (a lapse and a recovery read as news).
        let server = ServerProcess(dir: path, port: freePort(), extra: ["--lease", "2s"])
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
        let watcher = SurfaceWatcher(
            client: agent, surfaces: ["w1"], verifier: try DecisionVerifier(publicKeyBase64: created.publicKey), settings: settings,
            logger: logger)
        let log = VerdictLog()
        let runner = Task { await watcher.run() }
        let reader = Task { for await v in watcher.verdicts { log.add(v) } }
        defer {
            runner.cancel()
            reader.cancel()
        }

        #expect(await log.wait { $0.allowed } != nil, "allowed at first")
        let rev = try await op.revoke("w1", reason: "test", wait: nil)
        let revoked = await log.wait { $0.code == .deviceRevoked }
        #expect(revoked?.0.requestID == rev["request_id"] as? String, "the verdict names the revoke, for the ack")
        _ = try await op.restore("w1", reason: nil, wait: nil)
        let n = log.all.count
        #expect(await log.wait(after: n - 1) { $0.allowed } != nil, "restored")

        // Renewals keep it allowed with no new verdicts for a few leases.
        let quiet = log.all.count
        try await Task.sleep(for: .milliseconds(4500))
        #expect(log.all.count == quiet, "renewals are not news: \(log.all.suffix(log.all.count - quiet).map { $0.0.code })")

        let killed = ContinuousClock.now
        server.kill9()
        let expired = try #require(await log.wait(after: quiet) { $0.code == .leaseExpired })
        #expect(
            expired.1 - killed < .milliseconds(4500),
            "stopped within the 2 s lease (+ a generous margin for a loaded machine): \(expired.1 - killed)")

        try await server.start()
        let back = log.all.count
        #expect(await log.wait(timeout: .seconds(5), after: back - 1) { $0.allowed } != nil, "allowed again once the authority is back")
    }

    @Test func aWrongKeyIsABadSignature() async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("tether-watch-\(UUID().uuidString.prefix(8))").path
        let created = try await StateDirectory(path: path).initialize(actor: "test")
        let server = ServerProcess(dir: path, port: freePort())
        try await server.start()
        defer { server.kill9() }
        let agent = AuthorityClient(endpoint: AuthorityEndpoint(url: server.url, key: created.agentKey))
        _ = try await agent.register("w2")
        var logger = Logger(label: "watcher-test")
        logger.logLevel = .critical
        let impostorKey = try DecisionVerifier(publicKeyBase64: DecisionSigner.generate().publicBase64)
        let watcher = SurfaceWatcher(
            client: agent, surfaces: ["w2"], verifier: impostorKey, settings: WatchSettings(instance: "h"), logger: logger)
        let log = VerdictLog()
        let runner = Task { await watcher.run() }
        let reader = Task { for await v in watcher.verdicts { log.add(v) } }
        defer {
            runner.cancel()
            reader.cancel()
        }
        #expect(await log.wait { $0.code == .badSignature } != nil)
        #expect(!log.all.contains { $0.0.allowed }, "never allowed")
    }
}

@Suite("Revisions a supervisor holds: never back, whoever sends them")
struct RevisionTests {
    func d(
        _ kind: DecisionKind, _ surface: String = "a1", code: DecisionCode = .allow, rev: UInt64, org: UInt64? = nil, origin: String = "O"
    ) -> Decision {
        Decision(
            deviceId: surface, allowed: code == .allow, code: code, requestID: "r", issuedAt: "t", expiresAt: "u",
            kind: kind, revision: rev, orgRevision: org, origin: origin)
    }

    @Test("a replayed or lagging renewal is stale; a repeated change is a duplicate; a newer renewal reveals a missed event")
    func staleDuplicateCaughtUp() {
        var r = Revisions()
        #expect(r.accept(d(.lease, rev: 5, org: 0)) == .applied, "the first state")
        #expect(r.accept(d(.change, code: .deviceRevoked, rev: 7)) == .applied)
        #expect(r.accept(d(.lease, rev: 5, org: 0)) == .stale, "a replica that has not seen revision 7 renews nothing")
        #expect(r.accept(d(.answer, rev: 5, org: 0)) == .stale, "nor does its validate answer")
        #expect(r.accept(d(.change, code: .deviceRevoked, rev: 7)) == .duplicate, "a resume overlapping what came before")
        #expect(r.accept(d(.change, rev: 6)) == .duplicate, "an older change arriving late is not applied")
        #expect(r.accept(d(.lease, code: .deviceRevoked, rev: 7, org: 0)) == .applied, "the renewal of what we hold")
        #expect(r.accept(d(.lease, rev: 9, org: 0)) == .caughtUp, "a renewal newer than the events: revision 8 or 9 was missed")
        #expect(r.surface["a1"] == 9)
    }

    @Test("the org's halt and resume: their own revision; a renewal from before the halt is stale")
    func orgRevisions() {
        var r = Revisions()
        _ = r.accept(d(.lease, rev: 2, org: 1))
        #expect(r.accept(d(.change, OrgSubject.name, code: .orgHalted, rev: 10)) == .applied)
        #expect(r.orgHalted && r.org == 10)
        #expect(r.accept(d(.lease, rev: 2, org: 1)) == .stale, "an allow renewed from before the halt")
        #expect(r.accept(d(.lease, code: .orgHalted, rev: 2, org: 10)) == .applied)
        #expect(r.accept(d(.change, OrgSubject.name, code: .allow, rev: 11)) == .applied)
        #expect(!r.orgHalted)
    }

    @Test("a decision from another deployment (origin) is refused")
    func foreignOrigin() {
        var r = Revisions()
        _ = r.accept(d(.lease, rev: 2, org: 0))
        #expect(r.accept(d(.lease, rev: 99, org: 99, origin: "elsewhere")) == .foreign("elsewhere"))
        #expect(r.surface["a1"] == 2, "nothing of it is kept")
    }
}

@Suite("Surface watcher: a stream refused for some of its surfaces", .serialized, .timeLimit(.minutes(2)))
struct PartialWatchRefusalTests {
    @Test(
        "a name outside the key's scope is denied and left out; the stream carries the rest (a revoke arrives in ms, not at the next 10 s poll)"
    )
    func dropsTheRefusedName() async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("tether-watch-\(UUID().uuidString.prefix(8))").path
        let dir = StateDirectory(path: path)
        let created = try await dir.initialize(actor: "test")
        let server = ServerProcess(dir: path, port: freePort(), extra: ["--lease", "2s"])
        try await server.start()
        defer { server.kill9() }
        let unscoped = AuthorityClient(endpoint: AuthorityEndpoint(url: server.url, key: created.agentKey))
        let op = AuthorityClient(endpoint: AuthorityEndpoint(url: server.url, key: created.operatorKey))
        _ = try await unscoped.register("ws-1")
        _ = try await unscoped.register("other-1")
        // A key scoped to ws-*: "other-1" is outside it (an operator narrowed the scope).
        let key = APIKeys.generate()
        let store = try SQLiteStore(path: dir.database)
        let now = Timestamp.string(Date())
        try await store.addKey(
            KeyRecord(name: "scoped", role: .agent, hash: APIKeys.hash(key), createdAt: now, surfaces: ["ws-*"], instance: nil),
            change: Change(actor: "test", reason: nil, requestID: UUID().uuidString, at: now))
        try await Task.sleep(for: .milliseconds(1500))  // the server's key cache (keyRefresh 1 s)
        let scoped = AuthorityClient(endpoint: AuthorityEndpoint(url: server.url, key: key))

        var settings = WatchSettings(instance: "test-host")
        settings.pollInterval = .seconds(10)  // polling could not deliver the revoke in time
        var logger = Logger(label: "watcher-test")
        logger.logLevel = .critical
        let watcher = SurfaceWatcher(
            client: scoped, surfaces: ["ws-1", "other-1"], verifier: try DecisionVerifier(publicKeyBase64: created.publicKey),
            settings: settings, logger: logger)
        let log = VerdictLog()
        let runner = Task { await watcher.run() }
        let reader = Task { for await v in watcher.verdicts { log.add(v) } }
        defer {
            runner.cancel()
            reader.cancel()
        }

        #expect(await log.wait { $0.surface == "ws-1" && $0.allowed } != nil, "ws-1 allowed")
        #expect(
            await log.wait { $0.surface == "other-1" && !$0.allowed && $0.code == .badResponse } != nil,
            "other-1 denied: the key may not watch it")
        let n = log.all.count
        let sent = ContinuousClock.now
        _ = try await op.revoke("ws-1", reason: "test", wait: nil)
        let revoked = await log.wait(timeout: .seconds(5), after: n) { $0.surface == "ws-1" && $0.code == .deviceRevoked }
        #expect(revoked != nil)
        if let at = revoked?.1 { #expect(at - sent < .seconds(3), "by the stream, not the 10 s poll: \(at - sent)") }
    }
}
