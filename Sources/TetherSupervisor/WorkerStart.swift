import Glibc
import Logging
import TetherClient
import TetherCore
import TetherRuntime
import TetherSystem

/// One launch of one supervised worker: what `Supervisor` hands over when the worker's surface
/// allows it. The two halves of the worker's life run in separate tasks: the start (`run`:
/// decision socket, start gate, spawn, gates, enforcer), which ends once the worker runs, and
/// the hold (`Started.hold`: the enforcer until the worker exits), which keeps only what it
/// needs — not the start gate, the spawner or the launch's configuration.
struct WorkerStart: Sendable {
    let config: WorkerConfig
    let generation: Int
    let spawner: Spawner
    let filter: CompiledFilter
    let gate: StartGate
    let reporter: Reporter
    let metrics: SupervisorMetrics
    /// The gates whose surfaces were allowed when the launch was decided.
    let openGates: Set<GateKind>
    let watcher: SurfaceWatcher
    let authority: ResolvedAuthority
    let continuation: AsyncStream<Supervisor.Event>.Continuation
    let log: Logger

    /// A worker that runs, and what its task holds until it exits.
    struct Started: Sendable {
        let name: String
        let surface: String
        let generation: Int
        let decisions: DecisionSocket
        let gates: GateController?
        let enforcer: Enforcer
        let reporter: Reporter
        let continuation: AsyncStream<Supervisor.Event>.Continuation
        let at: ContinuousClock.Instant

        /// Until the worker exits: its enforcer's events, then its exit on the loop.
        func hold() async {
            defer { decisions.stop() }
            let outcome = await enforcer.run()
            gates?.finish()
            reporter.send(WorkerReport(surface: surface, state: outcome.deniedBy == nil ? .exited : .killed, pids: [], requestID: outcome.deniedBy?.requestID))
            await reporter.finish(within: .seconds(1))
            continuation.yield(.exited(name: name, generation: generation, outcome, ranFor: .now - at))
        }
    }

    /// Starts the worker; nil when it did not start (said on the loop as `.launchFailed`).
    func run() async -> Started? {
        let decisions: DecisionSocket
        do {
            decisions = try DecisionSocket(worker: config.name, surface: config.surface)
        } catch {
            continuation.yield(.launchFailed(name: config.name, generation: generation, SpawnError(stage: .none, errno: EIO, message: "cannot make the worker's decision socket: \(error)")))
            return nil
        }
        var spec = config.spec
        spec.environment[DecisionSocket.environmentVariable] = decisions.path
        let worker: Worker
        let stdin = open("/dev/null", O_RDONLY | O_CLOEXEC)
        defer { close(stdin) }
        do throws(SpawnError) {
            let gate = self.gate
            var launch = Spawner.Launch(name: config.name, spec: spec, filter: filter, stdin: stdin, startGate: { await gate.ask() })
            launch.gates = config.gates
            launch.decisionDirectory = decisions.directory
            launch.openGates = openGates
            if let pin = config.spec.agent {
                do throws(AgentSettings.Refusal) {
                    try await AgentSettings.apply(pin, to: &launch, surface: config.surface, decisions: decisions, spawner: spawner, logger: log)
                } catch {
                    throw SpawnError(stage: .mounts, errno: EPERM, message: error.description)
                }
            }
            worker = try await spawner.spawn(launch)
        } catch {
            decisions.stop()
            continuation.yield(.launchFailed(name: config.name, generation: generation, error))
            return nil
        }
        let started = ContinuousClock.now
        log.info("worker started", metadata: ["pid": "\(worker.pid)", "cgroup": "\(worker.cgroup?.path ?? "none")", "generation": "\(generation)",
                                               "net": "\(worker.networkMode.rawValue)"])
        reporter.send(WorkerReport(surface: config.surface, state: .started, pids: [worker.pid], requestID: gate.allowedOn?.requestID))
        // Locals, so the closures below, held for the worker's life, capture only what each uses.
        let (config, metrics, log, reporter, watcher, authority, continuation) = (config, metrics, log, reporter, watcher, authority, continuation)
        let gates = worker.gates.map {
            GateController(gates: config.gates, server: $0, worker: worker, reporter: reporter, logger: log,
                           onDenials: { metrics.gateDenials(worker: config.name, $0) })
        }
        gates?.start()
        gates?.reportStates()
        decisions.attach(worker, decisions: LiveDecisions(
            surface: config.surface, gateSurfaces: config.gates.map(\.surface), verdict: { await watcher.verdict(of: $0) },
            watch: { for s in $0 { continuation.yield(.watchSubSurface(s)) } },
            check: { await DecisionCheck.check($0, client: authority.client, verifier: authority.verifier) },
            onRefused: { metrics.decisionRefused(worker: config.name, code: $0) }))
        let enforcer = Enforcer(worker: worker, config: config, reporter: reporter, logger: log, gates: gates, onTransition: { t in
            defer { continuation.yield(.transition) }
            metrics.transition(t)
            switch t.phase {
            case .frozen: metrics.set(config.name, .frozen)
            case .running: metrics.set(config.name, .running)
            case .stopping: metrics.set(config.name, .stopping)
            case .killed, .exited: break
            }
        })
        continuation.yield(.started(name: config.name, generation: generation, enforcer))
        return Started(name: config.name, surface: config.surface, generation: generation, decisions: decisions, gates: gates,
                       enforcer: enforcer, reporter: reporter, continuation: continuation, at: started)
    }
}
