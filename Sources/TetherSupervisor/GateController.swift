import Foundation
import Logging
import Synchronization
import TetherClient
import TetherCore
import TetherRuntime
import TetherSystem

/// Holds a worker's gates to their surfaces' verdicts: opens and closes them on its
/// `GateServer`, shuts down the worker's open connections when `net` closes, acknowledges each
/// change to the authority, and once a second logs, counts and reports the calls denied.
public final class GateController: Sendable {
    public let gates: [GateConfig]
    let server: GateServer
    let worker: Worker
    let reporter: Reporter?
    let logger: Logger
    let onDenials: @Sendable ([(GateDenial, Int)]) -> Void
    private let flusher = Mutex<Task<Void, Never>?>(nil)

    /// How often denied calls are logged and reported: aggregated, never one line per call.
    public static let flushInterval: Duration = .seconds(1)

    public init(
        gates: [GateConfig], server: GateServer, worker: Worker, reporter: Reporter?, logger: Logger,
        onDenials: @escaping @Sendable ([(GateDenial, Int)]) -> Void = { _ in }
    ) {
        self.gates = gates
        self.server = server
        self.worker = worker
        self.reporter = reporter
        self.logger = logger
        self.onDenials = onDenials
    }

    /// The surfaces of the gates.
    public var surfaces: [String] { gates.map(\.surface) }

    /// Flushes denials every `flushInterval` until `finish`.
    public func start() {
        let t = Task { [self] in
            while !Task.isCancelled {
                try? await Sleep.for(Self.flushInterval)
                flush()
            }
        }
        flusher.withLock { $0 = t }
    }

    /// Stops flushing, after a last flush.
    public func finish() {
        flusher.withLock { $0?.cancel() }
        flush()
    }

    /// A verdict for one of the gates' surfaces (others are ignored).
    public func apply(_ v: Verdict) {
        for g in gates where g.surface == v.surface {
            let wasOpen = server.isOpen(g.kind)
            guard wasOpen != v.allowed else { continue }
            server.set(g.kind, open: v.allowed)
            var m: Logger.Metadata = [
                "gate": "\(g.kind.rawValue)", "gate_surface": "\(g.surface)", "code": "\(v.code.rawValue)", "mode": "\(g.mode.rawValue)",
            ]
            if let r = v.requestID { m["request_id"] = "\(r)" }
            if let by = v.changedBy { m["by"] = "\(by)" }
            if let why = v.changeReason { m["reason"] = "\(why)" }
            let pids: [Int32] = worker.state().live.map(\.pid).sorted()
            if v.allowed {
                if g.kind == .net, let n = worker.network, n.isCut { n.restore() }
                logger.notice("gate opened: its calls go through again", metadata: m)
                reporter?.send(WorkerReport(surface: g.surface, state: .gateOpen, pids: pids, requestID: v.requestID))
                continue
            }
            if g.kind == .net && g.mode == .enforce, let n = worker.network {
                // The link itself: the namespace's stack stops, and with it every byte of every
                // connection the worker holds, wherever it keeps the descriptor.
                m["link"] = n.cut() ? "cut" : "cut (unverified)"
            } else if g.kind == .net && g.mode == .enforce, worker.networkMode == .host {
                // In the host's network namespace there is no link of the worker's own to cut:
                // connections made while the gate was open are shut down both ways, in every
                // process of the worker (those it can see: a descriptor in flight or in a
                // thread's own table escapes this — the reason a worker has a namespace of its
                // own by default). Again a moment later, for a socket whose creation was let
                // through just before the gate closed and completed after the first sweep.
                let shut = GateServer.shutDownInetSockets(of: pids)
                m["connections_shut"] = "\(shut)"
                let worker = self.worker, logger = self.logger
                Task.detached {
                    try? await Sleep.for(.milliseconds(200))
                    let late = GateServer.shutDownInetSockets(of: worker.state().live.map(\.pid))
                    if late > 0 { logger.notice("gate net: late sockets shut down", metadata: ["connections_shut": "\(late)"]) }
                }
            }
            logger.notice(
                g.mode == .record
                    ? "gate closed (record mode: its calls are logged, not denied)" : "gate closed: its calls now fail with EPERM",
                metadata: m)
            reporter?.send(WorkerReport(surface: g.surface, state: .gateClosed, pids: pids, requestID: v.requestID))
        }
    }

    /// Logs, counts and reports what was denied since the last flush.
    public func flush() {
        let denials = server.drainDenials()
        guard !denials.isEmpty else { return }
        onDenials(denials)
        for (d, count) in denials {
            logger.warning(
                d.recorded ? "gate would deny (record mode)" : "gate denied",
                metadata: [
                    "gate": "\(d.gate.rawValue)", "call": "\(d.call)", "pid": "\(d.pid)", "executable": "\(d.executable)",
                    "count": "\(count)",
                ])
        }
        for g in gates {
            let mine = denials.filter { $0.0.gate == g.kind }
            guard !mine.isEmpty else { continue }
            reporter?.send(
                WorkerReport(
                    surface: g.surface, state: .denied, pids: Array(Set(mine.map(\.0.pid))).sorted(), requestID: nil,
                    detail: Self.summary(mine)))
        }
    }

    /// "connect ×3 by 1234 (/usr/bin/curl); execve ×1 by 1240 (/usr/bin/git) [record]", at most 500 characters.
    static func summary(_ denials: [(GateDenial, Int)]) -> String {
        var parts: [String] = []
        for (d, n) in denials { parts.append("\(d.call) ×\(n) by \(d.pid) (\(d.executable))\(d.recorded ? " [record]" : "")") }
        let text = parts.joined(separator: "; ")
        return text.count > 500 ? String(text.prefix(497)) + "…" : text
    }
}

extension GateController {
    /// Reports where each gate stands (at the worker's start), so `tether status` shows it.
    public func reportStates() {
        let pids = [worker.pid]
        for g in gates {
            reporter?.send(
                WorkerReport(surface: g.surface, state: server.isOpen(g.kind) ? .gateOpen : .gateClosed, pids: pids, requestID: nil))
        }
    }
}

/// How a worker's gates start: each surface registered (MachineID's flow) and asked once,
/// fail-closed — a gate whose surface is denied, unknown or unreachable starts closed.
public struct GateStart: Sendable {
    public var open: Set<GateKind> = []
    /// The allows it got, for the watcher to start from.
    public var decisions: [Decision] = []

    public static func ask(_ gates: [GateConfig], authority: ResolvedAuthority, logger: Logger) async -> GateStart {
        var out = GateStart()
        var answers: [String: DecisionCheck.Outcome] = [:]
        for surface in Set(gates.map(\.surface)).sorted() {
            if authority.settings.register { _ = try? await authority.client.register(surface) }
            let outcome = await DecisionCheck.check(surface, client: authority.client, verifier: authority.verifier)
            answers[surface] = outcome
            if case .allowed(let d) = outcome { out.decisions.append(d) }
        }
        for g in gates {
            switch answers[g.surface] {
            case .allowed?:
                out.open.insert(g.kind)
            case .denied(_, let code, let detail)?:
                logger.notice(
                    "gate starts closed: its surface is denied",
                    metadata: [
                        "gate": "\(g.kind.rawValue)", "gate_surface": "\(g.surface)", "code": "\(code.rawValue)", "detail": "\(detail)",
                    ])
            case .unreachable(let m)?:
                logger.warning(
                    "gate starts closed: its surface could not be asked",
                    metadata: ["gate": "\(g.kind.rawValue)", "gate_surface": "\(g.surface)", "error": "\(m)"])
            case nil:
                break
            }
        }
        return out
    }
}
