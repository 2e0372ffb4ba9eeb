import Foundation
import Glibc
import Logging
import TetherClient
import TetherCore
import TetherSystem

/// `tether supervise`: many workers, one watch stream for all their surfaces. A worker is
/// launched when its surface is allowed, held to it by an `Enforcer`, restarted by its policy
/// (never while its surface is denied), replaced on SIGHUP only if its configuration changed,
/// and stopped in order on SIGTERM within the shutdown bound.
public final class Supervisor: Sendable {
    enum Event: Sendable {
        case verdict(Verdict, at: ContinuousClock.Instant)
        case started(name: String, generation: Int, Enforcer)
        case launchFailed(name: String, generation: Int, SpawnError)
        case exited(name: String, generation: Int, Enforcer.Outcome, ranFor: Duration)
        case restartDue(name: String, generation: Int)
        case reload
        case shutdown
        case tick
        /// An enforcer changed a worker's state: only the status line needs redoing.
        case transition
    }

    enum Phase {
        case waiting, starting, running(Enforcer), backoff, exited(Int32), failed(String)
    }

    struct Slot {
        var config: WorkerConfig
        var filter: CompiledFilter
        var phase: Phase = .waiting
        var generation = 0
        var delay: Duration
        /// Replaced by a reload: launch the new configuration once the old worker has exited.
        var replaceOnExit = false
        /// Removed by a reload: forget the slot once the old worker has exited.
        var retireOnExit = false

        var enforcer: Enforcer? { if case .running(let e) = phase { return e } else { return nil } }
    }

    let configPath: String
    let authority: ResolvedAuthority
    let logger: Logger
    public let metrics: SupervisorMetrics
    let notifications: ServiceNotifications
    private let events: AsyncStream<Event>
    private let continuation: AsyncStream<Event>.Continuation

    public init(configPath: String, authority: ResolvedAuthority, metrics: SupervisorMetrics = SupervisorMetrics(), logger: Logger,
                notifications: ServiceNotifications = .none) {
        self.notifications = notifications
        self.configPath = configPath
        self.authority = authority
        self.metrics = metrics
        self.logger = logger
        (events, continuation) = AsyncStream<Event>.makeStream()
    }

    public func reload() { continuation.yield(.reload) }
    public func shutdown() { continuation.yield(.shutdown) }

    /// Compiles every worker's profile: a configuration is used whole or not at all.
    public static func prepare(_ config: ConfigFile) throws -> [String: CompiledFilter] {
        var filters: [String: CompiledFilter] = [:]
        for w in config.workers {
            do {
                filters[w.name] = try ProfileReport.make(w.profile, platform: .forWorker(user: w.spec.user)).filter
            } catch {
                throw ConfigError(file: config.path, line: w.line, message: "worker \(w.name): \(error)")
            }
        }
        return filters
    }

