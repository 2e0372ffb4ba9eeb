import Foundation
import Hummingbird
import HummingbirdTesting
import Testing
import TetherAuthority
import TetherClient
import TetherCore

@Suite("tether check", .serialized, .timeLimit(.minutes(2)))
struct CheckTests {
    @Test func exitCodesFollowTheDecision() async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("tether-check-\(UUID().uuidString.prefix(8))").path
        let created = try await StateDirectory(path: path).initialize(actor: "test")
        let server = ServerProcess(dir: path, port: freePort())
        try await server.start()
        defer { server.kill9() }
        let agent = AuthorityClient(endpoint: AuthorityEndpoint(url: server.url, key: created.agentKey))
        let op = AuthorityClient(endpoint: AuthorityEndpoint(url: server.url, key: created.operatorKey))
        _ = try await agent.register("hook-1")

        func check(_ args: [String], env: [String: String] = [:]) throws -> (Int32, String, String) {
            try runTether(["check"] + args + ["--dir", path], env: env)
        }

        var (code, out, err) = try check(["hook-1", "--public-key", created.publicKey])
        #expect(code == 0, "\(err)")
        (code, out, _) = try check(["hook-1", "--json"])
        #expect(out.contains("\"allowed\":true") && out.contains("\"code\":\"ALLOW\""))
        _ = try await op.revoke("hook-1", reason: "test", wait: nil)
        (code, _, err) = try check(["hook-1"])
        #expect(code == 1)
        #expect(err.contains("DEVICE_REVOKED"))
        (code, _, err) = try check(["never-registered"])
        #expect(code == 1)
        #expect(err.contains("DEVICE_NOT_FOUND"))
        _ = try await op.restore("hook-1", reason: nil, wait: nil)
        let stranger = DecisionSigner.generate().publicBase64
        (code, _, err) = try check(["hook-1", "--public-key", stranger])
        #expect(code == 1, "signed by another key: denied")
        #expect(err.contains("BAD_SIGNATURE"))
        (code, _, err) = try check(["hook-1"], env: ["TETHER_AUTHORITY": "http://127.0.0.1:1"])
        #expect(code == 2)
        #expect(err.contains("unreachable"))
    }
}
