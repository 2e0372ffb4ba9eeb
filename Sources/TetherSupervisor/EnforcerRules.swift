import Glibc
import TetherClient
import TetherCore

/// The enforcer's rules, without a kernel or a clock: what to do about each event, and where
/// each step's outcome — as the kernel confirmed it — leads. `Enforcer` carries the steps out
/// (freeze, thaw, kill, SIGTERM and a grace period) and feeds their outcomes back; the rules
/// decide. Tested as values (`TetherSupervisorTests`).
public struct EnforcerRules: Sendable {
    /// What the driver does next.
    public enum Step: Sendable, Equatable {
        case none
        /// Freeze the whole tree and confirm it from the kernel (on a deny, under `stop`).
        case freeze(Verdict)
        case thaw(Verdict)
        /// Kill the whole tree (for a verdict, or nil: a signal, kill_after, a shutdown).
        case kill(Verdict?)
        /// Thaw, SIGTERM the group, wait up to `grace` for it to go.
        case terminate(grace: Duration, Verdict?)
        /// Pass a signal on to the worker's process group.
        case signal(Int32)
        /// Send `.killAfter(epoch:)` after `after` (a frozen worker's kill_after).
        case scheduleKill(after: Duration, epoch: Int)
        /// Answer the watchdog.
        case liveness
        /// Report the state the worker is already in as the acknowledgement of a new change that
        /// needs no step (a restore of a running worker, a halt of a frozen one): `--wait` counts
        /// it, and the authority counts the changes it overtook as superseded.
        case acknowledge(Verdict, ReportState)
    }

    /// How a step ended, as the kernel confirmed it.
    public enum Outcome: Sendable, Equatable {
        case frozen
        /// The kernel did not confirm the freeze.
        case freezeFailed
        case thawed
        case thawFailed
        /// Killed (`confirmed`: the kernel says the tree is gone).
        case killed(confirmed: Bool)
        /// Gone within the grace period of a SIGTERM.
        case endedOnTerm
        /// Still there when the grace period ended.
        case outlivedGrace
    }

    public let policy: StopPolicy
    public private(set) var phase: WorkerPhase = .running
    /// The last verdict received (a kill from a signal or kill_after names it).
    public private(set) var last: Verdict?
    /// Set when the worker was ended because its surface was denied.
    public private(set) var killedBy: Verdict?
    /// Bumped by every freeze and every confirmed thaw: a kill_after scheduled before them is
    /// stale (one scheduled before a thaw the kernel did not confirm still fires).
    public private(set) var epoch = 0
    /// The verdict the step in progress is for.
    private var current: Verdict?

    public init(policy: StopPolicy) { self.policy = policy }

    /// The first step for an event.
    public mutating func on(_ event: Enforcer.Event) -> Step {
        switch event {
        case .verdict(let v, _):
            // A change the worker has not yet been told of (not the one it started on, not one
            // said again by a reconnecting stream).
            let newChange = last != nil && v.requestID != nil && v.requestID != last?.requestID
            last = v
            if v.allowed {
                if phase == .frozen { return begin(.thaw(v), for: v) }
                return newChange && phase == .running ? .acknowledge(v, .running) : .none
            }
            guard phase == .running else {  // frozen already, or ending
                return newChange && phase == .frozen ? .acknowledge(v, .stopped) : .none
            }
            switch policy.onRevoke {
            case .stop: return begin(.freeze(v), for: v)
            case .kill: return begin(.kill(v), for: v)
            case .term: return begin(.terminate(grace: policy.grace, v), for: v)
            }
        case .signal(let sig):
            // A frozen worker cannot act on SIGTERM, and thawing a denied worker is not ours to
            // do: a request to end it ends it.
            if phase == .frozen && [SIGTERM, SIGINT, SIGQUIT, SIGHUP].contains(sig) { return begin(.kill(last), for: last) }
            return .signal(sig)
        case .shutdown(let grace):
            guard phase != .killed else { return .none }
            return begin(.terminate(grace: grace, nil), for: nil)
        case .killAfter(let e):
            guard e == epoch, phase == .frozen else { return .none }
            return begin(.kill(last), for: last)
        case .tick:
            return .liveness
        case .exited:
            return .none
        }
    }

    /// Where a step's outcome leads: the state it confirms, and the next step.
    public mutating func after(_ outcome: Outcome) -> Step {
        switch outcome {
        case .frozen:
            phase = .frozen
            guard let after = policy.killAfter else { return .none }
            epoch += 1
            return .scheduleKill(after: after, epoch: epoch)
        case .freezeFailed:
            // Fail closed: a freeze the kernel does not confirm becomes a kill.
            return .kill(current)
        case .thawed:
            // A kill_after scheduled for the freeze is stale only once the worker runs again.
            epoch += 1
            phase = .running
            return .none
        case .thawFailed:
            // Not confirmed running: it stays held; the next allow tries again.
            return .none
        case .killed, .endedOnTerm:
            phase = .killed
            killedBy = current
            return .none
        case .outlivedGrace:
            return .kill(current)
        }
    }

    private mutating func begin(_ step: Step, for v: Verdict?) -> Step {
        current = v
        if case .terminate = step { phase = .stopping }
        return step
    }
}
