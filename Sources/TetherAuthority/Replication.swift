import Foundation
import ServiceLifecycle
import Synchronization
import TetherCore

/// What a replica brings into memory, in revision order: one committed change (and what it
/// left), or — when the changes needed were pruned — the whole state at a revision.
enum ReplicaStep: Sendable {
    case change(ChangeEvent, ChangeOutcome)
    case resync(surfaces: [SurfaceRecord], removed: [String: UInt64], org: OrgState, head: UInt64)
}

/// Which committed changes this replica has in memory, and which it reads next: its own as
/// they commit, the other replicas' by reading the database after the last revision applied
/// (on a NOTIFY doorbell, and by a slow poll as a backstop). It returns the steps; the
/// authority applies them (`Authority.apply(_:)`), holding `order` across the read and the
/// apply, so that changes are applied strictly in revision order and never interleave.
actor Replicator {
    private(set) var applied: UInt64
    /// Held by the authority across each read and its apply (which await other actors).
    nonisolated let order = AsyncLock()
    static let batch = 1000

    init(applied: UInt64) { self.applied = applied }

    /// A change this replica committed: applied at once when it is the next revision; after a
    /// catch-up when another replica's change came in between; nothing when it is applied
    /// already.
    func committed(_ e: ChangeEvent, _ outcome: ChangeOutcome, store: any AuthorityStore) async throws -> [ReplicaStep] {
        if e.revision == applied + 1 {
            applied = e.revision
            return [.change(e, outcome)]
        }
        return e.revision > applied ? try await next(from: store) : []
    }

    /// The next steps after `applied` (at most a batch of changes; or a resync), marked applied.
    /// Empty when nothing is newer.
    func next(from store: any AuthorityStore) async throws -> [ReplicaStep] {
        let batch = try await store.changes(after: applied, limit: Self.batch)
        // Events this old were pruned, or the head moved without events: the whole state.
        if let first = batch.events.first, first.revision != applied + 1 { return [try await resync(store, head: batch.head)] }
        if batch.events.isEmpty && batch.head > applied { return [try await resync(store, head: batch.head)] }
        var steps: [ReplicaStep] = []
        for e in batch.events {
            let outcome: ChangeOutcome
            if e.subject == OrgSubject.name {
                outcome = .org(batch.org)
            } else if let r = batch.surfaces[e.subject] {
                outcome = .surface(r)
            } else {
                outcome = .removed(deviceId: e.subject, revision: batch.removed[e.subject] ?? e.revision)
            }
            steps.append(.change(e, outcome))
            applied = e.revision
        }
        return steps
    }

    private func resync(_ store: any AuthorityStore, head: UInt64) async throws -> ReplicaStep {
        let step = ReplicaStep.resync(
            surfaces: try await store.surfaces(), removed: try await store.removedSurfaces(), org: try await store.org(), head: head)
        applied = head
        return step
    }
}

/// Renewals signed for this replica's streams: one per surface per renewal period, whatever
/// the number of streams that watch it.
final class RenewalCache: Sendable {
    private struct Entry {
        var text: String
        var surfaceRevision: UInt64
        var orgRevision: UInt64
        var at: ContinuousClock.Instant
    }

    private let entries = Mutex<[String: Entry]>([:])

    func get(_ id: String, revisions: (UInt64, UInt64), freshAfter: ContinuousClock.Instant) -> String? {
        entries.withLock { e in
            guard let x = e[id], x.surfaceRevision == revisions.0, x.orgRevision == revisions.1, x.at > freshAfter else { return nil }
            return x.text
        }
    }

    func put(_ id: String, text: String, revisions: (UInt64, UInt64), at: ContinuousClock.Instant) {
        entries.withLock { e in
            e[id] = Entry(text: text, surfaceRevision: revisions.0, orgRevision: revisions.1, at: at)
            // Surfaces nobody watches any more: forget them now and then.
            if e.count > 200_000 { e = e.filter { $0.value.at > at - .seconds(60) } }
        }
    }
}

/// One watch stream's (instance, surface) on some replica, and the key that holds it: what an
/// acknowledgement is expected from, whichever replica the supervisor is connected to.
public struct FleetWatcher: Sendable, Hashable {
    public var instance: String
    public var surface: String
    public var keyName: String
}

/// A store other processes write too (PostgreSQL): its replicas learn of each other's changes
/// by a doorbell (something committed: read the revisions) and a poll, and share who watches
/// what and the reports that acknowledge changes.
public protocol SharedStore: AuthorityStore {
    /// Calls `onChange` once per change notification and `onReport` for every report any
    /// replica received, until cancelled; throws when the listening connection is lost (the
    /// caller listens again).
    func listenForChanges(
        _ onChange: @escaping @Sendable () async -> Void, onReport: @escaping @Sendable (Report) async -> Void) async throws
    /// This replica is alive, with these streams opened and closed since the last beat.
    /// Replicas silent for 30 s are forgotten, with their streams.
    func heartbeat(replica: String, added: [FleetWatcher], removed: [FleetWatcher]) async throws
    /// The streams of the other live replicas (of these surfaces, or all).
    func fleetWatchers(of surfaces: [String]?, except replica: String) async throws -> [FleetWatcher]
    /// Tells every replica of a report (for the acknowledgements they wait for).
    func publishReport(_ report: Report) async throws
}

