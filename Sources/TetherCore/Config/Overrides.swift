/// Settings given outside a configuration file — the environment (`TETHER_*`) or flags — laid
/// over it: flags over the environment over the file.
public struct Overrides: Sendable, Equatable {
    /// Where these came from, for messages: "the environment", "the command line".
    public var source: String
    public var authority: String?
    public var keyFile: String?
    public var publicKey: String?
    public var surface: String?
    public var profile: String?
    public var onRevoke: String?
    public var killAfter: String?
    public var grace: String?
    public var failClosedAfter: String?
    public var pollInterval: String?
    public var watch: Bool?
    public var insecureUnpinned: Bool?
    public var user: String?
    public var env: [String] = []
    /// Names of the supervisor's variables the worker also inherits (`--pass-env`).
    public var passEnv: [String] = []
    /// `--net`: private, none, host-loopback or host.
    public var net: String?
    /// `--agent`: the coding agent whose hook is pinned (claude-code, codex, gemini).
    public var agent: String?
    /// `--map TOOL=SURFACE`: with an agent, tools held to surfaces of their own.
    public var agentMaps: [String] = []
    /// `--accept-unpinned-hooks`.
    public var acceptUnpinnedHooks: Bool?
    /// `nproc=64`, `nofile=1024:4096`: replace the file's limit of the same resource.
    public var limits: [String] = []
    /// `exec=agent-01.exec`: a gate held to a surface; replaces the file's gate of that kind.
    public var gates: [String] = []
    /// `net=record`: a gate's mode.
    public var gateModes: [String] = []

    public init(source: String) { self.source = source }

    /// The `TETHER_*` variables `tether run` reads.
    public static func environment(_ env: [String: String]) -> Overrides {
        var o = Overrides(source: "the environment")
        o.authority = env["TETHER_AUTHORITY"]
        o.keyFile = env["TETHER_KEY_FILE"]
        o.publicKey = env["TETHER_PUBLIC_KEY"]
        o.surface = env["TETHER_SURFACE"]
        o.profile = env["TETHER_PROFILE"]
        o.onRevoke = env["TETHER_ON_REVOKE"]
        o.killAfter = env["TETHER_KILL_AFTER"]
        o.grace = env["TETHER_GRACE"]
        o.failClosedAfter = env["TETHER_FAIL_CLOSED_AFTER"]
        o.pollInterval = env["TETHER_POLL_INTERVAL"]
        o.user = env["TETHER_USER"]
        o.net = env["TETHER_NET"]
        o.agent = env["TETHER_AGENT"]
        if let w = env["TETHER_WATCH"] { o.watch = !["0", "false", "no", "off"].contains(w.lowercased()) }
        return o
    }

    func error(_ name: String, _ message: String) -> ConfigError {
        ConfigError(file: source, line: nil, message: "\(name): \(message)")
    }

