import Foundation
import Glibc

/// A real `tether authority serve` in a fresh state directory.
public final class LiveAuthority: Sendable {
    public let dir: String
    public let server: ServerProcess

    /// `settings`: an `authority serve --config` file's text ([console], [notify]).
    public init(lease: String = "1s", settings: String? = nil) async throws {
        dir = temporaryDirectory("tether-e2e")
        let (code, _, err) = try runTether(["authority", "init", "--dir", dir])
        guard code == 0 else { throw LiveAuthorityError(message: "tether authority init --dir \(dir): \(err)") }
        var extra = ["--lease", lease]
        if let settings {
            try settings.write(toFile: dir + "/authority.toml", atomically: true, encoding: .utf8)
            extra += ["--config", dir + "/authority.toml"]
        }
        server = ServerProcess(dir: dir, port: freePort(), extra: extra)
        try await server.start()
    }

    public var url: String { server.url }

    /// `tether run` against this authority, its signature pinned.
    public func run(_ surface: String, _ extra: [String] = [], _ command: [String], env: [String: String] = [:]) throws -> TetherProcess {
        try TetherProcess(
            [
                "run", "--dir", dir, "--authority", url, "--key-file", dir + "/agent.key",
                "--public-key", dir + "/signing.pub", "--surface", surface,
            ] + extra + ["--"] + command, env: env)
    }

    /// The `[authority]` table of a configuration file for this authority, its signature pinned.
    public var authorityTable: String { server.authorityTable }

    @discardableResult
    public func op(_ args: [String]) throws -> (Int32, String, String) {
        try runTether(args + ["--dir", dir, "--authority", url])
    }
}

public struct LiveAuthorityError: Error, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}
