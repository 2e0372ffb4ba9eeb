import Foundation
import Logging
import Synchronization
import TetherClient
import TetherCore
import TetherRuntime

/// What a supervisor did to a worker, as the authority's `/devices/report` takes it.
public struct WorkerReport: Sendable, Equatable {
    public typealias State = ReportState

    public var surface: String
    public var state: State
    public var pids: [Int32]
    public var at: Date
    /// The request id of the decision this acts on (the revoke's, for an ack).
    public var requestID: String?
    /// What happened, for a human: the denied calls of a gate ("connect ×3 by 1234 /usr/bin/curl").
    public var detail: String?

    public init(surface: String, state: State, pids: [Int32], at: Date = Date(), requestID: String?, detail: String? = nil) {
        // Text a worker may have chosen (an executable's name): one printable line.
        self.detail = detail.map { PrintableText.isPrintable($0) ? $0 : PrintableText.escape($0, limit: 1000) }
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
///
/// A task runs only while reports are queued: an idle worker holds no task, no stream and none
/// of the HTTP client's frames (a task keeps the memory of its deepest await for its whole life:
/// ~10 KiB for a report's request, per worker, for as long as the worker ran).
public final class Reporter: Sendable {
    private struct Queue {
        var pending: [WorkerReport] = []
        /// The task sending `pending`, while there is one.
        var sender: Task<Void, Never>?
        var finished = false
    }

    private let queue = Mutex(Queue())
    private let client: AuthorityClient
    private let instance: String
    private let logger: Logger

    public init(client: AuthorityClient, instance: String, logger: Logger) {
        var client = client
        client.timeout = .seconds(3)
        self.client = client
        self.instance = instance
        self.logger = logger
    }

    public func send(_ r: WorkerReport) {
        queue.withLock { q in
            guard !q.finished else { return }
            q.pending.append(r)
            if q.sender == nil { q.sender = Task { await self.drain() } }
        }
    }

    /// Sends what is queued, oldest first; the task ends (and `sender` is cleared under the same
    /// lock a `send` takes) when nothing is left, so a report is never queued without a sender.
    private func drain() async {
        while let r = queue.withLock({ q -> WorkerReport? in
            if q.pending.isEmpty {
                q.sender = nil
                return nil
            }
            return q.pending.removeFirst()
        }) {
            await deliver(r)
        }
    }

    private func deliver(_ r: WorkerReport) async {
        var body = ReportBody(
            surface: r.surface, instance: instance, state: r.state, pids: r.pids, at: Timestamp.string(r.at),
            requestID: r.requestID, detail: r.detail)
        var attempt = 1
        var limited = 0
        while attempt <= 3 {
            do {
                _ = try await client.report(body)
                return
            } catch ClientError.refused(let status, _, _, _) where status == 429 && limited < Self.rateLimitedTries {
                // The key's write budget is spent (a fleet on one key, all reporting at once):
                // later, not dropped. An acknowledgement a change waits for is let through
                // anyway; this is for the rest (0.5, 1, 2, then 4 s apart: about a minute).
                try? await Sleep.for(.milliseconds(500 * (1 << min(limited, 3))))
                limited += 1
                continue
            } catch ClientError.refused(let status, let code, let message, _) where status == 400 && body.detail != nil {
                // Refused for what it says: said loudly, then sent again in the safest form
                // (the detail as ASCII, then without it) — never dropped for a worker's text.
                logger.error(
                    "report refused by the authority; sending it again in a safe form",
                    metadata: [
                        "surface": "\(r.surface)", "state": "\(r.state.rawValue)", "status": "\(status)", "code": "\(code)",
                        "error": "\(PrintableText.escape(message))",
                    ])
                let ascii = body.detail.map {
                    String(PrintableText.escape($0, limit: 900).unicodeScalars.map { $0.isASCII ? Character($0) : "?" })
                }
                body.detail = ascii == body.detail ? nil : ascii
            } catch {
                if attempt == 3 {
                    logger.error(
                        "report not delivered", metadata: ["surface": "\(r.surface)", "state": "\(r.state.rawValue)", "error": "\(error)"])
                } else {
                    try? await Sleep.for(.milliseconds(200 * attempt))
                }
            }
            attempt += 1
        }
    }

    /// How many times a report refused for the key's rate (429) is sent again before it counts
    /// as one failed attempt.
    static let rateLimitedTries = 16

    /// Delivers what is queued (bounded), then stops: later reports are dropped.
    public func finish(within limit: Duration = .seconds(3)) async {
        let sender = queue.withLock { q in
            q.finished = true
            return q.sender
        }
        guard let sender else { return }
        await withTaskGroup(of: Void.self) { g in
            g.addTask { await sender.value }
            g.addTask { try? await Sleep.for(limit) }
            await g.next()
            g.cancelAll()
        }
    }
}