/// The streams this replica opened and closed since its last heartbeat.
final class WatcherRegistry: Sendable {
    private let pending = Mutex<(added: Set<FleetWatcher>, removed: Set<FleetWatcher>)>(([], []))
    /// Only replicas on a shared store tell anyone (nothing else drains it).
    let enabled: Bool

    init(enabled: Bool) { self.enabled = enabled }

    func opened(_ ws: [FleetWatcher]) {
        guard enabled else { return }
        pending.withLock { p in
            for w in ws {
                p.removed.remove(w)
                p.added.insert(w)
            }
        }
    }

    func closed(_ ws: [FleetWatcher]) {
        guard enabled else { return }
        pending.withLock { p in
            for w in ws {
                p.added.remove(w)
                p.removed.insert(w)
            }
        }
    }

    func drain() -> (added: [FleetWatcher], removed: [FleetWatcher]) {
        pending.withLock { p in
            defer { p = ([], []) }
            return (Array(p.added), Array(p.removed))
        }
    }

    /// A beat that failed: its changes go out with the next.
    func requeue(_ d: (added: [FleetWatcher], removed: [FleetWatcher])) {
        pending.withLock { p in
            for w in d.removed where !p.added.contains(w) { p.removed.insert(w) }
            for w in d.added where !p.removed.contains(w) { p.added.insert(w) }
        }
    }
}

/// This replica's standing with the database, read by /healthz and before each validate and watch.
final class SyncHealth: Sendable {
    private struct State {
        var lastGood = ContinuousClock.now
        /// Since when the LISTEN connection has been down (nil: listening). Starts down.
        var listenerDownSince: ContinuousClock.Instant? = .now
        var lastError: String?
    }

    let shared: Bool
    private let state = Mutex(State())

    init(shared: Bool) { self.shared = shared }

    func good(listening: Bool? = nil) {
        state.withLock {
            $0.lastGood = .now
            $0.lastError = nil
            if listening == true { $0.listenerDownSince = nil }
        }
    }

    func failed(_ error: String, listening: Bool? = nil) {
        state.withLock {
            $0.lastError = error
            if listening == false && $0.listenerDownSince == nil { $0.listenerDownSince = .now }
        }
    }

    /// nil when ready; else why not. A listener down for a moment (PostgreSQL restarted, a
    /// connection reset) is covered by the poll; down longer than `maxLag`, it is not ready.
    func notReady(maxLag: Duration) -> String? {
        guard shared else { return nil }
        return state.withLock { s in
            let now = ContinuousClock.now
            if now - s.lastGood > maxLag {
                return "no good read of the database for \(DurationText.format(now - s.lastGood))" + (s.lastError.map { " (\($0))" } ?? "")
            }
            if let down = s.listenerDownSince, now - down > maxLag {
                return "not listening for other replicas' changes for \(DurationText.format(now - down))"
                    + (s.lastError.map { " (\($0))" } ?? "")
            }
            return nil
        }
    }
}
/// Keeps a replica in step with a shared database: a LISTEN for the other replicas' doorbell
/// (listening again when its connection drops), and a read of the head every `syncInterval`
/// as a backstop for a NOTIFY lost with its connection. Either failing long enough makes the
/// replica not ready (`SyncHealth`). Nothing to do for a store no other process writes.
public struct ReplicaSync: Service {
    let authority: Authority

    public init(authority: Authority) { self.authority = authority }

    public func run() async throws {
        let a = authority
        await cancelWhenGracefulShutdown {
            await withTaskGroup(of: Void.self) { group in
                if let shared = a.store as? any SharedStore {
                    group.addTask { await listen(shared) }
                    group.addTask { await poll() }
                }
                // A rotation takes effect by the clock: look at the keys now and then even
                // when no request comes (renewals are signed all the same).
                group.addTask {
                    let every = a.store is any SharedStore ? a.configuration.keyRefresh : a.configuration.leaseLength / 3
                    while !Task.isCancelled {
                        try? await Task.sleep(for: every)
                        await a.reloadSigningKeys()
                    }
                }
                await group.waitForAll()
            }
        }
    }

    func listen(_ shared: any SharedStore) async {
        let a = authority
        while !Task.isCancelled {
            do {
                try await shared.listenForChanges(
                    {
                        do {
                            try await a.catchUp()
                            a.sync.good(listening: true)
                        } catch {
                            a.sync.failed("catching up: \(error)", listening: true)
                        }
                    },
                    onReport: { report in
                        await a.reported(report)
                    })
                a.sync.failed("the listening connection ended", listening: false)
            } catch {
                if !Task.isCancelled {
                    a.sync.failed("listening: \(PostgresStore.describe(error))", listening: false)
                    a.logger.warning(
                        "not listening for other replicas' changes; retrying", metadata: ["error": "\(PostgresStore.describe(error))"])
                }
            }
            try? await Task.sleep(for: .milliseconds(500))
        }
    }

    func poll() async {
        let a = authority
        while !Task.isCancelled {
            try? await Task.sleep(for: a.configuration.syncInterval)
            do {
                let head = try await a.store.head()
                if await a.replicator.applied < head {
                    try await a.catchUp()
                }
                a.sync.good()
            } catch {
                a.sync.failed("reading the database: \(PostgresStore.describe(error))")
            }
            // Who watches what here, for the other replicas' acknowledgements.
            if let shared = a.store as? any SharedStore {
                let beat = a.watchers.drain()
                do { try await shared.heartbeat(replica: a.replicaID, added: beat.added, removed: beat.removed) } catch {
                    a.watchers.requeue(beat)
                }
            }
        }
    }
}
