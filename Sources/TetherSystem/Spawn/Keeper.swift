import CSeccomp
import Foundation
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
        /// The program it is exec'd from: the tether-init program, or this binary.
        var executable: Int32
    }

    private let state: Mutex<State>
    private let openKillFile: @Sendable () -> Int32
    private let timeout: Duration
    private let logger: Logger

    /// Starts the keeper and the heartbeat. `openKillFile` opens the `cgroup.kill` of the
    /// supervisor's cgroup directory (or returns -1); the keeper keeps its own copy.
    /// `executable`: the program to exec as the keeper (tests give another).
    static func start(
        openKillFile: @escaping @Sendable () -> Int32, heartbeatTimeout: Duration, logger: Logger,
        executable: Int32 = ContainmentFDs.executable
    ) throws(SystemError) -> Keeper {
        let (pid, fd, echo, used) = try exec(executable, openKillFile, timeout: heartbeatTimeout, logger: logger)
        let k = Keeper(
            state: State(pid: pid, fd: fd, echoFD: echo, executable: used), openKillFile: openKillFile, timeout: heartbeatTimeout,
            logger: logger)
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

    /// Execs the keeper and waits for its first byte, which says it runs: a worker never starts
    /// before its keeper does. A program that exits instead (a tether-init older than this
    /// binary, left beside it, takes "tether-keeper" for a usage error) is not a keeper: then
    /// this binary is, which always is. Returns the program that ran.
    private static func exec(
        _ executable: Int32, _ openKillFile: @Sendable () -> Int32, timeout: Duration,
        logger: Logger
    ) throws(SystemError) -> (pid_t, Int32, Int32, Int32) {
        let killFile = openKillFile()
        defer { if killFile >= 0 { close(killFile) } }
        let ms = Int32(clamping: timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000)
        var program = executable
        while true {
            var pid: pid_t = 0
            var fd: Int32 = -1
            var echo: Int32 = -1
            let rc = tether_keeper_start(program, killFile, ms, &pid, &fd, &echo)
            if rc != 0 { throw SystemError("exec (keeper)", .init(rawValue: -rc)) }
            if tether_keeper_await_ready(echo, max(ms, 1000)) == 0 { return (pid, fd, echo, program) }
            kill(pid, SIGKILL)
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
            close(fd)
            close(echo)
            guard program != ContainmentFDs.selfExecutable else {
                throw SystemError("exec (keeper): it did not start", .init(rawValue: ECHILD))
            }
            logger.error(
                "\(ContainmentFDs.path(of: program)) is not a keeper (older than this tether?): running this binary as the keeper instead")
            program = ContainmentFDs.selfExecutable
        }
    }

    /// One heartbeat every 2 s, from a thread of its own: a beat costs that thread one wakeup,
    /// not a timer of the async runtime (a dispatch timer, its manager thread and a pool thread:
    /// about six context switches each time). The thread beats only while the async runtime
    /// runs tasks: every `probeEvery` it hands the runtime a probe, and a probe not run within
    /// the timeout stops the beats, so a supervisor whose runtime hung is killed by the keeper
    /// too (within `probeEvery` + 2 × timeout; a stopped supervisor within the timeout). Each
    /// beat also looks at the keeper's echo.
    static let beatEvery: Duration = .seconds(2)
    static let probeEvery: Duration = .seconds(10)

    private func heartbeat() {
        let probe = RuntimeProbe()
        let thread = Thread { [self] in
            tether_set_thread_name("tether-beat")
            var next = ContinuousClock.now
            var lastProbe = next
            var silenced = false
            // The first beat at once: the keeper's timeout runs only once beats have started.
            while true {
                let now = ContinuousClock.now
                if now > next + Self.beatEvery { next = now }  // after a suspend or a stop: no catch-up burst
                if now - lastProbe >= Self.probeEvery, probe.answered {
                    lastProbe = now
                    probe.send()
                }
                let hung = probe.pending(longerThan: timeout)
                if hung != silenced {
                    silenced = hung
                    if hung {
                        logger.critical(
                            "the async runtime has not run a task for \(timeout): no more heartbeats; the keeper will kill every worker")
                    } else {
                        logger.notice("the async runtime runs tasks again: heartbeats resume")
                    }
                }
                let (silentKeeper, pid) = state.withLock { s -> (Bool, pid_t) in
                    var byte: UInt8 = 0
                    var echoed = false
                    while read(s.echoFD, &byte, 1) == 1 { echoed = true }
                    if echoed { s.lastEcho = now }
                    if !hung { Self.send(0, to: s.fd) }
                    return (now - s.lastEcho > timeout, s.pid)
                }
                if silentKeeper {
                    logger.error("the keeper (pid \(pid)) has not echoed the heartbeat for \(timeout): stopped or hung; replacing it")
                    _ = kill(pid, SIGKILL)
                    state.withLock { $0.lastEcho = .now }
                }
                next += Self.beatEvery
                Self.sleep(until: next)
            }
        }
        thread.name = "tether-heartbeat"
        thread.start()
    }

    private static func sleep(until deadline: ContinuousClock.Instant) {
        while true {
            let left = deadline - ContinuousClock.now
            guard left > .zero else { return }
            var ts = timespec(tv_sec: Int(left.components.seconds), tv_nsec: Int(left.components.attoseconds / 1_000_000_000))
            // EINTR: a signal arrived; sleep what is left.
            if nanosleep(&ts, nil) == 0 { return }
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

    /// Waits for the keeper to die; replaces it at once, however soon it died: a pause would be
    /// a window in which something that can kill the keeper (a worker of the supervisor's own
    /// uid, under weak containment) could kill the supervisor too and leave workers behind.
    /// There is no spinning on a program that is no keeper: `exec` checks its first byte.
    private func superviseLoop(_ pid: pid_t) {
        guard let exit = ExitMonitor.shared.monitor(pid: pid) else { return }
        Task.detached { [self] in
            let status = await exit.status
            logger.error(
                "the keeper (pid \(pid)) died, \(status): starting a new one; until it runs, a SIGKILLed supervisor would leave workers behind"
            )
            let executable = state.withLock { $0.executable }
            do {
                let (newPID, newFD, newEcho, used) = try Self.exec(executable, openKillFile, timeout: timeout, logger: logger)
                let (oldFD, oldEcho) = state.withLock { s -> (Int32, Int32) in
                    let old = (s.fd, s.echoFD)
                    s.pid = newPID
                    s.fd = newFD
                    s.echoFD = newEcho
                    s.lastEcho = .now
                    s.executable = used
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

/// A task handed to the async runtime to see that it still runs tasks.
private final class RuntimeProbe: Sendable {
    private struct State {
        var sent: ContinuousClock.Instant?
        var answered = true
    }
    private let state = Mutex(State())

    var answered: Bool { state.withLock { $0.answered } }

    func send() {
        state.withLock { $0 = State(sent: .now, answered: false) }
        Task.detached { [self] in state.withLock { $0.answered = true } }
    }

    func pending(longerThan limit: Duration) -> Bool {
        state.withLock { s in !s.answered && s.sent.map { ContinuousClock.now - $0 > limit } == true }
    }
}
