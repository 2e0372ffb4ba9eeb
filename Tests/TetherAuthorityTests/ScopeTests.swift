import Foundation
import AsyncHTTPClient
import HTTPTypes
import NIOCore
import Hummingbird
import HummingbirdTesting
import Testing
import TetherAuthority
import TetherCore

extension TestAuthority {
    /// A new agent key in this authority's store, scoped as given; returns the key.
    func agentKey(_ name: String, surfaces: [String]? = nil, instance: String? = nil) async throws -> String {
        let key = APIKeys.generate()
        let store = try SQLiteStore(path: directory.database)
        let now = Timestamp.string(Date())
        try await store.addKey(
            KeyRecord(name: name, role: .agent, hash: APIKeys.hash(key), createdAt: now, surfaces: surfaces, instance: instance),
            change: Change(actor: "test", reason: nil, requestID: UUID().uuidString, at: now))
        try await Task.sleep(for: .milliseconds(120))  // the key cache reloads (keyRefresh 50 ms)
        return key
    }
}

@Suite("Agent keys: scopes and acknowledgements", .timeLimit(.minutes(2)))
struct ScopeTests {
    @Test("surface patterns")
    func patterns() {
        #expect(SurfacePattern.matches("agent-*", "agent-01"))
        #expect(!SurfacePattern.matches("agent-*", "prod-db"))
        #expect(SurfacePattern.matches("*", "anything"))
        #expect(SurfacePattern.matches("*-prod", "db-prod") && !SurfacePattern.matches("*-prod", "db-prod2"))
        #expect(SurfacePattern.matches("a*b*c", "axxbyyc") && !SurfacePattern.matches("a*b*c", "axxcyyb"))
        #expect(!SurfacePattern.matches("ab*ba", "aba"), "prefix and suffix may not overlap")
        #expect(SurfacePattern.matches("exact", "exact") && !SurfacePattern.matches("exact", "exact2"))
    }

    @Test("a scoped key acts within its surfaces and as its instance only (403 outside); an unscoped key keeps working")
    func scopedKey() async throws {
        let t = try await TestAuthority.make()
        let scoped = try await t.agentKey("host-a-agent", surfaces: ["agent-*"], instance: "host-a")
        try await t.application().test(.router) { c in
            var (s, o) = try await c.post("/api/v1/devices/register", key: scoped, ["deviceId": "agent-01"])
            #expect(s == .ok)
            (s, o) = try await c.post("/api/v1/devices/register", key: scoped, ["deviceId": "prod-db"])
            #expect(s == .forbidden && (o["error"] as? String)?.contains("may not act for") == true, "\(o)")
            (s, _) = try await c.post("/api/v1/devices/validate", key: scoped, ["deviceId": "prod-db"])
            #expect(s == .forbidden)
            (s, _) = try await c.post("/api/v1/devices/validate", key: scoped, ["deviceId": "agent-01"])
            #expect(s == .ok)
            let report: [String: Any] = ["deviceId": "agent-01", "instance": "host-b", "state": "stopped", "pids": [1]]
            (s, o) = try await c.post("/api/v1/devices/report", key: scoped, report)
            #expect(s == .forbidden && (o["error"] as? String)?.contains("bound to instance") == true, "\(o)")
            (s, _) = try await c.post("/api/v1/devices/report", key: scoped, report.merging(["instance": "host-a"]) { $1 })
            #expect(s == .ok)
            (s, _) = try await c.get("/api/v1/devices/watch?deviceId=prod-db&instance=host-a", key: scoped)
            #expect(s == .forbidden)
            (s, _) = try await c.get("/api/v1/devices/watch?deviceId=agent-01&instance=host-b", key: scoped)
            #expect(s == .forbidden)
            // Keys made before scopes: unscoped, as before.
            (s, _) = try await c.post("/api/v1/devices/register", key: t.agentKey, ["deviceId": "prod-db"])
            #expect(s == .ok)
        }
        let keys = try await SQLiteStore(path: t.directory.database).keys()
        #expect(keys.first { $0.name == "agent" }?.scopeDescription == "unscoped")
        #expect(keys.first { $0.name == "host-a-agent" }?.scopeDescription == "surfaces agent-*; instance host-a")
    }

