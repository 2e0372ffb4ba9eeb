import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Testing
@testable import TetherAuthority
import TetherClient
import TetherCore

@Suite("Authority routes", .timeLimit(.minutes(2)))
struct RouterTests {
    @Test func registerIsIdempotentAndNeverUnrevokes() async throws {
        let t = try await TestAuthority.make()
        try await t.application().test(.router) { c in
            var (s, o) = try await c.post("/api/v1/devices/register", key: t.agentKey, ["deviceId": "agent-01"])
            #expect(s == .ok)
            #expect(o["status"] as? String == "ok")
            (_, o) = try await c.post("/api/v1/devices/register", key: t.agentKey, ["deviceId": "agent-01"])
            #expect(o["status"] as? String == "exists")
            try await c.post("/api/v1/devices/revoke", key: t.operatorKey, ["deviceId": "agent-01"])
            (_, o) = try await c.post("/api/v1/devices/register", key: t.agentKey, ["deviceId": "agent-01"])
            #expect(o["status"] as? String == "revoked")
            (_, o) = try await c.post("/api/v1/devices/validate", key: t.agentKey, ["deviceId": "agent-01"])
            #expect(o["allowed"] as? Bool == false, "register did not restore it")
            // Removed while revoked, then registered again by the agent: still revoked (it used
            // to come back allowed), and the record says who revoked it and why.
            try await c.post("/api/v1/devices/revoke", key: t.operatorKey, ["deviceId": "agent-01", "reason": "INC-9"])
            (s, _) = try await c.post("/api/v1/devices/remove", key: t.operatorKey, ["deviceId": "agent-01"])
            #expect(s == .ok)
            (_, o) = try await c.post("/api/v1/devices/register", key: t.agentKey, ["deviceId": "agent-01"])
            #expect(o["status"] as? String == "revoked", "\(o)")
            (_, o) = try await c.post("/api/v1/devices/validate", key: t.agentKey, ["deviceId": "agent-01"])
            #expect(o["allowed"] as? Bool == false && o["code"] as? String == "DEVICE_REVOKED", "\(o)")
            #expect(o["changeReason"] as? String == "INC-9")
            // An active surface removed and registered again comes back active.
            try await c.post("/api/v1/devices/register", key: t.agentKey, ["deviceId": "agent-02"])
            try await c.post("/api/v1/devices/remove", key: t.operatorKey, ["deviceId": "agent-02"])
            (_, o) = try await c.post("/api/v1/devices/register", key: t.agentKey, ["deviceId": "agent-02"])
            #expect(o["status"] as? String == "ok")
        }
    }

    @Test func validateGivesEveryDecisionCode() async throws {
        let t = try await TestAuthority.make()
        try await t.application().test(.router) { c in
            var (s, o) = try await c.post("/api/v1/devices/validate", key: t.agentKey, ["deviceId": "ghost"])
            #expect(s == .ok)
            #expect(o["code"] as? String == "DEVICE_NOT_FOUND")
            #expect(o["allowed"] as? Bool == false)
            try await c.post("/api/v1/devices/register", key: t.agentKey, ["deviceId": "a1"])
            (_, o) = try await c.post("/api/v1/devices/validate", key: t.agentKey, ["deviceId": "a1"])
            #expect(o["code"] as? String == "ALLOW")
            #expect(o["allowed"] as? Bool == true)
            #expect((o["request_id"] as? String)?.isEmpty == false)
            try await c.post("/api/v1/devices/revoke", key: t.operatorKey, ["deviceId": "a1", "reason": "test"])
            (_, o) = try await c.post("/api/v1/devices/validate", key: t.agentKey, ["deviceId": "a1"])
            #expect(o["code"] as? String == "DEVICE_REVOKED")
            try await c.post("/api/v1/devices/unrevoke", key: t.operatorKey, ["deviceId": "a1"])
            (s, _) = try await c.post("/api/v1/org/halt", key: t.operatorKey, ["reason": "INC-1"])
            #expect(s == .ok)
            (_, o) = try await c.post("/api/v1/devices/validate", key: t.agentKey, ["deviceId": "a1"])
            #expect(o["code"] as? String == "ORG_HALTED")
            #expect(o["allowed"] as? Bool == false)
            try await c.post("/api/v1/org/resume", key: t.operatorKey, [:])
            (_, o) = try await c.post("/api/v1/devices/validate", key: t.agentKey, ["deviceId": "a1"])
            #expect(o["code"] as? String == "ALLOW")
        }
    }

