import Foundation
import Glibc
import TetherClient

/// A real `tether authority serve` process.
public final class ServerProcess: @unchecked Sendable {
    public let dir: String
    public let port: Int
    public let extra: [String]
    public let environment: [String: String]
    public var process: Process?
    /// Where the server's stderr goes (nil: nowhere).
    public var logFile: String?

    public init(dir: String, port: Int, extra: [String] = [], environment: [String: String] = [:]) {
        self.dir = dir
        self.port = port
        self.extra = extra
        self.environment = environment
    }

    public var url: String { "http://127.0.0.1:\(port)" }

    /// The `[authority]` table of a configuration file for this server (keys from its
    /// directory), its signature pinned.
    public var authorityTable: String {
        """
        [authority]
        url = "\(url)"
        key_file = "\(dir)/agent.key"
        public_key = "\(dir)/signing.pub"
        """
    }

    public func start() async throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: tetherBinary)
        p.arguments = ["authority", "serve", "--dir", dir, "--listen", "127.0.0.1:\(port)"] + extra
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        if let logFile {
            FileManager.default.createFile(atPath: logFile, contents: nil)
            if let h = FileHandle(forWritingAtPath: logFile) {
                h.seekToEndOfFile()
                p.standardError = h
            }
        }
        if !environment.isEmpty { p.environment = Foundation.ProcessInfo.processInfo.environment.merging(environment) { $1 } }
        try p.run()
        process = p
        let probe = AuthorityClient(endpoint: AuthorityEndpoint(url: url, key: "x"))
        // Up to 15 s: a first start on a machine busy with the other suites can be slow.
        for _ in 0..<750 {
            if (try? await probe.get("/healthz")) != nil { return }
            guard p.isRunning else {
                throw ClientError.unreachable("the authority exited (status \(p.terminationStatus)) before serving on port \(port)")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw ClientError.unreachable("the authority did not start on port \(port)")
    }

    public func kill9() {
        guard let p = process else { return }
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        process = nil
    }

    deinit { kill9() }
}
