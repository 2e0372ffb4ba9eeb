import Foundation
import Glibc
import TetherSystem
import TetherTestKit

/// The adversarial worker (`Probes/escape.c`), built once per test process with `cc` into a
/// directory every user may read, so it also runs as `nobody`.
enum Escape {
    static let binary: String = build("escape")
    /// Runs a command in an environment that refuses something (Probes/refuse.c).
    static let refuse: String = build("refuse")
    /// A launcher under which no namespace can be made.
    static var noNamespaces: [String] { [refuse, "namespaces"] }
    /// A launcher under which a clone into new namespaces fails with EAGAIN (as under a fork bomb).
    static var namespacesAgain: [String] { [refuse, "eagain"] }
    /// A launcher under which clone3 fails with ENOSYS.
    static var noClone3: [String] { [refuse, "clone3"] }

    static func build(_ name: String) -> String {
        let source = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Probes/\(name).c").path
        let dir = temporaryDirectory("tether-\(name)")
        chmod(dir, 0o755)
        let out = dir + "/" + name
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/cc")
        p.arguments = ["-O1", "-Wall", "-o", out, source]
        try! p.run()
        p.waitUntilExit()
        precondition(p.terminationStatus == 0, "cc failed for \(source)")
        // Other tests in this process may have narrowed the umask: `nobody` must run it.
        chmod(out, 0o755)
        return out
    }

    /// One run's files, in a directory `nobody` may write to.
    struct Files {
        let dir: String
        let ticks: String
        let report: String
        let marker: String

        init(_ mode: String) {
            dir = temporaryDirectory("tether-contain-\(mode)")
            chmod(dir, 0o1777)
            ticks = dir + "/ticks"
            report = dir + "/report"
            marker = "tether-contain-\(mode)-\(UUID().uuidString.prefix(6))"
        }

        func command(_ mode: String, _ arg: String? = nil) -> [String] {
            [Escape.binary, mode, ticks, report, marker] + (arg.map { [$0] } ?? [])
        }

        /// "name: result" lines the worker wrote, by name (a name seen twice keeps the last).
        var results: [String: String] { Escape.parse((try? String(contentsOfFile: report, encoding: .utf8)) ?? "") }

        var ready: Bool { results["ticking"] != nil && fileSize(ticks) > 0 }
    }

    /// "name: result" lines, by name (a name seen twice keeps the last).
    static func parse(_ text: String) -> [String: String] {
        var out: [String: String] = [:]
        for line in text.split(separator: "\n") {
            guard let r = line.range(of: ": ") else { continue }
            out[String(line[..<r.lowerBound])] = String(line[r.upperBound...])
        }
        return out
    }

    /// The worker's cgroup as the kernel reports it for one of its processes: `frozen 1`?
    static func cgroupFrozen(_ marker: String) -> Bool? {
        guard let p = liveProcesses(withMarker: marker).first, let path = ProcessTable.cgroupPath(of: p.pid) else { return nil }
        for root in ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"] {
            if let text = try? String(contentsOfFile: root + path + "/cgroup.events", encoding: .utf8) {
                return text.contains("frozen 1")
            }
        }
        return nil
    }
}
