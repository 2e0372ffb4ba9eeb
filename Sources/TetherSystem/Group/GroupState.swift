/// What the kernel says about a worker's processes at one instant.
public struct GroupState: Sendable, Equatable, CustomStringConvertible {
    /// Every process of the worker (group, descendants, cgroup), zombies included.
    public var members: [ProcessInfo]
    /// `cgroup.events`, when the worker has a cgroup.
    public var cgroup: Cgroup.Events?

    public init(members: [ProcessInfo], cgroup: Cgroup.Events? = nil) {
        self.members = members
        self.cgroup = cgroup
    }

    public var live: [ProcessInfo] { members.filter { !$0.isDead } }

    /// No process of the worker can run: the cgroup reports the freeze complete, or (without a
    /// cgroup) every live member is stopped.
    public var isStopped: Bool {
        if let cg = cgroup { return cg.frozen || !cg.populated }
        return live.allSatisfy(\.isStopped)
    }

    /// Every live member is stopped (`T`), or is a parent waiting uninterruptibly (`D`) on a
    /// stopped child — vfork: the parent cannot run until its child execs, and a child
    /// stopped before exec never does (dash runs every command this way).
    public var allHeld: Bool {
        let live = self.live
        return live.allSatisfy { p in
            p.isStopped || (p.state == "D" && live.contains { $0.ppid == p.pid && $0.isStopped })
        }
    }

    /// Nothing of the worker is left alive.
    public var isGone: Bool {
        live.isEmpty && (cgroup.map { !$0.populated } ?? true)
    }

    /// Every live member is running or sleeping, and the cgroup is not frozen.
    public var isRunning: Bool {
        !live.isEmpty && live.allSatisfy { !$0.isStopped } && !(cgroup?.frozen ?? false)
    }

    public var description: String {
        let procs = members.map { "\($0.pid):\($0.state)" }.joined(separator: " ")
        let cg = cgroup.map { " cgroup populated=\($0.populated ? 1 : 0) frozen=\($0.frozen ? 1 : 0)" } ?? ""
        return "[\(procs)]\(cg)"
    }
}
