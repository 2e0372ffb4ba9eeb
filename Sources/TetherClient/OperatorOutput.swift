import Foundation

/// What the operator commands print: short, plain sentences a person can act on at 3 a.m.
/// (`--json` prints the authority's answer instead).
public enum OperatorOutput {
    public static func change(_ a: JSONAnswer, verb: String) -> String {
        let id = a["deviceId"] as? String ?? "?"
        let state = a["state"] as? String ?? "?"
        var lines = ["\(verb) \(id): now \(state.uppercased()) (request \(a["request_id"] as? String ?? "?"))"]
        if let reason = a["reason"] as? String { lines.append("  reason: \(reason)") }
        lines += ackLines(a)
        return lines.joined(separator: "\n")
    }

    public static func halt(_ a: JSONAnswer) -> String {
        let halted = a["halted"] as? Bool ?? false
        var lines = [halted
            ? "ORG HALTED: every surface is denied (code ORG_HALTED) until `tether resume`."
            : "Org resumed: surfaces run again unless revoked one by one."]
        lines.append("  request: \(a["request_id"] as? String ?? "?")")
        lines += ackLines(a)
        return lines.joined(separator: "\n")
    }

    static func ackLines(_ a: JSONAnswer) -> [String] {
        let watchers = a["watchers"] as? Int ?? 0
        guard let acks = a["acks"] as? [[String: Any]] else {
            return watchers == 0
                ? ["  no supervisor is watching: nothing is running under this surface right now, or its supervisors poll (they stop at their next poll)"]
                : ["  \(watchers) supervisor stream(s) watching; add --wait 5s to wait for their acknowledgements"]
        }
        let missing = a["missing"] as? [[String: Any]] ?? []
        var lines: [String] = []
        if acks.isEmpty && missing.isEmpty {
            lines.append("  no supervisor was watching: nothing to acknowledge")
        }
        for ack in acks {
            let pids = (ack["pids"] as? [Any])?.compactMap { ($0 as? NSNumber)?.stringValue } ?? []
            lines.append("  ✔ \(ack["instance"] as? String ?? "?") (\(ack["deviceId"] as? String ?? "?")): \(ack["state"] as? String ?? "?") at \(ack["at"] as? String ?? "?")\(pids.isEmpty ? "" : ", pids \(pids.joined(separator: " "))")")
        }
        for m in missing {
            lines.append("  ✘ \(m["instance"] as? String ?? "?") (\(m["deviceId"] as? String ?? "?")): NO ACK in time — check that host; its lease still ends the worker when it expires")
        }
        if !missing.isEmpty {
            lines.append("  next: `tether status \(missing.first?["deviceId"] as? String ?? "SURFACE")` to see its last report")
        }
        return lines
    }

    public static func surfaces(_ a: JSONAnswer) -> String {
        let devices = a["devices"] as? [[String: Any]] ?? []
        var lines: [String] = []
        if let org = a["org"] as? [String: Any], org["halted"] as? Bool == true {
            lines.append("ORG HALTED by \(org["changedBy"] as? String ?? "?") at \(org["changedAt"] as? String ?? "?"): \(org["reason"] as? String ?? "")")
        }
        if devices.isEmpty { lines.append("no surfaces registered") }
        let width = max(8, devices.map { ($0["deviceId"] as? String ?? "").count }.max() ?? 8)
        if !devices.isEmpty {
            lines.append("SURFACE".padding(toLength: width, withPad: " ", startingAt: 0) + "  STATE    WATCHERS  LAST REPORT")
        }
        for d in devices {
            let id = (d["deviceId"] as? String ?? "?").padding(toLength: width, withPad: " ", startingAt: 0)
            let state = (d["state"] as? String ?? "?").padding(toLength: 7, withPad: " ", startingAt: 0)
            let watchers = String((d["watchers"] as? [Any])?.count ?? 0).padding(toLength: 8, withPad: " ", startingAt: 0)
            var last = "-"
            if let r = d["lastReport"] as? [String: Any] {
                last = "\(r["state"] as? String ?? "?") by \(r["instance"] as? String ?? "?") at \(r["at"] as? String ?? "?")\((r["detail"] as? String).map { ": \($0)" } ?? "")"
            }
            lines.append("\(id)  \(state)  \(watchers)  \(last)")
        }
        return lines.joined(separator: "\n")
    }

