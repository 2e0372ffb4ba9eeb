import Foundation
import Glibc
import Logging
import Synchronization
import TetherClient
import TetherCore
import TetherRuntime
import TetherSystem

/// Where a worker stands, as the enforcer last confirmed it from the kernel.
public enum WorkerPhase: String, Sendable, CaseIterable {
    case running, frozen, stopping, killed, exited
}

/// A change the enforcer made and verified, for logs, metrics and status lines.
public struct Transition: Sendable {
    public var worker: String
    public var surface: String
    public var phase: WorkerPhase
    public var verdict: Verdict?
    /// From the verdict reaching the enforcer to the kernel confirming the stop.
    public var stoppedIn: Duration?
    public var at: Date
}

/// Holds one running worker to its surface's verdicts: applies the stop policy to the whole
/// tree on a deny and confirms it from the kernel, thaws a frozen worker on an allow, and
/// reports each change. Events are handled one at a time, in order, by `run()`; a stop in
/// progress is never interleaved with a thaw. What to do is `EnforcerRules`' to decide; this
/// is the driver that does it to the kernel, logs, reports and times it.
///
/// Verdicts skip the queue's order in one way: the newest is applied first. They wait in a
/// one-place mailbox, so verdicts that arrive while a stop or a thaw is in progress replace each
/// other there, and the next one applied is the newest — a burst of thousands of revokes and
/// restores costs one step, and a revoke at its end reaches its stop as quickly as a revoke on
/// an idle stream. The changes overtaken are acknowledged by the authority as superseded when
/// the newest one's report arrives (`Acknowledgements`).
public final class Enforcer: Sendable {
    public enum Event: Sendable {
        /// A verdict, and when the supervisor learnt it.
        case verdict(Verdict, at: ContinuousClock.Instant)
        /// A signal the supervisor received for the worker (SIGINT, SIGTERM, SIGHUP, …).
        case signal(Int32)
        /// Stop the worker for good: SIGCONT + SIGTERM, `grace`, then kill.
        case shutdown(grace: Duration)
        case killAfter(epoch: Int)
        case exited(ExitStatus)
        /// A watchdog tick: answered from this loop, so a wedged loop stops the pings.
        case tick
    }

    /// How the worker's run ended.
    public struct Outcome: Sendable {
        public var status: ExitStatus
        /// Set when the enforcer killed it because its surface was denied.
        public var deniedBy: Verdict?
    }

    public let worker: Worker
    public let config: WorkerConfig
    /// The worker's gates, held to their own surfaces beside this enforcer's.
    public let gates: GateController?
    let reporter: Reporter?
    let logger: Logger
    let onTransition: @Sendable (Transition) -> Void
    let liveness: @Sendable () -> Void
    private let events: AsyncStream<Item>
    private let continuation: AsyncStream<Item>.Continuation
    /// The newest verdict not yet taken by `run()`, when it learnt it, and how many it replaced.
    private let mailbox = Mutex<(verdict: Verdict, at: ContinuousClock.Instant, replaced: Int)?>(nil)

    /// What the loop reads: an event, or "the mailbox holds a verdict".
    private enum Item: Sendable {
        case event(Event)
        case verdict
    }

    public init(
        worker: Worker, config: WorkerConfig, reporter: Reporter?, logger: Logger, gates: GateController? = nil,
        onTransition: @escaping @Sendable (Transition) -> Void = { _ in },
        liveness: @escaping @Sendable () -> Void = {}
    ) {
        self.gates = gates
        self.liveness = liveness
        self.worker = worker
        self.config = config
        self.reporter = reporter
        var l = logger
        l[metadataKey: "worker"] = "\(config.name)"
        l[metadataKey: "surface"] = "\(config.surface)"
        self.logger = l
        self.onTransition = onTransition
        (events, continuation) = AsyncStream<Item>.makeStream()
    }

    public func send(_ e: Event) {
        guard case .verdict(let v, let at) = e else {
            continuation.yield(.event(e))
            return
        }
        let wake = mailbox.withLock { m -> Bool in
            guard let held = m else {
                m = (v, at, 0)
                return true
            }
            // A verdict that names no change (a lease that ran out) and asks the same as the one
            // held changes no step: the held one keeps its change, for the acknowledgement.
            if v.requestID == nil && held.verdict.requestID != nil && v.allowed == held.verdict.allowed { return false }
            m = (v, at, held.replaced + 1)
            return false
        }
        if wake { continuation.yield(.verdict) }
    }

