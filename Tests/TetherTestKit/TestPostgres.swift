import Foundation
import TetherAuthority

/// A real PostgreSQL server for the tests: `$TETHER_TEST_POSTGRES` (a URL whose role may create
/// databases; `.ci/run` starts one), else a cluster this machine's test runs share, started on
/// first use with scripts/pg-cluster.sh in /tmp/tether-test-pg-UID. Each test takes a fresh
/// database of its own.
public enum TestPostgres {
    public static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path

    private static let base = Task<String, any Error> {
        if let url = ProcessInfo.processInfo.environment["TETHER_TEST_POSTGRES"], !url.isEmpty { return url }
        let dir = "/tmp/tether-test-pg-\(getuid())"
        if let port = try? String(contentsOfFile: dir + "/port", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines) {
            let url = "postgresql://tether@127.0.0.1:\(port)/tether?sslmode=disable"
            if (try? await psql(url, "SELECT 1")) != nil { return url }
        }
        let (code, out, err) = try await run(["bash", root + "/scripts/pg-cluster.sh", "start", dir])
        guard code == 0 else { throw TestPostgresError(message: "could not start PostgreSQL (scripts/pg-cluster.sh): \(err)") }
        return out.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    struct TestPostgresError: Error, CustomStringConvertible {
        let message: String
        var description: String { message }
    }

    /// A new, empty database on the test server.
    public static func freshDatabase() async throws -> DatabaseURL {
        let url = try await base.value
        let name = "t_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").prefix(16).lowercased()
        try await psql(url, "CREATE DATABASE \(name)")
        var c = URLComponents(string: url)!
        c.path = "/" + name
        return try DatabaseURL(c.string!)
    }

    /// Runs one statement with psql; throws with its message when it fails.
    @discardableResult
    public static func psql(_ url: String, _ sql: String) async throws -> String {
        let (code, out, err) = try await run(["psql", url, "-qAtX", "-v", "ON_ERROR_STOP=1", "-c", sql])
        guard code == 0 else { throw TestPostgresError(message: "psql: \(err)") }
        return out
    }

    /// Runs a command to its end on a thread of its own: waiting for a process must not hold
    /// one of the few threads every test's async code shares.
    public static func run(_ args: [String]) async throws -> (Int32, String, String) {
        try await offPool { try runBlocking(args) }
    }

    public static func runBlocking(_ args: [String]) throws -> (Int32, String, String) {
        try runToEnd("/usr/bin/env", args)
    }
}

/// Runs blocking work (waiting for a process, reading a pipe to its end) on a thread outside
/// Swift's cooperative pool, which has one thread per core: blocking those stalls every test.
public func offPool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { c in
        Thread.detachNewThread { c.resume(with: Result { try body() }) }
    }
}
