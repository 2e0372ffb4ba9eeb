import CSeccomp
import Foundation
import Glibc
import Synchronization

/// The exit of one worker, awaited from any number of tasks.
public final class ExitFuture: Sendable {
    private let state = Mutex<(status: ExitStatus?, waiters: [CheckedContinuation<ExitStatus, Never>])>((nil, []))

    public var status: ExitStatus {
        get async {
            await withCheckedContinuation { c in
                let done: ExitStatus? = state.withLock {
                    if let s = $0.status { return s }
                    $0.waiters.append(c)
                    return nil
                }
                if let done { c.resume(returning: done) }
            }
        }
    }

    /// The status if the worker has exited, without waiting.
    public var current: ExitStatus? { state.withLock { $0.status } }

    func complete(_ s: ExitStatus) {
        let waiters = state.withLock { st -> [CheckedContinuation<ExitStatus, Never>] in
            st.status = s
            defer { st.waiters = [] }
            return st.waiters
        }
        for w in waiters { w.resume(returning: s) }
    }
}

/// Watches worker exits through their pidfds on one thread of its own, so no task of Swift's
/// cooperative pool ever blocks in wait. The same thread reaps orphans: with the supervisor a
/// child subreaper, a worker's daemonised descendants become our children when their parent
/// dies, and must not linger as zombies.
final class ExitMonitor: Sendable {
    static let shared = ExitMonitor()

    private struct Watched {
        let pidfd: PidFD
        let future: ExitFuture
        /// A contained worker's init reports the worker's own status here.
        var status: InitStatusPipe? = nil
    }

    private struct State {
        var watched: [Int32: Watched] = [:]  // by pidfd
        /// Process groups of workers, past and present: a zombie child of ours in one of these
        /// is a worker's orphan and ours to reap. Other children (spawned by other code in this
        /// process) are left to whoever spawned them.
        var ownedGroups: Set<pid_t> = []
        var ownedCgroupPrefixes: Set<String> = []
    }

    private let state = Mutex(State())
    private let thread = PollThread(name: "tether-exits")
    /// Held from fork until the new worker is watched, and by every orphan sweep: a worker
    /// that exits at once is a zombie child of ours for an instant before it is watched, and
    /// the sweep must not take it for an orphan.
    private let spawnGate = Mutex(())
    private let sweepRequested = Atomic<Bool>(false)
    /// Set once a worker without a PID namespace of its own has run: only such a worker's
    /// descendants can become our orphans (a contained worker's are reparented to its init),
    /// so only then does the thread also wake every 5 s to sweep. Until then it sleeps until
    /// something exits.
    private let uncontainedSeen = Atomic<Bool>(false)

    private init() {
        thread.start { [self] in
            round()
            return true
        }
    }

    /// Forks through `body` and watches the child it returns, with no sweep in between.
    func spawning<E: Error>(
        status: InitStatusPipe? = nil, _ body: () -> Result<(pid_t, Int32), E>
    ) -> Result<(PidFD, ExitFuture), E> {
        if status == nil { uncontainedSeen.store(true, ordering: .relaxed) }
        return spawnGate.withLock { _ in
            body().map { (pid, fd) in
                let pidfd = PidFD(rawValue: fd, pid: pid)
                return (pidfd, watch(pidfd, group: pid, status: status))
            }
        }
    }

    private func watch(_ pidfd: PidFD, group: pid_t, status: InitStatusPipe? = nil) -> ExitFuture {
        let future = ExitFuture()
        state.withLock {
            $0.watched[pidfd.rawValue] = Watched(pidfd: pidfd, future: future, status: status)
            $0.ownedGroups.insert(group)
            if $0.ownedGroups.count > 65536 { $0.ownedGroups.remove($0.ownedGroups.first!) }
        }
        wake()
        return future
    }

    /// Watches an existing child of ours (the keeper). Nil if it cannot be opened.
    func monitor(pid: pid_t) -> ExitFuture? {
        spawnGate.withLock { _ in
            let fd = tether_pidfd_open(pid)
            guard fd >= 0 else { return nil }
            return watch(PidFD(rawValue: fd, pid: pid), group: pid)
        }
    }

    /// Zombies in cgroups below `prefix` (a supervisor's cgroup directory) are ours to reap.
    func own(cgroupPrefix prefix: String) {
        state.withLock { _ = $0.ownedCgroupPrefixes.insert(prefix.hasSuffix("/") ? prefix : prefix + "/") }
    }

    /// Asks the monitor to look for orphans now (after a kill, say).
    func requestSweep() {
        sweepRequested.store(true, ordering: .relaxed)
        wake()
    }

    private func wake() { thread.poke() }

    /// Waits for exits (or a wake, or the sweep's timeout), collects them, sweeps orphans.
    private func round() {
        let fds = state.withLock { Array($0.watched.keys) }
        var ready = [UInt8](repeating: 0, count: fds.count)
        var woken: Int32 = 0
        // Idle, the thread wakes every 5 s only to sweep orphans that exited unseen (and
        // only when orphans can reach us at all).
        let timeout: Int32 = uncontainedSeen.load(ordering: .relaxed) ? 5000 : -1
        let n = fds.withUnsafeBufferPointer { f in
            ready.withUnsafeMutableBufferPointer { r in
                tether_pidfds_poll(f.baseAddress, f.count, thread.wake, timeout, r.baseAddress, &woken)
            }
        }
        if n > 0 {
            for (i, fd) in fds.enumerated() where ready[i] != 0 {
                var code: Int32 = 0
                var signaled: Int32 = 0
                let rc = tether_pidfd_wait(fd, &code, &signaled)
                if rc == -EINTR || rc == -EAGAIN { continue }
                let w = state.withLock { $0.watched.removeValue(forKey: fd) }
                // ECHILD: something else in this process reaped it. The status is lost, but
                // the worker is gone, and the descriptor must leave the poll set.
                let own: ExitStatus = rc != 0 ? .lost : signaled != 0 ? .signaled(code) : .exited(code)
                // An init that exited on its own says how the worker ended; one that was
                // killed (a stop, the keeper) took the worker with it: its own status.
                w?.future.complete((signaled == 0 ? w?.status?.read() : nil) ?? own)
            }
        }
        // Orphans appear when something of a worker exits: sweep after exits, after an
        // explicit wake (a kill), and every 5 s; not when a new worker is merely registered.
        let timedOut = n == 0 && woken == 0
        if n > 0 || timedOut || sweepRequested.exchange(false, ordering: .relaxed) {
            reapOrphans()
        }
    }

    private func reapOrphans() {
        spawnGate.withLock { _ in reapOrphansLocked() }
    }

    private func reapOrphansLocked() {
        let me = getpid()
        let (tracked, groups, prefixes) = state.withLock { s in
            (Set(s.watched.values.map(\.pidfd.pid)), s.ownedGroups, s.ownedCgroupPrefixes)
        }
        for p in ProcessTable.children(of: me) where p.state == "Z" && !tracked.contains(p.pid) {
            var owned = groups.contains(p.pgid)
            if !owned, !prefixes.isEmpty, let cg = ProcessTable.cgroupPath(of: p.pid) {
                owned = prefixes.contains { cg.hasPrefix($0) }
            }
            if owned { _ = waitpid(p.pid, nil, WNOHANG) }
        }
    }
}
