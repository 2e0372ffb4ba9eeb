import Foundation
import Glibc
import TetherCore
import TetherRuntime

/// A running worker: its first process, its process group, its cgroup, and its exit.
///
/// Group operations act on everything the kernel says belongs to the worker, and every one has
/// a verified form that reads the kernel back until the state holds (or a deadline passes).
public final class Worker: Sendable {
    public let name: String
    public let pid: pid_t
    /// The worker's own process group (its pid: the child path makes it a group leader).
    public var pgid: pid_t { pid }
    public let cgroup: Cgroup?
    public let pidfd: PidFD
    public let exit: ExitFuture
    /// In namespaces of its own (`pid` is then its init, PID 1 there), or — weak containment —
    /// in the supervisor's.
    public let contained: Bool
    /// Who it runs as ("tether-61234 (uid 61234)", "root in its own user namespace, …").
    public let identity: String
    /// The gates' server, when the worker has gates: it alone holds their listener.
    public let gates: GateServer?
    /// The stack linking its network namespace to the outside (`--net private` and
    /// `host-loopback`); nil under `none` and `host`, and without namespaces.
    public let network: WorkerNetwork?
    /// The network it got: `host` when it has no namespace of its own.
    public let networkMode: NetworkMode
    private let onReaped: @Sendable () -> Void

    init(
        name: String, pidfd: PidFD, cgroup: Cgroup?, exit: ExitFuture, contained: Bool = false, identity: String = "",
        gates: GateServer? = nil, network: WorkerNetwork? = nil, networkMode: NetworkMode = .host,
        onReaped: @escaping @Sendable () -> Void
    ) {
        self.gates = gates
        self.network = network
        self.networkMode = networkMode
        self.contained = contained
        self.identity = identity
        self.name = name
        self.pid = pidfd.pid
        self.pidfd = pidfd
        self.cgroup = cgroup
        self.exit = exit
        self.onReaped = onReaped
    }

    // MARK: - group operations

    /// Stops every process of the worker: SIGSTOP to the group and to every member found, so
    /// `/proc` shows them in state `T`; then `cgroup.freeze`, which also holds anything that
    /// left the group. A stopped process keeps its memory and descriptors: `thaw` resumes it.
    public func freeze() {
        signalAll(SIGSTOP)
        cgroup?.freeze()
    }

    /// Resumes a frozen worker: SIGCONT first (it also discards a pending stop), then unfreeze.
    public func thaw() {
        signalAll(SIGCONT)
        cgroup?.thaw()
    }

    /// Kills every process of the worker: `cgroup.kill`, and SIGKILL to the group and to every
    /// member found (the only means without a cgroup).
    public func kill() {
        cgroup?.kill()
        signalAll(SIGKILL)
        ExitMonitor.shared.requestSweep()
    }

    /// Sends `sig` to the worker's process group (what a terminal would do): SIGTERM, SIGINT,
    /// SIGHUP, SIGWINCH forwarded by the supervisor.
    public func signalGroup(_ sig: Int32) {
        _ = Glibc.kill(-pgid, sig)
    }

    /// The group at once, then every member outside it (its own session): with a cgroup, each
    /// of the cgroup's processes (a kill(2) each, no read of their state); without, the members a
    /// scan of /proc finds.
    private func signalAll(_ sig: Int32) {
        _ = Glibc.kill(-pgid, sig)
        if let cgroup, contained {
            for p in cgroup.pids() { _ = Glibc.kill(p, sig) }
        } else {
            for p in state().live where p.pgid != pgid { _ = Glibc.kill(p.pid, sig) }
        }
    }

    // MARK: - the kernel's view

    /// Reads `/proc` and `cgroup.events` now.
    ///
    /// Contained (its own namespaces, a cgroup namespace among them), its cgroup's processes are
    /// the worker's: a fork stays in its parent's cgroup, and the worker cannot leave its own, the
    /// root of all it sees. So only theirs are read — a few files per member, not a scan of
    /// every process on the host: a stop's verification runs several of these, and one
    /// `tether supervise` may hold 1,000 workers. Weakly contained, a worker in a delegated
    /// subtree could move itself to another cgroup: then the process group and every descendant
    /// of the leader are found by a scan, with the cgroup's pids.
    public func state() -> GroupState {
        guard let cgroup, contained else {
            return GroupState(
                members: ProcessTable.members(leader: pid, group: pgid, cgroupPids: cgroup?.pids() ?? []), cgroup: cgroup?.events())
        }
        var ids = cgroup.pids()
        ids.insert(pid)
        return GroupState(members: ids.sorted().compactMap(ProcessTable.stat), cgroup: cgroup.events())
    }

    /// Polls the kernel until `condition` holds or `timeout` passes; returns the last reading.
    public func waitForState(
        timeout: Duration = .seconds(5), _ condition: (GroupState) -> Bool
    ) async -> GroupState {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        var delay = Duration.microseconds(200)
        while true {
            let s = state()
            if condition(s) || clock.now >= deadline { return s }
            try? await Sleep.for(delay)
            delay = min(delay * 2, .milliseconds(20))
        }
    }

    /// Freezes and confirms from the kernel. Returns the verified state, or throws with what
    /// the kernel showed instead.
    @discardableResult
    public func freezeVerified(timeout: Duration = .seconds(5)) async throws(GroupStateError) -> GroupState {
        // SIGSTOP everything first and wait (briefly) until /proc shows every member in `T`,
        // stopping any that appear meanwhile (a fork in flight). Only then freeze the cgroup:
        // a task the cgroup freezer already holds never acts on a pending SIGSTOP — it would
        // show `S` in /proc, held but not visibly stopped. The freeze then holds anything that
        // could not stop (a task in an uninterruptible sleep) and anything that escaped the group.
        signalAll(SIGSTOP)
        _ = await waitForState(timeout: .milliseconds(500)) { st in
            if st.allHeld { return true }
            for p in st.live where !p.isStopped { _ = Glibc.kill(p.pid, SIGSTOP) }
            return false
        }
        cgroup?.freeze()
        let s = await waitForState(timeout: timeout) { $0.isStopped }
        guard s.isStopped else { throw GroupStateError(operation: "freeze", state: s) }
        return s
    }

    @discardableResult
    public func thawVerified(timeout: Duration = .seconds(5)) async throws(GroupStateError) -> GroupState {
        thaw()
        let s = await waitForState(timeout: timeout) { $0.isGone || $0.isRunning }
        guard s.isGone || s.isRunning else { throw GroupStateError(operation: "thaw", state: s) }
        return s
    }

    @discardableResult
    public func killVerified(timeout: Duration = .seconds(5)) async throws(GroupStateError) -> GroupState {
        kill()
        let s = await waitForState(timeout: timeout) { st in
            if !st.isGone { self.kill() }  // a member forked between the kill and the read
            return st.isGone
        }
        guard s.isGone else { throw GroupStateError(operation: "kill", state: s) }
        return s
    }

    /// Waits for the worker's first process to exit, then releases its cgroup and tells the
    /// keeper to forget the group.
    public func wait() async -> ExitStatus {
        let s = await exit.status
        onReaped()
        return s
    }
}

public struct GroupStateError: Error, Sendable, CustomStringConvertible {
    public var operation: String
    public var state: GroupState
    public var description: String { "\(operation) not confirmed by the kernel: \(state)" }
}
