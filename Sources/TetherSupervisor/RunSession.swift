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

    public init(client: AuthorityClient, verifier: DecisionVerifier?, settings: AuthoritySettings, instance: String, secrets: [String] = []) {
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
/// exits. Returns the exit code: the worker's own (128+N on signal N), 77 when its surface was
/// denied (at start, or when a deny killed it), 69 when the authority cannot be reached at
/// start, 78 for a profile that does not compile.
public enum RunSession {
    public static func run(worker config: WorkerConfig, authority: ResolvedAuthority, logger baseLogger: Logger,
                           acceptWeakContainment: Bool = false,
                           notifications: ServiceNotifications = .none,
                           stdio: (stdin: Int32, stdout: Int32)? = nil,
                           onStarted: (@Sendable (Worker, LiveDecisions) -> Void)? = nil) async -> Int32 {
        var logger = baseLogger
        logger[metadataKey: "surface"] = "\(config.surface)"

        let profile: ProfileReport
        do {
            profile = try ProfileReport.make(config.profile, platform: .forWorker(user: config.spec.user))
        } catch {
            return fail("\(error)", TetherExit.config)
        }
        for w in profile.filter.warnings { logger.notice("\(w)") }

        // Register (MachineID's flow; it never un-revokes), then ask.
        if authority.settings.register {
            do {
                _ = try await authority.client.register(config.surface)
            } catch ClientError.unreachable(let m) {
                return fail("authority unreachable: \(m)\nNothing was started (fail closed).", TetherExit.unavailable)
            } catch {
                logger.debug("register refused; validating anyway", metadata: ["error": "\(error)"])
            }
        }
        switch await DecisionCheck.check(config.surface, client: authority.client, verifier: authority.verifier) {
        case .allowed:
            break
        case .denied(let d, let code, let detail):
            return fail("\(config.surface) is denied: \(code.rawValue)\(d.map { ($0.attribution.isEmpty ? "" : " " + $0.attribution) + " (request \($0.requestID))" } ?? "") — \(detail)\nNothing was started. An operator can restore it: tether restore \(config.surface)", TetherExit.denied)
        case .unreachable(let m):
            return fail("authority unreachable: \(m)\nNothing was started (fail closed).", TetherExit.unavailable)
        }

        if let e = GateConfig.check(config.gates, mainSurface: config.surface, network: config.spec.network) {
            return fail("\(e.message)\nNothing was started.", TetherExit.config)
        }
        // The gates start as their surfaces stand now; one that cannot be asked starts closed.
        let gateStart = await GateStart.ask(config.gates, authority: authority, logger: logger)

        // The worker's decision socket: its path goes to the worker in its environment.
        var config = config
        let decisions: DecisionSocket
        do {
            decisions = try DecisionSocket(worker: config.name, surface: config.surface)
        } catch {
            return fail("cannot make the worker's decision socket: \(error)\nNothing was started.", TetherExit.unavailable)
        }
        defer { decisions.stop() }
        config.spec.environment[DecisionSocket.environmentVariable] = decisions.path

        // Start held: the child waits frozen in its cgroup, before exec, for a fresh answer.
        let gate = StartGate(surface: config.surface, client: authority.client, verifier: authority.verifier, logger: logger)

        // Signals are caught from before the launch, so none sent once the worker runs is lost;
        // they reach it (through the enforcer) as soon as it exists.
        let (signalStream, signalContinuation) = AsyncStream<Int32>.makeStream()
        let signals = SignalForwarder(handler: { signalContinuation.yield($0) })
        defer { signals.stop() }
        let spawner = Spawner(logger: logger, containment: ContainmentPolicy(hiddenPaths: authority.secrets, acceptWeak: acceptWeakContainment))
        defer { spawner.shutdown() }
        // A worker on pipes (the MCP gateway's) does not take the terminal.
        let foreground = stdio == nil ? ForegroundTerminal.claimable() : nil
        let worker: Worker
        do {
            var launch = Spawner.Launch(
                name: config.name, spec: config.spec, filter: profile.filter,
                stdin: stdio?.stdin, stdout: stdio?.stdout,
                foregroundTerminal: foreground, startGate: { await gate.ask() })
            launch.gates = config.gates
            launch.decisionDirectory = decisions.directory
            launch.openGates = gateStart.open
            if let pin = config.spec.agent {
                do throws(AgentSettings.Refusal) {
                    try await AgentSettings.apply(pin, to: &launch, surface: config.surface, decisions: decisions, spawner: spawner, logger: logger)
                } catch {
                    return fail("\(error)\nNothing was started.", TetherExit.config)
                }
            }
            worker = try await spawner.spawn(launch)
        } catch {
            if error.stage == .gate { return fail("\(error.message); nothing of it ran", TetherExit.denied) }
            if Spawner.namespaceStages.contains(error.stage) || error.stage == .landlock {
                return fail("\(error.message)\nNothing was started.", TetherExit.unavailable)
            }
            let code: Int32 = error.stage == .exec || error.stage == .execFD ? (error.errno == ENOENT ? 127 : 126) : TetherExit.unavailable
            return fail("\(error)", code)
        }
        defer { if foreground != nil { ForegroundTerminal.reclaim() } }
        logger = spawner.labelled(logger)

        var authority = authority
        authority.instance = spawner.instanceName(authority.instance)
        let reporter = Reporter(client: authority.client, instance: authority.instance, logger: logger)
        let surface = config.surface
        let enforcer = Enforcer(worker: worker, config: config, reporter: reporter, logger: logger, onTransition: { t in
            notifications.status(StatusLine.run(surface: surface, t))
        }, liveness: notifications.watchdog)
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
        logger.info("worker started", metadata: [
            "pid": "\(worker.pid)", "cgroup": "\(worker.cgroup?.path ?? "none")", "profile": "\(config.profile)",
            "as": "\(worker.identity)", "namespaces": "\(worker.contained ? "pid,mount,ipc,cgroup\(worker.networkMode.ownNamespace ? ",net" : "")" : "NONE (weak containment)")",
            "net": "\(worker.networkMode.rawValue)",
            "on_revoke": "\(config.stop.onRevoke.rawValue)", "authority": "\(authority.client.endpoint.url)",
            "gates": "\(config.gates.isEmpty ? "none" : config.gates.map { "\($0.kind.rawValue)=\($0.surface)\($0.mode == .record ? "[record]" : "")(\(worker.gates?.isOpen($0.kind) == true ? "open" : "closed"))" }.joined(separator: " "))",
            "mode": "\(authority.settings.watch ? "watch" : "poll every \(DurationText.format(authority.settings.pollInterval))")",
        ])
        reporter.send(WorkerReport(surface: config.surface, state: .started, pids: [worker.pid], requestID: gate.allowedOn?.requestID))
        let gates = worker.gates.map { GateController(gates: config.gates, server: $0, worker: worker, reporter: reporter, logger: logger) }
        gates?.start()
        gates?.reportStates()

        let watcher = SurfaceWatcher(
            client: authority.client, surfaces: [config.surface] + Array(Set(config.gates.map(\.surface))).sorted(), verifier: authority.verifier,
            settings: authority.watchSettings, initial: (gate.allowedOn.map { [$0] } ?? []) + gateStart.decisions, logger: logger)
        let watching = Task { await watcher.run() }
        let watched = [config.surface] + Array(Set(config.gates.map(\.surface))).sorted()
        let askOnce = authority
        let live = LiveDecisions(surface: config.surface, gateSurfaces: config.gates.map(\.surface), verdict: { await watcher.verdict(of: $0) },
                                 watch: { await watcher.setSurfaces(watched + $0) }, check: { await DecisionCheck.check($0, client: askOnce.client, verifier: askOnce.verifier) })
        decisions.attach(worker, decisions: live)
        onStarted?(worker, live)
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
            return fail("\(config.name) was stopped for good: \(config.surface) denied (\(v.code.rawValue)\(v.attribution.isEmpty ? "" : " " + v.attribution)\(v.requestID.map { ", request \($0)" } ?? ""))", TetherExit.denied)
        }
        reporter.send(WorkerReport(surface: config.surface, state: .exited, pids: [], requestID: nil))
        await reporter.finish()
        if case .signaled(let s) = outcome.status, s == SIGSYS {
            logger.error("the worker was killed by SIGSYS: a syscall through a foreign ABI, or a profile action that kills")
        }
        logger.info("worker \(outcome.status)")
        return outcome.status.shellCode
    }

    static func fail(_ message: String, _ code: Int32) -> Int32 {
        FileHandle.standardError.write(Data("tether: \(message)\n".utf8))
        return code
    }
}