    @Test(
        "another agent key can neither watch nor report as an instance held by a key (403): no forged stop; only a stop acknowledges a revoke"
    )
    func forgedAck() async throws {
        let t = try await TestAuthority.make(lease: .seconds(5))
        let other = try await t.agentKey("other-agent")
        try await t.application().test(.live) { c in
            let port = try #require(c.port)
            try await Self.forgedAckScenario(port: port, t, other: other)
        }
    }

    static func forgedAckScenario(port: Int, _ t: TestAuthority, other: String) async throws {
        _ = try await post(port, "/api/v1/devices/register", t.agentKey, ["deviceId": "a1"])
        let victim = WatchReader(port: port, key: t.agentKey, surfaces: ["a1"], instance: "host-a")
        defer { victim.cancel() }
        _ = await victim.wait { $0.allowed }
        let operatorKey = t.operatorKey
        let revoke = Task { try await revokeWaiting(port: port, operatorKey) }
        let d = try #require(await victim.wait { !$0.allowed })
        let rid = d.requestID
        // Another agent key cannot stand in for host-a: its stream as host-a is refused, and
        // so is its report that host-a stopped (host-a belongs to the key that claimed it).
        let stream = try await watchStatus(port, other, instance: "host-a", surfaces: ["a1"])
        #expect(stream.0 == 403 && stream.1.contains("held by another key"), "\(stream)")
        let forged = try await post(
            port, "/api/v1/devices/report", other,
            ["deviceId": "a1", "instance": "host-a", "state": "stopped", "pids": [4242], "request_id": rid])
        #expect(forged.0 == 403 && forged.1.contains("held by another key"), "\(forged)")
        // The right key, the wrong state: not an acknowledgement of a revoke either.
        _ = try await post(
            port, "/api/v1/devices/report", t.agentKey,
            ["deviceId": "a1", "instance": "host-a", "state": "resumed", "pids": [1], "request_id": rid])
        let (rs, text) = try await revoke.value
        let out = object(text)
        #expect(rs == 200)
        #expect((out["acks"] as? [Any])?.isEmpty == true, "no forged or wrong-state ack: \(out)")
        #expect((out["missing"] as? [[String: Any]])?.first?["instance"] as? String == "host-a")

        // The real one counts: the stream's own key, a stopped state.
        _ = try await post(port, "/api/v1/devices/unrevoke", t.operatorKey, ["deviceId": "a1"])
        _ = await victim.wait { $0.allowed && $0.requestID != rid }
        let again = Task { try await revokeWaiting(port: port, operatorKey) }
        let d2 = try #require(await victim.wait { !$0.allowed && $0.requestID != rid })
        _ = try await post(
            port, "/api/v1/devices/report", t.agentKey,
            ["deviceId": "a1", "instance": "host-a", "state": "stopped", "pids": [1], "request_id": d2.requestID])
        let (rs2, text2) = try await again.value
        let out2 = object(text2)
        #expect(rs2 == 200)
        #expect((out2["acks"] as? [[String: Any]])?.first?["instance"] as? String == "host-a", "\(out2)")
        #expect((out2["missing"] as? [Any])?.isEmpty == true)
    }

