import Glibc
import Logging
import TetherClient
import TetherCore
import TetherSystem

/// Starting one worker — the same sequence for `tether run` and for each worker of `tether
/// supervise`: its decision socket, the launch (gates, the agent's pinned hook, the start gate
/// that holds the child until a fresh allow), the spawn, the "started" report, the gates'
/// controller, the worker's live decisions and its enforcer. What differs between the two —
/// the terminal, metrics, where a sub-surface is watched — comes in as values and closures, so
/// a change to the sequence is made once.
struct WorkerLaunch: Sendable {
    var config: WorkerConfig
    var filter: CompiledFilter
    var spawner: Spawner
    var gate: StartGate
    /// The gates whose surfaces were allowed when the launch was decided.
    var openGates: Set<GateKind>
    var stdin: Int32?
    var stdout: Int32?
    var foregroundTerminal: Int32?
    var log: Logger

    /// How the running worker is tied to its caller: made once the worker runs (`tether run`
    /// starts watching its surfaces then, from the decision it was started on).
    struct Hooks: Sendable {
        /// Where the worker's reports go (under `tether run`, named once the spawn showed
        /// whether containment is weak).
        var reporter: Reporter
        /// The current verdict of a surface the worker is held to (its own, its gates').
        var verdict: @Sendable (String) async -> Verdict?
        /// Adds sub-surfaces the worker asked about to what is watched.
        var watchSubSurfaces: @Sendable ([String]) async -> Void
        var check: @Sendable (String) async -> DecisionCheck.Outcome
        var onRefused: @Sendable (String) -> Void = { _ in }
        var onDenials: @Sendable ([(GateDenial, Int)]) -> Void = { _ in }
        var onTransition: @Sendable (Transition) -> Void = { _ in }
        var liveness: @Sendable () -> Void = {}
    }

    /// Why a worker did not start; nothing of it runs.
    enum Failure: Error, CustomStringConvertible {
        case decisionSocket(String)
        case agentPin(AgentSettings.Refusal)
        case spawn(SpawnError)

        var description: String {
            switch self {
            case .decisionSocket(let m): "cannot make the worker's decision socket: \(m)"
            case .agentPin(let r): r.description
            case .spawn(let e): e.description
            }
        }
    }

    /// A worker that runs, and what holds it.
    struct Launched: Sendable {
        let worker: Worker
        let decisions: DecisionSocket
        let gates: GateController?
        let live: LiveDecisions
        let enforcer: Enforcer
    }

    func start(_ makeHooks: (Worker) async -> Hooks) async throws(Failure) -> Launched {
        let decisions: DecisionSocket
        do {
            decisions = try DecisionSocket(worker: config.name, surface: config.surface)
        } catch {
            throw .decisionSocket("\(error)")
        }
        var spec = config.spec
        spec.environment[DecisionSocket.environmentVariable] = decisions.path
        let worker: Worker
        do {
            let gate = self.gate
            var launch = Spawner.Launch(
                name: config.name, spec: spec, filter: filter, stdin: stdin, stdout: stdout,
                foregroundTerminal: foregroundTerminal, startGate: { await gate.ask() })
            launch.gates = config.gates
            launch.decisionDirectory = decisions.directory
            launch.openGates = openGates
            if let pin = config.spec.agent {
                do throws(AgentSettings.Refusal) {
                    try await AgentSettings.apply(
                        pin, to: &launch, surface: config.surface, decisions: decisions, spawner: spawner, logger: log)
                } catch {
                    decisions.stop()
                    throw Failure.agentPin(error)
                }
            }
            do throws(SpawnError) { worker = try await spawner.spawn(launch) } catch {
                decisions.stop()
                throw Failure.spawn(error)
            }
        }
        let hooks = await makeHooks(worker)
        let reporter = hooks.reporter
        reporter.send(WorkerReport(surface: config.surface, state: .started, pids: [worker.pid], requestID: gate.allowedOn?.requestID))
        // Locals, so the closures below, held for the worker's life, capture only what each uses.
        // The log says `containment=WEAK` from here on where the spawn found it weak.
        let (config, log) = (config, spawner.labelled(log))
        let gates = worker.gates.map {
            GateController(gates: config.gates, server: $0, worker: worker, reporter: reporter, logger: log, onDenials: hooks.onDenials)
        }
        gates?.start()
        gates?.reportStates()
        let live = LiveDecisions(
            surface: config.surface, gateSurfaces: config.gates.map(\.surface), verdict: hooks.verdict,
            watch: hooks.watchSubSurfaces, check: hooks.check, onRefused: hooks.onRefused)
        decisions.attach(worker, decisions: live)
        let enforcer = Enforcer(
            worker: worker, config: config, reporter: reporter, logger: log, gates: gates,
            onTransition: hooks.onTransition, liveness: hooks.liveness)
        return Launched(worker: worker, decisions: decisions, gates: gates, live: live, enforcer: enforcer)
    }
}