    public static func status(_ a: JSONAnswer) -> String {
        guard let d = (a["devices"] as? [[String: Any]])?.first else { return surfaces(a) }
        var lines = ["\(d["deviceId"] as? String ?? "?"): \((d["state"] as? String ?? "?").uppercased())"]
        if let org = a["org"] as? [String: Any], org["halted"] as? Bool == true {
            lines.append("  but the ORG IS HALTED: \(org["reason"] as? String ?? "") — it is denied regardless")
        }
        lines.append("  last change: \(d["updatedAt"] as? String ?? "?") by \(d["changedBy"] as? String ?? "-")\((d["reason"] as? String).map { ": \($0)" } ?? "")")
        let watchers = d["watchers"] as? [String] ?? []
        // Which key holds each instance: a report counts only from it.
        let holders = d["holders"] as? [String: String] ?? [:]
        func named(_ i: String) -> String { holders[i].map { "\(i) (key \($0))" } ?? i }
        lines.append("  watched by: \(watchers.isEmpty ? "no supervisor stream" : watchers.map(named).joined(separator: ", "))")
        if let r = d["lastReport"] as? [String: Any] {
            let pids = (r["pids"] as? [Any])?.compactMap { ($0 as? NSNumber)?.stringValue } ?? []
            lines.append("  last report: \(r["state"] as? String ?? "?") by \(named(r["instance"] as? String ?? "?")) at \(r["at"] as? String ?? "?")\(pids.isEmpty ? "" : " (pids \(pids.joined(separator: " ")))")\((r["detail"] as? String).map { ": \($0)" } ?? "")")
        } else {
            lines.append("  last report: none")
        }
        return lines.joined(separator: "\n")
    }

    public static func instances(_ a: JSONAnswer) -> String {
        let all = a["instances"] as? [[String: Any]] ?? []
        if all.isEmpty { return "no instance is held: none has watched or reported yet" }
        let width = max(8, all.map { ($0["instance"] as? String ?? "").count }.max() ?? 8)
        let keyWidth = max(3, all.map { ($0["key"] as? String ?? "").count }.max() ?? 3)
        var lines = ["INSTANCE".padding(toLength: width, withPad: " ", startingAt: 0) + "  " + "KEY".padding(toLength: keyWidth, withPad: " ", startingAt: 0)
                     + "  CONNECTED  CLAIMED               LAST SEEN"]
        for i in all {
            lines.append((i["instance"] as? String ?? "?").padding(toLength: width, withPad: " ", startingAt: 0) + "  "
                         + (i["key"] as? String ?? "?").padding(toLength: keyWidth, withPad: " ", startingAt: 0) + "  "
                         + (i["connected"] as? Bool == true ? "yes" : "no").padding(toLength: 9, withPad: " ", startingAt: 0) + "  "
                         + "\(i["claimedAt"] as? String ?? "?")  \(i["lastSeen"] as? String ?? "?")")
        }
        return lines.joined(separator: "\n")
    }

    public static func released(_ a: JSONAnswer) -> String {
        "Released \(a["instance"] as? String ?? "?"): it was held by the key \(a["key"] as? String ?? "?") since \(a["claimedAt"] as? String ?? "?"); "
            + "the next key to watch or report as it holds it. Revoke the old key (tether keys revoke) if the host will not use it again."
    }

    public static func audit(_ a: JSONAnswer) -> String {
        let entries = a["entries"] as? [[String: Any]] ?? []
        if entries.isEmpty { return "the audit log is empty" }
        return entries.map { e in
            let target = (e["deviceId"] as? String).map { " \($0)" } ?? ""
            let reason = (e["reason"] as? String).map { " — \($0)" } ?? ""
            return "\(e["at"] as? String ?? "?")  \(e["actor"] as? String ?? "?")  \(e["action"] as? String ?? "?")\(target)\(reason)  [\(e["request_id"] as? String ?? "")]"
        }.joined(separator: "\n")
    }

    /// The answer as pretty JSON, for `--json`.
    public static func json(_ a: JSONAnswer) -> String {
        let data = (try? JSONSerialization.data(withJSONObject: a.object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])) ?? Data()
        return String(decoding: data, as: UTF8.self)
    }
}
