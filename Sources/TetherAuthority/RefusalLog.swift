import Foundation
import ServiceLifecycle
import TetherCore

/// Refused requests — unknown keys (401), keys outside their role or scope (403) — go to the
/// audit log aggregated: one row per (status, key, path) per window with its count and first and
/// last time, at most `maxRows` rows a window and one more for the rest. A flood of bad keys
/// writes a few rows a window, never a row a request. Nothing of a presented key is kept.
public actor RefusalLog {
    struct Bucket {
        var count = 0
        var first: Date
        var last: Date
    }

    struct Key: Hashable {
        let status: Int
        let who: String
        let path: String
    }

    public nonisolated let maxRows: Int
    private var buckets: [Key: Bucket] = [:]
    private var others: Bucket?
    private let store: any AuthorityStore

    init(store: any AuthorityStore, maxRows: Int = 100) {
        self.store = store
        self.maxRows = maxRows
    }

    public func record(status: Int, who: String, path: String, at now: Date = Date()) {
        let k = Key(status: status, who: String(who.prefix(64)), path: String(path.prefix(128)))
        if buckets[k] != nil {
            buckets[k]!.count += 1
            buckets[k]!.last = now
        } else if buckets.count < maxRows {
            buckets[k] = Bucket(count: 1, first: now, last: now)
        } else {
            others = others.map { Bucket(count: $0.count + 1, first: $0.first, last: now) } ?? Bucket(count: 1, first: now, last: now)
        }
    }

    /// Writes the window's rows and starts a new window. Returns how many rows it wrote.
    @discardableResult
    public func flush() async -> Int {
        var rows = buckets.sorted { ($0.key.status, $0.key.who, $0.key.path) < ($1.key.status, $1.key.who, $1.key.path) }.map { k, b in
            RefusalRow(
                actor: k.who, action: "refused-\(k.status)", count: b.count, path: k.path,
                first: Timestamp.string(b.first), last: Timestamp.string(b.last))
        }
        if let o = others {
            rows.append(
                RefusalRow(
                    actor: "various", action: "refused", count: o.count, path: "more keys and paths than \(maxRows)",
                    first: Timestamp.string(o.first), last: Timestamp.string(o.last)))
        }
        buckets = [:]
        others = nil
        guard !rows.isEmpty else { return 0 }
        do {
            try await store.addRefusals(rows)
        } catch {
            return 0
        }
        return rows.count
    }
}

/// One aggregated audit row of refused requests.
public struct RefusalRow: Sendable, Equatable {
    public var actor: String
    public var action: String
    public var count: Int
    public var path: String
    public var first: String
    public var last: String

    /// The audit row's reason: "12 requests to /api/v1/devices/revoke, 03:01:02.003Z to …".
    public var reason: String { "\(count) request\(count == 1 ? "" : "s") to \(path), \(first) to \(last)" }
}

/// Every `window`: flushes the refusal log, and prunes what is past its retention. Once more
/// at shutdown.
struct RefusalFlusher: Service {
    let authority: Authority
    let window: Duration

    func run() async throws {
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: window) }
            await authority.refusals.flush()
            _ = try? await authority.prune()
        }
    }
}
