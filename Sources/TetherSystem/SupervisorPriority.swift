import CSeccomp
import Foundation
import Glibc
import Logging
import Synchronization

/// The supervisor's CPU priority over its workers'. A worker may take every core (a busy thread
/// per core, a fork loop), and so may anything else on the machine; a stop must not wait for the
/// CPU behind them.
///
/// Each supervisor thread runs under `SCHED_RR` at priority 1, the lowest real-time priority: it
/// runs as soon as it is runnable, ahead of every ordinary (`SCHED_OTHER`) task, and behind any
/// real real-time work (priority 2 and up). A nice value is not enough here: Linux keeps one per
/// thread, and libdispatch sets its own on every worker thread it starts (from the task's QoS),
/// so the async runtime's threads would drop back to 0 within seconds; a scheduling policy is
/// inherited by every thread made later and left alone by libdispatch. The supervisor does little
/// and blocks at once (a revoke is a few system calls), and the kernel's real-time throttling
/// (`kernel.sched_rt_runtime_us`, 95 % by default) bounds what a fault could take.
///
/// Workers never run so: the child resets its policy and nice value (to the supervisor's own at
/// start) before the exec, and an unprivileged worker cannot take real-time or a lower nice
/// value back. Needs CAP_SYS_NICE (a root supervisor; for a unit, the capability or
/// `CPUSchedulingPolicy=`); without it, or where real-time is not permitted (a cgroup without
/// real-time runtime), 10 nice levels above the start value where allowed, and the supervisor
/// says once what it runs at.
///
/// `TETHER_SUPERVISOR_PRIORITY`: `rr` (the default), `nice` (only the nice value), `off`.
public enum SupervisorPriority {
    public static let niceRaise: Int32 = 10

    private static let chosen = Atomic<Bool>(false)
    private static let done = Atomic<Bool>(false)

    /// A supervisor process (`tether run`, `supervise`, `mcp`, `profile try`) opts in: its
    /// first `Spawner` raises it. A library user — a test runner that spawns workers in
    /// process, and every process it starts after — is never made real-time behind its back.
    public static func choose() { chosen.store(true, ordering: .relaxed) }

    /// Once per process that chose it, before the keeper is forked (it inherits the priority).
    public static func raise(logger: Logger) {
        guard chosen.load(ordering: .relaxed), !done.exchange(true, ordering: .relaxed) else { return }
        let setting = getenv("TETHER_SUPERVISOR_PRIORITY").map { String(cString: $0) } ?? "rr"
        guard ["rr", "nice", "off"].contains(setting) else {
            logger.warning("TETHER_SUPERVISOR_PRIORITY must be rr, nice or off: ignored, the supervisor keeps the priority it was given",
                           metadata: ["value": "\(setting)"])
            return
        }
        if setting == "off" { return }
        errno = 0
        let started = getpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0)
        guard errno == 0 else { return }
        // Before any thread is raised: a worker spawned meanwhile starts where it should. (Also
        // when nothing below works: a supervisor made real-time from outside, by a unit's
        // CPUSchedulingPolicy=, still starts its workers as ordinary tasks.)
        tether_set_worker_nice(started)
        let policy = sched_getscheduler(0)
        if policy == SCHED_RR || policy == SCHED_FIFO {
            logger.debug("supervisor priority: already real-time (workers: SCHED_OTHER, nice \(started))")
            return
        }
        let threads = ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []).compactMap { pid_t($0) }
        var rrError: Int32 = 0
        if setting == "rr" {
            var param = sched_param(sched_priority: 1)
            var raised = 0
            for tid in threads {
                if sched_setscheduler(tid, SCHED_RR, &param) == 0 { raised += 1 } else { rrError = errno }
            }
            if raised > 0 {
                logger.debug("supervisor priority: SCHED_RR 1 (workers: SCHED_OTHER, nice \(started))")
                return
            }
        }
        // Linux keeps a nice value per thread: every thread there is now; threads made later
        // inherit it from the thread that makes them (libdispatch's then set their own).
        let target = max(-20, started - niceRaise)
        var raised = 0
        var niceError: Int32 = 0
        for tid in threads {
            if setpriority(__priority_which_t(PRIO_PROCESS.rawValue), id_t(tid), target) == 0 { raised += 1 } else { niceError = errno }
        }
        if raised > 0 {
            logger.notice("the supervisor runs at nice \(target), not real-time: a worker that takes every core may delay a stop by milliseconds",
                          metadata: rrError != 0 ? ["rr_error": "\(String(cString: strerror(rrError)))"] : [:])
        } else {
            logger.notice("the supervisor runs at the priority it was given: a worker that takes every core may delay a stop", metadata: [
                "nice": "\(started)", "error": "\(String(cString: strerror(niceError != 0 ? niceError : rrError)))", "hint": "needs CAP_SYS_NICE",
            ])
        }
    }
}
