import Foundation
import Glibc

/// The `tether` executable built next to the test bundle.
public let tetherBinary: String = {
    let exe = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
    var dir = exe.deletingLastPathComponent()
    while dir.path != "/" {
        let candidate = dir.appendingPathComponent("tether").path
        var isDir: ObjCBool = false
        if FileManager.default.isExecutableFile(atPath: candidate),
            FileManager.default.fileExists(atPath: candidate, isDirectory: &isDir), !isDir.boolValue
        {
            return candidate
        }
        dir = dir.deletingLastPathComponent()
    }
    fatalError("tether binary not found near \(exe.path)")
}()

/// Runs the `tether` binary to its end; returns its exit code, stdout and stderr.
public func runTether(_ args: [String], env: [String: String] = [:]) throws -> (Int32, String, String) {
    try runToEnd(tetherBinary, args, env: env)
}

/// Runs a program to its end; returns its exit code, stdout and stderr.
public func runToEnd(_ executable: String, _ args: [String], env: [String: String] = [:]) throws -> (Int32, String, String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: executable)
    p.arguments = args
    p.environment = Foundation.ProcessInfo.processInfo.environment.merging(env) { $1 }
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    try p.run()
    let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
}

/// A `tether` process left running (a supervisor), its output in files the test can read
/// while it runs.
public final class TetherProcess: @unchecked Sendable {
    public let process = Process()
    public let stdoutPath: String
    public let stderrPath: String

    /// `asUser`: run it as that user (setpriv: uid, its group, no supplementary groups).
    /// `launcher`: a program (and its arguments) that runs the tether command line it is given.
    public init(_ args: [String], env: [String: String] = [:], asUser: String? = nil, launcher: [String] = []) throws {
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("tether-proc-\(UUID().uuidString.prefix(8))").path
        stdoutPath = base + ".out"
        stderrPath = base + ".err"
        _ = FileManager.default.createFile(atPath: stdoutPath, contents: nil)
        _ = FileManager.default.createFile(atPath: stderrPath, contents: nil)
        var command = launcher + [tetherBinary] + args
        if let user = asUser {
            command = ["/usr/bin/setpriv", "--reuid=\(user)", "--regid=\(user == "nobody" ? "nogroup" : user)", "--clear-groups"] + command
        }
        process.executableURL = URL(fileURLWithPath: command[0])
        process.arguments = Array(command.dropFirst())
        var environment = Foundation.ProcessInfo.processInfo.environment.merging(env) { $1 }
        environment["TETHER_LOG_LEVEL"] = environment["TETHER_LOG_LEVEL"] ?? "info"
        process.environment = environment
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = FileHandle(forWritingAtPath: stdoutPath)
        process.standardError = FileHandle(forWritingAtPath: stderrPath)
        try process.run()
    }

    public var pid: pid_t { process.processIdentifier }
    public var stderr: String { (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "" }
    public var stdout: String { (try? String(contentsOfFile: stdoutPath, encoding: .utf8)) ?? "" }

    public func signal(_ sig: Int32) { kill(pid, sig) }

    /// Waits for the exit (bounded); nil if it is still running after `seconds`.
    public func exitCode(within seconds: Double) async -> Int32? {
        let deadline = Date().addingTimeInterval(seconds)
        while process.isRunning && Date() < deadline { try? await Task.sleep(for: .milliseconds(20)) }
        return process.isRunning ? nil : process.terminationStatus
    }

    deinit {
        if process.isRunning { kill(pid, SIGKILL) }
    }
}
