import Foundation
import Synchronization
import Testing
@testable import TetherAuthority
import TetherCore
import TetherTestKit

/// The stores behind `AuthorityStore`: the embedded SQLite file and a shared PostgreSQL
/// database. One suite, both stores, the same expectations.
enum StoreKind: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case sqlite, postgres
    var testDescription: String { rawValue }

    /// A new, empty store — and, for `second`, another handle on the same database (another
    /// replica, or another process on the same SQLite file).
    func make() async throws -> (any AuthorityStore, second: () async throws -> any AuthorityStore, close: @Sendable () -> Void) {
        switch self {
        case .sqlite:
            let path = FileManager.default.temporaryDirectory.appendingPathComponent("tether-store-\(UUID().uuidString.prefix(8)).sqlite")
                .path
            return (try SQLiteStore(path: path), { try SQLiteStore(path: path) }, {})
        case .postgres:
            let url = try await TestPostgres.freshDatabase()
            let a = try await PostgresStore.open(url, logger: testLogger)
            let others = Mutex<[PostgresStore]>([a])
            return (
                a,
                {
                    let b = try await PostgresStore.open(url, logger: testLogger)
                    others.withLock { $0.append(b) }
                    return b
                }, { others.withLock { $0.forEach { $0.close() } } }
            )
        }
    }
}

/// The sealer of the tests: the event's text is its revision, so order can be checked.
let revisionSeal: EventSealer = { outcome, _ in
    switch outcome {
    case .surface(let r): return "\(r.revision)"
    case .removed(_, let revision): return "\(revision)"
    case .org(let o): return "\(o.revision)"
    }
}

func change(_ who: String = "test", _ why: String? = nil, at: String = Timestamp.string(Date())) -> Change {
    Change(actor: who, reason: why, requestID: UUID().uuidString, at: at)
}

@Suite("Store conformance: SQLite and PostgreSQL", .timeLimit(.minutes(3)))
struct StoreTests {
    @Test(
        "pages: the newest report of each supervisor of a page of surfaces in one query; the audit log before an id",
        arguments: StoreKind.allCases)
    func pages(_ kind: StoreKind) async throws {
        let (s, _, close) = try await kind.make()
        defer { close() }
        let now = Timestamp.string(Date())
        for (d, i, state) in [
            ("a1", "h1", "stopped"), ("a1", "h1", "resumed"), ("a1", "h2", "running"), ("a2", "h1", "killed"), ("a3", "h1", "x"),
        ] {
            try await s.addReport(Report(deviceId: d, instance: i, state: state, pids: [1], at: now, requestID: nil, receivedAt: now))
        }
        let latest = try await s.latestReports(of: ["a1", "a2", "nothing"])
        #expect(Set(latest.map { "\($0.deviceId)/\($0.instance)/\($0.state)" }) == ["a1/h1/resumed", "a1/h2/running", "a2/h1/killed"])
        #expect(try await s.latestReports(of: []).isEmpty)
        for n in 0..<5 { _ = try await s.register("p\(n)", change: change(), seal: revisionSeal) }
        let all = try await s.audit(limit: 100, deviceId: nil, actor: nil, since: nil, until: nil, before: nil)
        let older = try await s.audit(limit: 2, deviceId: nil, actor: nil, since: nil, until: nil, before: all[1].id)
        #expect(older.map(\.id) == Array(all[2..<4].map(\.id)))
    }

    @Test(
        "surfaces: register, revoke, restore, remove, come back; each change the next revision with its event",
        arguments: StoreKind.allCases)
    func surfacesAndRevisions(_ kind: StoreKind) async throws {
        let (s, _, close) = try await kind.make()
        defer { close() }
        #expect(try await s.head() == 0)
        let origin = try await s.origin()
        #expect(!origin.isEmpty)

        var (outcome, record, event) = try await s.register("a1", change: change(), seal: revisionSeal)
        #expect(outcome == .created && record.revision == 1 && event?.revision == 1 && event?.text == "1")
        (outcome, record, event) = try await s.register("a1", change: change(), seal: revisionSeal)
        #expect(outcome == .exists && event == nil, "no change, no revision")
        let (revoked, e2) = try #require(try await s.setRevoked("a1", revoked: true, change: change("alice", "INC-1"), seal: revisionSeal))
        #expect(revoked.revoked && revoked.revision == 2 && e2.revision == 2 && revoked.changedBy == "alice" && revoked.reason == "INC-1")
        #expect(try await s.setRevoked("nope", revoked: true, change: change(), seal: revisionSeal) == nil, "no such surface: no revision")
        let e3 = try #require(try await s.remove("a1", change: change(), seal: revisionSeal))
        #expect(e3.revision == 3 && e3.subject == "a1")
        #expect(try await s.removedSurfaces()["a1"] == 3)
        #expect(try await s.remove("a1", change: change(), seal: revisionSeal) == nil)
        (outcome, record, event) = try await s.register("a1", change: change(), seal: revisionSeal)
        #expect(outcome == .revoked && record.revoked && event?.revision == 4, "removed while revoked: back revoked")
        #expect(try await s.removedSurfaces()["a1"] == nil)
        let (org, e5) = try await s.setHalted(true, change: change("bob", "all stop"), seal: revisionSeal)
        #expect(org.halted && org.revision == 5 && e5.subject == OrgSubject.name && org.changedBy == "bob")
        #expect(try await s.org().revision == 5)

        #expect(try await s.head() == 5)
        let batch = try await s.changes(after: 0, limit: 100)
        #expect(batch.events.map(\.revision) == [1, 2, 3, 4, 5])
        #expect(batch.events.map(\.text) == ["1", "2", "3", "4", "5"], "each event as sealed, with its own revision")
        #expect(batch.surfaces["a1"]?.revision == 4 && batch.org.halted && batch.head == 5)
        #expect(try await s.changes(after: 3, limit: 1).events.map(\.revision) == [4], "after, and at most limit")
        #expect(try await s.surfaces().map(\.deviceId) == ["a1"])
        #expect(try await s.origin() == origin, "the origin is made once")
    }

