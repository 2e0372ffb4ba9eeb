import Foundation
import Synchronization

/// Wakes the console's live views: something they show may have changed (a change applied, a
/// report, an acknowledgement, a watch stream opened or closed). A view that is woken several
/// times before it looks sees one wake-up: it reads the whole state anew anyway.
final class ChangeFeed: Sendable {
    private let subscribers = Mutex<[UUID: AsyncStream<Void>.Continuation]>([:])
    private let counter = Mutex<UInt64>(0)

    /// Counts the pokes: a state built at generation g shows every change poked before g.
    var generation: UInt64 { counter.withLock { $0 } }

    func subscribe() -> (UUID, AsyncStream<Void>) {
        let (stream, continuation) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        let id = UUID()
        subscribers.withLock { $0[id] = continuation }
        return (id, stream)
    }

    func unsubscribe(_ id: UUID) {
        subscribers.withLock { $0.removeValue(forKey: id) }?.finish()
    }

    func poke() {
        counter.withLock { $0 &+= 1 }
        subscribers.withLock { subs in for c in subs.values { c.yield() } }
    }

    /// Wakes one view.
    func poke(_ id: UUID) {
        _ = subscribers.withLock { $0[id] }?.yield()
    }

    func finishAll() {
        let all = subscribers.withLock { subs in
            defer { subs = [:] }
            return Array(subs.values)
        }
        for c in all { c.finish() }
    }
}
