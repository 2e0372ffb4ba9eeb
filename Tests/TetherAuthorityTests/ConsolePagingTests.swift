import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import TetherAuthority
import TetherCore
import Testing

extension ConsoleTests {
    @Test(
        "the console gets a page: the first 200 surfaces its filter matches (applied by the authority), how many match, and the page's gates"
    )
    func pagedState() async throws {
        let t = try await TestAuthority.make()
        try await t.application().test(.router) { c in
            let names = (0..<250).map { String(format: "a%03d", $0) }
            for name in names + ["a001.net"] {
                #expect(try await c.post("/api/v1/devices/register", key: t.agentKey, ["deviceId": name]).0 == .ok)
            }
            for name in ["a010", "a001.net"] {
                #expect(try await c.post("/api/v1/devices/revoke", key: t.operatorKey, ["deviceId": name, "reason": "r"]).0 == .ok)
            }
            var jar = Jar()
            _ = try await Self.signIn(c, &jar, ["key": t.operatorKey])
            func state(_ query: String) async throws -> (HTTPResponse.Status, [String: Any]) {
                try await c.execute(uri: "/console/state.json" + query, method: .get, headers: Self.headers(jar)) { ($0.status, json($0)) }
            }
            func shown(_ o: [String: Any]) -> [String] {
                (o["surfaces"] as? [[String: Any]] ?? []).compactMap { $0["deviceId"] as? String }
            }

            var (s, o) = try await state("")
            #expect(s == .ok)
            #expect(shown(o).count == 200 && shown(o).first == "a000" && o["matching"] as? Int == 251, "\(shown(o).prefix(3))")
            #expect((o["counts"] as? [String: Any])?["surfaces"] as? Int == 251 && (o["counts"] as? [String: Any])?["revoked"] as? Int == 2)
            let a001 = (o["surfaces"] as? [[String: Any]])?.first { $0["deviceId"] as? String == "a001" }
            let gates = a001?["gates"] as? [[String: Any]]
            #expect(
                gates?.count == 1 && gates?.first?["kind"] as? String == "net" && gates?.first?["closed"] as? Bool == true, "\(a001 ?? [:])"
            )

            (s, o) = try await state("?state=revoked")
            #expect(shown(o) == ["a001.net", "a010"] && o["matching"] as? Int == 2, "\(shown(o))")
            (s, o) = try await state("?q=A00&state=all")
            #expect(shown(o) == ["a000", "a001", "a001.net"] + (2...9).map { "a00\($0)" } && o["matching"] as? Int == 11, "\(shown(o))")
            (s, o) = try await state("?q=a24&state=active")
            #expect(shown(o) == (240...249).map { "a\($0)" }, "\(shown(o))")
            for bad in ["?state=gone", "?q=" + String(repeating: "x", count: 141)] {
                (s, o) = try await state(bad)
                #expect(s == .badRequest, "\(bad): \(o)")
            }
        }
    }
}
