/// The coding agents whose pre-tool hooks Tether answers (`tether hook`) and pins
/// (`tether run --agent`, docs/agents.md).
public enum CodingAgent: String, Sendable, CaseIterable {
    /// Claude Code `PreToolUse`.
    case claudeCode = "claude-code"
    /// Codex `PreToolUse` (the same shape; it rejects "ask").
    case codex
    /// Gemini CLI `BeforeTool`.
    case gemini

    public static var names: String { allCases.map(\.rawValue).joined(separator: ", ") }

    /// The hook event the agent asks before a tool runs.
    public var event: String { self == .gemini ? "BeforeTool" : "PreToolUse" }
}

/// A tool name → surface rule: `Bash=agent-01.exec`, `mcp__github__*=agent-01.mcp.github`
/// (`*` matches any run of characters).
public struct ToolRule: Sendable, Equatable {
    public var pattern: String
    public var surface: String

    public init(pattern: String, surface: String) {
        self.pattern = pattern
        self.surface = surface
    }

    public struct ParseError: Error, CustomStringConvertible, Sendable {
        public var description: String
    }

    public static func parse(_ s: String) -> Result<ToolRule, ParseError> {
        guard let eq = s.lastIndex(of: "="), eq != s.startIndex else {
            return .failure(ParseError(description: "\"\(s)\": expected TOOL=SURFACE, e.g. Bash=agent-01.exec"))
        }
        let surface = String(s[s.index(after: eq)...])
        guard SurfaceName.isValid(surface) else {
            return .failure(ParseError(description: "\"\(surface)\" is not a valid surface name: \(SurfaceName.rule)"))
        }
        return .success(ToolRule(pattern: String(s[..<eq]), surface: surface))
    }

    /// As given: `PATTERN=SURFACE`.
    public var text: String { "\(pattern)=\(surface)" }

    public func matches(_ tool: String) -> Bool { Self.glob(Array(pattern.utf8)[...], Array(tool.utf8)[...]) }

    static func glob(_ p: ArraySlice<UInt8>, _ s: ArraySlice<UInt8>) -> Bool {
        guard let first = p.first else { return s.isEmpty }
        if first == UInt8(ascii: "*") {
            var rest = s
            while true {
                if glob(p.dropFirst(), rest) { return true }
                guard !rest.isEmpty else { return false }
                rest = rest.dropFirst()
            }
        }
        guard let c = s.first, c == first else { return false }
        return glob(p.dropFirst(), s.dropFirst())
    }
}