    @Test("changes from two handles at once (two replicas): revisions in commit order, no gap, none twice", arguments: StoreKind.allCases)
    func concurrentRevisionsHaveNoGaps(_ kind: StoreKind) async throws {
        let (a, second, close) = try await kind.make()
        defer { close() }
        let b = try await second()
        let ids = (0..<10).map { "s\($0)" }
        for id in ids { _ = try await a.register(id, change: change(), seal: revisionSeal) }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<60 {
                let store = i % 2 == 0 ? a : b
                group.addTask {
                    _ = try await store.setRevoked(ids[i % ids.count], revoked: i % 3 != 0, change: change(), seal: revisionSeal)
                }
            }
            group.addTask { _ = try await b.setHalted(true, change: change(), seal: revisionSeal) }
            try await group.waitForAll()
        }
        let head = try await b.head()
        #expect(head == 71)
        let events = try await a.changes(after: 0, limit: 1000).events
        #expect(events.map(\.revision) == Array(1...head), "no gap, none twice")
        #expect(events.allSatisfy { $0.text == String($0.revision) }, "each event sealed with the revision it got")
        for s in try await b.surfaces() {
            #expect(s.revision == events.last { $0.subject == s.deviceId }?.revision, "\(s.deviceId): its row names its last change")
        }
    }

    @Test("API keys, signing keys, audit, reports, usage, retention", arguments: StoreKind.allCases)
    func keysAuditReports(_ kind: StoreKind) async throws {
        let (s, _, close) = try await kind.make()
        defer { close() }
        let now = Timestamp.string(Date())
        try await s.addKey(
            KeyRecord(name: "ci", role: .agent, hash: APIKeys.hash("tk_x"), createdAt: now, surfaces: ["ci-*", "a1"], instance: "h"),
            change: change())
        await #expect(throws: (any Error).self) {
            try await s.addKey(KeyRecord(name: "ci", role: .agent, hash: "other", createdAt: now), change: change())
        }
        #expect(try await s.keys().first?.surfaces == ["ci-*", "a1"])
        #expect(try await s.revokeKey(named: "ci", change: change()))
        #expect(try await !s.revokeKey(named: "ci", change: change()), "already revoked")

        let k = SigningKeyRecord(id: "ed25519:abc", privateKey: "p", publicKey: "P", state: .next, createdAt: now)
        try await s.putSigningKey(k, change: change())
        var k2 = k
        k2.state = .active
        k2.activatedAt = now
        try await s.putSigningKey(k2, change: change())
        #expect(try await s.signingKeys() == [k2])
        try await s.deleteSigningKey(id: k.id, change: change())
        #expect(try await s.signingKeys().isEmpty)

        _ = try await s.register("a1", change: change(at: "2000-01-01T00:00:00.000Z"), seal: revisionSeal)
        _ = try await s.setRevoked("a1", revoked: true, change: change("alice", "why"), seal: revisionSeal)
        #expect(try await s.audit(limit: 10, deviceId: "a1", since: nil, until: nil).map(\.action) == ["revoke", "register"])
        #expect(
            try await s.audit(limit: 10, deviceId: nil, since: "2001-01-01T00:00:00.000Z", until: nil).contains { $0.action == "register" }
                == false)
        for i in 0..<205 {
            try await s.addReport(
                Report(deviceId: "a1", instance: "h", state: "stopped", pids: [Int32(i), 7], at: now, requestID: "r", receivedAt: now))
        }
        let reports = try await s.reports(deviceId: "a1", limit: 500)
        #expect(reports.count == 200 && reports.first?.pids == [204, 7], "the last 200, newest first")
        #expect(reports.first?.detail == nil)
        var denied = Report(deviceId: "a1", instance: "h", state: "denied", pids: [9], at: now, requestID: nil, receivedAt: now)
        denied.detail = "connect ×2 by 9 (/usr/bin/curl)"
        try await s.addReport(denied)
        #expect(try await s.reports(deviceId: "a1", limit: 1).first?.detail == "connect ×2 by 9 (/usr/bin/curl)")
        try await s.addRefusals([RefusalRow(actor: "unknown key", action: "refused-401", count: 3, path: "/x", first: now, last: now)])
        let u = try await s.usage()
        #expect(u.surfaces == 1 && u.revoked == 1 && u.keys == 0 && u.reports == 200 && u.auditEntries >= 5)
        let gone = try await s.prune(auditBefore: "2001-01-01T00:00:00.000Z", reportsBefore: "2001-01-01T00:00:00.000Z")
        #expect(gone.audit == 1 && gone.reports == 0)
        #expect(
            try await s.changes(after: 0, limit: 10).events.map(\.revision) == [2],
            "the old change's event went with the reports' age; the newest stays")
    }
}

