import Foundation
import TetherCore

/// The pre-tool hooks of coding agents: read the agent's hook input, say allow or deny in the
/// agent's own terms. A hook that fails lets the call run in every one of these agents, so
/// everything here that goes wrong is a deny.
public enum AgentHook {
    public typealias Agent = CodingAgent
    public typealias Mapping = ToolRule

    /// What the hook needs of the agent's input.
    public struct Call: Sendable, Equatable {
        public var tool: String
        public var event: String?

        public init(tool: String, event: String?) {
            self.tool = tool
            self.event = event
        }
    }

    public struct InputError: Error, CustomStringConvertible {
        public var description: String
        public init(description: String) { self.description = description }
    }

    /// The tool call in `input`: a JSON object with a non-empty `tool_name` (and, when present,
    /// the event the agent says it is — a hook wired to another event is refused).
    public static func parse(_ input: Data, agent: Agent) -> Result<Call, InputError> {
        guard !input.isEmpty else { return .failure(InputError(description: "no hook input on stdin")) }
        guard let o = (try? JSONSerialization.jsonObject(with: input)) as? [String: Any] else {
            return .failure(InputError(description: "the hook input is not a JSON object"))
        }
        let event = o["hook_event_name"] as? String
        if let event, event != agent.event {
            return .failure(InputError(description: "tether hook \(agent.rawValue) answers \(agent.event), not \(event)"))
        }
        guard let tool = o["tool_name"] as? String, !tool.isEmpty else {
            return .failure(InputError(description: "the hook input has no tool_name"))
        }
        return .success(Call(tool: tool, event: event))
    }

    /// The agent's answer: what to print and the exit code.
    public struct Output: Sendable, Equatable {
        public var stdout: String
        public var stderr: String
        public var exitCode: Int32

        public init(stdout: String, stderr: String, exitCode: Int32) {
            self.stdout = stdout
            self.stderr = stderr
            self.exitCode = exitCode
        }
    }

    /// Allow: exit 0 with `{}` (Gemini CLI wants JSON on stdout; the others take it). Deny: exit 2
    /// with the reason on stderr — the one answer all three read as "block", whatever the
    /// version — and the agent's own deny object on stdout for the record.
    public static func output(allowed: Bool, reason: String, agent: Agent) -> Output {
        guard !allowed else { return Output(stdout: "{}\n", stderr: "", exitCode: 0) }
        let object: [String: Any]
        switch agent {
        case .claudeCode, .codex:
            object = [
                "hookSpecificOutput": ["hookEventName": "PreToolUse", "permissionDecision": "deny", "permissionDecisionReason": reason]
            ]
        case .gemini:
            object = ["decision": "deny", "reason": reason]
        }
        return Output(stdout: String(decoding: JSONWriter.data(object), as: UTF8.self) + "\n", stderr: reason + "\n", exitCode: 2)
    }

    /// The surface a tool call is held to: the first matching rule's, else nil (the worker's own).
    public static func surface(for tool: String, in rules: [Mapping]) -> String? {
        rules.first { $0.matches(tool) }?.surface
    }

    /// "tether: Bash denied — agent-01.exec is DEVICE_REVOKED (by alice at …: INC-42)".
    public static func reason(tool: String, surface: String, answer: LocalDecision.Answer) -> String {
        "tether: \(tool) denied — "
            + LocalDecision.describe(
                surface: surface, code: answer.code, changedBy: answer.changedBy,
                changedAt: answer.changedAt, reason: answer.reason, error: answer.error)
    }

}
