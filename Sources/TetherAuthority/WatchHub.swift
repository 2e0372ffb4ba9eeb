import Foundation
import TetherCore

/// What a watch connection is told by the hub.
enum StreamItem: Sendable {
    /// The state of these surfaces changed through the request `requestID` (durably).
    case changed(deviceIds: [String], requestID: String)
    /// Every watched surface changed: the org was halted or resumed.
    case orgChanged(requestID: String)
    /// Time to renew the leases.
    case renew
    /// The server is going down: say so and end the stream.
    case shutdown
}

/// Who acknowledged a change, and who did not in time.
public struct AckResult: Sendable {
    public var acked: [Report]
    /// `instance` of each watcher (and the surface) that had not reported when the wait ended.
    public var missing: [(instance: String, deviceId: String)]
}

/// Fans state changes out to watch connections and collects the acknowledgements of revokes.
///
/// A connection's stream buffers the newest 256 items. A connection too slow to take them is
/// ended rather than left behind: its client reconnects and gets the current state at once, so
/// a slow reader can never miss the last change of a surface, and never holds up the others.
actor WatchHub {
    private struct Subscriber {
        let instance: String
        /// The key that opened the stream.
        let keyName: String
        let surfaces: Set<String>
        let continuation: AsyncStream<StreamItem>.Continuation
    }

    private struct AckWaiter {
        let requestID: String
        /// Report states that acknowledge this change.
        let accepting: Set<String>
        /// For each expected (instance, surface), the keys whose streams hold it: only their
        /// reports count, so another agent key cannot forge the "stopped" on-call reads.
        let keys: [Pair: Set<String>]
        var pending: Set<Pair>
        var acked: [Report]
        var continuation: CheckedContinuation<AckResult, Never>?
    }

    struct Pair: Hashable, Sendable {
        let instance: String
        let deviceId: String
    }

    private var subscribers: [Int: Subscriber] = [:]
    private var streamsByKey: [String: Int] = [:]
    private var bySurface: [String: Set<Int>] = [:]
    private var nextID = 0
    private var ackWaiters: [UUID: AckWaiter] = [:]
    private var closed = false

    enum Refusal: Error { case closed, tooMany(String) }

    /// Registers a connection, within `maxStreams` in all and `maxPerKey` for its key.
    func subscribe(instance: String, keyName: String, surfaces: Set<String>, maxStreams: Int = .max, maxPerKey: Int = .max)
        throws(Refusal) -> (id: Int, stream: AsyncStream<StreamItem>, continuation: AsyncStream<StreamItem>.Continuation)
    {
        guard !closed else { throw .closed }
        guard subscribers.count < maxStreams else { throw .tooMany("the authority holds \(maxStreams) watch streams, its limit") }
        guard (streamsByKey[keyName] ?? 0) < maxPerKey else {
            throw .tooMany("the key \"\(keyName)\" holds \(maxPerKey) watch streams, the limit per key")
        }
        streamsByKey[keyName, default: 0] += 1
        let (stream, continuation) = AsyncStream<StreamItem>.makeStream(bufferingPolicy: .bufferingNewest(256))
        nextID += 1
        let id = nextID
        subscribers[id] = Subscriber(instance: instance, keyName: keyName, surfaces: surfaces, continuation: continuation)
        for s in surfaces { bySurface[s, default: []].insert(id) }
        return (id, stream, continuation)
    }

    func unsubscribe(_ id: Int) {
        guard let sub = subscribers.removeValue(forKey: id) else { return }
        streamsByKey[sub.keyName, default: 1] -= 1
        if streamsByKey[sub.keyName] == 0 { streamsByKey[sub.keyName] = nil }
        for s in sub.surfaces {
            bySurface[s]?.remove(id)
            if bySurface[s]?.isEmpty == true { bySurface[s] = nil }
        }
        sub.continuation.finish()
    }

    func publish(deviceIds: [String], requestID: String) {
        var targets: [Int: [String]] = [:]
        for d in deviceIds { for id in bySurface[d] ?? [] { targets[id, default: []].append(d) } }
        for (id, ds) in targets { send(id, .changed(deviceIds: ds, requestID: requestID)) }
    }

    func publishOrgChange(requestID: String) {
        for id in Array(subscribers.keys) { send(id, .orgChanged(requestID: requestID)) }
    }

    private func send(_ id: Int, _ item: StreamItem) {
        guard let sub = subscribers[id] else { return }
        if case .dropped = sub.continuation.yield(item) {
            // Too slow: end it; the client reconnects to the current state.
            unsubscribe(id)
        }
    }

    /// Watcher instances of a surface (or of every surface with nil), as (instance, surface).
    func watchers(of deviceIds: [String]?) -> [Pair] {
        var out = Set<Pair>()
        if let deviceIds {
            for d in deviceIds { for id in bySurface[d] ?? [] { if let s = subscribers[id] { out.insert(Pair(instance: s.instance, deviceId: d)) } } }
        } else {
            for s in subscribers.values { for d in s.surfaces { out.insert(Pair(instance: s.instance, deviceId: d)) } }
        }
        return Array(out)
    }

    var connectionCount: Int { subscribers.count }

    func watcherCount(of deviceId: String) -> Int { bySurface[deviceId]?.count ?? 0 }

    // MARK: - acknowledgements

    /// Starts collecting reports on `requestID` from `expected`. Call before the change is
    /// published, so that no fast report can arrive before anyone listens for it.
    func expectAcks(requestID: String, expected: [Pair], accepting: Set<String>) -> UUID {
        let key = UUID()
        var keys: [Pair: Set<String>] = [:]
        for p in expected {
            for id in bySurface[p.deviceId] ?? [] {
                if let s = subscribers[id], s.instance == p.instance { keys[p, default: []].insert(s.keyName) }
            }
        }
        ackWaiters[key] = AckWaiter(requestID: requestID, accepting: accepting, keys: keys, pending: Set(expected), acked: [], continuation: nil)
        return key
    }

    /// Waits until every expected report is in, or `timeout` passes.
    func awaitAcks(_ key: UUID, timeout: Duration) async -> AckResult {
        guard let w = ackWaiters[key] else { return AckResult(acked: [], missing: []) }
        if w.pending.isEmpty {
            ackWaiters[key] = nil
            return result(w)
        }
        return await withCheckedContinuation { c in
            ackWaiters[key]?.continuation = c
            Task { [weak self] in
                try? await Task.sleep(for: timeout)
                await self?.finishAckWait(key)
            }
        }
    }

    func cancelAcks(_ key: UUID) { ackWaiters[key] = nil }

    func deliver(_ report: Report) {
        guard let rid = report.requestID else { return }
        for (key, var w) in ackWaiters where w.requestID == rid && w.accepting.contains(report.state) {
            let pair = Pair(instance: report.instance, deviceId: report.deviceId)
            guard w.keys[pair]?.contains(report.keyName) == true, w.pending.remove(pair) != nil else { continue }
            w.acked.append(report)
            ackWaiters[key] = w
            if w.pending.isEmpty && w.continuation != nil { finishAckWait(key) }
        }
    }

    private func finishAckWait(_ key: UUID) {
        guard let w = ackWaiters[key], let c = w.continuation else { return }
        ackWaiters[key] = nil
        c.resume(returning: result(w))
    }

    private func result(_ w: AckWaiter) -> AckResult {
        AckResult(
            acked: w.acked,
            missing: w.pending.sorted { ($0.instance, $0.deviceId) < ($1.instance, $1.deviceId) }.map { ($0.instance, $0.deviceId) })
    }

    // MARK: - shutdown

    /// Tells every connection to end, and refuses new ones.
    func shutdown() {
        closed = true
        for sub in subscribers.values {
            sub.continuation.yield(.shutdown)
            sub.continuation.finish()
        }
        subscribers = [:]
        streamsByKey = [:]
        bySurface = [:]
        for key in Array(ackWaiters.keys) { finishAckWait(key) }
    }
}
