import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import ServiceLifecycle
import Synchronization
import TetherCore

/// Sends notifications to the `[[notify.webhook]]`s: one queue and one sender per webhook, in
/// order, each attempt bounded by the webhook's `timeout`, retried with backoff.
///
/// Never on the path of a change: `send` only enqueues (a dead or hung webhook delays no
/// revoke), and a queue that grows past `queueLimit` drops its oldest, with a log line.
public final class Notifier: Service, Sendable {
    public let settings: NotifySettings
    private let queues: [(hook: WebhookSettings, stream: AsyncStream<Notification>, continuation: AsyncStream<Notification>.Continuation)]
    private let logger: Logger
    /// The first retry's wait; each later one doubles it, up to a minute.
    let backoff: Duration
    static let queueLimit = 1000

    public init(settings: NotifySettings, logger: Logger, backoff: Duration = .seconds(1)) {
        self.settings = settings
        self.logger = logger
        self.backoff = backoff
        queues = settings.webhooks.map { hook in
            let (s, c) = AsyncStream<Notification>.makeStream(bufferingPolicy: .bufferingNewest(Self.queueLimit))
            return (hook, s, c)
        }
    }

    /// Whether anyone wants `event`.
    public func wants(_ event: NotifyEvent) -> Bool { queues.contains { $0.hook.events.contains(event) } }

    /// Enqueues for every webhook that wants it; returns at once.
    public func send(_ n: Notification) {
        for q in queues where q.hook.events.contains(n.event) {
            if case .dropped(let old) = q.continuation.yield(n) {
                logger.error(
                    "webhook queue full: a notification dropped",
                    metadata: [
                        "webhook": "\(q.hook.name)", "event": "\(old.event.rawValue)", "request_id": "\(old.tracked.change.requestID)",
                    ])
            }
        }
    }

    /// How long a shutdown gives what is queued: then every delivery is cancelled (a hung
    /// webhook must not hold the authority's exit, or systemd's stop, for its retries).
    static let shutdownGrace: Duration = .seconds(5)

    public func run() async throws {
        // A service that returns early ends the service group: with nothing to send, wait.
        guard !queues.isEmpty else {
            try? await gracefulShutdown()
            return
        }
        var config = HTTPClient.Configuration()
        config.redirectConfiguration = .disallow
        config.timeout.connect = .seconds(5)
        let http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: config)
        let senders = Task {
            await withTaskGroup(of: Void.self) { group in
                for q in queues {
                    group.addTask { [self] in
                        for await n in q.stream {
                            guard !Task.isCancelled else { break }
                            await deliver(n, to: q.hook, http: http)
                        }
                    }
                }
            }
        }
        let deadline = Mutex<Task<Void, Never>?>(nil)
        await withGracefulShutdownHandler {
            await senders.value
        } onGracefulShutdown: { [queues, logger] in
            // What is queued is still tried, for `shutdownGrace`; then the rest is given up.
            for q in queues { q.continuation.finish() }
            deadline.withLock {
                $0 = Task {
                    try? await Task.sleep(for: Self.shutdownGrace)
                    guard !Task.isCancelled else { return }
                    senders.cancel()
                    logger.notice("shutting down: undelivered notifications given up")
                }
            }
        }
        deadline.withLock { $0?.cancel() }
        try? await http.shutdown()
    }

    /// One notification to one webhook: the attempt, then `retries` more after 1 s, 2 s, 4 s …
    /// while it fails with a network error, a timeout, 429 or a 5xx. Other answers are final.
    func deliver(_ n: Notification, to hook: WebhookSettings, http: HTTPClient) async {
        let body = hook.format == .slack ? n.slack() : n.json()
        let meta: Logger.Metadata = ["webhook": "\(hook.name)", "event": "\(n.event.rawValue)", "delivery": "\(n.deliveryID)"]
        var wait = backoff
        for attempt in 0...hook.retries {
            if Task.isCancelled { break }
            if attempt > 0 {
                try? await Task.sleep(for: wait)
                if Task.isCancelled { break }
                wait = min(wait * 2, .seconds(60))
            }
            var req = HTTPClientRequest(url: hook.url)
            req.method = .POST
            req.headers.add(name: "Content-Type", value: "application/json")
            req.headers.add(name: "User-Agent", value: "tether-authority/\(TetherVersion.number)")
            req.headers.add(name: "X-Tether-Event", value: n.event.rawValue)
            req.headers.add(name: "X-Tether-Delivery", value: n.deliveryID)
            if let secret = hook.secret {
                let ts = String(Int(Date().timeIntervalSince1970))
                req.headers.add(name: "X-Tether-Webhook-Timestamp", value: ts)
                req.headers.add(
                    name: "X-Tether-Webhook-Signature", value: Notification.signature(secret: secret, timestamp: ts, body: body))
            }
            req.body = .bytes(ByteBuffer(data: body))
            let outcome: String
            do {
                let response = try await http.execute(req, timeout: .nanoseconds(Int64(hook.timeout.timeInterval * 1e9)))
                _ = try? await response.body.collect(upTo: 64 * 1024)
                let code = response.status.code
                if (200..<300).contains(code) {
                    logger.info("webhook delivered", metadata: meta.merging(["status": "\(code)", "attempt": "\(attempt + 1)"]) { $1 })
                    return
                }
                if code != 429 && code < 500 {
                    logger.error("webhook refused the notification; not retried", metadata: meta.merging(["status": "\(code)"]) { $1 })
                    return
                }
                outcome = "HTTP \(code)"
            } catch {
                outcome = "\(error)"
            }
            logger.warning(
                "webhook attempt failed",
                metadata: meta.merging(["attempt": "\(attempt + 1)", "of": "\(hook.retries + 1)", "error": "\(outcome)"]) { $1 })
        }
        logger.error("webhook notification given up", metadata: meta.merging(["attempts": "\(hook.retries + 1)"]) { $1 })
    }
}
