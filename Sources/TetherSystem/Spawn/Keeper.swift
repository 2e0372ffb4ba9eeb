import CSeccomp
import Glibc
import Logging
import Synchronization

/// The supervisor's dead man's switch (see `keeper.c`): when the supervisor dies, by SIGKILL
/// or otherwise, or stops sending its heartbeat (stopped, or its async runtime hung), the
/// keeper kills every worker cgroup and every worker process group it knows.
///
/// The keeper is itself watched: if it dies (someone SIGKILLs it), the supervisor says so and
/// starts a new one, and tells it every group the old one knew; if it stops echoing the
/// heartbeat (stopped, hung) the supervisor SIGKILLs it, which starts a new one the same way.
final class Keeper: Sendable {
    private struct State {
        var pid: pid_t
        var fd: Int32
        var echoFD: Int32
        var groups: Set<pid_t> = []
        var lastEcho = ContinuousClock.now
    }

    private let state: Mutex<State>
    private let openKillFile: @Sendable () -> Int32
    private let timeout: Duration
    private let logger: Logger

    /// Starts the keeper and the heartbeat. `openKillFile` opens the `cgroup.kill` of the
    /// supervisor's cgroup directory (or returns -1); the keeper keeps its own copy.
    static func start(openKillFile: @escaping @Sendable () -> Int32, heartbeatTimeout: Duration, logger: Logger) throws(SystemError) -> Keeper {
        let (pid, fd, echo) = try fork(openKillFile, timeout: heartbeatTimeout)
        let k = Keeper(state: State(pid: pid, fd: fd, echoFD: echo), openKillFile: openKillFile, timeout: heartbeatTimeout, logger: logger)
        k.superviseLoop(pid)
        k.heartbeat()
        return k
    }

    private init(state: State, openKillFile: @escaping @Sendable () -> Int32, timeout: Duration, logger: Logger) {
        self.state = Mutex(state)
        self.openKillFile = openKillFile
        self.timeout = timeout
        self.logger = logger
    }

    private static func fork(_ openKillFile: @Sendable () -> Int32, timeout: Duration) throws(SystemError) -> (pid_t, Int32, Int32) {
        let killFile = openKillFile()
        defer { if killFile >= 0 { close(killFile) } }
        var pid: pid_t = 0
        var fd: Int32 = -1
        var echo: Int32 = -1
        let ms = Int32(clamping: timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000)
        let rc = tether_keeper_start(killFile, ms, &pid, &fd, &echo)
        if rc != 0 { throw SystemError("fork (keeper)", .init(rawValue: -rc)) }
        return (pid, fd, echo)
    }

    /// Every 500 ms, from a task of the cooperative pool — so a supervisor whose runtime no
    /// longer runs tasks sends none — a heartbeat to the keeper, and a look at its echo.
    private func heartbeat() {
        let interval = Duration.milliseconds(500)
        Task.detached { [self] in
            while true {
                let (silentKeeper, pid) = state.withLock { s -> (Bool, pid_t) in
                    var byte: UInt8 = 0
                    var echoed = false
                    while read(s.echoFD, &byte, 1) == 1 { echoed = true }
                    let now = ContinuousClock.now
                    if echoed { s.lastEcho = now }
                    Self.send(0, to: s.fd)
                    return (now - s.lastEcho > timeout, s.pid)
                }
                if silentKeeper {
                    logger.error("the keeper (pid \(pid)) has not echoed the heartbeat for \(timeout): stopped or hung; replacing it")
                    _ = kill(pid, SIGKILL)
                    state.withLock { $0.lastEcho = .now }
                }
                try? await Task.sleep(for: interval)
            }
        }
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
                let (newPID, newFD, newEcho) = try Self.fork(openKillFile, timeout: timeout)
                let (oldFD, oldEcho) = state.withLock { s -> (Int32, Int32) in
                    let old = (s.fd, s.echoFD)
                    s.pid = newPID
                    s.fd = newFD
                    s.echoFD = newEcho
                    s.lastEcho = .now
                    for g in s.groups { Self.send(g, to: newFD) }
                    return old
                }
                close(oldFD)
                close(oldEcho)
                superviseLoop(newPID)
            } catch {
                logger.critical("could not start a new keeper: workers may outlive a SIGKILLed supervisor", metadata: ["error": "\(error)"])
            }
        }
    }
}