@Suite("PostgreSQL store", .timeLimit(.minutes(3)))
struct PostgresStoreTests {
    @Test("the audit log by actor: a key's entries with its console changes", arguments: StoreKind.allCases)
    func auditByActor(_ kind: StoreKind) async throws {
        let (s, _, close) = try await kind.make()
        defer { close() }
        _ = try await s.register("a1", change: change(), seal: revisionSeal)
        _ = try await s.setRevoked("a1", revoked: true, change: change("alice", "why"), seal: revisionSeal)
        // A key's entries by name, with those it made through the console; not another key's
        // whose name it begins, nor the same name where it is not the actor's.
        _ = try await s.setRevoked("a1", revoked: false, change: change("alice via console (10.0.0.1)", "back"), seal: revisionSeal)
        _ = try await s.setRevoked("a1", revoked: true, change: change("alice_b", "other"), seal: revisionSeal)
        _ = try await s.setRevoked("a1", revoked: false, change: change("bob via console (alice)", "x"), seal: revisionSeal)
        let alice = try await s.audit(limit: 10, deviceId: nil, actor: "alice", since: nil, until: nil)
        #expect(alice.map(\.actor) == ["alice via console (10.0.0.1)", "alice"])
        #expect(try await s.audit(limit: 10, deviceId: nil, actor: "ali", since: nil, until: nil).isEmpty)
        #expect(try await s.audit(limit: 10, deviceId: "a1", actor: "alice_b", since: nil, until: nil).map(\.reason) == ["other"])
    }

