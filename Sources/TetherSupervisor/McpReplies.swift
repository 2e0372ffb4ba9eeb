import Foundation
import Glibc
import Logging
import Synchronization
import TetherClient
import TetherCore
import TetherSystem

/// The server's side of the gateway: its answers, checked as they come back, and the requests
/// it leaves unanswered.
extension McpGateway {
    // MARK: - the server's lines

    func relayServerToClient() {
        var reader = LineReader(fd: serverOut)
        while let line = reader.next() {
            if let out = fromServer(line) { send(out) }
        }
        close(serverOut)
    }

    enum Outcome { case same, replaced([UInt8]), dropped }

    /// What to send the client for one line from the server, or nil.
    func fromServer(_ line: [UInt8]) -> [UInt8]? {
        guard let (value, ranges) = try? McpReader.read(line, strict: false) else {
            // Could be the answer to a request that is refused by now: passed only if it cannot.
            let waiting = state.withLock { !$0.pending.isEmpty }
            guard !waiting, serverRefusal("a line from the server") == nil else {
                logger.warning("a line from the MCP server the gateway cannot read was dropped while requests were pending")
                return nil
            }
            return line
        }
        guard case .array(let batch) = value else {
            switch fromServer(value) {
            case .same: return line
            case .replaced(let b): return b
            case .dropped: return nil
            }
        }
        var parts: [[UInt8]] = []
        var changed = false
        for (e, r) in zip(batch, ranges) {
            switch fromServer(e) {
            case .same: parts.append(Array(line[r]))
            case .replaced(let b):
                parts.append(b)
                changed = true
            case .dropped: changed = true
            }
        }
        guard changed else { return line }
        guard !parts.isEmpty else { return nil }
        return [UInt8(ascii: "[")] + Array(parts.joined(separator: [UInt8(ascii: ",")])) + [UInt8(ascii: "]")]
    }

    func fromServer(_ v: McpJSON) -> Outcome {
        if v["method"] == nil, let raw = v["id"], let id = McpId.server(raw) {
            let (entry, late) = state.withLock { s -> (Pending?, Bool) in
                if let p = s.pending.removeValue(forKey: id) { return (p, false) }
                guard let i = s.answered.firstIndex(of: id) else { return (nil, false) }
                s.answered.remove(at: i)
                return (nil, true)
            }
            if late { logger.info("the server's late answer to a request refused meanwhile was dropped") }
            guard let entry else { return late ? .dropped : .same }
            return answer(entry, v["result"])
        }
        // News of a task whose tool is refused now says what tasks/get would: failed, for good.
        // (`notifications/tasks` is the 2026-07-28 extension's, which can carry the result.)
        guard let method = v["method"]?.string, ["notifications/tasks/status", "notifications/tasks"].contains(method),
            let id = v["params"]?["taskId"]?.string,
            let tool = state.withLock({ $0.tasks[id]?.tool })
        else { return .same }
        guard let reason = reason(.task("tasks/get", id: id, tool: tool)) else {
            if let task = v["params"] { state.withLock { $0.tasks.update(id, task: task) } }
            return .same
        }
        let entry = state.withLock { $0.tasks.refuse(id, tool: tool, reason: reason) }
        let note = McpJSON.object([
            ("jsonrpc", .string("2.0")), ("method", .string(method)),
            ("params", McpTasks.reported(entry)),
        ])
        return .replaced(note.bytes)
    }

    /// The server's answer to `p`, checked now: a revoke since the request refuses it.
    func answer(_ p: Pending, _ result: McpJSON?) -> Outcome {
        guard let result else { return .same }  // an error: no result to withhold
        var created: String?
        switch p.gate {
        case .tool(let tool, _):
            // A task handle (requested or not): its tool decides for the task from now on.
            // (2026-07-28's extension marks a handle `resultType: "task"`, its fields in the result.)
            let handle = result["task"] ?? (result["resultType"]?.string == "task" ? result : nil)
            if let task = handle, let id = task["taskId"]?.string {
                created = id
                state.withLock { $0.tasks.track(id, tool: tool, task: task) }
            }
        case .task("tasks/get", let id, _?):
            if result["taskId"]?.string == id { state.withLock { $0.tasks.update(id, task: result) } }
        default: break
        }
        if let reason = reason(p.gate) {
            refuse(p.gate, p.id, reason, created: created)
            return .dropped
        }
        guard case .list = p.gate, case .array(let listed)? = result["tasks"] else { return .same }
        // Tasks of a tool refused now, or refused before, are listed as tasks/get would show
        // them: failed, for good.
        let known = state.withLock { s in listed.map { t in t["taskId"]?.string.flatMap { id in s.tasks[id].map { (id, $0.tool) } } } }
        var refusals: [String: String?] = [:]
        for case let (_, tool)? in known where refusals[tool] == nil { refusals[tool] = .some(refusal(tool: tool)) }
        let shown = state.withLock { s in
            zip(listed, known).map { t, k -> McpJSON in
                guard let (id, tool) = k else { return t }
                if let reason = refusals[tool] ?? nil { _ = s.tasks.refuse(id, tool: tool, reason: reason) }
                return s.tasks[id].flatMap { $0.refusal == nil ? nil : McpTasks.reported($0) } ?? t
            }
        }
        guard case .object(var members) = result, let i = members.firstIndex(where: { $0.0 == "tasks" }) else { return .same }
        members[i].1 = .array(shown)
        return .replaced(Self.line(p.id, "result", McpJSON.object(members).bytes))
    }

    // MARK: - requests the server leaves unanswered

    /// Answers here every forwarded request older than `settle` whose answer would be refused
    /// now: a frozen server answers nothing, and its client must not wait for it.
    func watchPending() {
        while !ended.load(ordering: .relaxed) {
            Thread.sleep(forTimeInterval: 0.25)
            let due = state.withLock { s in s.pending.values.filter { ContinuousClock.now - $0.since >= settle } }
            for p in due.sorted(by: { $0.since < $1.since }) {
                guard let reason = reason(p.gate) else { continue }
                let mine = state.withLock { s -> Bool in
                    guard s.pending.removeValue(forKey: p.id) != nil else { return false }
                    s.answered.append(p.id)
                    if s.answered.count > McpTasks.limit { s.answered.removeFirst() }
                    return true
                }
                if mine { refuse(p.gate, p.id, reason) }
            }
        }
    }
}