    /// Runs until shut down; returns the exit code.
    public func run(config: ConfigFile, filters: [String: CompiledFilter]) async -> Int32 {
        let spawner = Spawner(logger: logger, containment: ContainmentPolicy(
            hiddenPaths: authority.secrets + [configPath], acceptWeak: config.supervisor.acceptWeakContainment))
        defer { spawner.shutdown() }
        await spawner.probeContainment()
        var logger = self.logger
        if spawner.isWeak { logger[metadataKey: "containment"] = "WEAK" }
        var watchSettings = authority.watchSettings
        watchSettings.instance = spawner.instanceName(watchSettings.instance)
        var order = config.workers.map(\.name)
        var slots: [String: Slot] = [:]
        for w in config.workers {
            slots[w.name] = Slot(config: w, filter: filters[w.name]!, delay: w.restart.delay)
            metrics.set(w.name, .waiting)
        }
        var current = config
        var verdicts: [String: Verdict] = [:]

        // Ready once the authority has answered: a registration, or the first decision.
        var ready = await register(Self.surfaces(config))
        if ready { notifications.ready("\(config.workers.count) workers; authority answering") }
        var lastStatus = ""
        var denied: [String: (verdict: Verdict, at: Date)] = [:]
        let metrics = self.metrics
        let watcher = SurfaceWatcher(
            client: authority.client, surfaces: Self.surfaces(config), verifier: authority.verifier,
            settings: watchSettings, logger: logger, observe: { metrics.observe($0) })
        let watching = Task { await watcher.run() }
        let relaying = Task { [continuation] in
            for await v in watcher.verdicts { continuation.yield(.verdict(v, at: .now)) }
        }
        var serving: Task<Void, Never>?
        if let address = config.supervisor.metrics {
            let logger = self.logger
            serving = Task {
                do {
                    try await metrics.serve(address: address, watcher: { watcher }, logger: logger)
                } catch {
                    logger.error("the metrics endpoint stopped", metadata: ["address": "\(address)", "error": "\(error)"])
                }
            }
            logger.info("metrics on http://\(address)/metrics")
        }
        let ticking = notifications.watchdogInterval.map { interval in
            Task { [continuation] in
                while !Task.isCancelled {
                    continuation.yield(.tick)
                    try? await Task.sleep(for: interval)
                }
            }
        }
        defer {
            watching.cancel()
            relaying.cancel()
            serving?.cancel()
            ticking?.cancel()
        }
        logger.notice("supervising", metadata: ["workers": "\(order.count)", "config": "\(configPath)", "authority": "\(authority.client.endpoint.url)"])

        for await e in events {
            defer {
                let line = StatusLine.supervise(
                    states: metrics.states,
                    denied: order.compactMap { n in slots[n].flatMap { s in denied[s.config.surface].map { (n, $0.verdict, $0.at) } } })
                if line != lastStatus {
                    lastStatus = line
                    notifications.status(line)
                }
            }
            switch e {
            case .tick:
                notifications.watchdog()

            case .transition:
                break

            case .verdict(let v, let at):
                let previous = verdicts[v.surface]
                verdicts[v.surface] = v
                if !ready && v.requestID != nil {
                    ready = true
                    notifications.ready("\(order.count) workers; first decision known")
                }
                if v.allowed { denied[v.surface] = nil } else if previous?.changeKey != v.changeKey { denied[v.surface] = (v, Date()) }
                if previous?.changeKey != v.changeKey && !(previous == nil && v.requestID == nil) {
                    var m: Logger.Metadata = ["surface": "\(v.surface)", "allowed": "\(v.allowed)", "code": "\(v.code.rawValue)", "request_id": "\(v.requestID ?? "-")"]
                    if let by = v.changedBy { m["by"] = "\(by)" }
                    if let why = v.changeReason { m["reason"] = "\(why)" }
                    logger.info("verdict", metadata: m)
                }
                for name in order where slots[name]?.config.surface == v.surface {
                    if let e = slots[name]!.enforcer {
                        e.send(.verdict(v, at: at))
                    } else if case .waiting = slots[name]!.phase, v.allowed {
                        launch(&slots[name]!, spawner: spawner)
                    }
                }

            case .started(let name, let gen, let enforcer):
                guard var slot = slots[name], slot.generation == gen else {
                    enforcer.send(.shutdown(grace: .zero))
                    continue
                }
                slot.phase = .running(enforcer)
                metrics.set(name, .running)
                // A deny that arrived while it was starting applies now.
                if let v = verdicts[slot.config.surface] { enforcer.send(.verdict(v, at: .now)) }
                slots[name] = slot

            case .launchFailed(let name, let gen, let error):
                guard var slot = slots[name], slot.generation == gen else { continue }
                if error.stage == .gate {
                    // Denied (or no answer) while starting. If the watcher still says allowed,
                    // try again after the backoff; otherwise wait for the allow.
                    if verdicts[slot.config.surface]?.allowed == true {
                        scheduleRestart(&slot)
                    } else {
                        slot.phase = .waiting
                        metrics.set(name, .waiting)
                    }
                } else {
                    logger.error("worker did not start", metadata: ["worker": "\(name)", "error": "\(error)"])
                    if slot.config.restart.mode == .always {
                        scheduleRestart(&slot)
                    } else {
                        slot.phase = .failed("\(error)")
                        metrics.set(name, .failed)
                    }
                }
                slots[name] = slot

            case .exited(let name, let gen, let outcome, let ranFor):
                guard var slot = slots[name], slot.generation == gen else { continue }
                let code = outcome.status.shellCode
                if slot.retireOnExit {
                    slots[name] = nil
                    metrics.set(name, nil)
                    logger.info("worker removed by reload has exited", metadata: ["worker": "\(name)"])
                    continue
                }
                if slot.replaceOnExit {
                    slot.replaceOnExit = false
                    slot.delay = slot.config.restart.delay
                    slot.phase = .waiting
                    metrics.set(name, .waiting)
                    if verdicts[slot.config.surface]?.allowed == true { launch(&slot, spawner: spawner) }
                    slots[name] = slot
                    continue
                }
                logger.notice("worker \(outcome.status)", metadata: ["worker": "\(name)", "ran_for_s": "\(ranFor.components.seconds)", "denied": "\(outcome.deniedBy?.code.rawValue ?? "no")"])
                // A long run resets the backoff.
                if ranFor >= slot.config.restart.maxDelay { slot.delay = slot.config.restart.delay }
                if slot.config.restart.restarts(afterCode: code) {
                    if outcome.deniedBy != nil || verdicts[slot.config.surface]?.allowed != true {
                        // Never relaunched while denied: it waits for the allow.
                        slot.phase = .waiting
                        metrics.set(name, .waiting)
                    } else {
                        scheduleRestart(&slot)
                    }
                } else {
                    slot.phase = .exited(code)
                    metrics.set(name, .exited)
                }
                slots[name] = slot

            case .restartDue(let name, let gen):
                guard var slot = slots[name], slot.generation == gen, case .backoff = slot.phase else { continue }
                if verdicts[slot.config.surface]?.allowed == true {
                    metrics.restarted(name)
                    launch(&slot, spawner: spawner)
                } else {
                    slot.phase = .waiting
                    metrics.set(name, .waiting)
                }
                slots[name] = slot

            case .reload:
                notifications.reloading()
                defer { notifications.ready(lastStatus) }
                let new: ConfigFile
                let filters: [String: CompiledFilter]
                do {
                    new = try ConfigLoader.load(path: configPath)
                    filters = try Self.prepare(new)
                } catch {
                    logger.error("reload refused; the running configuration stays", metadata: ["error": "\(error)"])
                    continue
                }
                if new.authority != current.authority || new.supervisor != current.supervisor {
                    logger.warning("[authority] and [supervisor] changes take effect at the next restart, not on reload")
                }
                var changed = 0, added = 0, removed = 0
                for name in order where !new.workers.contains(where: { $0.name == name }) {
                    removed += 1
                    if let e = slots[name]?.enforcer ?? nil {
                        slots[name]!.retireOnExit = true
                        e.send(.shutdown(grace: slots[name]!.config.stop.grace))
                    } else {
                        slots[name] = nil
                        metrics.set(name, nil)
                    }
                }
                for w in new.workers {
                    if var slot = slots[w.name], !slot.retireOnExit {
                        guard slot.config != w else { continue }   // unchanged: untouched
                        changed += 1
                        slot.config = w
                        slot.filter = filters[w.name]!
                        if let e = slot.enforcer {
                            slot.replaceOnExit = true
                            e.send(.shutdown(grace: w.stop.grace))
                        } else if case .starting = slot.phase {
                            slot.replaceOnExit = true
                        } else {
                            slot.phase = .waiting
                            slot.delay = w.restart.delay
                            if verdicts[w.surface]?.allowed == true { launch(&slot, spawner: spawner) }
                        }
                        slots[w.name] = slot
                    } else if slots[w.name] == nil {
                        added += 1
                        var slot = Slot(config: w, filter: filters[w.name]!, delay: w.restart.delay)
                        metrics.set(w.name, .waiting)
                        if verdicts[w.surface]?.allowed == true { launch(&slot, spawner: spawner) }
                        slots[w.name] = slot
                    }
                }
                order = new.workers.map(\.name) + order.filter { n in !new.workers.contains { $0.name == n } && slots[n] != nil }
                await register(Self.surfaces(new).filter { !Self.surfaces(current).contains($0) })
                await watcher.setSurfaces(Self.surfaces(new))
                current.workers = new.workers
                logger.notice("configuration reloaded", metadata: ["added": "\(added)", "changed": "\(changed)", "removed": "\(removed)", "unchanged": "\(new.workers.count - added - changed)"])

            case .shutdown:
                notifications.stopping("stopping \(order.count) workers")
                await stopAll(order: order, slots: slots, bound: current.supervisor.shutdownTimeout)
                continuation.finish()
                return 0
            }
        }
        return 0
    }