    @Test("console links and sessions: kept by digest, a link used once across handles, pruned when ended", arguments: StoreKind.allCases)
    func consoleTokens(_ kind: StoreKind) async throws {
        let (s, second, close) = try await kind.make()
        defer { close() }
        let other = try await second()
        let now = Date().timeIntervalSince1970
        try await s.addConsoleToken(
            ConsoleTokenRecord(digest: "l1", kind: .link, keyName: "alice", createdAt: now, lastSeen: now, expiresAt: now + 60))
        try await s.addConsoleToken(
            ConsoleTokenRecord(
                digest: "s1", kind: .session, keyName: "alice", csrf: "c", client: "10.0.0.1", createdAt: now, lastSeen: now,
                expiresAt: now + 60))
        try await s.addConsoleToken(
            ConsoleTokenRecord(
                digest: "s2", kind: .session, keyName: "bob", csrf: "d", createdAt: now, lastSeen: now - 100, expiresAt: now + 60))
        #expect(
            try await other.consoleToken(digest: "s1")
                == ConsoleTokenRecord(
                    digest: "s1", kind: .session, keyName: "alice", csrf: "c", client: "10.0.0.1", createdAt: now, lastSeen: now,
                    expiresAt: now + 60))
        // Two handles (two replicas) use the same link: one of them does.
        async let a = s.useConsoleLink(digest: "l1")
        async let b = other.useConsoleLink(digest: "l1")
        let (x, y) = try await (a, b)
        #expect(x != y)
        #expect(try await s.consoleToken(digest: "l1")?.used == true)
        #expect(try await s.useConsoleLink(digest: "s1") == false, "a session is not a link")
        try await other.touchConsoleSession(digest: "s1", at: now + 5)
        #expect(try await s.consoleToken(digest: "s1")?.lastSeen == now + 5)
        // Idle since before now - 50: s2 goes; nothing has ended yet otherwise.
        #expect(try await s.pruneConsoleTokens(before: now, idleBefore: now - 50) == 1)
        #expect(try await s.consoleToken(digest: "s2") == nil)
        try await s.deleteConsoleSessions(keyName: "alice")
        #expect(try await s.consoleToken(digest: "s1") == nil)
        #expect(try await s.consoleToken(digest: "l1") != nil, "sessions only")
        #expect(try await s.pruneConsoleTokens(before: now + 61, idleBefore: 0) == 1)
        #expect(try await s.consoleToken(digest: "l1") == nil)
    }

    @Test("replicas starting together: each migration once, under the lock; one origin")
    func migrationsRunOnce() async throws {
        let url = try await TestPostgres.freshDatabase()
        let stores = try await withThrowingTaskGroup(of: PostgresStore.self) { group in
            for _ in 0..<4 { group.addTask { try await PostgresStore.open(url, logger: testLogger) } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        defer { stores.forEach { $0.close() } }
        #expect(try await stores[0].schemaVersions() == PostgresStore.migrations.map(\.version))
        let origins = try await withThrowingTaskGroup(of: String.self) { group in
            for s in stores { group.addTask { try await s.origin() } }
            return try await group.reduce(into: Set<String>()) { $0.insert($1) }
        }
        #expect(origins.count == 1)
    }

    @Test("database URLs: what is wrong is named; the password never shows")
    func urls() throws {
        let u = try DatabaseURL("postgresql://tether:s3cret@db.example:6432/fleet?sslmode=verify-full")
        #expect(
            u.user == "tether" && u.password == "s3cret" && u.host == "db.example" && u.port == 6432 && u.database == "fleet"
                && u.sslMode == .verifyFull)
        #expect(!u.description.contains("s3cret"))
        #expect(try DatabaseURL("postgresql://t@localhost/db?host=/run/postgresql").socketDirectory == "/run/postgresql")
        for (bad, says) in [
            ("mysql://x@h/db", "starts with postgresql://"), ("postgresql://h/db", "no user"),
            ("postgresql://u:pw@h/", "no database"), ("postgresql://u@h/db?sslmode=maybe", "sslmode"),
            ("postgresql://u@h/db?pool=3", "unknown database URL parameter"),
        ] {
            #expect(throws: DatabaseURL.Invalid.self) { try DatabaseURL(bad) }
            do { _ = try DatabaseURL(bad) } catch {
                #expect(error.description.contains(says), "\(bad): \(error)")
                #expect(!error.description.contains("pw@"), "the password is not repeated")
            }
        }
    }

    @Test("off this host the database is reached over verified TLS by default; anything weaker is refused unless the risk is named")
    func verifiedTLSOffHost() throws {
        #expect(try DatabaseURL("postgresql://t@db.example/fleet").sslMode == .verifyFull, "the default off loopback")
        #expect(try DatabaseURL("postgresql://t@10.1.2.3:6432/fleet").sslMode == .verifyFull)
        for local in ["127.0.0.1", "127.8.9.1", "localhost", "[::1]"] {
            let u = try DatabaseURL("postgresql://t@\(local)/fleet")
            #expect(u.sslMode == .prefer && !u.unverifiedOffHost, "\(local): libpq's default on loopback")
            #expect(try DatabaseURL("postgresql://t@\(local)/fleet?sslmode=disable").sslMode == .disable)
        }
        #expect(try DatabaseURL("postgresql://t@x/fleet?host=/run/postgresql").sslMode == .prefer, "a Unix socket is this host")
        for weak in ["disable", "prefer", "require"] {
            let text = "postgresql://t:pw@db.example/fleet?sslmode=\(weak)"
            do {
                _ = try DatabaseURL(text)
                Issue.record("sslmode=\(weak) off this host was accepted")
            } catch {
                #expect(error.description.contains("--insecure-database-tls") && error.description.contains("verify-full"), "\(error)")
                #expect(!error.description.contains("pw"), "the password is not repeated")
            }
            let named = try DatabaseURL(text, allowUnverifiedTLS: true)
            #expect(named.sslMode.rawValue == weak && named.unverifiedOffHost, "accepted once the risk is named")
        }
        // The command: refused with the message, accepted with the flag (and a warning).
        let (rc, _, err) = try runTether([
            "authority", "init", "--dir", temporaryDirectory("tls-refused"), "--database",
            "postgresql://t@192.0.2.1:1/fleet?sslmode=require",
        ])
        #expect(rc == 64 && err.contains("--insecure-database-tls"), "\(rc) \(err)")
    }

    @Test("an unreachable database: refused at open, naming it without its password")
    func unreachable() async throws {
        let url = try DatabaseURL("postgresql://tether:hunter2@127.0.0.1:1/tether?sslmode=disable")
        do {
            let s = try await PostgresStore.open(url, logger: testLogger)
            s.close()
            Issue.record("opened a database on port 1")
        } catch {
            #expect("\(error)".contains("127.0.0.1:1") && !"\(error)".contains("hunter2"), "\(error)")
        }
    }
}
