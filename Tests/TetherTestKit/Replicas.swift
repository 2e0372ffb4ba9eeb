import Foundation
import TetherAuthority
import TetherClient
import TetherCore

/// `tether authority serve` replicas on one PostgreSQL database, as processes.
public struct Replicas: Sendable {
    public let database: DatabaseURL
    public let servers: [ServerProcess]
    /// The state directory `init` wrote the first keys to (agent.key, operator.key, signing.pub).
    public let dir: String
    public let operatorKey: String
    public let agentKey: String
    public let publicKey: String

    public static func start(_ count: Int, database: DatabaseURL? = nil, extra: [String] = []) async throws -> Replicas {
        let url: DatabaseURL
        if let database { url = database } else { url = try await TestPostgres.freshDatabase() }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tether-fleet-\(UUID().uuidString.prefix(8))").path
        let env = ["TETHER_DATABASE_URL": url.text]
        let (code, _, err) = try await offPool { try runTether(["authority", "init", "--dir", dir], env: env) }
        guard code == 0 else { throw StoreError("init: \(err)") }
        let servers = (0..<count).map { i in
            let s = ServerProcess(dir: dir + "-\(i)", port: freePort(), extra: extra, environment: env)
            s.logFile = dir + "-\(i).log"
            return s
        }
        for s in servers { try await s.start() }
        func read(_ f: String) throws -> String {
            try String(contentsOfFile: dir + "/" + f, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        }
        return Replicas(
            database: url, servers: servers, dir: dir, operatorKey: try read("operator.key"), agentKey: try read("agent.key"),
            publicKey: try read("signing.pub"))
    }

    public func client(_ i: Int, operator op: Bool = false) -> AuthorityClient {
        AuthorityClient(endpoint: AuthorityEndpoint(url: servers[i].url, key: op ? operatorKey : agentKey))
    }

    /// All replicas' URLs, comma-separated: what a supervisor is given.
    public var urls: String { servers.map(\.url).joined(separator: ",") }

    public func stop() { servers.forEach { $0.kill9() } }
}