    /// MachineID's flow: a surface is registered before it is validated (never un-revokes).
    @discardableResult
    private func register(_ surfaces: [String]) async -> Bool {
        guard authority.settings.register else { return false }
        var answered = false
        for s in surfaces {
            do {
                _ = try await authority.client.register(s)
                answered = true
            } catch {
                logger.warning("could not register the surface; it stays denied until it exists", metadata: ["surface": "\(s)", "error": "\(error)"])
            }
        }
        return answered
    }

    private func launch(_ slot: inout Slot, spawner: Spawner) {
        slot.generation += 1
        slot.phase = .starting
        metrics.set(slot.config.name, .starting)
        let gen = slot.generation
        let config = slot.config
        let filter = slot.filter
        var wlog = logger
        wlog[metadataKey: "worker"] = "\(config.name)"
        wlog[metadataKey: "surface"] = "\(config.surface)"
        if spawner.isWeak { wlog[metadataKey: "containment"] = "WEAK" }
        let gate = StartGate(surface: config.surface, client: authority.client, verifier: authority.verifier, logger: wlog)
        let reporter = Reporter(client: authority.client, instance: spawner.instanceName(authority.instance), logger: wlog)
        let metrics = self.metrics
        let log = wlog
        Task { [continuation] in
            let worker: Worker
            let stdin = open("/dev/null", O_RDONLY | O_CLOEXEC)
            defer { close(stdin) }
            do throws(SpawnError) {
                worker = try await spawner.spawn(Spawner.Launch(
                    name: config.name, spec: config.spec, filter: filter, stdin: stdin, startGate: { await gate.ask() }))
            } catch {
                continuation.yield(.launchFailed(name: config.name, generation: gen, error))
                return
            }
            let started = ContinuousClock.now
            log.info("worker started", metadata: ["pid": "\(worker.pid)", "cgroup": "\(worker.cgroup?.path ?? "none")", "generation": "\(gen)"])
            reporter.send(WorkerReport(surface: config.surface, state: .started, pids: [worker.pid], requestID: gate.allowedOn?.requestID))
            let enforcer = Enforcer(worker: worker, config: config, reporter: reporter, logger: log, onTransition: { t in
                defer { continuation.yield(.transition) }
                metrics.transition(t)
                switch t.phase {
                case .frozen: metrics.set(config.name, .frozen)
                case .running: metrics.set(config.name, .running)
                case .stopping: metrics.set(config.name, .stopping)
                case .killed, .exited: break
                }
            })
            continuation.yield(.started(name: config.name, generation: gen, enforcer))
            let outcome = await enforcer.run()
            reporter.send(WorkerReport(surface: config.surface, state: outcome.deniedBy == nil ? .exited : .killed, pids: [], requestID: outcome.deniedBy?.requestID))
            await reporter.finish(within: .seconds(1))
            continuation.yield(.exited(name: config.name, generation: gen, outcome, ranFor: .now - started))
        }
    }

