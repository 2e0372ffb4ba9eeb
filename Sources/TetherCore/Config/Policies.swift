/// What a supervisor does to a worker whose surface is denied.
public enum OnRevoke: String, Sendable, CaseIterable {
    /// Freeze the whole tree (SIGSTOP + cgroup.freeze); thaw it when the surface is restored.
    case stop
    /// Kill the whole tree (cgroup.kill + SIGKILL).
    case kill
    /// SIGCONT + SIGTERM to the group, then kill what is left after `grace`.
    case term
}

public struct StopPolicy: Sendable, Equatable {
    public var onRevoke: OnRevoke
    /// Under `stop`: kill a worker that stays frozen this long.
    public var killAfter: Duration?
    /// Under `term` (and at shutdown): how long SIGTERM has before SIGKILL.
    public var grace: Duration

    public init(onRevoke: OnRevoke = .stop, killAfter: Duration? = nil, grace: Duration = .seconds(10)) {
        self.onRevoke = onRevoke
        self.killAfter = killAfter
        self.grace = grace
    }
}

/// When `tether supervise` starts a worker again after it exited. Never while its surface is
/// denied: a revoked worker waits for the restore.
public struct RestartPolicy: Sendable, Equatable {
    public enum Mode: String, Sendable, CaseIterable {
        case no
        case onFailure = "on-failure"
        case always
    }

    public var mode: Mode
    /// The first delay; doubled after each exit that came sooner than `maxDelay` after its start.
    public var delay: Duration
    public var maxDelay: Duration

    public init(mode: Mode = .no, delay: Duration = .seconds(1), maxDelay: Duration = .seconds(60)) {
        self.mode = mode
        self.delay = delay
        self.maxDelay = maxDelay
    }

    /// Whether an exit with this shell-style code (128+N for signal N) calls for a restart.
    public func restarts(afterCode code: Int32) -> Bool {
        switch mode {
        case .no: return false
        case .always: return true
        case .onFailure: return code != 0
        }
    }
}
