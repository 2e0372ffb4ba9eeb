import Foundation
import TetherClient

/// The one-line status a human reads in `systemctl status`.
enum StatusLine {
    static func time(_ d: Date) -> String {
        let f = DateFormatter()
        f.dateFormat = "HH:mm:ss"
        return f.string(from: d)
    }

    static func run(surface: String, _ t: Transition) -> String {
        switch t.phase {
        case .running: return "\(surface): running (resumed \(time(t.at)))"
        case .frozen: return "\(surface): frozen (\(t.verdict?.code.rawValue ?? "denied") at \(time(t.at)))"
        case .stopping: return "\(surface): stopping"
        case .killed: return "\(surface): killed (\(t.verdict?.code.rawValue ?? "stopped") at \(time(t.at)))"
        case .exited: return "\(surface): exited"
        }
    }

    /// "3 workers: 2 running, 1 frozen (agent-02 DEVICE_REVOKED 12:03:11)".
    static func supervise(states: [String: SupervisorMetrics.WorkerState], denied: [(worker: String, code: String, at: Date)]) -> String {
        var counts: [SupervisorMetrics.WorkerState: Int] = [:]
        for s in states.values { counts[s, default: 0] += 1 }
        let parts = SupervisorMetrics.WorkerState.allCases.compactMap { s in counts[s].map { "\($0) \(s.rawValue)" } }
        var line = "\(states.count) worker\(states.count == 1 ? "" : "s"): " + (parts.isEmpty ? "none" : parts.joined(separator: ", "))
        if !denied.isEmpty {
            line += " (" + denied.prefix(3).map { "\($0.worker) \($0.code) \(time($0.at))" }.joined(separator: "; ") + (denied.count > 3 ? "; …" : "") + ")"
        }
        return line
    }
}
