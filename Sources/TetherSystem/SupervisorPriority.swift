import CSeccomp
import Foundation
import Glibc
import Logging
import Synchronization

/// The supervisor's CPU priority over its workers'. A worker may take every core (a busy thread
/// per core, a fork loop), and so may anything else on the machine; the stop must not wait for
/// the CPU behind them. Each supervisor therefore runs 10 nice levels above the nice value it
/// was started with (CFS/EEVDF weight ×9.3: it wins a contested core at once, and still cannot
/// starve the machine the way a real-time policy could were it ever to spin), and its workers
/// start at the nice value it was started with (reset in the child, before the exec: a worker
/// is never raised, and an unprivileged worker cannot lower its own nice value to compete).
///
/// Needs CAP_SYS_NICE (a root supervisor, a unit's AmbientCapabilities); without it the
/// supervisor says so once and runs at the priority it was given.
/// `TETHER_SUPERVISOR_NICE`: a nice value (-20…19) instead of the default, or `off`.
public enum SupervisorPriority {
    public static let raiseBy: Int32 = 10

    private static let done = Atomic<Bool>(false)

    /// Once per process, before the keeper is forked (it inherits the priority).
    public static func raise(logger: Logger) {
        guard !done.exchange(true, ordering: .relaxed) else { return }
        let setting = getenv("TETHER_SUPERVISOR_NICE").map { String(cString: $0) }
        if setting == "off" { return }
        errno = 0
        let started = getpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0)
        guard errno == 0 else { return }
        let target: Int32
        if let setting {
            guard let n = Int32(setting), (-20...19).contains(n) else {
                logger.warning("TETHER_SUPERVISOR_NICE must be a nice value from -20 to 19, or off: ignored", metadata: ["value": "\(setting)"])
                return
            }
            target = n
        } else {
            target = max(-20, started - raiseBy)
        }
        guard target < started else { return }
        tether_set_worker_nice(started)
        // Linux keeps a nice value per thread: every thread there is now, and the threads made
        // later inherit it from the thread that makes them.
        var raised = 0
        var failure: Int32 = 0
        for tid in (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? [] {
            guard let t = id_t(tid) else { continue }
            if setpriority(__priority_which_t(PRIO_PROCESS.rawValue), t, target) == 0 { raised += 1 } else { failure = errno }
        }
        if raised == 0 {
            tether_set_worker_nice(Int32.min)
            logger.notice("the supervisor runs at the priority it was given: a worker that takes every core may delay a stop", metadata: [
                "nice": "\(started)", "error": "\(String(cString: strerror(failure)))", "hint": "needs CAP_SYS_NICE",
            ])
        } else {
            logger.debug("supervisor priority raised", metadata: ["nice": "\(target)", "workers_nice": "\(started)"])
        }
    }
}
