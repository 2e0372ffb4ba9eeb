import AsyncHTTPClient
import Foundation
import Glibc
import Testing
import TetherAuthority
import TetherClient
import TetherCore

@Suite("Durability: SIGKILL the authority", .serialized, .timeLimit(.minutes(3)))
struct DurabilityTests {
    static func freshDirectory() async throws -> (String, String, String) {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("tether-dur-\(UUID().uuidString.prefix(8))").path
        let created = try await StateDirectory(path: path).initialize(actor: "test")
        return (path, created.operatorKey, created.agentKey)
    }

    @Test func anAcknowledgedRevokeSurvivesSIGKILL() async throws {
        let (dir, opKey, agentKey) = try await Self.freshDirectory()
        let server = ServerProcess(dir: dir, port: freePort())
        try await server.start()
        let agent = AuthorityClient(endpoint: AuthorityEndpoint(url: server.url, key: agentKey))
        let op = AuthorityClient(endpoint: AuthorityEndpoint(url: server.url, key: opKey))
        for round in 0..<5 {
            let id = "agent-\(round)"
            _ = try await agent.register(id)
            _ = try await op.revoke(id, reason: "round \(round)", wait: nil)
            server.kill9()  // right after the answer
            try await server.start()
            let d = try await agent.validate(id, nonce: nil)
            #expect(d["code"] as? String == "DEVICE_REVOKED", "round \(round)")
        }
        server.kill9()
    }

    @Test func everyAcknowledgedRevokeOfABurstSurvives() async throws {
        let (dir, opKey, agentKey) = try await Self.freshDirectory()
        let server = ServerProcess(dir: dir, port: freePort())
        try await server.start()
        let agent = AuthorityClient(endpoint: AuthorityEndpoint(url: server.url, key: agentKey))
        var op = AuthorityClient(endpoint: AuthorityEndpoint(url: server.url, key: opKey))
        op.timeout = .seconds(5)
        let ids = (0..<400).map { "burst-\($0)" }
        for id in ids { _ = try await agent.register(id) }
        let operatorClient = op
        let acks = AckCounter()
        // Fire all revokes at once; SIGKILL the server as soon as the first ten are answered,
        // while the rest are in flight.
        let acknowledged = await withTaskGroup(of: String?.self) { group in
            for id in ids {
                group.addTask {
                    guard (try? await operatorClient.revoke(id, reason: "burst", wait: nil)) != nil else { return nil }
                    acks.increment()
                    return id
                }
            }
            group.addTask {
                while acks.value < 10 { try? await Task.sleep(for: .microseconds(200)) }
                server.kill9()
                return nil
            }
            var out: [String] = []
            for await r in group { if let r { out.append(r) } }
            return out
        }
        try await server.start()
        var lost: [String] = []
        for id in acknowledged {
            let d = try await agent.validate(id, nonce: nil)
            if d["code"] as? String != "DEVICE_REVOKED" { lost.append(id) }
        }
        print("burst: \(acknowledged.count) of \(ids.count) revokes acknowledged before SIGKILL; \(lost.count) lost")
        #expect(lost.isEmpty, "acknowledged but lost: \(lost)")
        #expect(acknowledged.count > 0 && acknowledged.count < ids.count, "the kill landed inside the burst (\(acknowledged.count))")
        server.kill9()
    }

    @Test func operatorCommandLine() async throws {
        let (dir, _, agentKey) = try await Self.freshDirectory()
        let server = ServerProcess(dir: dir, port: freePort())
        try await server.start()
        defer { server.kill9() }
        _ = try await AuthorityClient(endpoint: AuthorityEndpoint(url: server.url, key: agentKey)).register("demo")
        func tether(_ args: [String], env: [String: String] = [:]) throws -> (Int32, String, String) {
            try runTether(args, env: env)
        }
        // The URL comes from the state directory (written by serve), the key from operator.key.
        var (code, out, err) = try tether(["revoke", "demo", "--reason", "INC-1", "--dir", dir])
        #expect(code == 0, "\(err)")
        #expect(out.contains("Revoked demo: now REVOKED"))
        (code, out, _) = try tether(["status", "demo", "--dir", dir, "--json"])
        #expect(code == 0)
        #expect(out.contains("\"state\" : \"revoked\""))
        (code, out, _) = try tether(["restore", "demo", "--dir", dir])
        #expect(out.contains("now ACTIVE"))
        (code, out, _) = try tether(["halt", "--reason", "drill", "--dir", dir])
        #expect(out.contains("ORG HALTED"))
        (code, out, _) = try tether(["surfaces", "--dir", dir])
        #expect(out.contains("ORG HALTED") && out.contains("demo"))
        (code, out, _) = try tether(["resume", "--dir", dir])
        #expect(code == 0)
        (code, out, _) = try tether(["audit", "--dir", dir])
        #expect(out.contains("halt") && out.contains("revoke demo — INC-1"))
        // An agent key is refused with 77; an unreachable authority gives 69.
        let agentFile = dir + "/agent.key"
        (code, _, err) = try tether(["revoke", "demo", "--key-file", agentFile, "--dir", dir])
        #expect(code == 77)
        #expect(err.contains("operator key"))
        (code, _, err) = try tether(["revoke", "demo", "--dir", dir], env: ["TETHER_AUTHORITY": "http://127.0.0.1:1"])
        #expect(code == 69)
        // Key management on the local directory.
        (code, out, _) = try tether(["keys", "create", "--role", "operator", "--name", "alice", "--dir", dir])
        #expect(code == 0 && out.hasPrefix("tk_"))
        (code, out, _) = try tether(["keys", "list", "--dir", dir])
        #expect(out.contains("alice\toperator"))
        #expect(!out.contains("tk_"), "keys are never listed")
        (code, _, _) = try tether(["keys", "revoke", "alice", "--dir", dir])
        #expect(code == 0)
    }
}

final class AckCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var n = 0
    func increment() { lock.withLock { n += 1 } }
    var value: Int { lock.withLock { n } }
}