    /// The mailbox's verdict, as an event, and how many verdicts it replaced.
    private func takeVerdict() -> (Event, replaced: Int)? {
        mailbox.withLock { m in
            defer { m = nil }
            return m.map { (.verdict($0.verdict, at: $0.at), $0.replaced) }
        }
    }

    /// Handles events until the worker's first process has exited and its tree is gone.
    public func run() async -> Outcome {
        let exitWatch = Task { [worker, continuation] in
            let status = await worker.wait()
            continuation.yield(.event(.exited(status)))
        }
        defer { exitWatch.cancel() }
        var rules = EnforcerRules(policy: config.stop)
        for await item in events {
            let e: Event
            switch item {
            case .event(let event): e = event
            case .verdict:
                guard let (event, replaced) = takeVerdict() else { continue }
                if replaced > 0, case .verdict(let v, _) = event {
                    logger.info(
                        "verdicts superseded: applying the newest",
                        metadata: ["superseded": "\(replaced)", "request_id": "\(v.requestID ?? "-")"])
                }
                e = event
            }
            if case .exited(let status) = e {
                continuation.finish()
                return Outcome(status: status, deniedBy: rules.killedBy)
            }
            var learnt = ContinuousClock.now
            if case .verdict(let v, let at) = e {
                learnt = at
                if !v.allowed && rules.phase == .frozen { logger.debug("still denied", metadata: ["code": "\(v.code.rawValue)"]) }
            }
            var step = rules.on(e)
            if case .kill = step {
                if case .signal(let sig) = e { logger.notice("\(Signals.name(sig)) while frozen: killing the worker") }
                if case .killAfter = e {
                    logger.notice(
                        "frozen for kill_after: killing the worker",
                        metadata: ["kill_after": "\(config.stop.killAfter.map(DurationText.format) ?? "")"])
                }
            }
            while step != .none { step = await perform(step, learnt: learnt, &rules) }
        }
        return Outcome(status: .lost, deniedBy: rules.killedBy)
    }

    /// Carries out one step of the rules against the kernel; the rules say what follows.
    private func perform(
        _ step: EnforcerRules.Step, learnt: ContinuousClock.Instant, _ rules: inout EnforcerRules
    ) async -> EnforcerRules.Step {
        switch step {
        case .none: return .none
        case .freeze(let v): return rules.after(await freeze(for: v, learnt: learnt))
        case .thaw(let v): return rules.after(await resume(on: v))
        case .kill(let v): return rules.after(await kill(reason: v, learnt: learnt))
        case .terminate(let grace, let v): return rules.after(await terminate(grace: grace, verdict: v, learnt: learnt))
        case .signal(let sig):
            if rules.phase == .frozen { logger.debug("\(Signals.name(sig)) passed on to a frozen worker") }
            worker.signalGroup(sig)
        case .scheduleKill(let after, let epoch):
            Task { [continuation] in
                try? await Sleep.for(after)
                continuation.yield(.event(.killAfter(epoch: epoch)))
            }
        case .liveness:
            liveness()
        case .acknowledge(let v, let state):
            let now = worker.state()
            // "stopped" only as the kernel shows it: if the worker is not held, stop it again
            // (that reports it, or kills on failure).
            if state == .stopped && !now.isStopped { return rules.after(await freeze(for: v, learnt: learnt)) }
            reporter?.send(WorkerReport(surface: config.surface, state: state, pids: pids(now), requestID: v.requestID))
        }
        return .none
    }

    // The steps below are kept out of `run` (never inlined): an async function's frame holds
    // the locals of every path through it, and `run`'s task keeps the memory of its deepest
    // frame for the worker's whole life — an allow that changes nothing (most events) should
    // not cost every worker the frames of a stop, a thaw and a kill (~4 KiB each).