    private func scheduleRestart(_ slot: inout Slot) {
        slot.phase = .backoff
        metrics.set(slot.config.name, .backoff)
        let delay = slot.delay
        slot.delay = min(slot.delay * 2, slot.config.restart.maxDelay)
        let name = slot.config.name, gen = slot.generation
        logger.info("restarting", metadata: ["worker": "\(name)", "in": "\(DurationText.format(delay))"])
        Task { [continuation] in
            try? await Task.sleep(for: delay)
            continuation.yield(.restartDue(name: name, generation: gen))
        }
    }

    /// SIGTERM: each worker in configuration order gets SIGCONT + SIGTERM and its grace (within
    /// what is left of the bound); whatever is left when the bound passes is killed.
    private func stopAll(order: [String], slots: [String: Slot], bound: Duration) async {
        let clock = ContinuousClock()
        let deadline = clock.now + bound
        let running = order.compactMap { slots[$0]?.enforcer }
        logger.notice("shutting down", metadata: ["workers": "\(running.count)", "bound": "\(DurationText.format(bound))"])
        for e in running {
            let left = deadline - clock.now
            guard left > .zero else { break }
            let grace = min(e.config.stop.grace, left)
            e.send(.shutdown(grace: grace))
            _ = await e.worker.waitForState(timeout: grace + .milliseconds(500)) { $0.isGone }
        }
        for e in running where !e.worker.state().isGone {
            logger.warning("shutdown bound passed: killing", metadata: ["worker": "\(e.config.name)"])
            _ = try? await e.worker.killVerified()
        }
        for e in running { _ = await e.worker.exit.status }
        logger.notice("all workers stopped")
    }

    static func surfaces(_ c: ConfigFile) -> [String] {
        Array(Set(c.workers.map(\.surface))).sorted()
    }
}
