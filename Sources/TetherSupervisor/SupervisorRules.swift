import TetherCore

/// The supervisor's decisions about one worker's slot — after an exit, after a failed launch,
/// when a restart comes due — and what a reload changes, as values: no processes, no clock.
/// `Supervisor` carries them out (launch, schedule the restart, shut down, forget). Tested as
/// values (`TetherSupervisorTests`).
enum SupervisorRules {
    /// What follows a worker's exit.
    enum AfterExit: Equatable {
        /// Removed by a reload: forget the slot.
        case retire
        /// Replaced by a reload: the new configuration launches (`launch`: its surface is
        /// allowed now) or waits for its allow.
        case replace(launch: Bool)
        /// By its restart policy, after the backoff.
        case restart
        /// By its restart policy, but its surface is denied: never relaunched while denied, it
        /// waits for the allow.
        case waitForAllow
        /// Not restarted: it stays exited with this code.
        case stay(code: Int32)
    }

    static func afterExit(
        retireOnExit: Bool, replaceOnExit: Bool, policy: RestartPolicy, code: Int32,
        killedForDeny: Bool, allowedNow: Bool
    ) -> AfterExit {
        if retireOnExit { return .retire }
        if replaceOnExit { return .replace(launch: allowedNow) }
        guard policy.restarts(afterCode: code) else { return .stay(code: code) }
        return killedForDeny || !allowedNow ? .waitForAllow : .restart
    }

    /// What follows a launch that did not start a worker.
    enum AfterLaunchFailure: Equatable {
        case restart
        case waitForAllow
        /// Given up: it stays failed (restart policy other than `always`).
        case fail
    }

    /// `refusedAtGate`: the start gate's fresh answer was a deny (or none) — not a failure of
    /// the worker's own.
    static func afterLaunchFailure(refusedAtGate: Bool, allowedNow: Bool, policy: RestartPolicy) -> AfterLaunchFailure {
        if refusedAtGate { return allowedNow ? .restart : .waitForAllow }
        return policy.mode == .always ? .restart : .fail
    }

    /// When a restart comes due: launch only while the surface is allowed.
    static func restartDue(allowedNow: Bool) -> Bool { allowedNow }

    /// The backoff: the delay to wait now, and the one for the next restart (doubled, at most
    /// `maxDelay`).
    static func backoff(_ current: Duration, policy: RestartPolicy) -> (now: Duration, next: Duration) {
        (current, min(current * 2, policy.maxDelay))
    }

    /// The delay after an exit: a run at least `maxDelay` long resets it to the first delay.
    static func delay(after ranFor: Duration, current: Duration, policy: RestartPolicy) -> Duration {
        ranFor >= policy.maxDelay ? policy.delay : current
    }

    /// What a reload does to the running set: names in the new file's order.
    struct ReloadPlan: Equatable {
        var added: [String] = []
        /// In both, with a configuration that differs: replaced.
        var changed: [String] = []
        /// Gone from the file (in the old order).
        var removed: [String] = []
        /// In both, the same: not touched.
        var unchanged: [String] = []
    }

    /// `running`: the slots now (a slot already leaving on an earlier reload counts as gone).
    static func reloadPlan(order: [String], running: [String: WorkerConfig], leaving: Set<String>, new: [WorkerConfig]) -> ReloadPlan {
        var plan = ReloadPlan()
        let newNames = Set(new.map(\.name))
        plan.removed = order.filter { !newNames.contains($0) }
        for w in new {
            if let old = running[w.name], !leaving.contains(w.name) {
                if old == w { plan.unchanged.append(w.name) } else { plan.changed.append(w.name) }
            } else if running[w.name] == nil {
                plan.added.append(w.name)
            }
        }
        return plan
    }
}