    @inline(never)
    private func resume(on v: Verdict) async -> EnforcerRules.Outcome {
        do {
            let st = try await worker.thawVerified()
            log(.notice, "worker resumed", v, extra: ["pids": "\(pids(st))"])
            record(.running, v, nil)
            reporter?.send(WorkerReport(surface: config.surface, state: .resumed, pids: pids(st), requestID: v.requestID))
            return .thawed
        } catch {
            logger.error("thaw not confirmed by the kernel", metadata: ["error": "\(error)"])
            return .thawFailed
        }
    }

    @inline(never)
    private func freeze(for v: Verdict, learnt: ContinuousClock.Instant) async -> EnforcerRules.Outcome {
        do {
            let st = try await worker.freezeVerified()
            let took = ContinuousClock.now - learnt
            log(
                .notice, "worker stopped", v,
                extra: ["stopped_in_ms": "\(ms(took))", "pids": "\(pids(st))"].merging(sinceDecision(v)) { a, _ in a })
            record(.frozen, v, took)
            reporter?.send(WorkerReport(surface: config.surface, state: .stopped, pids: pids(st), requestID: v.requestID))
            return .frozen
        } catch {
            logger.error("freeze not confirmed by the kernel: killing instead", metadata: ["error": "\(error)"])
            return .freezeFailed
        }
    }

    @inline(never)
    private func terminate(grace: Duration, verdict v: Verdict?, learnt: ContinuousClock.Instant) async -> EnforcerRules.Outcome {
        // Thaw first: a stopped process never runs its SIGTERM handler.
        worker.thaw()
        worker.signalGroup(SIGTERM)
        let st = await worker.waitForState(timeout: grace) { $0.isGone }
        guard st.isGone else {
            logger.notice("still running after the grace period: killing", metadata: ["grace": "\(DurationText.format(grace))"])
            return .outlivedGrace
        }
        let took = ContinuousClock.now - learnt
        log(.notice, "worker ended on SIGTERM", v, extra: ["stopped_in_ms": "\(ms(took))"])
        record(.killed, v, took)
        reporter?.send(WorkerReport(surface: config.surface, state: .killed, pids: [], requestID: v?.requestID))
        return .endedOnTerm
    }

    @inline(never)
    private func kill(reason v: Verdict?, learnt: ContinuousClock.Instant) async -> EnforcerRules.Outcome {
        let before = worker.state()
        var confirmed = false
        for _ in 0..<3 where !confirmed {
            do {
                try await worker.killVerified()
                confirmed = true
            } catch {
                logger.error("kill not confirmed by the kernel; again", metadata: ["error": "\(error)"])
            }
        }
        let took = ContinuousClock.now - learnt
        log(
            confirmed ? .notice : .critical, confirmed ? "worker killed" : "worker kill NOT confirmed", v,
            extra: ["stopped_in_ms": "\(ms(took))", "pids": "\(pids(before))"])
        record(.killed, v, took)
        reporter?.send(WorkerReport(surface: config.surface, state: .killed, pids: pids(before), requestID: v?.requestID))
        return .killed(confirmed: confirmed)
    }

    // MARK: - helpers

    private func record(_ phase: WorkerPhase, _ v: Verdict?, _ took: Duration?) {
        onTransition(Transition(worker: config.name, surface: config.surface, phase: phase, verdict: v, stoppedIn: took, at: Date()))
    }

    private func log(_ level: Logger.Level, _ message: Logger.Message, _ v: Verdict?, extra: Logger.Metadata = [:]) {
        var m = extra
        if let v {
            m["code"] = "\(v.code.rawValue)"
            if let r = v.requestID { m["request_id"] = "\(r)" }
            if let by = v.changedBy { m["by"] = "\(by)" }
            if let why = v.changeReason { m["reason"] = "\(why)" }
        }
        logger.log(level: level, message, metadata: m)
    }

    private func pids(_ st: GroupState) -> [Int32] { st.live.map(\.pid).sorted() }

    /// From the authority's decision to now, by the authority's clock (meaningful when the
    /// clocks agree: the same host, or NTP).
    private func sinceDecision(_ v: Verdict) -> Logger.Metadata {
        guard let d = v.decidedAt else { return [:] }
        return ["since_decision_ms": "\(Int((Date().timeIntervalSince(d) * 1000).rounded()))"]
    }
}

func ms(_ d: Duration) -> String {
    let v = Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15
    return String(format: "%.2f", v)
}
