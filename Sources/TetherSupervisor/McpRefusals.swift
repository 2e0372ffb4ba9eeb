import Foundation
import Glibc
import Logging
import Synchronization
import TetherClient
import TetherCore
import TetherSystem

/// What the gateway refuses, and how it says so.
extension McpGateway {
    // MARK: - decisions

    /// Why the request behind `gate` is refused now, or nil.
    func reason(_ gate: Gate) -> String? {
        switch gate {
        case .plain(let method): return serverRefusal(method)
        case .list: return serverRefusal("tasks/list")
        case .tool(let tool, _): return refusal(tool: tool)
        case .task(let method, let id, let tool):
            if let refused = state.withLock({ $0.tasks[id]?.refusal }) { return refused }
            // A task the gateway never saw created (or has forgotten) could be any tool's: the
            // server is not asked about it.
            guard let tool else { return "Failed to retrieve task: tether does not know task \(id) (\(method) refused)" }
            return refusal(tool: tool)
        }
    }

    /// Answers the request `id` here, refused for `reason`, in the shape its client expects.
    func refuse(_ gate: Gate, _ id: McpId, _ reason: String, created: String? = nil) {
        refused.add(1, ordering: .relaxed)
        logger.notice("request refused", metadata: ["request": "\(gate)", "reason": "\(reason)"])
        switch gate {
        case .plain, .list:
            send(Self.error(id, Self.refusedCode, reason))
        case .tool(let tool, let task):
            guard task != nil || created != nil else {
                send(Self.line(id, "result", McpTasks.toolRefusal(reason).bytes))
                return
            }
            // A task-augmented call gets its task (CreateTaskResult), failed: tasks/get and
            // tasks/result on it are answered here.
            let taskId = created ?? "tether-refused-\(UUID().uuidString.lowercased())"
            let entry = state.withLock { s in
                if created == nil { s.tasks.track(taskId, tool: tool, task: McpTasks.task(id: taskId, ttl: task?["ttl"])) }
                return s.tasks.refuse(taskId, tool: tool, reason: reason)
            }
            send(Self.line(id, "result", McpJSON.object([("task", McpTasks.reported(entry))]).bytes))
        case .task(let method, let taskId, let tool):
            guard let tool else {
                send(Self.error(id, -32602, reason))
                return
            }
            let entry = state.withLock { $0.tasks.refuse(taskId, tool: tool, reason: reason) }
            switch method {
            case "tasks/get":
                send(Self.line(id, "result", McpTasks.reported(entry).bytes))
            case "tasks/result":
                send(Self.line(id, "result", McpTasks.toolRefusal(entry.refusal ?? reason, task: taskId).bytes))
            case "tasks/cancel":
                send(Self.error(id, -32602, "Cannot cancel task: already in terminal status 'failed' (\(entry.refusal ?? reason))"))
            default:
                send(Self.error(id, Self.refusedCode, entry.refusal ?? reason))
            }
        }
    }

    func live() -> LiveDecisions? {
        // The worker is started (attach) before any answer can be given.
        if decisions.withLock({ $0 }) == nil {
            _ = started.wait(timeout: .now() + 10)
            started.signal()
        }
        return decisions.withLock { $0 }
    }

    /// Why `what` may not reach the server now, or nil: its surface decides; a stale lease, no
    /// decision yet, or no answer in time refuse.
    func serverRefusal(_ what: String) -> String? {
        guard let live = live() else { return "tether: \(what) refused — the MCP server is not running under its tether yet" }
        guard let main = DecisionSocket.wait({ await live.decide(self.surface) }) else {
            return "tether: \(what) refused — no decision for \(surface) in time"
        }
        return main.allowed ? nil : "tether: \(what) refused — \(main.sentence)"
    }

    /// Why `tool` may not be called now, or nil. The server's surface decides, then the
    /// tool's own (`SURFACE.<tool>`) where it exists.
    func refusal(tool: String) -> String? {
        if let reason = serverRefusal(tool) { return reason }
        guard let live = live() else { return "tether: \(tool) refused — the MCP server is not running under its tether yet" }
        let toolSurface = "\(surface).\(tool)"
        guard SurfaceName.isValid(toolSurface) else { return nil }
        guard let own = DecisionSocket.wait({ await live.decide(toolSurface) }) else {
            return "tether: \(tool) refused — no decision for \(toolSurface) in time"
        }
        if own.allowed || own.code == DecisionCode.deviceNotFound.rawValue { return nil }
        return "tether: \(tool) refused — \(own.sentence)"
    }
}
