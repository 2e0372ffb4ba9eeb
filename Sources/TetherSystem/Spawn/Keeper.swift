import CSeccomp
import Glibc
import Logging
import Synchronization

/// The supervisor's dead man's switch (see `keeper.c`): when the supervisor dies, by SIGKILL
/// or otherwise, the keeper kills every worker cgroup and every worker process group it knows.
///
/// The keeper is itself watched: if it dies (someone SIGKILLs it), the supervisor says so and
/// starts a new one, and tells it every group the old one knew.
final class Keeper: Sendable {
    private struct State {
        var pid: pid_t
        var fd: Int32
        var groups: Set<pid_t> = []
    }

    private let state: Mutex<State>
    private let openKillFile: @Sendable () -> Int32
    private let logger: Logger

    /// Starts the keeper. `openKillFile` opens the `cgroup.kill` of the supervisor's cgroup
    /// directory (or returns -1); the keeper keeps its own copy.
    static func start(openKillFile: @escaping @Sendable () -> Int32, logger: Logger) throws(SystemError) -> Keeper {
        let (pid, fd) = try fork(openKillFile)
        let k = Keeper(state: State(pid: pid, fd: fd), openKillFile: openKillFile, logger: logger)
        k.superviseLoop(pid)
        return k
    }

    private init(state: State, openKillFile: @escaping @Sendable () -> Int32, logger: Logger) {
        self.state = Mutex(state)
        self.openKillFile = openKillFile
        self.logger = logger
    }

    private static func fork(_ openKillFile: @Sendable () -> Int32) throws(SystemError) -> (pid_t, Int32) {
        let killFile = openKillFile()
        defer { if killFile >= 0 { close(killFile) } }
        var pid: pid_t = 0
        var fd: Int32 = -1
        let rc = tether_keeper_start(killFile, &pid, &fd)
        if rc != 0 { throw SystemError("fork (keeper)", .init(rawValue: -rc)) }
        return (pid, fd)
    }

    var pid: pid_t { state.withLock { $0.pid } }

    func watch(group: pid_t) {
        state.withLock {
            $0.groups.insert(group)
            Self.send(group, to: $0.fd)
        }
    }

    func forget(group: pid_t) {
        state.withLock {
            $0.groups.remove(group)
            Self.send(-group, to: $0.fd)
        }
    }

    private static func send(_ value: Int32, to fd: Int32) {
        var v = value
        // 4 bytes on a pipe are written atomically. EPIPE (the keeper is gone) is not fatal:
        // SIGPIPE is ignored by the supervisor, and a new keeper is on its way.
        _ = withUnsafeBytes(of: &v) { write(fd, $0.baseAddress, 4) }
    }

    /// Waits for the keeper to die; replaces it.
    private func superviseLoop(_ pid: pid_t) {
        guard let exit = ExitMonitor.shared.monitor(pid: pid) else { return }
        Task.detached { [self] in
            let status = await exit.status
            logger.error("the keeper (pid \(pid)) died, \(status): starting a new one; until it runs, a SIGKILLed supervisor would leave workers behind")
            do {
                let (newPID, newFD) = try Self.fork(openKillFile)
                let oldFD = state.withLock { s -> Int32 in
                    let old = s.fd
                    s.pid = newPID
                    s.fd = newFD
                    for g in s.groups { Self.send(g, to: newFD) }
                    return old
                }
                close(oldFD)
                superviseLoop(newPID)
            } catch {
                logger.critical("could not start a new keeper: workers may outlive a SIGKILLed supervisor", metadata: ["error": "\(error)"])
            }
        }
    }
}