    static func post(_ port: Int, _ path: String, _ key: String, _ object: [String: Any]) async throws -> (Int, String) {
        var req = HTTPClientRequest(url: "http://127.0.0.1:\(port)\(path)")
        req.method = .POST
        req.headers.add(name: "x-org-key", value: key)
        req.body = .bytes(ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: object)))
        let resp = try await streamClient.execute(req, timeout: .seconds(10))
        return (Int(resp.status.code), String(buffer: try await resp.body.collect(upTo: 1 << 20)))
    }

    /// The status of a watch stream's answer, and its body when it is not a stream (a refusal).
    static func watchStatus(_ port: Int, _ key: String, instance: String, surfaces: [String]) async throws -> (Int, String) {
        var req = HTTPClientRequest(
            url: "http://127.0.0.1:\(port)/api/v1/devices/watch?" + surfaces.map { "deviceId=\($0)" }.joined(separator: "&")
                + "&instance=\(instance)")
        req.headers.add(name: "x-org-key", value: key)
        let resp = try await streamClient.execute(req, timeout: .seconds(5))
        guard resp.status.code != 200 else { return (200, "a stream") }
        return (Int(resp.status.code), String(buffer: try await resp.body.collect(upTo: 1 << 20)))
    }

    /// The operator's revoke with --wait, as `tether revoke --wait` sends it; the answer as text.
    static func revokeWaiting(port: Int, _ key: String) async throws -> (Int, String) {
        try await post(port, "/api/v1/devices/revoke?wait=3s", key, ["deviceId": "a1"])
    }

    static func object(_ text: String) -> [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]) ?? [:]
    }

    @Test(
        "watch streams are capped per key and in all (429 TOO_MANY_STREAMS); register and report are rate-limited per key (429 RATE_LIMITED, Retry-After)"
    )
    func limits() async throws {
        let t = try await TestAuthority.make { c in
            c.maxStreamsPerKey = 2
            c.maxStreams = 3
            c.writeRate = 0.001  // no refill within the test, however slow the machine
            c.writeBurst = 5
        }
        let other = try await t.agentKey("other-agent")
        try await t.application().test(.live) { c in
            let port = try #require(c.port)
            try await Self.limitsScenario(port: port, t, other: other)
        }
    }

    static func limitsScenario(port: Int, _ t: TestAuthority, other: String) async throws {
        // Five registrations in a burst, then 429 with Retry-After; another key is not held up.
        for i in 0..<5 { #expect(try await post(port, "/api/v1/devices/register", t.agentKey, ["deviceId": "s\(i)"]).0 == 200) }
        let (code, body) = try await post(port, "/api/v1/devices/register", t.agentKey, ["deviceId": "s9"])
        #expect(code == 429 && body.contains("RATE_LIMITED"), "\(body)")
        #expect(try await post(port, "/api/v1/devices/register", other, ["deviceId": "o1"]).0 == 200)
        #expect(
            try await post(
                port, "/api/v1/devices/report", t.agentKey,
                ["deviceId": "s0", "instance": "h", "state": "stopped", "pids": [1]]
            ).0 == 429)

        // Streams: two for the key, the third refused; then one more for another key, and the
        // authority's own cap (3) refuses the next.
        let a = WatchReader(port: port, key: t.agentKey, surfaces: ["s0"], instance: "h1")
        let b = WatchReader(port: port, key: t.agentKey, surfaces: ["s1"], instance: "h2")
        defer {
            a.cancel()
            b.cancel()
        }
        _ = await a.wait { _ in true }
        _ = await b.wait { _ in true }
        #expect(try await get(port, "/api/v1/devices/watch?deviceId=s2&instance=h3", t.agentKey).contains("TOO_MANY_STREAMS"))
        let c3 = WatchReader(port: port, key: other, surfaces: ["o1"], instance: "o")
        defer { c3.cancel() }
        _ = await c3.wait { _ in true }
        let full = try await get(port, "/api/v1/devices/watch?deviceId=o1&instance=o2", other)
        #expect(full.contains("TOO_MANY_STREAMS") && full.contains("its limit"), "\(full)")
        // A stream closed frees its place.
        a.cancel()
        var freed = false
        for _ in 0..<100 where !freed {
            try await Task.sleep(for: .milliseconds(20))
            let d = WatchReader(port: port, key: t.agentKey, surfaces: ["s0"], instance: "h4")
            freed = await d.wait(timeout: .milliseconds(300)) { _ in true } != nil
            d.cancel()
        }
        #expect(freed)
    }

    /// GET with a key; the first bytes of the answer (a stream is cut short).
    static func get(_ port: Int, _ path: String, _ key: String) async throws -> String {
        var req = HTTPClientRequest(url: "http://127.0.0.1:\(port)\(path)")
        req.headers.add(name: "x-org-key", value: key)
        let resp = try await streamClient.execute(req, timeout: .seconds(5))
        if resp.status == .ok { return "200" }
        return "\(resp.status.code) " + String(buffer: try await resp.body.collect(upTo: 65536))
    }
}
