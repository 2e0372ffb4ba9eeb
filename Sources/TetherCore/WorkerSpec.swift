/// What to launch and how to contain it: the part of a worker's configuration that does not
/// depend on the authority.
public struct WorkerSpec: Sendable, Equatable {
    /// Program and arguments. The program is looked up in `PATH` when it has no slash.
    public var command: [String]
    /// Variables set for the worker on top of the inherited, scrubbed environment.
    public var environment: [String: String]
    /// `nil`: the worker gets the variables in `EnvironmentPolicy.inherited` from the
    /// supervisor. Otherwise exactly these names are inherited.
    public var inherit: [String]?
    public var workingDirectory: String?
    /// A user name or numeric uid to drop to; supplementary groups are cleared.
    public var user: String?
    public var group: String?
    public var limits: [ResourceLimit]
    /// The worker's network: a namespace of its own by default (`NetworkMode`).
    public var network: NetworkMode = .private
    /// A coding agent whose pre-tool hook is pinned in the worker's /etc (`--agent`).
    public var agent: AgentPin?

    /// `user = "root"` (or `0`): root in a user namespace of its own, never the host's root.
    public var runsAsRoot: Bool { user == "root" || user == "0" }

    public init(
        command: [String],
        environment: [String: String] = [:],
        inherit: [String]? = nil,
        workingDirectory: String? = nil,
        user: String? = nil,
        group: String? = nil,
        limits: [ResourceLimit] = []
    ) {
        self.command = command
        self.environment = environment
        self.inherit = inherit
        self.workingDirectory = workingDirectory
        self.user = user
        self.group = group
        self.limits = limits
    }
}

public struct ResourceLimit: Sendable, Equatable {
    public enum Resource: String, Sendable, CaseIterable {
        case nofile, nproc, core, cpu, fsize, `as`, data, stack, memlock
    }
    public var resource: Resource
    public var soft: UInt64
    public var hard: UInt64

    public init(_ resource: Resource, soft: UInt64, hard: UInt64) {
        self.resource = resource
        self.soft = soft
        self.hard = hard
    }

    public static let unlimited = UInt64.max

    /// Parses `nofile=1024`, `nproc=64:128`, `core=0`, `as=infinity`.
    public init?(parsing text: String) {
        let kv = text.split(separator: "=", maxSplits: 1).map(String.init)
        guard kv.count == 2, let r = Resource(rawValue: kv[0].lowercased()) else { return nil }
        let parts = kv[1].split(separator: ":", maxSplits: 1).map(String.init)
        func value(_ s: String) -> UInt64? { s == "infinity" || s == "unlimited" ? .max : UInt64(s) }
        guard let soft = value(parts[0]), let hard = parts.count == 2 ? value(parts[1]) : soft, soft <= hard else { return nil }
        self.init(r, soft: soft, hard: hard)
    }
}

/// Which of the supervisor's variables a worker may see. The supervisor's own secrets
/// (`TETHER_*`: key files, authority URLs) never reach a worker, whatever is configured.
public enum EnvironmentPolicy {
    /// The default names. The invoking user's session — `DBUS_SESSION_BUS_ADDRESS`,
    /// `SSH_AUTH_SOCK`, `GPG_AGENT_INFO`, `XDG_RUNTIME_DIR`, `DISPLAY`, `WAYLAND_DISPLAY` — is
    /// never among them: a worker gets one only when it is named (`--pass-env`, `inherit_env`).
    public static let inherited = [
        "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TERM", "TZ", "TMPDIR",
        "COLORTERM", "NO_COLOR",
    ]

    public static func isSupervisorSecret(_ name: String) -> Bool {
        name.hasPrefix("TETHER_") && !workerVariables.contains(name)
    }

    /// `TETHER_*` variables that are the worker's own: the path of its decision socket.
    public static let workerVariables: Set<String> = ["TETHER_DECISION_SOCKET"]

    /// The worker's environment: inherited names (plus `LC_*`), then the spec's variables.
    public static func workerEnvironment(
        supervisor: [String: String], spec: WorkerSpec
    ) -> [String: String] {
        let names = Set(spec.inherit ?? inherited)
        var env: [String: String] = [:]
        for (k, v) in supervisor where names.contains(k) || (spec.inherit == nil && k.hasPrefix("LC_")) {
            env[k] = v
        }
        for (k, v) in spec.environment { env[k] = v }
        return env.filter { !isSupervisorSecret($0.key) }
    }
}