    public func apply(to authority: inout AuthoritySettings, worker: inout WorkerConfig) throws(ConfigError) {
        let fromEnvironment = source == "the environment"
        func name(_ flag: String, _ variable: String) -> String { fromEnvironment ? variable : "--\(flag)" }
        func duration(_ text: String?, _ flag: String, _ variable: String, atLeast minimum: Duration) throws(ConfigError) -> Duration? {
            guard let text else { return nil }
            guard let d = DurationText.parse(text) else {
                throw error(name(flag, variable), "\"\(text)\" is not a duration; use ms, s, m or h, e.g. 10s")
            }
            guard d >= minimum else { throw error(name(flag, variable), "must be at least \(DurationText.format(minimum))") }
            return d
        }
        if let a = self.authority {
            // Replicas: comma-separated, tried in order.
            authority.urls = a.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        }
        if let k = keyFile { authority.keyFile = k }
        if let p = publicKey { authority.publicKey = p }
        if let d = try duration(failClosedAfter, "fail-closed-after", "TETHER_FAIL_CLOSED_AFTER", atLeast: .milliseconds(100)) {
            authority.failClosedAfter = d
        }
        if let d = try duration(pollInterval, "poll-interval", "TETHER_POLL_INTERVAL", atLeast: .milliseconds(50)) {
            authority.pollInterval = d
        }
        if let w = watch { authority.watch = w }
        if let i = insecureUnpinned { authority.insecureUnpinned = i }
        if let s = surface {
            guard SurfaceName.isValid(s) else {
                throw error(name("surface", "TETHER_SURFACE"), "\"\(s)\" is not a valid surface name: \(SurfaceName.rule)")
            }
            worker.surface = s
        }
        if let p = profile { worker.profile = p }
        if let o = onRevoke {
            guard let v = OnRevoke(rawValue: o) else {
                throw error(name("on-revoke", "TETHER_ON_REVOKE"), "expected stop, kill or term; got \"\(o)\"")
            }
            worker.stop.onRevoke = v
        }
        if let d = try duration(killAfter, "kill-after", "TETHER_KILL_AFTER", atLeast: .zero) { worker.stop.killAfter = d }
        if let d = try duration(grace, "grace", "TETHER_GRACE", atLeast: .zero) { worker.stop.grace = d }
        if let u = user { worker.spec.user = u }
        for kv in self.env {
            guard let eq = kv.firstIndex(of: "="), eq != kv.startIndex else { throw error("--env", "expected KEY=VALUE; got \"\(kv)\"") }
            worker.spec.environment[String(kv[..<eq])] = String(kv[kv.index(after: eq)...])
        }
        if let n = net {
            guard let mode = NetworkMode(rawValue: n) else {
                throw error(name("net", "TETHER_NET"), "\"\(n)\" is not a network mode; expected one of \(NetworkMode.names)")
            }
            worker.spec.network = mode
        }
        if let a = agent {
            guard let kind = CodingAgent(rawValue: a) else {
                throw error(
                    name("agent", "TETHER_AGENT"),
                    "\"\(a)\" is not an agent whose hook Tether can pin; expected one of \(CodingAgent.names)")
            }
            worker.spec.agent = AgentPin(
                agent: kind, rules: worker.spec.agent?.rules ?? [], acceptUnpinned: worker.spec.agent?.acceptUnpinned ?? false)
        }
        if !agentMaps.isEmpty {
            guard worker.spec.agent != nil else { throw error("--map", "holds an agent's tools to surfaces; give the agent with --agent") }
            var rules: [ToolRule] = []
            for m in agentMaps {
                switch ToolRule.parse(m) {
                case .success(let r): rules.append(r)
                case .failure(let e): throw error("--map", e.description)
                }
            }
            worker.spec.agent?.rules = rules
        }
        if let u = acceptUnpinnedHooks {
            guard worker.spec.agent != nil else {
                throw error("--accept-unpinned-hooks", "is about an agent's pinned hook; give the agent with --agent")
            }
            worker.spec.agent?.acceptUnpinned = u
        }
        for n in passEnv {
            guard !n.isEmpty, !n.contains("="), n.utf8.allSatisfy({ $0 > 32 && $0 < 127 }) else {
                throw error("--pass-env", "expected a variable name; got \"\(n)\"")
            }
            guard !EnvironmentPolicy.isSupervisorSecret(n) else {
                throw error("--pass-env", "\(n) is the supervisor's own (TETHER_*) and never reaches a worker")
            }
            var names = worker.spec.inherit ?? EnvironmentPolicy.inherited
            if !names.contains(n) { names.append(n) }
            worker.spec.inherit = names
        }
        for text in limits {
            guard let l = ResourceLimit(parsing: text) else {
                throw error(
                    "--limit",
                    "\"\(text)\": expected RESOURCE=SOFT or RESOURCE=SOFT:HARD, RESOURCE one of \(ResourceLimit.Resource.allCases.map(\.rawValue).joined(separator: ", ")), a number or \"infinity\""
                )
            }
            worker.spec.limits.removeAll { $0.resource == l.resource }
            worker.spec.limits.append(l)
        }
        for text in gates {
            switch GateConfig.parse(text) {
            case .failure(let e): throw error("--gate", e.message)
            case .success(let g):
                worker.gates.removeAll { $0.kind == g.kind }
                worker.gates.append(g)
            }
        }
        for text in gateModes {
            switch GateConfig.parseMode(text) {
            case .failure(let e): throw error("--gate-mode", e.message)
            case .success(let (kind, mode)):
                guard let i = worker.gates.firstIndex(where: { $0.kind == kind }) else {
                    throw error("--gate-mode", "\(kind.rawValue) has no gate; give it one with --gate \(kind.rawValue)=SURFACE")
                }
                worker.gates[i].mode = mode
            }
        }
        worker.gates.sort()
        if let e = GateConfig.check(worker.gates, mainSurface: worker.surface, network: worker.spec.network) {
            throw error("--gate", e.message)
        }
    }
}
