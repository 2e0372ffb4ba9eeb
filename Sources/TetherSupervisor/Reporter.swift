import Foundation
import Logging
import TetherClient
import TetherCore
import TetherRuntime

/// What a supervisor did to a worker, as the authority's `/devices/report` takes it.
public struct WorkerReport: Sendable, Equatable {
    public enum State: String, Sendable {
        case started, running, stopped, killed, resumed, exited
        /// A gate's surface: its calls now fail (acknowledges a revoke of it) / go through again.
        case gateClosed = "gate_closed", gateOpen = "gate_open"
        /// A gate's surface: calls it denied (or, in record mode, would have), in `detail`.
        case denied
    }

    public var surface: String
    public var state: State
    public var pids: [Int32]
    public var at: Date
    /// The request id of the decision this acts on (the revoke's, for an ack).
    public var requestID: String?
    /// What happened, for a human: the denied calls of a gate ("connect ×3 by 1234 /usr/bin/curl").
    public var detail: String?

    public init(surface: String, state: State, pids: [Int32], at: Date = Date(), requestID: String?, detail: String? = nil) {
        self.detail = detail
        self.surface = surface
        self.state = state
        self.pids = pids
        self.at = at
        self.requestID = requestID
    }
}

/// Sends reports in order, off the enforcement path: a stop never waits for its report. A
/// report that fails is retried a few times, then dropped with a warning (the authority also
/// sees the supervisor's state through its watch stream).
public final class Reporter: Sendable {
    private let continuation: AsyncStream<WorkerReport>.Continuation
    private let task: Task<Void, Never>

    public init(client: AuthorityClient, instance: String, logger: Logger) {
        let (stream, continuation) = AsyncStream<WorkerReport>.makeStream()
        self.continuation = continuation
        task = Task {
            var client = client
            client.timeout = .seconds(3)
            for await r in stream {
                var body: [String: Any?] = [
                    "deviceId": r.surface, "instance": instance, "state": r.state.rawValue,
                    "pids": r.pids.map { Int($0) }, "at": Timestamp.string(r.at), "request_id": r.requestID,
                ]
                if let d = r.detail { body["detail"] = d }
                for attempt in 1...3 {
                    do {
                        _ = try await client.report(body)
                        break
                    } catch {
                        if attempt == 3 {
                            logger.warning("report not delivered", metadata: ["surface": "\(r.surface)", "state": "\(r.state.rawValue)", "error": "\(error)"])
                        } else {
                            try? await Sleep.for(.milliseconds(200 * attempt))
                        }
                    }
                }
            }
        }
    }

    public func send(_ r: WorkerReport) { continuation.yield(r) }

    /// Delivers what is queued (bounded), then stops.
    public func finish(within limit: Duration = .seconds(3)) async {
        continuation.finish()
        let t = task
        await withTaskGroup(of: Void.self) { g in
            g.addTask { await t.value }
            g.addTask { try? await Sleep.for(limit) }
            await g.next()
            g.cancelAll()
        }
    }
}
