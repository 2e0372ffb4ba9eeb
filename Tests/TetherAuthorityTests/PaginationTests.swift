import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Testing
import TetherAuthority
import TetherClient
import TetherCore

/// No answer grows with the fleet: the surface list and the audit log come a page at a time,
/// with a cursor to the next; following the cursors gives every entry once, in order.
@Suite("Pages: the surface list and the audit log", .serialized, .timeLimit(.minutes(3)))
struct PaginationTests {
    static let names = (0..<25).map { String(format: "s%02d", $0) }

    static func pages(
        _ c: some TestClientProtocol, _ path: String, key: String, cursor: String, _ field: String
    ) async throws
        -> [[String: Any]]
    {
        var out: [[String: Any]] = []
        var next: String? = nil
        repeat {
            let (s, o) = try await c.get(path + (next.map { "&\(cursor)=\($0)" } ?? ""), key: key)
            #expect(s == .ok, "\(o)")
            let page = o[field] as? [[String: Any]] ?? []
            #expect(page.count <= 10)
            out += page
            next = (o["next"] as? String) ?? (o["next"] as? Int).map(String.init)
            #expect(next == nil || page.count == 10, "a page short of the limit has no next")
        } while next != nil && out.count < 1000
        return out
    }

    @Test("the surface list: pages of ?limit= in name order after ?after=, every surface once, its last report and total")
    func surfaces() async throws {
        let t = try await TestAuthority.make()
        try await t.application().test(.router) { c in
            for name in Self.names.shuffled() {
                #expect(try await c.post("/api/v1/devices/register", key: t.agentKey, ["deviceId": name]).0 == .ok)
            }
            #expect(try await c.post("/api/v1/devices/revoke", key: t.operatorKey, ["deviceId": "s03"]).0 == .ok)
            for instance in ["host-a", "host-b"] {
                let r: [String: Any] = ["deviceId": "s03", "instance": instance, "state": "stopped", "pids": [7]]
                #expect(try await c.post("/api/v1/devices/report", key: t.agentKey, r).0 == .ok)
                try await Task.sleep(for: .milliseconds(5))
            }
            let listed = try await Self.pages(c, "/api/v1/devices/list?limit=10", key: t.operatorKey, cursor: "after", "devices")
            #expect(listed.compactMap { $0["deviceId"] as? String } == Self.names)
            let s03 = try #require(listed.first { $0["deviceId"] as? String == "s03" })
            #expect(s03["revoked"] as? Bool == true)
            #expect((s03["lastReport"] as? [String: Any])?["instance"] as? String == "host-b", "the newest report of any supervisor")
            let (_, first) = try await c.get("/api/v1/devices/list?limit=10", key: t.operatorKey)
            #expect(first["total"] as? Int == 25 && first["count"] as? Int == 10 && first["next"] as? String == "s09")
            // A surface made between two pages lands where its name sorts.
            #expect(try await c.post("/api/v1/devices/register", key: t.agentKey, ["deviceId": "s095"]).0 == .ok)
            let (_, second) = try await c.get("/api/v1/devices/list?limit=10&after=s09", key: t.operatorKey)
            #expect((second["devices"] as? [[String: Any]])?.first?["deviceId"] as? String == "s095")
            // Bad cursors and limits are refused with what is wrong.
            for bad in ["limit=0", "limit=10001", "limit=ten"] {
                let (s, o) = try await c.get("/api/v1/devices/list?\(bad)", key: t.operatorKey)
                #expect(s == .badRequest && (o["error"] as? String)?.contains("?limit=") == true, "\(bad): \(o)")
            }
            let (_, past) = try await c.get("/api/v1/devices/list?after=zzz", key: t.operatorKey)
            #expect((past["devices"] as? [Any])?.isEmpty == true && past["next"] == nil)
        }
    }

    @Test("the audit log: pages newest first by ?before=, every entry once")
    func audit() async throws {
        let t = try await TestAuthority.make()
        try await t.application().test(.router) { c in
            for name in Self.names {
                #expect(try await c.post("/api/v1/devices/register", key: t.agentKey, ["deviceId": name]).0 == .ok)
            }
            let all = try await Self.pages(c, "/api/v1/audit?limit=10", key: t.operatorKey, cursor: "before", "entries")
            let ids = all.compactMap { ($0["id"] as? Int) }
            #expect(ids == ids.sorted(by: >) && Set(ids).count == ids.count, "newest first, each once")
            #expect(Set(all.filter { $0["action"] as? String == "register" }.compactMap { $0["deviceId"] as? String }) == Set(Self.names))
            let (s, o) = try await c.get("/api/v1/audit?before=abc", key: t.operatorKey)
            #expect(s == .badRequest && (o["error"] as? String)?.contains("?before=") == true, "\(o)")
        }
    }

    @Test("tether surfaces reads every page: the client follows next and prints one list")
    func clientFollowsPages() async throws {
        let t = try await TestAuthority.make()
        let server = try await DirectServer(t)
        defer { server.stop() }
        let agent = AuthorityClient(endpoint: AuthorityEndpoint(url: "http://127.0.0.1:\(server.port)", key: t.agentKey))
        for name in Self.names { _ = try await agent.register(name) }
        let op = AuthorityClient(endpoint: AuthorityEndpoint(url: "http://127.0.0.1:\(server.port)", key: t.operatorKey))
        let all = try await op.listAll(pageSize: 10).decode(SurfaceList.self)
        #expect(all.devices.map(\.surface) == Self.names)
        #expect(all.count == 25 && all.total == 25 && all.next == nil)
    }
}
