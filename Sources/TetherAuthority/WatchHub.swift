import Foundation
import TetherCore

/// What a watch connection is told by the hub.
enum StreamItem: Sendable {
    /// A committed change's event, ready to write: the same bytes for every stream.
    case frame(String, revision: UInt64)
    /// Time to renew the leases (every third of a lease, and at once after a halt or resume).
    case renew
    /// The server is going down: say so and end the stream.
    case shutdown
}

/// What a new stream starts from.
struct Subscription: Sendable {
    let id: Int
    let stream: AsyncStream<StreamItem>
    let continuation: AsyncStream<StreamItem>.Continuation
    /// The newest revision applied when the stream joined: every later change reaches it.
    let head: UInt64
    /// The changes after the client's `Last-Event-ID` up to `head` that concern the stream, when
    /// the hub still holds them all; nil when they must be read from the database.
    let replay: [ChangeEvent]?
}

/// Fans committed changes out to watch connections — each change's one signed event, as the
/// same bytes to every stream — and renews their leases (acknowledgements: `Acknowledgements`).
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

    private var subscribers: [Int: Subscriber] = [:]
    private var streamsByKey: [String: Int] = [:]
    private var bySurface: [String: Set<Int>] = [:]
    private var nextID = 0
    private var closed = false
    /// The newest revision published, and the latest changes, for streams that resume.
    private(set) var head: UInt64
    private var recent: [ChangeEvent] = []
    static let recentKept = 4096
    private let renewEvery: Duration
    private var renewer: Task<Void, Never>?

    /// Told when a stream opens or closes (the console shows who watches).
    private let feed: ChangeFeed?

    init(head: UInt64, renewEvery: Duration, feed: ChangeFeed? = nil) {
        self.head = head
        self.renewEvery = renewEvery
        self.feed = feed
    }

    enum Refusal: Error { case closed, tooMany(String) }

    /// Registers a connection, within `maxStreams` in all and `maxPerKey` for its key. With
    /// `after` (the client's `Last-Event-ID`), also the changes it missed, where held here.
    func subscribe(
        instance: String, keyName: String, surfaces: Set<String>, after: UInt64? = nil, maxStreams: Int = .max, maxPerKey: Int = .max
    )
        throws(Refusal) -> Subscription
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
        if renewer == nil { startRenewing() }
        feed?.poke()
        var replay: [ChangeEvent]? = []
        if let after, after < head {
            if let oldest = recent.first, oldest.revision <= after + 1 {
                replay = recent.filter { $0.revision > after && ($0.subject == OrgSubject.name || surfaces.contains($0.subject)) }
            } else {
                replay = nil
            }
        }
        return Subscription(id: id, stream: stream, continuation: continuation, head: head, replay: replay)
    }

    /// Every stream renewed once each `renewEvery`, from a cache signed once per surface (a tick
    /// costs one signature per watched surface, not per stream). From a hundred streams on,
    /// renewals go out in ten slices spread over the period (a stream's slice: its id modulo
    /// ten), so that a change never waits behind ten thousand renewals written at once; below
    /// that, one tick a period (an idle supervisor's embedded authority wakes no more often).
    private func startRenewing() {
        let every = renewEvery
        renewer = Task { [weak self] in
            var tick = 0
            while !Task.isCancelled {
                guard let sliced = await self?.sliced else { return }
                try? await Task.sleep(for: sliced ? every / 10 : every)
                guard let self, !Task.isCancelled else { return }
                await self.renew(slice: sliced ? tick % 10 : nil)
                tick += 1
            }
        }
    }

    var sliced: Bool { subscribers.count >= 100 }

    /// Renews the streams of one slice, or every stream.
    func renew(slice: Int?) {
        for id in Array(subscribers.keys) where slice == nil || id % 10 == slice { send(id, .renew) }
    }

    func renewAll() {
        for id in Array(subscribers.keys) { send(id, .renew) }
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
        feed?.poke()
    }

    /// Sends a change's event to every stream that watches its surface (every stream, for a
    /// halt or resume — and then renewals, which carry each surface's state again).
    func publish(_ e: ChangeEvent) {
        head = max(head, e.revision)
        recent.append(e)
        if recent.count > Self.recentKept { recent.removeFirst(recent.count - Self.recentKept) }
        let frame = WatchStream.frame(e)
        if e.subject == OrgSubject.name {
            for id in Array(subscribers.keys) {
                send(id, .frame(frame, revision: e.revision))
                send(id, .renew)
            }
        } else {
            for id in bySurface[e.subject] ?? [] { send(id, .frame(frame, revision: e.revision)) }
        }
    }

    /// After a resynchronisation: the head moved without events; renew every stream.
    func advance(to revision: UInt64) {
        head = max(head, revision)
        recent = []
        // Every stream has what it needs up to here (the renewals carry it): an SSE comment
        // moves each one's delivered revision, then the renewals go out.
        for id in Array(subscribers.keys) { send(id, .frame(": resynchronised to revision \(revision)\n\n", revision: revision)) }
        renewAll()
    }

    private func send(_ id: Int, _ item: StreamItem) {
        guard let sub = subscribers[id] else { return }
        if case .dropped = sub.continuation.yield(item) {
            // Too slow: end it; the client reconnects to the current state.
            unsubscribe(id)
        }
    }

    /// This replica's watchers of these surfaces (or all), with the keys holding their streams.
    func watcherKeys(of deviceIds: [String]?) -> [FleetWatcher] {
        var out = Set<FleetWatcher>()
        let ids = deviceIds.map(Set.init)
        for s in subscribers.values {
            for d in s.surfaces where ids?.contains(d) ?? true {
                out.insert(FleetWatcher(instance: s.instance, surface: d, keyName: s.keyName))
            }
        }
        return Array(out)
    }

    /// Ends the streams open as `instance` (its claim was released).
    func end(instance: String) {
        for (id, s) in subscribers where s.instance == instance { unsubscribe(id) }
    }

    var connectionCount: Int { subscribers.count }

    func watcherCount(of deviceId: String) -> Int { bySurface[deviceId]?.count ?? 0 }

    // MARK: - shutdown

    /// Tells every connection to end, and refuses new ones.
    func shutdown() {
        closed = true
        renewer?.cancel()
        for sub in subscribers.values {
            sub.continuation.yield(.shutdown)
            sub.continuation.finish()
        }
        subscribers = [:]
        streamsByKey = [:]
        bySurface = [:]
    }
}
