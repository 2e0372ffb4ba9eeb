import Foundation
import TetherCore

/// What the operator commands print: short, plain sentences a person can act on at 3 a.m.
/// (`--json` prints the authority's answer instead). Each reads one of the wire's answers.
public enum OperatorOutput {
    public static func change(_ a: SurfaceChanged, verb: String) -> String {
        var lines = ["\(verb) \(a.surface): now \(a.state.uppercased()) (request \(a.requestID))"]
        if let reason = a.reason { lines.append("  reason: \(reason)") }
        lines += ackLines(watchers: a.watchers, acks: a.acks, missing: a.missing)
        return lines.joined(separator: "\n")
    }

    public static func halt(_ a: OrgChanged) -> String {
        var lines = [
            a.halted
                ? "ORG HALTED: every surface is denied (code ORG_HALTED) until `tether resume`."
                : "Org resumed: surfaces run again unless revoked one by one."
        ]
        lines.append("  request: \(a.requestID)")
        lines += ackLines(watchers: a.watchers, acks: a.acks, missing: a.missing)
        return lines.joined(separator: "\n")
    }

    static func ackLines(watchers: Int, acks: [ReportView]?, missing: [MissingAck]?) -> [String] {
        guard let acks else {
            return watchers == 0
                ? [
                    "  no supervisor is watching: nothing is running under this surface right now, or its supervisors poll (they stop at their next poll)"
                ]
                : ["  \(watchers) supervisor stream(s) watching; add --wait 5s to wait for their acknowledgements"]
        }
        let missing = missing ?? []
        var lines: [String] = []
        if acks.isEmpty && missing.isEmpty {
            lines.append("  no supervisor was watching: nothing to acknowledge")
        }
        for ack in acks {
            lines.append(
                "  ✔ \(ack.instance) (\(ack.surface ?? "?")): \(ack.state) at \(ack.at)\(ack.pids.isEmpty ? "" : ", pids \(ack.pids.map(String.init).joined(separator: " "))")"
            )
        }
        for m in missing {
            lines.append(
                "  ✘ \(m.instance) (\(m.surface)): NO ACK in time — check that host; its lease still ends the worker when it expires")
        }
        if let first = missing.first {
            lines.append("  next: `tether status \(first.surface)` to see its last report")
        }
        return lines
    }

    public static func surfaces(_ a: SurfaceList) -> String {
        var lines: [String] = []
        if a.org.halted {
            lines.append("ORG HALTED by \(a.org.changedBy ?? "?") at \(a.org.changedAt ?? "?"): \(a.org.reason ?? "")")
        }
        if a.devices.isEmpty { lines.append("no surfaces registered") }
        let width = max(8, a.devices.map(\.surface.count).max() ?? 8)
        if !a.devices.isEmpty {
            lines.append("SURFACE".padding(toLength: width, withPad: " ", startingAt: 0) + "  STATE    WATCHERS  LAST REPORT")
        }
        for d in a.devices {
            let id = d.surface.padding(toLength: width, withPad: " ", startingAt: 0)
            let state = d.state.padding(toLength: 7, withPad: " ", startingAt: 0)
            let watchers = String(d.watchers.count).padding(toLength: 8, withPad: " ", startingAt: 0)
            let last = d.lastReport.map { r in "\(r.state) by \(r.instance) at \(r.at)\(r.detail.map { ": \($0)" } ?? "")" } ?? "-"
            lines.append("\(id)  \(state)  \(watchers)  \(last)")
        }
        return lines.joined(separator: "\n")
    }

    public static func status(_ a: SurfaceList) -> String {
        guard let d = a.devices.first else { return surfaces(a) }
        var lines = ["\(d.surface): \(d.state.uppercased())"]
        if a.org.halted {
            lines.append("  but the ORG IS HALTED: \(a.org.reason ?? "") — it is denied regardless")
        }
        lines.append("  last change: \(d.updatedAt) by \(d.changedBy ?? "-")\(d.reason.map { ": \($0)" } ?? "")")
        // Which key holds each instance: a report counts only from it.
        func named(_ i: String) -> String { d.holders[i].map { "\(i) (key \($0))" } ?? i }
        lines.append("  watched by: \(d.watchers.isEmpty ? "no supervisor stream" : d.watchers.map(named).joined(separator: ", "))")
        if let r = d.lastReport {
            lines.append(
                "  last report: \(r.state) by \(named(r.instance)) at \(r.at)\(r.pids.isEmpty ? "" : " (pids \(r.pids.map(String.init).joined(separator: " ")))")\(r.detail.map { ": \($0)" } ?? "")"
            )
        } else {
            lines.append("  last report: none")
        }
        return lines.joined(separator: "\n")
    }

    public static func instances(_ a: InstanceList) -> String {
        if a.instances.isEmpty { return "no instance is held: none has watched or reported yet" }
        let width = max(8, a.instances.map(\.instance.count).max() ?? 8)
        let keyWidth = max(3, a.instances.map(\.key.count).max() ?? 3)
        var lines = [
            "INSTANCE".padding(toLength: width, withPad: " ", startingAt: 0) + "  "
                + "KEY".padding(toLength: keyWidth, withPad: " ", startingAt: 0)
                + "  CONNECTED  CLAIMED               LAST SEEN"
        ]
        for i in a.instances {
            lines.append(
                i.instance.padding(toLength: width, withPad: " ", startingAt: 0) + "  "
                    + i.key.padding(toLength: keyWidth, withPad: " ", startingAt: 0) + "  "
                    + (i.connected ? "yes" : "no").padding(toLength: 9, withPad: " ", startingAt: 0) + "  "
                    + "\(i.claimedAt)  \(i.lastSeen)")
        }
        return lines.joined(separator: "\n")
    }

    public static func released(_ a: InstanceReleased) -> String {
        "Released \(a.instance): it was held by the key \(a.key) since \(a.claimedAt); "
            + "the next key to watch or report as it holds it. Revoke the old key (tether keys revoke) if the host will not use it again."
    }

    public static func audit(_ a: AuditPage) -> String {
        if a.entries.isEmpty { return "the audit log is empty" }
        var lines = a.entries.map { e in
            "\(e.at)  \(e.actor)  \(e.action)\(e.surface.map { " \($0)" } ?? "")\(e.reason.map { " — \($0)" } ?? "")  [\(e.requestID)]"
        }
        if let next = a.next { lines.append("… older entries: add --before \(next)") }
        return lines.joined(separator: "\n")
    }

    /// The answer as pretty JSON, for `--json`.
    public static func json(_ a: JSONAnswer) -> String {
        let data =
            (try? JSONSerialization.data(withJSONObject: a.object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]))
            ?? Data()
        return String(decoding: data, as: UTF8.self)
    }
}
