import Foundation

/// Python packages the tests use as real peers, installed where a worker's uid can read them:
/// `.ci/run` puts them in $TETHER_TEST_PYDEPS (pip --target).
public enum PythonDeps {
    public struct Missing: Error, CustomStringConvertible {
        public var description: String
    }

    /// The directory holding the official MCP Python SDK (`mcp`).
    public static func mcp() throws -> String {
        let dir = ProcessInfo.processInfo.environment["TETHER_TEST_PYDEPS"] ?? "/var/cache/tether-ci/pydeps"
        guard FileManager.default.fileExists(atPath: dir + "/mcp/__init__.py") else {
            throw Missing(
                description:
                    "the MCP Python SDK is not in \(dir): /usr/bin/python3 -m pip install --target \(dir) 'mcp==1.30.0' (what .ci/run does)"
            )
        }
        return dir
    }
}
