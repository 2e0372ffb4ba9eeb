import Foundation
import TetherCore

/// The tasks (MCP 2025-11-25) the server created for tool calls, by task id: which tool each
/// runs, its last known state, and whether the gateway has refused it. A refusal is for good:
/// the client was told `failed`, a terminal status, so no later `completed` may contradict it —
/// and the result of work a revoke cut off is never delivered, not even after a restore.
struct McpTasks: Sendable {
    struct Entry: Sendable {
        let tool: String
        /// The task as last seen (a `Task` object), for the gateway's own answers about it.
        var task: McpJSON
        var refusal: String?
        /// When the gateway refused it: the task's `lastUpdatedAt` from then on.
        var refusedAt = ""
    }

    /// Tasks remembered, at most (the oldest forgotten first; a forgotten one is the server's to
    /// answer, under the server's surface).
    static let limit = 4096
    private var entries: [String: Entry] = [:]
    private var order: [String] = []

    subscript(_ id: String) -> Entry? { entries[id] }

    mutating func track(_ id: String, tool: String, task: McpJSON) {
        if entries[id] == nil {
            order.append(id)
            if order.count > Self.limit { entries[order.removeFirst()] = nil }
            entries[id] = Entry(tool: tool, task: task)
        } else {
            update(id, task: task)
        }
    }

    /// The task's state as the server last gave it (not once refused).
    mutating func update(_ id: String, task: McpJSON) {
        if entries[id]?.refusal == nil { entries[id]?.task = task }
    }

    /// Refuses the task for good (the first reason stays) and returns its entry.
    mutating func refuse(_ id: String, tool: String, reason: String) -> Entry {
        if entries[id] == nil { track(id, tool: tool, task: Self.task(id: id, ttl: nil)) }
        if entries[id]?.refusal == nil {
            entries[id]?.refusal = reason
            entries[id]?.refusedAt = Self.now()
        }
        return entries[id]!
    }

    // MARK: - shapes of the gateway's own answers (schema 2025-11-25)

    static func now() -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.string(from: Date())
    }

    /// A new `Task` (working) for a task id the gateway has to answer for.
    static func task(id: String, ttl: McpJSON?) -> McpJSON {
        let at = now()
        return .object([
            ("taskId", .string(id)), ("status", .string("working")), ("createdAt", .string(at)),
            ("lastUpdatedAt", .string(at)), ("ttl", ttl ?? .null),
        ])
    }

    /// The entry's task as the gateway reports it: `failed` with the reason, once refused.
    static func reported(_ e: Entry) -> McpJSON {
        guard let reason = e.refusal, case .object(var members) = e.task else { return e.task }
        members.removeAll { ["status", "statusMessage", "lastUpdatedAt"].contains($0.0) }
        members += [("status", .string("failed")), ("statusMessage", .string(reason)), ("lastUpdatedAt", .string(e.refusedAt))]
        return .object(members)
    }

    /// `CallToolResult` with `isError` and the reason (tied to its task, if any: tasks/result
    /// MUST carry `io.modelcontextprotocol/related-task`).
    static func toolRefusal(_ reason: String, task: String? = nil) -> McpJSON {
        var members: [(String, McpJSON)] = [
            ("content", .array([.object([("type", .string("text")), ("text", .string(reason))])])),
            ("isError", .bool(true)),
        ]
        if let task {
            members.append(("_meta", .object([("io.modelcontextprotocol/related-task", .object([("taskId", .string(task))]))])))
        }
        return .object(members)
    }
}