    @Test func decisionsCarryALeaseAndAValidSignature() async throws {
        let t = try await TestAuthority.make(lease: .seconds(7))
        let verifier = try DecisionVerifier(publicKeyBase64: t.publicKey)
        try await t.application().test(.router) { c in
            try await c.post("/api/v1/devices/register", key: t.agentKey, ["deviceId": "a1"])
            try await c.execute(
                uri: "/api/v1/devices/validate", method: .post, headers: headers(t.agentKey),
                body: body(["deviceId": "a1", "nonce": "n-42"])
            ) { r in
                let o = json(r)
                let d = try #require(Decision(json: o))
                #expect(d.nonce == "n-42")
                let issued = try #require(Timestamp.parse(d.issuedAt)), expires = try #require(Timestamp.parse(d.expiresAt))
                #expect(abs(expires.timeIntervalSince(issued) - 7) < 0.01)
                #expect(r.headers[.signature] == d.signature, "signature in the header too")
                #expect(verifier.verify(d))
                var tampered = d
                tampered.allowed = false
                #expect(!verifier.verify(tampered), "a changed field fails")
                tampered = d
                tampered.nonce = "n-43"
                #expect(!verifier.verify(tampered), "a replay for another nonce fails")
                tampered = d
                tampered.expiresAt = Timestamp.string(expires.addingTimeInterval(3600))
                #expect(!verifier.verify(tampered), "an extended lease fails")
                let other = try DecisionVerifier(publicKeyBase64: DecisionSigner.generate().publicBase64)
                #expect(!other.verify(d), "another authority's key fails")
                tampered = d
                tampered.signature = nil
                #expect(!verifier.verify(tampered), "a missing signature fails")
            }
        }
    }

    @Test("a deny names the operator change behind it, signed: who, when, why (one line)")
    func decisionsNameTheChange() async throws {
        let t = try await TestAuthority.make()
        let verifier = try DecisionVerifier(publicKeyBase64: t.publicKey)
        try await t.application().test(.router) { c in
            try await c.post("/api/v1/devices/register", key: t.agentKey, ["deviceId": "a1"])
            var (_, o) = try await c.post("/api/v1/devices/validate", key: t.agentKey, ["deviceId": "a1"])
            var d = try #require(Decision(json: o))
            #expect(d.changedBy == nil && d.changeReason == nil, "never revoked: no change to name")
            try await c.post("/api/v1/devices/revoke", key: t.operatorKey, ["deviceId": "a1", "reason": "INC-481:\nrefund loop"])
            (_, o) = try await c.post("/api/v1/devices/validate", key: t.agentKey, ["deviceId": "a1"])
            d = try #require(Decision(json: o))
            #expect(d.code == .deviceRevoked && d.changedBy == "operator" && d.changeReason == "INC-481: refund loop")
            #expect(o["reason"] as? String == "DEVICE_REVOKED", "MachineID's legacy field keeps its meaning")
            #expect(d.changedAt.flatMap(Timestamp.parse) != nil)
            #expect(verifier.verify(d))
            var tampered = d
            tampered.changedBy = "mallory"
            #expect(!verifier.verify(tampered), "the name is signed")
            tampered = d
            tampered.changeReason = "INC-481: refund loop\nseq=9"
            #expect(!verifier.verify(tampered), "a line break is refused before any signature check")
            try await c.post("/api/v1/org/halt", key: t.operatorKey, ["reason": "INC-500"])
            (_, o) = try await c.post("/api/v1/devices/validate", key: t.agentKey, ["deviceId": "a1"])
            d = try #require(Decision(json: o))
            #expect(d.code == .orgHalted && d.changeReason == "INC-500" && verifier.verify(d), "a halt names the halt")
        }
    }

