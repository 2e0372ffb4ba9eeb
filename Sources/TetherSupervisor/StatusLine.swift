import Foundation
import Glibc
import TetherClient

/// The one-line status a human reads in `systemctl status`.
enum StatusLine {
    /// Local wall-clock time, `12:03:11` (strftime: a DateFormatter costs ~100 µs to make).
    static func time(_ d: Date) -> String {
        var t = time_t(d.timeIntervalSince1970.rounded(.down))
        var parts = tm()
        localtime_r(&t, &parts)
        var buf = [CChar](repeating: 0, count: 16)
        let n = strftime(&buf, buf.count, "%H:%M:%S", &parts)
        return String(decoding: buf.prefix(n).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// "revoked 12:03:11 by alice: INC-481": what denied, when the operator did it (else when
    /// the verdict arrived), and who and why when the authority's decision says.
    static func denial(_ v: Verdict?, at: Date) -> String {
        guard let v else { return "stopped \(time(at))" }
        let what: String
        switch v.code {
        case .deviceRevoked: what = "revoked"
        case .orgHalted: what = "org halted"
        case .deviceNotFound: what = "not registered"
        case .leaseExpired: what = "lease expired"
        case .authorityUnreachable: what = "authority unreachable"
        case .badSignature: what = "bad signature"
        case .badResponse: what = "bad answer"
        case .allow: what = "allowed"
        }
        let by = v.attribution
        return "\(what) \(time(v.changedAt ?? at))" + (by.isEmpty ? "" : " \(by)")
    }

    static func run(surface: String, _ t: Transition) -> String {
        switch t.phase {
        case .running: return "\(surface): running (resumed \(time(t.at)))"
        case .frozen: return "\(surface): frozen (\(denial(t.verdict, at: t.at)))"
        case .stopping: return "\(surface): stopping"
        case .killed: return "\(surface): killed (\(denial(t.verdict, at: t.at)))"
        case .exited: return "\(surface): exited"
        }
    }

    /// "3 workers: 2 running, 1 frozen (agent-02 revoked 12:03:11 by alice: INC-481)".
    static func supervise(states: [String: SupervisorMetrics.WorkerState], denied: [(worker: String, verdict: Verdict, at: Date)]) -> String
    {
        var counts: [SupervisorMetrics.WorkerState: Int] = [:]
        for s in states.values { counts[s, default: 0] += 1 }
        let parts = SupervisorMetrics.WorkerState.allCases.compactMap { s in counts[s].map { "\($0) \(s.rawValue)" } }
        var line = "\(states.count) worker\(states.count == 1 ? "" : "s"): " + (parts.isEmpty ? "none" : parts.joined(separator: ", "))
        if !denied.isEmpty {
            line +=
                " (" + denied.prefix(3).map { "\($0.worker) \(denial($0.verdict, at: $0.at))" }.joined(separator: "; ")
                + (denied.count > 3 ? "; …" : "") + ")"
        }
        return line
    }
}
