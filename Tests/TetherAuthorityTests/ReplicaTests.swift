import AsyncHTTPClient
import Foundation
import Testing
import TetherAuthority
import TetherClient
import TetherCore

@Suite("Replicas on one PostgreSQL database", .serialized, .timeLimit(.minutes(3)))
struct ReplicaTests {
    @Test("a change made on one replica reaches the streams of every replica: the same signed bytes, its revision as the SSE id")
    func changesReachEveryReplica() async throws {
        let r = try await Replicas.start(3)
        defer { r.stop() }
        let verifier = try DecisionVerifier(publicKeyBase64: r.publicKey)
        _ = try await r.client(0).register("a1")
        let readers = r.servers.map { WatchReader(port: $0.port, key: r.agentKey, surfaces: ["a1"], instance: "h-\($0.port)") }
        defer { readers.forEach { $0.cancel() } }
        for reader in readers { #expect(await reader.wait { $0.kind == .lease } != nil) }
        let answer = try await r.client(1, operator: true).revoke("a1", reason: "INC-7", wait: nil)
        let rid = try #require(answer["request_id"] as? String)
        var frames = Set<String>()
        for reader in readers {
            let d = try #require(await reader.wait { $0.code == .deviceRevoked && $0.kind == .change })
            #expect(d.requestID == rid && verifier.verify(d) && d.changeReason == "INC-7")
            let frame = try #require(reader.all.first { $0.data.contains("DEVICE_REVOKED") })
            #expect(frame.id == "2", "register was revision 1, the revoke 2")
            frames.insert(frame.data)
        }
        #expect(frames.count == 1, "the same bytes on every replica's streams")
        // Every replica now answers the revoke, whichever committed it.
        for i in 0..<3 { #expect(try await r.client(i).validate("a1", nonce: "n")["code"] as? String == "DEVICE_REVOKED") }
    }

    @Test("a supervisor resumes on another replica with Last-Event-ID and misses nothing; the resume is not a replay of what it held")
    func resumeOnAnotherReplica() async throws {
        let r = try await Replicas.start(2)
        defer { r.stop() }
        for id in ["a1", "b1"] { _ = try await r.client(0).register(id) }
        let first = WatchReader(port: r.servers[0].port, key: r.agentKey, surfaces: ["a1"], instance: "h")
        let hello = try #require(await first.waitEvent { $0.event == "hello" })
        first.cancel()
        let held = try #require(UInt64(hello.id ?? ""))
        #expect(held == 2)
        // While it is away: three changes of its surface and one of another, on the other replica.
        let op = r.client(1, operator: true)
        _ = try await op.revoke("a1", reason: "one", wait: nil)
        _ = try await op.revoke("b1", reason: "not ours", wait: nil)
        _ = try await op.restore("a1", reason: "two", wait: nil)
        _ = try await op.revoke("a1", reason: "three", wait: nil)
        let resumed = WatchReader(port: r.servers[1].port, key: r.agentKey, surfaces: ["a1"], instance: "h", lastEventID: held)
        defer { resumed.cancel() }
        _ = await resumed.wait { $0.kind == .lease }
        let changes = resumed.decisions().filter { $0.kind == .change }
        #expect(changes.map(\.changeReason) == ["one", "two", "three"], "every change it missed, in order, none of another surface")
        #expect(changes.compactMap(\.revision) == [3, 5, 6])
        let lease = try #require(resumed.decisions().last { $0.kind == .lease })
        #expect(lease.revision == 6 && lease.code == .deviceRevoked, "then the current state")
        var revisions = Revisions()
        for d in resumed.decisions() { _ = revisions.accept(d) }
        #expect(revisions.surface["a1"] == 6)
    }

    @Test(
        "PostgreSQL stopped: replicas say so (healthz, validate, watch 503; streams told to go), and come back when it does; nothing committed is missed"
    )
    func databaseDown() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tether-pg-\(UUID().uuidString.prefix(8))").path
        let (code, out, err) = try await TestPostgres.run(["bash", TestPostgres.root + "/scripts/pg-cluster.sh", "start", dir])
        try #require(code == 0, "\(err)")
        defer { _ = try? TestPostgres.runBlocking(["bash", TestPostgres.root + "/scripts/pg-cluster.sh", "stop", dir]) }
        let url = try DatabaseURL(out.trimmingCharacters(in: .whitespacesAndNewlines))
        let r = try await Replicas.start(2, database: url, extra: ["--max-lag", "2s"])
        defer { r.stop() }
        _ = try await r.client(0).register("a1")
        let reader = WatchReader(port: r.servers[1].port, key: r.agentKey, surfaces: ["a1"], instance: "h")
        defer { reader.cancel() }
        _ = await reader.wait { $0.kind == .lease }

        _ = try await TestPostgres.run(["bash", TestPostgres.root + "/scripts/pg-cluster.sh", "stop", dir])
        let down = ContinuousClock.now
        for i in 0..<2 { #expect(await Self.waitHealth(r.servers[i].url, ok: false, within: .seconds(15)), "replica \(i) not ready") }
        print("replicas not ready \(ContinuousClock.now - down) after PostgreSQL stopped")
        await #expect(throws: (any Error).self) { _ = try await r.client(0).validate("a1", nonce: "n") }
        #expect(await reader.waitEvent(timeout: .seconds(10)) { $0.event == "shutdown" } != nil, "the stream is told to go elsewhere")

        _ = try await TestPostgres.run(["bash", TestPostgres.root + "/scripts/pg-cluster.sh", "start", dir])
        for i in 0..<2 { #expect(await Self.waitHealth(r.servers[i].url, ok: true, within: .seconds(20)), "replica \(i) ready again") }
        _ = try await r.client(0, operator: true).revoke("a1", reason: "after", wait: nil)
        var seen: String?
        for _ in 0..<100 {
            seen = try await r.client(1).validate("a1", nonce: "n")["code"] as? String
            if seen == "DEVICE_REVOKED" { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(seen == "DEVICE_REVOKED", "a change after the outage reaches the other replica")
    }

    @Test(
        "across replicas an instance stays with the key that claimed it: a stolen agent key can neither watch nor report as host-a on any replica; host-a's own stop counts"
    )
    func forgedAckAcrossReplicas() async throws {
        let r = try await Replicas.start(2)
        defer { r.stop() }
        let (code, thief, err) = try await offPool {
            try runTether(
                ["keys", "create", "--role", "agent", "--name", "thief", "--dir", r.dir], env: ["TETHER_DATABASE_URL": r.database.text])
        }
        try #require(code == 0, "\(err)")
        _ = try await r.client(0).register("a1")
        let victim = WatchReader(port: r.servers[1].port, key: r.agentKey, surfaces: ["a1"], instance: "host-a")
        defer { victim.cancel() }
        _ = await victim.wait { $0.allowed }
        // Replica 0 learns of the stream with replica 1's next heartbeat.
        var listed = false
        for _ in 0..<50 where !listed {
            let list = try await r.client(0, operator: true).list(deviceId: "a1")
            listed = ((list["devices"] as? [[String: Any]])?.first?["watchers"] as? [String]) == ["host-a"]
            if !listed { try await Task.sleep(for: .milliseconds(100)) }
        }
        try #require(listed)
        let op = r.client(0, operator: true)
        let revoke = Task { try await op.revoke("a1", reason: "forgery", wait: .seconds(20)) }
        let rid = try #require(await victim.wait { $0.code == .deviceRevoked }).requestID
        // The stolen key tries to stand in for host-a through both replicas — host-a's claim is
        // in the shared database: its stream as host-a and its stop are refused on each.
        for i in 0..<2 {
            let thiefKey = thief.trimmingCharacters(in: .whitespacesAndNewlines)
            let stream = try await ScopeTests.watchStatus(r.servers[i].port, thiefKey, instance: "host-a", surfaces: ["a1"])
            #expect(stream.0 == 403, "replica \(i): \(stream)")
            let thiefClient = AuthorityClient(endpoint: AuthorityEndpoint(url: r.servers[i].url, key: thiefKey))
            do {
                _ = try await thiefClient.report(ReportBody(surface: "a1", instance: "host-a", state: .stopped, pids: [1], requestID: rid))
                Issue.record("replica \(i) took the stolen key's report as host-a")
            } catch ClientError.refused(let status, _, _, _) {
                #expect(status == 403, "replica \(i)")
            }
        }
        // The stream's own key, on the other replica: counted.
        _ = try await r.client(1).report(ReportBody(surface: "a1", instance: "host-a", state: .stopped, pids: [7], requestID: rid))
        let out = try await revoke.value
        let acks = try #require(out["acks"] as? [[String: Any]])
        #expect(acks.count == 1 && acks.first?["pids"] as? [Int] == [7], "only the real stop: \(out.object)")
        #expect((out["missing"] as? [Any])?.isEmpty == true)
    }

    @Test(
        "the report doorbell carries only a row id: a role that may only connect rings it with a forged stop (the old JSON) and with an id of no row — neither is an acknowledgement; a supervisor's report still crosses replicas"
    )
    func forgedDoorbell() async throws {
        // A cluster of its own: making a role takes its superuser, which the shared one's role is not.
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tether-pg-\(UUID().uuidString.prefix(8))").path
        let (code, out, err) = try await TestPostgres.run(["bash", TestPostgres.root + "/scripts/pg-cluster.sh", "start", dir])
        try #require(code == 0, "\(err)")
        defer { _ = try? TestPostgres.runBlocking(["bash", TestPostgres.root + "/scripts/pg-cluster.sh", "stop", dir]) }
        let url = try DatabaseURL(out.trimmingCharacters(in: .whitespacesAndNewlines))
        let forger = try await Self.connectOnlyRole(url)
        let r = try await Replicas.start(2, database: url)
        defer { r.stop() }
        await #expect(throws: (any Error).self, "the forger reads no table") {
            try await TestPostgres.psql(forger, "SELECT count(*) FROM relayed_reports")
        }

        _ = try await r.client(0).register("a1")
        let victim = WatchReader(port: r.servers[1].port, key: r.agentKey, surfaces: ["a1"], instance: "host-b")
        defer { victim.cancel() }
        _ = await victim.wait { $0.allowed }
        var listed = false
        for _ in 0..<50 where !listed {
            let list = try await r.client(0, operator: true).list(deviceId: "a1")
            listed = ((list["devices"] as? [[String: Any]])?.first?["watchers"] as? [String]) == ["host-b"]
            if !listed { try await Task.sleep(for: .milliseconds(100)) }
        }
        try #require(listed)
        let op = r.client(0, operator: true)
        let revoke = Task { try await op.revoke("a1", reason: "doorbell", wait: .seconds(20)) }
        let rid = try #require(await victim.wait { $0.code == .deviceRevoked }).requestID
        // What a report relayed used to look like: host-b stopped, from the stream's own key.
        let now = Timestamp.string(Date())
        let old: [String: Any] = [
            "d": "a1", "i": "host-b", "s": "stopped", "p": [31337], "a": now, "r": rid, "k": "agent", "t": now, "x": "",
        ]
        let json = String(decoding: try JSONSerialization.data(withJSONObject: old), as: UTF8.self)
        try await TestPostgres.psql(forger, "SELECT pg_notify('tether_reports', '\(json)')")
        try await TestPostgres.psql(forger, "SELECT pg_notify('tether_reports', '999999')")
        // Rung before the real stop: had either counted, it would be the acknowledgement.
        try await Task.sleep(for: .milliseconds(500))
        _ = try await r.client(1).report(ReportBody(surface: "a1", instance: "host-b", state: .stopped, pids: [7], requestID: rid))
        let answer = try await revoke.value
        let acks = try #require(answer["acks"] as? [[String: Any]])
        #expect(
            acks.count == 1 && acks.first?["pids"] as? [Int] == [7], "only the supervisor's stop, relayed from replica 1: \(answer.object)")
        #expect((answer["missing"] as? [Any])?.isEmpty == true)
    }

    /// A role that may connect to the database and do nothing else (what PUBLIC has by default),
    /// made by the cluster's superuser; its URL.
    static func connectOnlyRole(_ url: DatabaseURL) async throws -> String {
        var c = try #require(URLComponents(string: url.text))
        let database = String(c.path.dropFirst())
        c.user = "postgres"
        try await TestPostgres.psql(c.string!, "CREATE ROLE forger LOGIN PASSWORD 'forger'")
        try await TestPostgres.psql(c.string!, "GRANT CONNECT ON DATABASE \(database) TO forger")
        c.user = "forger"
        c.password = "forger"
        return c.string!
    }

    static func waitHealth(_ url: String, ok: Bool, within: Duration) async -> Bool {
        let probe = AuthorityClient(endpoint: AuthorityEndpoint(url: url, key: "x"))
        let deadline = ContinuousClock.now + within
        while ContinuousClock.now < deadline {
            let healthy = (try? await probe.get("/healthz")) != nil
            if healthy == ok { return true }
            try? await Task.sleep(for: .milliseconds(100))
        }
        return false
    }
}
