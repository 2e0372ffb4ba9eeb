import Foundation
import Glibc
import Logging
import TetherClient
import TetherCore
import TetherRuntime
import TetherSystem

/// An authority, resolved: where, with which key, which signing key to demand, how to watch.
public struct ResolvedAuthority: Sendable {
    public var client: AuthorityClient
    public var verifier: DecisionVerifier?
    public var settings: AuthoritySettings
    public var instance: String
    /// What no worker may see: the state directory (the local authority's keys and database),
    /// the agent key file. Covered in every worker's mount namespace.
    public var secrets: [String]

    public init(client: AuthorityClient, verifier: DecisionVerifier?, settings: AuthoritySettings, instance: String, secrets: [String] = [])
    {
        self.client = client
        self.verifier = verifier
        self.settings = settings
        self.instance = instance
        self.secrets = secrets
    }

    var watchSettings: WatchSettings {
        var w = WatchSettings(instance: instance)
        w.pollInterval = settings.pollInterval
        w.failClosedAfter = settings.failClosedAfter
        w.watch = settings.watch
        return w
    }
}

/// `tether run`: one worker, launched only when its surface is allowed and held to it until it
/// exits — the one-worker case of the start path `tether supervise` uses (`WorkerLaunch`).
/// Returns the worker's exit, or why it never ran or was stopped for good: its surface denied
/// (at start, or a deny killed it), the authority unreachable at start, a profile that does not
/// compile. The command line says it and picks the exit code.
public enum RunSession {
    public static func run(
        worker config: WorkerConfig, authority: ResolvedAuthority, logger baseLogger: Logger,
        acceptWeakContainment: Bool = false,
        notifications: ServiceNotifications = .none,
        stdio: (stdin: Int32, stdout: Int32)? = nil,
        onStarted: (@Sendable (Worker, LiveDecisions) -> Void)? = nil
    ) async -> RunOutcome {
        var logger = baseLogger
        logger[metadataKey: "surface"] = "\(config.surface)"

        let profile: ProfileReport
        do {
            profile = try ProfileReport.make(config.profile, platform: .forWorker(user: config.spec.user))
        } catch {
            return .failed(RunFailure(.config, "\(error)"))
        }
        for w in profile.filter.warnings { logger.notice("\(w)") }

        // Register (MachineID's flow; it never un-revokes), then ask.
        if authority.settings.register {
            do {
                _ = try await authority.client.register(config.surface)
            } catch ClientError.unreachable(let m) {
                return .failed(RunFailure(.unavailable, "authority unreachable: \(m)\nNothing was started (fail closed)."))
            } catch {
                logger.debug("register refused; validating anyway", metadata: ["error": "\(error)"])
            }
        }
        switch await DecisionCheck.check(config.surface, client: authority.client, verifier: authority.verifier) {
        case .allowed:
            break
        case .denied(let d, let code, let detail):
            return .failed(
                RunFailure(
                    .denied,
                    "\(config.surface) is denied: \(code.rawValue)\(d.map { ($0.attribution.isEmpty ? "" : " " + $0.attribution) + " (request \($0.requestID))" } ?? "") — \(detail)\nNothing was started. An operator can restore it: tether restore \(config.surface)"
                ))
        case .unreachable(let m):
            return .failed(RunFailure(.unavailable, "authority unreachable: \(m)\nNothing was started (fail closed)."))
        }

        if let e = GateConfig.check(config.gates, mainSurface: config.surface, network: config.spec.network) {
            return .failed(RunFailure(.config, "\(e.message)\nNothing was started."))
        }
        // The gates start as their surfaces stand now; one that cannot be asked starts closed.
        let gateStart = await GateStart.ask(config.gates, authority: authority, logger: logger)

        // Start held: the child waits frozen in its cgroup, before exec, for a fresh answer.
        let gate = StartGate(surface: config.surface, client: authority.client, verifier: authority.verifier, logger: logger)

        // Signals are caught from before the launch, so none sent once the worker runs is lost;
        // they reach it (through the enforcer) as soon as it exists.
        let (signalStream, signalContinuation) = AsyncStream<Int32>.makeStream()
        let signals = SignalForwarder(handler: { signalContinuation.yield($0) })
        defer { signals.stop() }
        let spawner = Spawner(
            logger: logger, containment: ContainmentPolicy(hiddenPaths: authority.secrets, acceptWeak: acceptWeakContainment))
        defer { spawner.shutdown() }
        var authority = authority
        var reporter: Reporter?
        // A worker on pipes (the MCP gateway's) does not take the terminal.
        let foreground = stdio == nil ? ForegroundTerminal.claimable() : nil
        let surface = config.surface
        let watched = [config.surface] + Array(Set(config.gates.map(\.surface))).sorted()
        let launch = WorkerLaunch(
            config: config, filter: profile.filter, spawner: spawner, gate: gate,
            openGates: gateStart.open, stdin: stdio?.stdin, stdout: stdio?.stdout,
            foregroundTerminal: foreground, log: logger)
        var watcher: SurfaceWatcher?
        let launched: WorkerLaunch.Launched
        do {
            launched = try await launch.start { [logger] worker in
                // The instance says whether containment is weak, which the spawn found out.
                authority.instance = spawner.instanceName(authority.instance)
                let r = Reporter(client: authority.client, instance: authority.instance, logger: spawner.labelled(logger))
                reporter = r
                // Watched from the decision the worker was started on: no second question.
                let w = SurfaceWatcher(
                    client: authority.client, surfaces: watched, verifier: authority.verifier,
                    settings: authority.watchSettings, initial: (gate.allowedOn.map { [$0] } ?? []) + gateStart.decisions,
                    logger: spawner.labelled(logger))
                watcher = w
                let askOnce = authority
                return WorkerLaunch.Hooks(
                    reporter: r, verdict: { await w.verdict(of: $0) }, watchSubSurfaces: { await w.setSurfaces(watched + $0) },
                    check: { await DecisionCheck.check($0, client: askOnce.client, verifier: askOnce.verifier) },
                    onTransition: { t in notifications.status(StatusLine.run(surface: surface, t)) },
                    liveness: notifications.watchdog)
            }
        } catch {
            switch error {
            case .spawn(let e): return .failed(RunFailure(spawn: e))
            case .agentPin(let r): return .failed(RunFailure(.config, "\(r)\nNothing was started."))
            case .decisionSocket: return .failed(RunFailure(.unavailable, "\(error)\nNothing was started."))
            }
        }
        let (worker, decisions, gates, enforcer) = (launched.worker, launched.decisions, launched.gates, launched.enforcer)
        guard let reporter, let watcher else { preconditionFailure("WorkerLaunch.start made the hooks") }
        defer { decisions.stop() }
        defer { if foreground != nil { ForegroundTerminal.reclaim() } }
        logger = spawner.labelled(logger)

        notifications.ready("\(surface): running (pid \(worker.pid))")
        let ticking = notifications.watchdogInterval.map { interval in
            Task {
                while !Task.isCancelled {
                    enforcer.send(.tick)
                    try? await Sleep.for(interval)
                }
            }
        }
        defer { ticking?.cancel() }
        logger.info(
            "worker started",
            metadata: [
                "pid": "\(worker.pid)", "cgroup": "\(worker.cgroup?.path ?? "none")", "profile": "\(config.profile)",
                "as": "\(worker.identity)",
                "namespaces":
                    "\(worker.contained ? "pid,mount,ipc,cgroup\(worker.networkMode.ownNamespace ? ",net" : "")" : "NONE (weak containment)")",
                "net": "\(worker.networkMode.rawValue)",
                "on_revoke": "\(config.stop.onRevoke.rawValue)", "authority": "\(authority.client.endpoint.url)",
                "gates":
                    "\(config.gates.isEmpty ? "none" : config.gates.map { "\($0.kind.rawValue)=\($0.surface)\($0.mode == .record ? "[record]" : "")(\(worker.gates?.isOpen($0.kind) == true ? "open" : "closed"))" }.joined(separator: " "))",
                "mode": "\(authority.settings.watch ? "watch" : "poll every \(DurationText.format(authority.settings.pollInterval))")",
            ])
        let watching = Task { await watcher.run() }
        onStarted?(worker, launched.live)
        let mainSurface = config.surface
        let forwarding = Task {
            for await v in watcher.verdicts {
                if v.surface == mainSurface { enforcer.send(.verdict(v, at: .now)) } else { gates?.apply(v) }
            }
        }
        let relaying = Task {
            for await sig in signalStream { enforcer.send(.signal(sig)) }
        }

        let outcome = await enforcer.run()
        notifications.stopping("\(surface): worker \(outcome.status)")
        relaying.cancel()
        watching.cancel()
        forwarding.cancel()
        gates?.finish()
        if let v = outcome.deniedBy {
            reporter.send(WorkerReport(surface: config.surface, state: .killed, pids: [], requestID: v.requestID))
            await reporter.finish()
            return .failed(
                RunFailure(
                    .denied,
                    "\(config.name) was stopped for good: \(config.surface) denied (\(v.code.rawValue)\(v.attribution.isEmpty ? "" : " " + v.attribution)\(v.requestID.map { ", request \($0)" } ?? ""))"
                ))
        }
        reporter.send(WorkerReport(surface: config.surface, state: .exited, pids: [], requestID: nil))
        await reporter.finish()
        if case .signaled(let s) = outcome.status, s == SIGSYS {
            logger.error("the worker was killed by SIGSYS: a syscall through a foreign ABI, or a profile action that kills")
        }
        logger.info("worker \(outcome.status)")
        return .exited(outcome.status)
    }
}