    @Test func agentKeysCannotOperate() async throws {
        let t = try await TestAuthority.make()
        try await t.application().test(.router) { c in
            try await c.post("/api/v1/devices/register", key: t.agentKey, ["deviceId": "a1"])
            for path in ["devices/revoke", "devices/unrevoke", "devices/remove"] {
                let (s, o) = try await c.post("/api/v1/\(path)", key: t.agentKey, ["deviceId": "a1"])
                #expect(s == .forbidden, "\(path)")
                #expect(o["code"] as? String == "FORBIDDEN")
                #expect((o["error"] as? String)?.contains("operator key") == true)
            }
            for path in ["org/halt", "org/resume"] {
                let (s, _) = try await c.post("/api/v1/\(path)", key: t.agentKey, ["reason": "x"])
                #expect(s == .forbidden, "\(path)")
            }
            for path in ["devices/list", "audit", "usage"] {
                let (s, _) = try await c.get("/api/v1/\(path)", key: t.agentKey)
                #expect(s == .forbidden, "\(path)")
            }
            let (_, o) = try await c.post("/api/v1/devices/validate", key: t.agentKey, ["deviceId": "a1"])
            #expect(o["allowed"] as? Bool == true, "the agent's failed attempts changed nothing")
        }
    }

    @Test func keysAreRequiredAndChecked() async throws {
        let t = try await TestAuthority.make()
        try await t.application().test(.router) { c in
            var (s, o) = try await c.post("/api/v1/devices/validate", key: nil, ["deviceId": "a1"])
            #expect(s == .unauthorized)
            #expect(o["code"] as? String == "UNAUTHORIZED")
            (s, _) = try await c.post("/api/v1/devices/validate", key: APIKeys.generate(), ["deviceId": "a1"])
            #expect(s == .unauthorized)
            (s, _) = try await c.post("/api/v1/devices/validate", key: String(t.agentKey.dropLast()), ["deviceId": "a1"])
            #expect(s == .unauthorized)
            // A key revoked in the store stops working (keys reload every 50 ms here).
            let store = try SQLiteStore(path: t.directory.database)
            #expect(
                try await store.revokeKey(
                    named: "agent", change: Change(actor: "test", reason: nil, requestID: "r", at: Timestamp.string(Date()))))
            try await Task.sleep(for: .milliseconds(120))
            (s, _) = try await c.post("/api/v1/devices/validate", key: t.agentKey, ["deviceId": "a1"])
            #expect(s == .unauthorized)
            (s, _) = try await c.get("/healthz", key: nil)
            #expect(s == .ok)
        }
    }

    @Test func badInputIsRefusedWithAJSONError() async throws {
        let t = try await TestAuthority.make()
        try await t.application().test(.router) { c in
            let cases: [(String, ByteBuffer, HTTPResponse.Status, String)] = [
                ("/api/v1/devices/validate", ByteBuffer(string: "{not json"), .badRequest, "not valid JSON"),
                ("/api/v1/devices/validate", ByteBuffer(string: "[1,2]"), .badRequest, "JSON object"),
                ("/api/v1/devices/validate", body(["deviceId": 7]), .badRequest, "must be a string"),
                ("/api/v1/devices/validate", body([:]), .badRequest, "\"deviceId\" is required"),
                ("/api/v1/devices/validate", body(["deviceId": "a b"]), .badRequest, "invalid deviceId"),
                ("/api/v1/devices/validate", body(["deviceId": String(repeating: "a", count: 129)]), .badRequest, "invalid deviceId"),
                ("/api/v1/devices/validate", body(["deviceId": "a1", "deviceID": "a2"]), .badRequest, "unknown field \"deviceID\""),
                ("/api/v1/devices/validate", body(["deviceId": "a1", "nonce": "bad nonce\n"]), .badRequest, "invalid nonce"),
                (
                    "/api/v1/devices/validate", ByteBuffer(string: "{\"deviceId\": \"" + String(repeating: "x", count: 70_000) + "\"}"),
                    .contentTooLarge, "larger than"
                ),
                ("/api/v1/devices/report", body(["deviceId": "a1", "instance": "h1", "state": "dancing"]), .badRequest, "unknown state"),
                (
                    "/api/v1/devices/report",
                    body(["deviceId": "a1", "instance": "h1", "state": "denied", "detail": "connect ×1\nforged line"]), .badRequest,
                    "control character"
                ),
                (
                    "/api/v1/devices/report",
                    body(["deviceId": "a1", "instance": "h1", "state": "denied", "detail": String(repeating: "x", count: 1001)]),
                    .badRequest, "longer than 1000 characters"
                ),
                (
                    "/api/v1/devices/report", body(["deviceId": "a1", "instance": "h1", "state": "stopped", "pids": [1.5]]), .badRequest,
                    "\"pids[0]\" must be a process id"
                ),
                (
                    "/api/v1/devices/report", body(["deviceId": "a1", "instance": "h1", "state": "stopped", "pids": [7, -3]]), .badRequest,
                    "positive integers"
                ),
                (
                    "/api/v1/devices/report", body(["deviceId": "a1", "instance": "h1", "state": "stopped", "pids": [7, "8"]]), .badRequest,
                    "\"pids[1]\" must be a number"
                ),
                (
                    "/api/v1/devices/report", body(["deviceId": "a1", "instance": "h1", "state": "stopped", "pids": [1e12]]), .badRequest,
                    "\"pids[0]\" must be a process id"
                ),
                (
                    "/api/v1/devices/report", body(["deviceId": "a1", "instance": "h1", "state": NSNull()]), .badRequest,
                    "\"state\" must be a string, not null"
                ),
                (
                    "/api/v1/devices/report", body(["deviceId": "a1", "instance": "h1", "state": "stopped", "at": "yesterday"]),
                    .badRequest, "RFC 3339"
                ),
                // Found by the fuzzer: Foundation's ISO 8601 formatter died of SIGFPE on it, and with it the authority.
                (
                    "/api/v1/devices/report",
                    body([
                        "deviceId": "a1", "instance": "h1", "state": "stopped",
                        "at": "20621-9-26T03:00:00.000" + String(repeating: "3", count: 90) + "Z",
                    ]), .badRequest, "RFC 3339"
                ),
            ]
            for (uri, b, status, message) in cases {
                try await c.execute(uri: uri, method: .post, headers: headers(t.agentKey), body: b) { r in
                    #expect(r.status == status, "\(uri) \(message)")
                    let o = json(r)
                    #expect(o["status"] as? String == "error")
                    #expect((o["error"] as? String)?.contains(message) == true, "\(o)")
                    #expect(o["request_id"] is String)
                }
            }
            var (s, o) = try await c.post("/api/v1/devices/revoke", key: t.operatorKey, ["deviceId": "never-registered"])
            #expect(s == .notFound)
            #expect(o["code"] as? String == "DEVICE_NOT_FOUND")
            (s, o) = try await c.post("/api/v1/org/halt", key: t.operatorKey, [:])
            #expect(s == .badRequest, "a halt needs a reason")
            (s, o) = try await c.post("/api/v1/devices/revoke?wait=forever", key: t.operatorKey, ["deviceId": "a1"])
            #expect(s == .badRequest)
            // It used to trap (Double → Int64) and take the authority down.
            (s, o) = try await c.post("/api/v1/devices/unrevoke?wait=1e300s", key: t.operatorKey, ["deviceId": "a1"])
            #expect(s == .badRequest, "\(o)")
            try await c.execute(uri: "/api/v1/devices/register", method: .put, headers: headers(t.agentKey)) { r in
                #expect(r.status == .methodNotAllowed, "a known path asked with another method")
                #expect(r.headers[.allow] == "POST")
                #expect(json(r)["code"] as? String == "METHOD_NOT_ALLOWED")
            }
            (s, o) = try await c.get("/api/v1/no/such/route", key: t.operatorKey)
            #expect(s == .notFound)
            #expect(o["status"] as? String == "error")
            (s, _) = try await c.get("/api/v1/devices/watch", key: t.agentKey)
            #expect(s == .badRequest, "watch needs a surface")
            (s, _) = try await c.get("/api/v1/devices/watch?deviceId=a%20b", key: t.agentKey)
            #expect(s == .badRequest)
        }
    }

    @Test func listAuditUsageAndReports() async throws {
        let t = try await TestAuthority.make()
        try await t.application().test(.router) { c in
            try await c.post("/api/v1/devices/register", key: t.agentKey, ["deviceId": "a1"])
            try await c.post("/api/v1/devices/register", key: t.agentKey, ["deviceId": "a2"])
            let (_, rev) = try await c.post("/api/v1/devices/revoke", key: t.operatorKey, ["deviceId": "a2", "reason": "INC-7"])
            let rid = try #require(rev["request_id"] as? String)
            var (s, o) = try await c.post(
                "/api/v1/devices/report", key: t.agentKey,
                [
                    "deviceId": "a2", "instance": "host-1", "state": "stopped", "pids": [100, 101],
                    "at": Timestamp.string(Date()), "request_id": rid,
                ])
            #expect(s == .ok)
            (_, o) = try await c.get("/api/v1/devices/list", key: t.operatorKey)
            let devices = try #require(o["devices"] as? [[String: Any]])
            #expect(devices.map { $0["deviceId"] as? String } == ["a1", "a2"])
            #expect(devices[1]["state"] as? String == "revoked")
            #expect(devices[1]["reason"] as? String == "INC-7")
            let last = try #require(devices[1]["lastReport"] as? [String: Any])
            #expect(last["state"] as? String == "stopped")
            #expect(last["pids"] as? [Int] == [100, 101])
            // A gate's report: what it denied, for on-call to read in tether status.
            (s, _) = try await c.post(
                "/api/v1/devices/report", key: t.agentKey,
                [
                    "deviceId": "a1", "instance": "host-1", "state": "denied", "pids": [100], "detail": "connect ×3 by 100 (/usr/bin/curl)",
                ])
            #expect(s == .ok)
            (_, o) = try await c.get("/api/v1/devices/list", key: t.operatorKey)
            let gated = try #require((o["devices"] as? [[String: Any]])?.first?["lastReport"] as? [String: Any])
            #expect(gated["state"] as? String == "denied")
            #expect(gated["detail"] as? String == "connect ×3 by 100 (/usr/bin/curl)")
            (_, o) = try await c.get("/api/v1/audit?deviceId=a2", key: t.operatorKey)
            let entries = try #require(o["entries"] as? [[String: Any]])
            #expect(entries.first?["action"] as? String == "revoke")
            #expect(entries.first?["actor"] as? String == "operator")
            #expect(entries.first?["reason"] as? String == "INC-7")
            #expect(entries.first?["request_id"] as? String == rid)
            (_, o) = try await c.get("/api/v1/usage", key: t.operatorKey)
            #expect(o["devices"] as? Int == 2)
            #expect(o["revoked"] as? Int == 1)
            (s, o) = try await c.post("/api/v1/devices/remove", key: t.operatorKey, ["deviceId": "a1"])
            #expect(s == .ok)
            (_, o) = try await c.post("/api/v1/devices/validate", key: t.agentKey, ["deviceId": "a1"])
            #expect(o["code"] as? String == "DEVICE_NOT_FOUND")
            (s, _) = try await c.get("/api/v1/devices/list?deviceId=a1", key: t.operatorKey)
            #expect(s == .notFound)
        }
    }

    @Test func listenOptionsRefuseUnsafeAddresses() throws {
        var o = ListenOptions()
        try o.set(listen: "0.0.0.0:8470")
        #expect(throws: StoreError.self) { try o.check() }
        o.insecureListen = true
        try o.check()
        try o.set(listen: "[::1]:9000")
        #expect(o.host == "::1" && o.port == 9000 && o.isLoopback)
        #expect(throws: StoreError.self) { try o.set(listen: "localhost") }
    }

    @Test("audit export: ?since= and ?until= bound the entries; a time that is not RFC 3339 is refused")
    func auditWindow() async throws {
        let t = try await TestAuthority.make()
        try await t.application().test(.router) { c in
            try await c.post("/api/v1/devices/register", key: t.agentKey, ["deviceId": "w1"])
            try await c.post("/api/v1/devices/revoke", key: t.operatorKey, ["deviceId": "w1", "reason": "INC-7"])
            var (s, o) = try await c.get("/api/v1/audit?since=2000-01-01T00:00:00Z", key: t.operatorKey)
            #expect(s == .ok && ((o["entries"] as? [[String: Any]])?.count ?? 0) >= 2, "\(o)")
            (_, o) = try await c.get("/api/v1/audit?since=2999-01-01T00:00:00Z", key: t.operatorKey)
            #expect((o["entries"] as? [Any])?.isEmpty == true)
            (_, o) = try await c.get("/api/v1/audit?until=2000-01-01T00:00:00.000Z", key: t.operatorKey)
            #expect((o["entries"] as? [Any])?.isEmpty == true)
            // Found by schemathesis: a time before 1970 trapped (and took the authority down).
            (s, o) = try await c.get("/api/v1/audit?until=0315-08-22T15:47:20.77605Z&since=0054-12-28T00:54:50%2B08:52", key: t.operatorKey)
            #expect(s == .ok && (o["entries"] as? [Any])?.isEmpty == true, "\(o)")
            (_, o) = try await c.get("/api/v1/audit?deviceId=w1&since=2000-01-01T00:00:00Z&until=2999-01-01T00:00:00Z", key: t.operatorKey)
            #expect((o["entries"] as? [[String: Any]])?.first?["action"] as? String == "revoke")
            (s, _) = try await c.get("/api/v1/audit?since=yesterday", key: t.operatorKey)
            #expect(s == .badRequest)
        }
    }

    @Test("refused requests are audited aggregated: a flood of bad keys and wrong roles writes a few rows, never a row a request")
    func refusalsAudited() async throws {
        let t = try await TestAuthority.make()
        try await t.application().test(.router) { c in
            for _ in 0..<300 {
                let (s, _) = try await c.get("/api/v1/devices/list", key: "tk_not-a-key")
                #expect(s == .unauthorized)
            }
            for _ in 0..<20 {
                let (s, _) = try await c.post("/api/v1/devices/revoke", key: t.agentKey, ["deviceId": "x"])
                #expect(s == .forbidden)
            }
            await t.authority.refusals.flush()
        }
        // One row per (status, key, path) per window: on a loaded machine the flood may span
        // several windows (the flusher runs every 10 s), so count rows and sum what they say.
        let entries = try await t.authority.store.audit(limit: 1000, deviceId: nil, since: nil, until: nil)
        func count(_ e: AuditEntry) -> Int { Int(e.reason?.prefix { $0.isNumber } ?? "") ?? 0 }
        let unknown = entries.filter { $0.action == "refused-401" && $0.reason?.contains("/api/v1/devices/list") == true }
        #expect(
            (1...5).contains(unknown.count) && unknown.allSatisfy { $0.actor == "unknown key" },
            "a few rows, never one a request: \(unknown)")
        #expect(unknown.map(count).reduce(0, +) == 300, "\(unknown)")
        let role = entries.filter { $0.action == "refused-403" }
        #expect(
            (1...5).contains(role.count)
                && role.allSatisfy { $0.actor == "agent" && $0.reason?.contains("requests to /api/v1/devices/revoke") == true }, "\(role)")
        #expect(role.map(count).reduce(0, +) == 20, "\(role)")
        #expect(!entries.contains { $0.actor.contains("tk_") || ($0.reason ?? "").contains("tk_") }, "nothing of a presented key is kept")
        #expect(await t.authority.refusals.flush() == 0, "a new window starts empty")
        // More (status, key, path) than maxRows in a window: maxRows rows and one for the rest.
        let log = t.authority.refusals
        for i in 0..<(log.maxRows + 50) { await log.record(status: 401, who: "unknown key", path: "/p\(i)") }
        #expect(await log.flush() == log.maxRows + 1)
        let rest = try await t.authority.store.audit(limit: 1, deviceId: nil, since: nil, until: nil).first
        #expect(rest?.actor == "various" && rest?.reason?.hasPrefix("50 requests") == true, "\(String(describing: rest))")
    }

    @Test("retention: audit entries and reports past their age are deleted; recent ones stay")
    func retention() async throws {
        let t = try await TestAuthority.make { c in
            c.auditRetention = .seconds(3600)
            c.reportRetention = .seconds(3600)
        }
        let old = "2000-01-01T00:00:00.000Z", now = Timestamp.string(Date())
        _ = try await t.authority.store.register(
            "ancient", change: Change(actor: "test", reason: nil, requestID: "r1", at: old), seal: { _, _ in "{}" })
        _ = try await t.authority.store.register(
            "recent", change: Change(actor: "test", reason: nil, requestID: "r2", at: now), seal: { _, _ in "{}" })
        try await t.authority.store.addReport(
            Report(deviceId: "ancient", instance: "h", state: "stopped", pids: [], at: old, requestID: nil, receivedAt: old))
        try await t.authority.store.addReport(
            Report(deviceId: "recent", instance: "h", state: "stopped", pids: [], at: now, requestID: nil, receivedAt: now))
        let gone = try await t.authority.prune()
        #expect(gone.audit == 1 && gone.reports == 1, "\(gone)")
        let audit = try await t.authority.store.audit(limit: 100, deviceId: nil, since: nil, until: nil)
        #expect(!audit.contains { $0.deviceId == "ancient" } && audit.contains { $0.deviceId == "recent" })
        #expect(try await t.authority.store.reports(deviceId: "recent", limit: 10).count == 1)
        #expect(try await t.authority.store.reports(deviceId: "ancient", limit: 10).isEmpty)
        let events = try await t.authority.store.changes(after: 0, limit: 10).events
        #expect(events.map(\.revision) == [2], "the old change's event went; the newest stays")
    }
}
