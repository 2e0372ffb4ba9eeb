import CSeccomp
import Foundation
import Glibc
import Logging
import Synchronization

/// The supervisor's CPU priority over its workers'. A worker may take every core (a busy thread
/// per core, a fork loop), and so may anything else on the machine; a stop must not wait for
/// the CPU behind them.
///
/// The supervisor runs 10 nice levels above the nice value it was started with: ×9.3 the CPU
/// weight of a task at its start value, so on a contested core it is picked first, and still a
/// fair share — never a real-time policy. A real-time supervisor would be quicker still (p99 4
/// ms against 15–18 with a worker on every core), but it serves its workers (their decision
/// socket, their gates, the MCP gateway) and verifies every stop by reading /proc, and at
/// real-time priority that work starves everything else: a worker flooding its decision socket
/// would take the host's CPU through its supervisor, and in the fleet chaos test twenty-one
/// workers stopped at once could not reach `T` within the 500 ms the freeze waits, their CPU
/// taken by their own supervisors' verification.
///
/// Linux keeps a nice value per thread. Every thread there is is raised; threads made later
/// inherit it from the thread that makes them — except libdispatch's, which set their own from
/// their QoS class when they start: `priority.c` takes those values relative to the raised base.
///
/// Workers never run raised: the child resets itself to the nice value the supervisor was
/// started with (and to `SCHED_OTHER`) before the exec, and an unprivileged worker cannot lower
/// its nice value back. Needs CAP_SYS_NICE (a root supervisor; the shipped units keep it);
/// without it the supervisor says once that it runs at the priority it was given.
///
/// `TETHER_SUPERVISOR_PRIORITY`: `nice` (the default) or `off`.
public enum SupervisorPriority {
    public static let raiseBy: Int32 = 10

    private static let chosen = Atomic<Bool>(false)
    private static let done = Atomic<Bool>(false)

    /// A supervisor process (`tether run`, `supervise`, `mcp`, `profile try`) opts in: its
    /// first `Spawner` raises it. A library user — a test runner that spawns workers in
    /// process, and every process it starts after — is never raised behind its back.
    public static func choose() { chosen.store(true, ordering: .relaxed) }

    /// Once per process that chose it, before the keeper is forked (it inherits the priority).
    public static func raise(logger: Logger) {
        guard chosen.load(ordering: .relaxed), !done.exchange(true, ordering: .relaxed) else { return }
        let setting = getenv("TETHER_SUPERVISOR_PRIORITY").map { String(cString: $0) } ?? "nice"
        guard ["nice", "off"].contains(setting) else {
            logger.warning(
                "TETHER_SUPERVISOR_PRIORITY must be nice or off: ignored, the supervisor keeps the priority it was given",
                metadata: ["value": "\(setting)"])
            return
        }
        errno = 0
        let started = getpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0)
        guard errno == 0 else { return }
        // Before any thread is raised: a worker spawned meanwhile starts where it should. (Also
        // with `off`: a supervisor raised from outside, by a unit's Nice= or
        // CPUSchedulingPolicy=, still starts its workers as ordinary tasks at its start value.)
        tether_set_worker_nice(started)
        if setting == "off" { return }
        let target = max(-20, started - raiseBy)
        guard target < started else { return }
        var raised = 0
        var failure: Int32 = 0
        for tid in ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []).compactMap({ Int32($0) }) {
            if tether_setpriority_raw(Int32(PRIO_PROCESS.rawValue), tid, target) == 0 { raised += 1 } else { failure = errno }
        }
        if raised > 0 {
            tether_set_nice_offset(target - started, target)
            logger.debug("supervisor priority raised", metadata: ["nice": "\(target)", "workers_nice": "\(started)"])
        } else {
            logger.notice(
                "the supervisor runs at the priority it was given: a worker that takes every core may delay a stop by milliseconds",
                metadata: [
                    "nice": "\(started)", "error": "\(String(cString: strerror(failure)))", "hint": "needs CAP_SYS_NICE",
                ])
        }
    }
}
