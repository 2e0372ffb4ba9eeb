import Foundation
import Logging
import Prometheus
import Synchronization
import TetherClient
import TetherCore
import TetherSystem

/// The supervisor's Prometheus metrics: decisions, authority errors, revocation-to-stopped,
/// restarts as they happen; workers by state and lease ages read at scrape time.
public final class SupervisorMetrics: Sendable {
    let registry = PrometheusCollectorRegistry()
    let stoppedIn: DurationHistogram
    private let workerStates = Mutex<[String: WorkerState]>([:])

    public enum WorkerState: String, Sendable, CaseIterable {
        case waiting, starting, running, frozen, stopping, backoff, exited, failed
    }

    public init() {
        stoppedIn = registry.makeDurationHistogram(
            descriptor: MetricNameDescriptor(
                metricName: "tether_revocation_to_stopped_seconds", unitName: "",
                helpText: "From a deny reaching the supervisor to the kernel confirming the worker stopped (frozen, or gone for kill/term)."
            ),
            buckets: [
                .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(25),
                .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(5), .seconds(15),
            ])
    }

    func observe(_ o: WatchObservation) {
        switch o {
        case .decision(let surface, let code):
            registry.makeCounter(
                descriptor: MetricNameDescriptor(
                    metricName: "tether_decisions_total", unitName: "",
                    helpText: "Decisions received from the authority (renewals included)."),
                labels: [("surface", surface), ("code", code.rawValue)]
            ).increment()
        case .error(let kind):
            registry.makeCounter(
                descriptor: MetricNameDescriptor(
                    metricName: "tether_authority_errors_total", unitName: "",
                    helpText: "Failed authority calls: unreachable, http_5xx, refused, bad_response, bad_signature; watch_* for the stream."
                ), labels: [("kind", kind)]
            ).increment()
        }
    }

    func transition(_ t: Transition) {
        if let d = t.stoppedIn, t.phase == .frozen || t.phase == .killed {
            stoppedIn.recordNanoseconds(Int64(d.components.seconds) * 1_000_000_000 + d.components.attoseconds / 1_000_000_000)
        }
    }

    func gateDenials(worker: String, _ denials: [(GateDenial, Int)]) {
        for (d, n) in denials {
            registry.makeCounter(
                descriptor: MetricNameDescriptor(
                    metricName: "tether_gate_denials_total", unitName: "",
                    helpText: "Gated calls denied (mode enforce) or that would have been (mode record), by worker, gate and call."),
                labels: [("worker", worker), ("gate", d.gate.rawValue), ("call", d.call), ("mode", d.recorded ? "record" : "enforce")]
            ).increment(by: Int64(n))
        }
    }

    /// A decision-socket question refused for the worker's budget (RATE_LIMITED, BUSY, TOO_MANY).
    func decisionRefused(worker: String, code: String) {
        registry.makeCounter(
            descriptor: MetricNameDescriptor(
                metricName: "tether_decision_socket_refused_total", unitName: "",
                helpText: "Decision-socket questions refused for the worker's budget: RATE_LIMITED, BUSY, TOO_MANY."),
            labels: [("worker", worker), ("code", code)]
        ).increment()
    }

    func restarted(_ worker: String) {
        registry.makeCounter(
            descriptor: MetricNameDescriptor(
                metricName: "tether_worker_restarts_total", unitName: "", helpText: "Worker launches after the first."),
            labels: [("worker", worker)]
        ).increment()
    }

    func set(_ worker: String, _ state: WorkerState?) {
        workerStates.withLock { $0[worker] = state }
    }

    public var states: [String: WorkerState] { workerStates.withLock { $0 } }

    /// The exposition text, with the gauges read now.
    func render(watcher: SurfaceWatcher?) async -> String {
        var counts = Dictionary(uniqueKeysWithValues: WorkerState.allCases.map { ($0, 0) })
        for s in states.values { counts[s, default: 0] += 1 }
        for (state, n) in counts {
            registry.makeGauge(
                descriptor: MetricNameDescriptor(metricName: "tether_workers", unitName: "", helpText: "Workers by state."),
                labels: [("state", state.rawValue)]
            ).set(Double(n))
        }
        for (v, age) in await watcher?.snapshot() ?? [] {
            registry.makeGauge(
                descriptor: MetricNameDescriptor(
                    metricName: "tether_surface_allowed", unitName: "",
                    helpText: "1 while the surface's verdict is an allow with a live lease."), labels: [("surface", v.surface)]
            ).set(v.allowed ? 1.0 : 0.0)
            registry.makeGauge(
                descriptor: MetricNameDescriptor(
                    metricName: "tether_lease_age_seconds", unitName: "",
                    helpText: "Seconds since the last decision for the surface (-1: none yet)."), labels: [("surface", v.surface)]
            ).set(age ?? -1)
        }
        var buffer: [UInt8] = []
        registry.emit(into: &buffer)
        return String(decoding: buffer, as: UTF8.self)
    }

    /// Serves `GET /metrics` on `address` until cancelled.
    func serve(address: String, watcher: @escaping @Sendable () -> SurfaceWatcher?, logger: Logger) async throws {
        guard let (host, port) = HostPort.split(address) else { return }
        try await MetricsServer.run(host: host, port: port, logger: logger) { await self.render(watcher: watcher()) }
    }
}
