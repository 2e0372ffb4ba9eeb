import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Testing
import TetherAuthority
import TetherClient
import TetherCore

/// An instance belongs to the key that first watched or reported as it (or to a key scoped to
/// it): issue 31's forged ✔ — a second agent key opening host-a's stream, then reporting it
/// stopped — is refused at both steps, on every replica, across restarts.
@Suite("Instances belong to their first key", .serialized, .timeLimit(.minutes(3)))
struct InstanceClaimTests {
    static func report(_ instance: String, state: String = "stopped", pids: [Int] = [1]) -> [String: Any] {
        ["deviceId": "a1", "instance": instance, "state": state, "pids": pids]
    }

    @Test(
        "another key's stream and reports as a held instance are refused (403, audited as refusals); a key scoped to an instance takes it over; no other key may claim an instance a key is scoped to"
    )
    func claims() async throws {
        let t = try await TestAuthority.make()
        let other = try await t.agentKey("other-agent")
        try await t.application().test(.router) { c in
            var (s, o) = try await c.post("/api/v1/devices/register", key: t.agentKey, ["deviceId": "a1"])
            #expect(s == .ok)
            // The first report claims host-a for the key "agent".
            (s, o) = try await c.post("/api/v1/devices/report", key: t.agentKey, Self.report("host-a"))
            #expect(s == .ok, "\(o)")
            (s, o) = try await c.post("/api/v1/devices/report", key: other, Self.report("host-a"))
            #expect(s == .forbidden && (o["error"] as? String)?.contains("held by another key") == true, "\(o)")
            (s, o) = try await c.get("/api/v1/devices/watch?deviceId=a1&instance=host-a", key: other)
            #expect(s == .forbidden, "\(o)")
            // The holder itself goes on.
            (s, _) = try await c.post("/api/v1/devices/report", key: t.agentKey, Self.report("host-a", state: "running"))
            #expect(s == .ok)
            // The operator sees who holds what; status names the key.
            (s, o) = try await c.get("/api/v1/instances", key: t.operatorKey)
            let listed = (o["instances"] as? [[String: Any]])?.first { $0["instance"] as? String == "host-a" }
            #expect(s == .ok && listed?["key"] as? String == "agent", "\(o)")
            (s, o) = try await c.get("/api/v1/devices/list?deviceId=a1", key: t.operatorKey)
            #expect(((o["devices"] as? [[String: Any]])?.first?["holders"] as? [String: String]) == ["host-a": "agent"], "\(o)")
            // An agent key may not list or release.
            (s, _) = try await c.get("/api/v1/instances", key: other)
            #expect(s == .forbidden)
            (s, _) = try await c.post("/api/v1/instances/release", key: other, ["instance": "host-a"])
            #expect(s == .forbidden)

            // An unscoped key claimed host-b first; the key scoped to host-b takes it over.
            (s, _) = try await c.post("/api/v1/devices/report", key: other, Self.report("host-b"))
            #expect(s == .ok)
            let scoped = try await t.agentKey("host-b-agent", instance: "host-b")
            (s, o) = try await c.post("/api/v1/devices/report", key: scoped, Self.report("host-b"))
            #expect(s == .ok, "\(o)")
            (s, o) = try await c.post("/api/v1/devices/report", key: other, Self.report("host-b"))
            #expect(s == .forbidden && (o["error"] as? String)?.contains("host-b-agent") == true, "\(o)")
            // Released, host-b is still the scoped key's: nobody else claims it.
            (s, _) = try await c.post("/api/v1/instances/release", key: t.operatorKey, ["instance": "host-b"])
            #expect(s == .ok)
            (s, o) = try await c.post("/api/v1/devices/report", key: other, Self.report("host-b"))
            #expect(s == .forbidden, "\(o)")
            // Bad input: a clear 400, nothing released.
            (s, o) = try await c.post("/api/v1/instances/release", key: t.operatorKey, ["instance": "bad name\n"])
            #expect(s == .badRequest && (o["error"] as? String)?.contains("invalid instance") == true, "\(o)")
            (s, o) = try await c.post("/api/v1/instances/release", key: t.operatorKey, ["instance": "never-seen"])
            #expect(s == .notFound && o["code"] as? String == "INSTANCE_NOT_FOUND", "\(o)")

            // A request refused for anything else claims nothing: a bad Last-Event-ID as host-z.
            (s, _) = try await c.execute(
                uri: "/api/v1/devices/watch?deviceId=a1&instance=host-z", method: .get,
                headers: {
                    var h = headers(other)
                    h[HTTPField.Name("last-event-id")!] = "x"
                    return h
                }()
            ) { ($0.status, 0) }
            #expect(s == .badRequest)
            (s, o) = try await c.post("/api/v1/devices/report", key: t.agentKey, Self.report("host-z"))
            #expect(s == .ok, "host-z was left unclaimed: \(o)")

            // A host's key is revoked (rotated): its new key takes the instance over, audited.
            let oldKey = try await t.agentKey("host-c-old")
            (s, _) = try await c.post("/api/v1/devices/report", key: oldKey, Self.report("host-c"))
            #expect(s == .ok)
            _ = try await t.authority.store.revokeKey(
                named: "host-c-old", change: Change(actor: "test", reason: nil, requestID: UUID().uuidString, at: Timestamp.string(Date())))
            try await Task.sleep(for: .milliseconds(120))  // the key cache reloads
            (s, o) = try await c.post("/api/v1/devices/report", key: other, Self.report("host-c"))
            #expect(s == .ok, "the revoked key's claim is taken over: \(o)")
        }
        _ = await t.authority.refusals.flush()
        let audit = try await t.authority.store.audit(limit: 100, deviceId: nil, since: nil, until: nil)
        #expect(
            audit.contains { $0.actor == "other-agent" && $0.action == "refused-403" && ($0.reason ?? "").contains("devices/report") },
            "\(audit.map { "\($0.actor) \($0.action) \($0.reason ?? "")" })")
        #expect(audit.contains { $0.action == "instance-takeover:host-b" && ($0.reason ?? "").contains("other-agent") })
        #expect(audit.contains { $0.action == "instance-release:host-b" })
        #expect(audit.contains { $0.action == "instance-takeover:host-c" && ($0.reason ?? "").contains("host-c-old is revoked") })
    }

    @Test(
        "a claim survives a SIGKILL of the authority; `tether instances` lists it, `tether status` names the key, `tether instances release` hands it to a new key (audited)"
    )
    func commandLine() async throws {
        let (dir, _, agentKey) = try await DurabilityTests.freshDirectory()
        let server = ServerProcess(dir: dir, port: freePort())
        try await server.start()
        defer { server.kill9() }
        func tether(_ args: [String]) async throws -> (Int32, String, String) {
            try await offPool { try runTether(args + ["--dir", dir]) }
        }
        var (code, out, err) = try await tether(["keys", "create", "--role", "agent", "--name", "rebuilt-host"])
        try #require(code == 0, "\(err)")
        let newKey = out.trimmingCharacters(in: .whitespacesAndNewlines)
        try await Task.sleep(for: .milliseconds(200))  // an unknown key is looked up at most every 100 ms
        let old = AuthorityClient(endpoint: AuthorityEndpoint(url: server.url, key: agentKey))
        let new = AuthorityClient(endpoint: AuthorityEndpoint(url: server.url, key: newKey))
        _ = try await old.register("a1")
        let asHostA = ReportBody(surface: "a1", instance: "host-a", state: .stopped, pids: [1])
        _ = try await old.report(asHostA)
        func refused(_ c: AuthorityClient) async -> Int? {
            do {
                _ = try await c.report(asHostA)
                return nil
            } catch ClientError.refused(let status, _, _, _) { return status } catch {
                Issue.record("\(error)")
                return -1
            }
        }
        let first = await refused(new)
        #expect(first == 403, "\(String(describing: first))")
        // SIGKILL: the claim is in the store, not in memory.
        server.kill9()
        try await server.start()
        #expect(await refused(new) == 403, "the claim outlived the restart")
        (code, out, err) = try await tether(["instances"])
        #expect(code == 0 && out.contains("host-a") && out.contains("agent"), "\(out)\(err)")
        (code, out, err) = try await tether(["status", "a1"])
        #expect(code == 0 && out.contains("by host-a (key agent)"), "\(out)\(err)")
        (code, out, err) = try await tether(["instances", "release", "host-a", "--reason", "host-a rebuilt"])
        #expect(code == 0 && out.contains("Released host-a") && out.contains("the key agent"), "\(out)\(err)")
        (code, out, err) = try await tether(["instances", "release", "host-a"])
        #expect(code != 0 && err.contains("no key holds"), "\(out)\(err)")
        // The new key claims it; the old one is now the stranger.
        #expect(await refused(new) == nil)
        #expect(await refused(old) == 403)
        // One live key per instance: a second key bound to host-a is refused.
        (code, _, err) = try await tether(["keys", "create", "--role", "agent", "--name", "host-a-1", "--instance", "host-a"])
        #expect(code == 0, "\(err)")
        (code, _, err) = try await tether(["keys", "create", "--role", "agent", "--name", "host-a-2", "--instance", "host-a"])
        #expect(code == 78 && err.contains("already bound to instance host-a"), "\(err)")
        (code, out, _) = try await tether(["audit"])
        #expect(out.contains("instance-release:host-a") && out.contains("host-a rebuilt"), "\(out)")
    }
}
