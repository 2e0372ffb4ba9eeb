/// `tether run --agent AGENT` (`agent = "…"` for a worker in the supervise file): the agent's
/// pre-tool hook is pinned in its managed, system-level settings inside the worker's mount
/// namespace — read-only, and read before anything the agent's user can write — so the agent
/// cannot remove, override or skip it (docs/agents.md).
public struct AgentPin: Sendable, Equatable {
    public var agent: CodingAgent
    /// `--map TOOL=SURFACE`: tools held to surfaces of their own (first match wins); other
    /// tools to the worker's own surface.
    public var rules: [ToolRule]
    /// `--accept-unpinned-hooks`: start even where the hook cannot be pinned (no mount
    /// namespace of the worker's own, an agent version that does not honour the pin).
    public var acceptUnpinned: Bool

    public init(agent: CodingAgent, rules: [ToolRule] = [], acceptUnpinned: Bool = false) {
        self.agent = agent
        self.rules = rules
        self.acceptUnpinned = acceptUnpinned
    }
}
