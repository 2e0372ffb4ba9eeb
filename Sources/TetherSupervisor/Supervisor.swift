import Foundation
import Glibc
import Logging
import TetherClient
import TetherCore
import TetherRuntime
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
        /// A worker's decision socket was asked about a sub-surface of its surface: watch it.
        case watchSubSurface(String)
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

    public init(
        configPath: String, authority: ResolvedAuthority, metrics: SupervisorMetrics = SupervisorMetrics(), logger: Logger,
        notifications: ServiceNotifications = .none
    ) {
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
        // Workers with the same profile and user share one compiled program: compiled once, and
        // one copy in memory however many workers run it (~4 KiB each for `default`).
        var compiled: [[String?]: CompiledFilter] = [:]
        for w in config.workers {
            do {
                let key = [w.profile, w.spec.user]
                if let f = compiled[key] {
                    filters[w.name] = f
                    continue
                }
                let f = try ProfileReport.make(w.profile, platform: .forWorker(user: w.spec.user)).filter
                compiled[key] = f
                filters[w.name] = f
            } catch {
                throw ConfigError(file: config.path, line: w.line, message: "worker \(w.name): \(error)")
            }
        }
        return filters
    }

    /// What the event loop owns: every worker's slot, the last verdict per surface, the
    /// configuration in force. Only `run`'s loop touches it, one event at a time.
    struct State {
        var order: [String]
        var slots: [String: Slot] = [:]
        var current: ConfigFile
        var verdicts: [String: Verdict] = [:]
        var denied: [String: (verdict: Verdict, at: Date)] = [:]
        var ready = false
        var lastStatus = ""
        /// Sub-surfaces the workers' decision sockets brought into the watch.
        var subSurfaces: Set<String> = []
        let spawner: Spawner
        let watcher: SurfaceWatcher
        /// Tagged `containment=WEAK` when workers run without namespaces of their own.
        let logger: Logger

        var launcher: Launcher {
            Launcher(spawner: spawner, logger: logger, allowed: Set(verdicts.values.filter(\.allowed).map(\.surface)), watcher: watcher)
        }
    }

    /// What a launch needs of the loop's state (a copy: the slot it fills is borrowed apart).
    struct Launcher {
        let spawner: Spawner
        let logger: Logger
        /// Surfaces allowed right now: a worker's gates start open where theirs is.
        let allowed: Set<String>
        /// The watch: each worker's decision socket answers from its leases.
        let watcher: SurfaceWatcher
    }

    /// Runs until shut down; returns the exit code.
    public func run(config: ConfigFile, filters: [String: CompiledFilter]) async -> Int32 {
        let spawner = Spawner(
            logger: logger,
            containment: ContainmentPolicy(
                hiddenPaths: authority.secrets + [configPath], acceptWeak: config.supervisor.acceptWeakContainment))
        defer { spawner.shutdown() }
        await spawner.probeContainment()
        let logger = spawner.labelled(self.logger)
        var watchSettings = authority.watchSettings
        watchSettings.instance = spawner.instanceName(watchSettings.instance)
        let metrics = self.metrics
        let watcher = SurfaceWatcher(
            client: authority.client, surfaces: Self.surfaces(config), verifier: authority.verifier,
            settings: watchSettings, logger: logger, observe: { metrics.observe($0) })

        var s = State(order: config.workers.map(\.name), current: config, spawner: spawner, watcher: watcher, logger: logger)
        for w in config.workers {
            s.slots[w.name] = Slot(config: w, filter: filters[w.name]!, delay: w.restart.delay)
            metrics.set(w.name, .waiting)
        }
        // Ready once the authority has answered: a registration, or the first decision.
        let unregistered = await register(Self.surfaces(config))
        s.ready = authority.settings.register && unregistered.count < Self.surfaces(config).count
        if s.ready { notifications.ready("\(config.workers.count) workers; authority answering") }

        var services = startServices(config, watcher: watcher, logger: logger)
        if !unregistered.isEmpty { services.append(Task { await self.retryRegistration(unregistered) }) }
        defer { services.forEach { $0.cancel() } }
        logger.notice(
            "supervising",
            metadata: ["workers": "\(s.order.count)", "config": "\(configPath)", "authority": "\(authority.client.endpoint.url)"])

        for await e in events {
            if case .shutdown = e {
                notifications.stopping("stopping \(s.order.count) workers")
                await stopAll(order: s.order, slots: s.slots, bound: s.current.supervisor.shutdownTimeout)
                continuation.finish()
                return 0
            }
            await handle(e, &s)
            publishStatus(&s)
        }
        return 0
    }

    /// The watch stream and its relay into the event loop, the metrics endpoint, the watchdog.
    private func startServices(_ config: ConfigFile, watcher: SurfaceWatcher, logger: Logger) -> [Task<Void, Never>] {
        var tasks = [
            Task { await watcher.run() },
            Task { [continuation] in
                for await v in watcher.verdicts { continuation.yield(.verdict(v, at: .now)) }
            },
        ]
        if let address = config.supervisor.metrics {
            let metrics = self.metrics
            tasks.append(
                Task {
                    do {
                        try await metrics.serve(address: address, watcher: { watcher }, logger: logger)
                    } catch {
                        logger.error("the metrics endpoint stopped", metadata: ["address": "\(address)", "error": "\(error)"])
                    }
                })
            logger.info("metrics on http://\(address)/metrics")
        }
        if let interval = notifications.watchdogInterval {
            tasks.append(
                Task { [continuation] in
                    while !Task.isCancelled {
                        continuation.yield(.tick)
                        try? await Sleep.for(interval)
                    }
                })
        }
        return tasks
    }

    private func handle(_ e: Event, _ s: inout State) async {
        switch e {
        case .tick: notifications.watchdog()
        case .transition: break
        case .watchSubSurface(let surface):
            guard s.subSurfaces.insert(surface).inserted else { break }
            await s.watcher.setSurfaces(Array(Set(Self.surfaces(s.current)).union(s.subSurfaces)).sorted())
        case .verdict(let v, let at): onVerdict(v, at: at, &s)
        case .started(let name, let gen, let enforcer): onStarted(name, gen, enforcer, &s)
        case .launchFailed(let name, let gen, let error): onLaunchFailed(name, gen, error, &s)
        case .exited(let name, let gen, let outcome, let ranFor): onExited(name, gen, outcome, ranFor: ranFor, &s)
        case .restartDue(let name, let gen): onRestartDue(name, gen, &s)
        case .reload: await reload(&s)
        case .shutdown: break  // handled by the loop
        }
    }

    /// The status line systemd shows, redone when it changed.
    private func publishStatus(_ s: inout State) {
        let line = StatusLine.supervise(
            states: metrics.states,
            denied: s.order.compactMap { n in s.slots[n].flatMap { slot in s.denied[slot.config.surface].map { (n, $0.verdict, $0.at) } } })
        if line != s.lastStatus {
            s.lastStatus = line
            notifications.status(line)
        }
    }

    // MARK: - events

    /// A verdict for a surface: to every running worker of it; an allow launches its waiting ones.
    private func onVerdict(_ v: Verdict, at: ContinuousClock.Instant, _ s: inout State) {
        let launcher = s.launcher
        let previous = s.verdicts[v.surface]
        s.verdicts[v.surface] = v
        if !s.ready && v.requestID != nil {
            s.ready = true
            notifications.ready("\(s.order.count) workers; first decision known")
        }
        if v.allowed { s.denied[v.surface] = nil } else if previous?.changeKey != v.changeKey { s.denied[v.surface] = (v, Date()) }
        if previous?.changeKey != v.changeKey && !(previous == nil && v.requestID == nil) {
            var m: Logger.Metadata = [
                "surface": "\(v.surface)", "allowed": "\(v.allowed)", "code": "\(v.code.rawValue)", "request_id": "\(v.requestID ?? "-")",
            ]
            if let by = v.changedBy { m["by"] = "\(by)" }
            if let why = v.changeReason { m["reason"] = "\(why)" }
            if let r = v.revision { m["revision"] = "\(r)" }
            s.logger.info("verdict", metadata: m)
        }
        for name in s.order where s.slots[name]?.config.gates.contains(where: { $0.surface == v.surface }) == true {
            s.slots[name]!.enforcer?.gates?.apply(v)
        }
        for name in s.order where s.slots[name]?.config.surface == v.surface {
            if let e = s.slots[name]!.enforcer {
                e.send(.verdict(v, at: at))
            } else if case .waiting = s.slots[name]!.phase, v.allowed {
                launch(&s.slots[name]!, launcher)
            }
        }
    }

    private func onStarted(_ name: String, _ gen: Int, _ enforcer: Enforcer, _ s: inout State) {
        guard var slot = s.slots[name], slot.generation == gen else {
            enforcer.send(.shutdown(grace: .zero))
            return
        }
        slot.phase = .running(enforcer)
        metrics.set(name, .running)
        // A deny that arrived while it was starting applies now.
        if let v = s.verdicts[slot.config.surface] { enforcer.send(.verdict(v, at: .now)) }
        for g in slot.config.gates { if let v = s.verdicts[g.surface] { enforcer.gates?.apply(v) } }
        s.slots[name] = slot
    }

    private func onLaunchFailed(_ name: String, _ gen: Int, _ error: SpawnError, _ s: inout State) {
        guard var slot = s.slots[name], slot.generation == gen else { return }
        // Denied (or no answer) while starting is not the worker's failure: it tries again
        // while the watcher says allowed, else waits for the allow.
        if error.stage != .gate { s.logger.error("worker did not start", metadata: ["worker": "\(name)", "error": "\(error)"]) }
        switch SupervisorRules.afterLaunchFailure(
            refusedAtGate: error.stage == .gate, allowedNow: s.verdicts[slot.config.surface]?.allowed == true,
            policy: slot.config.restart)
        {
        case .restart: scheduleRestart(&slot)
        case .waitForAllow:
            slot.phase = .waiting
            metrics.set(name, .waiting)
        case .fail:
            slot.phase = .failed("\(error)")
            metrics.set(name, .failed)
        }
        s.slots[name] = slot
    }

    private func onExited(_ name: String, _ gen: Int, _ outcome: Enforcer.Outcome, ranFor: Duration, _ s: inout State) {
        let launcher = s.launcher
        guard var slot = s.slots[name], slot.generation == gen else { return }
        let allowedNow = s.verdicts[slot.config.surface]?.allowed == true
        let next = SupervisorRules.afterExit(
            retireOnExit: slot.retireOnExit, replaceOnExit: slot.replaceOnExit, policy: slot.config.restart,
            code: outcome.status.shellCode, killedForDeny: outcome.deniedBy != nil, allowedNow: allowedNow)
        if case .retire = next {
            s.slots[name] = nil
            metrics.set(name, nil)
            s.logger.info("worker removed by reload has exited", metadata: ["worker": "\(name)"])
            return
        }
        if case .replace(let now) = next {
            slot.replaceOnExit = false
            slot.delay = slot.config.restart.delay
            slot.phase = .waiting
            metrics.set(name, .waiting)
            if now { launch(&slot, launcher) }
            s.slots[name] = slot
            return
        }
        s.logger.notice(
            "worker \(outcome.status)",
            metadata: [
                "worker": "\(name)", "ran_for_s": "\(ranFor.components.seconds)", "denied": "\(outcome.deniedBy?.code.rawValue ?? "no")",
            ])
        slot.delay = SupervisorRules.delay(after: ranFor, current: slot.delay, policy: slot.config.restart)
        switch next {
        case .restart: scheduleRestart(&slot)
        case .waitForAllow:
            slot.phase = .waiting
            metrics.set(name, .waiting)
        case .stay(let code):
            slot.phase = .exited(code)
            metrics.set(name, .exited)
        case .retire, .replace: break
        }
        s.slots[name] = slot
    }

    private func onRestartDue(_ name: String, _ gen: Int, _ s: inout State) {
        let launcher = s.launcher
        guard var slot = s.slots[name], slot.generation == gen, case .backoff = slot.phase else { return }
        if SupervisorRules.restartDue(allowedNow: s.verdicts[slot.config.surface]?.allowed == true) {
            metrics.restarted(name)
            launch(&slot, launcher)
        } else {
            slot.phase = .waiting
            metrics.set(name, .waiting)
        }
        s.slots[name] = slot
    }

    // MARK: - reload

    /// SIGHUP: the file is loaded and compiled whole, or refused and the running configuration
    /// stays; then only what changed is touched.
    private func reload(_ s: inout State) async {
        notifications.reloading()
        defer { notifications.ready(s.lastStatus) }
        let new: ConfigFile
        let filters: [String: CompiledFilter]
        do {
            new = try ConfigLoader.load(path: configPath)
            filters = try Self.prepare(new)
        } catch {
            s.logger.error("reload refused; the running configuration stays", metadata: ["error": "\(error)"])
            return
        }
        if new.authority != s.current.authority || new.supervisor != s.current.supervisor {
            s.logger.warning("[authority] and [supervisor] changes take effect at the next restart, not on reload")
        }
        let plan = SupervisorRules.reloadPlan(
            order: s.order, running: s.slots.mapValues(\.config),
            leaving: Set(s.slots.filter(\.value.retireOnExit).keys), new: new.workers)
        retireRemoved(plan.removed, &s)
        applyChanged(plan, new, filters, &s)
        s.order = new.workers.map(\.name) + s.order.filter { n in !new.workers.contains { $0.name == n } && s.slots[n] != nil }
        await register(Self.surfaces(new).filter { !Self.surfaces(s.current).contains($0) })
        await s.watcher.setSurfaces(Array(Set(Self.surfaces(new)).union(s.subSurfaces)).sorted())
        s.current.workers = new.workers
        s.logger.notice(
            "configuration reloaded",
            metadata: [
                "added": "\(plan.added.count)", "changed": "\(plan.changed.count)", "removed": "\(plan.removed.count)",
                "unchanged": "\(plan.unchanged.count)",
            ])
    }

    /// Workers gone from the file: a running one is shut down and forgotten once it exits.
    private func retireRemoved(_ removed: [String], _ s: inout State) {
        for name in removed {
            if let e = s.slots[name]?.enforcer ?? nil {
                s.slots[name]!.retireOnExit = true
                e.send(.shutdown(grace: s.slots[name]!.config.stop.grace))
            } else {
                s.slots[name] = nil
                metrics.set(name, nil)
            }
        }
    }

    /// New workers launch (if allowed); changed ones are replaced once the old one has exited;
    /// unchanged ones are not touched.
    private func applyChanged(_ plan: SupervisorRules.ReloadPlan, _ new: ConfigFile, _ filters: [String: CompiledFilter], _ s: inout State)
    {
        let launcher = s.launcher
        let (added, changed) = (Set(plan.added), Set(plan.changed))
        for w in new.workers {
            if changed.contains(w.name), var slot = s.slots[w.name] {
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
                    if s.verdicts[w.surface]?.allowed == true { launch(&slot, launcher) }
                }
                s.slots[w.name] = slot
            } else if added.contains(w.name) {
                var slot = Slot(config: w, filter: filters[w.name]!, delay: w.restart.delay)
                metrics.set(w.name, .waiting)
                if s.verdicts[w.surface]?.allowed == true { launch(&slot, launcher) }
                s.slots[w.name] = slot
            }
        }
    }

    /// MachineID's flow: a surface is registered before it is validated (never un-revokes).
    /// Returns the surfaces that could not be registered.
    @discardableResult
    private func register(_ surfaces: [String], quiet: Bool = false) async -> [String] {
        guard authority.settings.register else { return [] }
        var failed: [String] = []
        for s in surfaces {
            do {
                _ = try await authority.client.register(s)
            } catch {
                failed.append(s)
                if !quiet {
                    logger.warning(
                        "could not register the surface; it stays denied until it exists (trying again)",
                        metadata: ["surface": "\(s)", "error": "\(error)"])
                }
            }
        }
        return failed
    }

    /// Surfaces whose registration failed at start — the authority unreachable, restarting, a
    /// replica that could not check the key yet — are registered again after 1 s, 2 s, 4 s …
    /// (at most a minute apart) until they are: a refusal at start must not leave a worker
    /// waiting for a surface nobody creates. (A revoked surface stays revoked: registering
    /// never un-revokes.)
    private func retryRegistration(_ surfaces: [String]) async {
        var left = surfaces
        var wait = Duration.seconds(1)
        var attempt = 1
        while !left.isEmpty && !Task.isCancelled {
            try? await Sleep.for(wait)
            if Task.isCancelled { return }
            attempt += 1
            let now = await register(left, quiet: true)
            for s in left where !now.contains(s) {
                logger.notice("surface registered", metadata: ["surface": "\(s)", "attempts": "\(attempt)"])
            }
            left = now
            wait = min(wait * 2, .seconds(60))
        }
    }

    private func launch(_ slot: inout Slot, _ with: Launcher) {
        let spawner = with.spawner
        slot.generation += 1
        slot.phase = .starting
        metrics.set(slot.config.name, .starting)
        let gen = slot.generation
        let config = slot.config
        let filter = slot.filter
        var wlog = with.logger
        wlog[metadataKey: "worker"] = "\(config.name)"
        wlog[metadataKey: "surface"] = "\(config.surface)"
        let gate = StartGate(surface: config.surface, client: authority.client, verifier: authority.verifier, logger: wlog)
        let reporter = Reporter(client: authority.client, instance: spawner.instanceName(authority.instance), logger: wlog)
        let start = WorkerStart(
            config: config, generation: gen, spawner: spawner, filter: filter, gate: gate, reporter: reporter,
            metrics: metrics, openGates: Set(config.gates.filter { with.allowed.contains($0.surface) }.map(\.kind)),
            watcher: with.watcher, authority: authority, continuation: continuation, log: wlog)
        // A task keeps the memory of its deepest await for its whole life. So the start
        // (decision socket, start gate, spawn, gates) runs in a task that ends once the worker
        // runs, and the worker is held from then on by a fresh task of its own, whose frames
        // are only the enforcer's: ~10 KiB less a worker, for as long as it runs.
        Task {
            guard let started = await start.run() else { return }
            Task { await started.hold() }
        }
    }

    private func scheduleRestart(_ slot: inout Slot) {
        slot.phase = .backoff
        metrics.set(slot.config.name, .backoff)
        let delay: Duration
        (delay, slot.delay) = SupervisorRules.backoff(slot.delay, policy: slot.config.restart)
        let name = slot.config.name, gen = slot.generation
        logger.info("restarting", metadata: ["worker": "\(name)", "in": "\(DurationText.format(delay))"])
        Task { [continuation] in
            try? await Sleep.for(delay)
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

    /// Every surface the workers are held to: their own and their gates'.
    static func surfaces(_ c: ConfigFile) -> [String] {
        Array(Set(c.workers.flatMap { [$0.surface] + $0.gates.map(\.surface) })).sorted()
    }
}
