import Foundation
import Glibc
import TetherSystem

/// Processes whose command line contains `marker` — but for a supervisor (a `tether run`
/// carries its worker's command line in its arguments) and a child not yet past exec (it
/// shares the supervisor's memory, arguments included).
public func processes(withMarker marker: String) -> [TetherSystem.ProcessInfo] {
    ProcessTable.snapshot().filter { p in
        guard p.pid != getpid(), !["tether", "tether-spawn"].contains(command(of: p.pid) ?? ""),
            let data = FileManager.default.contents(atPath: "/proc/\(p.pid)/cmdline")
        else { return false }
        return String(decoding: data.map { $0 == 0 ? 32 : $0 }, as: UTF8.self).contains(marker)
    }
}

/// A worker's live (not zombie) processes with `marker` in their command line: none of
/// tether's own (the supervisor, its keeper, a child not yet past exec).
public func liveProcesses(withMarker marker: String) -> [TetherSystem.ProcessInfo] {
    processes(withMarker: marker).filter { !$0.isDead && command(of: $0.pid)?.hasPrefix("tether") != true }
}

/// The live keeper of the supervisor `pid` (its child named tether-keeper), if it has one.
public func keeper(of pid: pid_t) -> pid_t? {
    ProcessTable.snapshot().first { $0.ppid == pid && !$0.isDead && command(of: $0.pid) == "tether-keeper" }?.pid
}

/// Polls `condition` until it holds or `seconds` pass.
public func eventually(_ seconds: Double = 5, _ condition: () -> Bool) async -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if condition() { return true }
        try? await Task.sleep(for: .milliseconds(10))
    }
    return condition()
}

/// `/proc/PID/comm`.
public func command(of pid: pid_t) -> String? {
    FileManager.default.contents(atPath: "/proc/\(pid)/comm").map {
        String(decoding: $0, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

/// A fresh temporary directory.
public func temporaryDirectory(_ prefix: String) -> String {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(UUID().uuidString.prefix(8))").path
    try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

/// A fresh temporary directory a worker may write to: under a root supervisor a worker runs as
/// a dedicated uid, so its files go where every user may write (sticky, as /tmp).
public func workerDirectory(_ prefix: String) -> String {
    let path = temporaryDirectory(prefix)
    chmod(path, 0o1777)
    return path
}

/// A loopback TCP port nobody listens on right now.
public func freePort() -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    addr.sin_port = 0
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
    _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
    return Int(UInt16(bigEndian: addr.sin_port))
}

/// The size of a file, 0 if it does not exist.
public func fileSize(_ path: String) -> Int {
    ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.intValue ?? 0
}
