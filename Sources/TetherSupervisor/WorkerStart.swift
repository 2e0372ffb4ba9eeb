import Glibc
import Logging
import TetherClient
import TetherCore
import TetherRuntime
import TetherSystem

/// One launch of one supervised worker: what `Supervisor` hands over when the worker's surface
/// allows it. The two halves of the worker's life run in separate tasks: the start (`run`: the
/// sequence `tether run` shares, `WorkerLaunch`), which ends once the worker runs, and
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
            reporter.send(
                WorkerReport(
                    surface: surface, state: outcome.deniedBy == nil ? .exited : .killed, pids: [], requestID: outcome.deniedBy?.requestID))
            await reporter.finish(within: .seconds(1))
            continuation.yield(.exited(name: name, generation: generation, outcome, ranFor: .now - at))
        }
    }

    /// Starts the worker; nil when it did not start (said on the loop as `.launchFailed`).
    func run() async -> Started? {
        let stdin = open("/dev/null", O_RDONLY | O_CLOEXEC)
        defer { close(stdin) }
        // Locals, so the closures below, held for the worker's life, capture only what each uses.
        let (config, metrics, watcher, authority, continuation) = (config, metrics, watcher, authority, continuation)
        let launch = WorkerLaunch(
            config: config, filter: filter, spawner: spawner, gate: gate,
            openGates: openGates, stdin: stdin, log: log)
        let launched: WorkerLaunch.Launched
        do {
            launched = try await launch.start { [reporter] _ in
                WorkerLaunch.Hooks(
                    reporter: reporter, verdict: { await watcher.verdict(of: $0) },
                    watchSubSurfaces: { for s in $0 { continuation.yield(.watchSubSurface(s)) } },
                    check: { await DecisionCheck.check($0, client: authority.client, verifier: authority.verifier) },
                    onRefused: { metrics.decisionRefused(worker: config.name, code: $0) },
                    onDenials: { metrics.gateDenials(worker: config.name, $0) },
                    onTransition: { t in
                        defer { continuation.yield(.transition) }
                        metrics.transition(t)
                        switch t.phase {
                        case .frozen: metrics.set(config.name, .frozen)
                        case .running: metrics.set(config.name, .running)
                        case .stopping: metrics.set(config.name, .stopping)
                        case .killed, .exited: break
                        }
                    })
            }
        } catch {
            let spawnError =
                switch error {
                case .spawn(let e): e
                case .agentPin(let r): SpawnError(stage: .mounts, errno: EPERM, message: r.description)
                case .decisionSocket: SpawnError(stage: .none, errno: EIO, message: error.description)
                }
            continuation.yield(.launchFailed(name: config.name, generation: generation, spawnError))
            return nil
        }
        let worker = launched.worker
        log.info(
            "worker started",
            metadata: [
                "pid": "\(worker.pid)", "cgroup": "\(worker.cgroup?.path ?? "none")", "generation": "\(generation)",
                "net": "\(worker.networkMode.rawValue)",
            ])
        continuation.yield(.started(name: config.name, generation: generation, launched.enforcer))
        return Started(
            name: config.name, surface: config.surface, generation: generation, decisions: launched.decisions, gates: launched.gates,
            enforcer: launched.enforcer, reporter: reporter, continuation: continuation, at: .now)
    }
}
