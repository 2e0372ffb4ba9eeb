import Foundation

/// How a supervisor reaches its authority.
public struct AuthoritySettings: Sendable, Equatable {
    /// The authority's URLs: replicas of one deployment, tried in this order when one fails.
    /// Empty: the embedded default (the local authority in the state directory).
    public var urls: [String] = []
    /// The first of `urls`.
    public var url: String? { urls.first }
    public var keyFile: String?
    /// Base64 Ed25519 public key, or a file holding it: every decision must be signed by it.
    public var publicKey: String?
    /// How long an allow is good from an authority that sends no lease (MachineID).
    public var failClosedAfter: Duration = .seconds(15)
    /// How often to validate while the watch stream is down (or with `watch = false`).
    public var pollInterval: Duration = .seconds(1)
    /// Use the watch stream (push); false polls only.
    public var watch = true
    /// Register the surface before the first validate (MachineID's flow; never un-revokes).
    public var register = true
    /// This supervisor's name in the authority's watcher list and reports (default: host name).
    public var instance: String?
    /// Accept an authority off this host over plain HTTP or without a pinned public key. Off:
    /// a network attacker who can answer for such an authority lets every worker run.
    public var insecureUnpinned = false

    public init() {}
}

/// The `[supervisor]` table of `tether supervise`.
public struct SupervisorSettings: Sendable, Equatable {
    /// HOST:PORT of the Prometheus endpoint; nil serves none.
    public var metrics: String?
    /// SIGTERM: how long the workers have, in order, before everything left is killed.
    public var shutdownTimeout: Duration = .seconds(30)
    /// Run workers in the supervisor's own namespaces when theirs cannot be made (no user
    /// namespaces for an unprivileged supervisor, say) instead of refusing to start them.
    /// A worker there can signal its supervisor and read what its uid may: every log line says so.
    public var acceptWeakContainment = false

    public init() {}
}

/// One worker: what to run, as which surface, and what to do when it is denied.
public struct WorkerConfig: Sendable, Equatable {
    public var name: String
    public var surface: String
    public var spec: WorkerSpec
    /// A built-in profile name or a path to a Docker/OCI JSON profile.
    public var profile: String
    public var stop: StopPolicy
    public var restart: RestartPolicy
    /// Gates held to surfaces of their own (`docs/gates.md`), at most one per kind.
    public var gates: [GateConfig] = []
    /// Where it was written, for messages.
    public var line: Int?

    public init(
        name: String, surface: String? = nil, spec: WorkerSpec, profile: String = "default",
        stop: StopPolicy = StopPolicy(), restart: RestartPolicy = RestartPolicy(), line: Int? = nil
    ) {
        self.name = name
        self.surface = surface ?? name
        self.spec = spec
        self.profile = profile
        self.stop = stop
        self.restart = restart
        self.line = line
    }
}

/// A configuration file: `[authority]`, `[supervisor]` and `[[worker]]` tables.
public struct ConfigFile: Sendable, Equatable {
    public var path: String
    public var authority = AuthoritySettings()
    public var supervisor = SupervisorSettings()
    public var workers: [WorkerConfig] = []

    public init(path: String) { self.path = path }
}

/// A configuration that cannot be used, with where.
public struct ConfigError: Error, Sendable, Equatable, CustomStringConvertible {
    public var file: String
    public var line: Int?
    public var message: String

    public init(file: String, line: Int?, message: String) {
        self.file = file
        self.line = line
        self.message = message
    }

    public var description: String { "\(file)\(line.map { ":\($0)" } ?? ""): \(message)" }
}
