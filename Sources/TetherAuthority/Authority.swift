import Foundation
import Synchronization
import Logging
import TetherCore

public struct AuthorityConfiguration: Sendable {
    /// How long an allow is good for. Supervisors stop their workers when it passes unrenewed.
    public var leaseLength: Duration = .seconds(15)
    /// Largest request body accepted.
    public var maxBodySize = 64 * 1024
    /// Longest `?wait=` a revoke or halt may ask for.
    public var maxAckWait: Duration = .seconds(60)
    /// How long a shutdown may take before the process exits regardless (`ShutdownSignals`).
    public var shutdownTimeout: Duration = .seconds(20)
    /// How often revoked or new keys are picked up from the store (keys change through the CLI).
    public var keyRefresh: Duration = .seconds(1)
    /// Refused requests (401, 403) are written to the audit log aggregated, once per window.
    public var refusalWindow: Duration = .seconds(10)
    /// Open watch streams, in all and per key: a stolen or runaway agent key cannot hold every
    /// descriptor of the authority. Past either: 429 `TOO_MANY_STREAMS`.
    public var maxStreams = 50_000
    public var maxStreamsPerKey = 1_000
    /// Surfaces one stream may name, and of those, how many may not exist yet (a supervisor
    /// waiting for an operator to create them). Past either: 400, 404 `DEVICE_NOT_FOUND`.
    public var maxSurfacesPerStream = 10_000
    public var maxUnknownPerStream = 64
    /// Register and report, per key: a token bucket refilled at `writeRate` a second, holding
    /// `writeBurst`; new instance claims (watch or report as a new name), a bucket of their
    /// own of the same size. Past either: 429 `RATE_LIMITED` with `Retry-After`.
    public var writeRate = 100.0
    public var writeBurst = 1_000.0
    /// How long audit entries and reports are kept (checked every `refusalWindow`); reports are
    /// also capped at the last 200 per surface.
    public var auditRetention: Duration = .seconds(365 * 24 * 3600)
    public var reportRetention: Duration = .seconds(30 * 24 * 3600)
    /// Replicas on a shared database: how often to read the database's head when no NOTIFY
    /// came (the backstop), and how long without a good read before this replica calls itself
    /// not ready — /healthz 503, validate and watch refused — so that supervisors and load
    /// balancers go to another, rather than trust a replica that may miss changes.
    public var syncInterval: Duration = .seconds(1)
    public var maxLag: Duration = .seconds(5)
    /// Where to write the published signing keys (a key set file) whenever they change: the
    /// state directory's signing.pub, which supervisors on this host pin.
    public var keySetFile: String?
    /// The on-call console and the notifications (`--config`).
    public var settings = ServeSettings()
    /// How long a change's acknowledgements are collected when nobody waits longer.
    public var ackTracking: Duration = .seconds(60)

    public init() {}
}

/// The authority's live state. The store is the truth on disk; this holds the same surfaces and
/// org state in memory so that validate and watch never wait on disk. Changes reach memory and
/// the watch streams in revision order (`Replicator`), whichever replica committed them.
public final class Authority: Sendable {
    public let store: any AuthorityStore
    /// The signing keys, reloaded from the store with the API keys.
    public let keyRing: KeyRing
    /// The key that signs now.
    public var signer: DecisionSigner { keyRing.signer }
    public let configuration: AuthorityConfiguration
    /// The deployment every decision names (`Decision.origin`).
    public let origin: String
    let hub: WatchHub
    let state: LiveState
    let replicator: Replicator
    let renewals: RenewalCache
    /// Refused requests, aggregated for the audit log.
    public let refusals: RefusalLog
    /// Register and report rates per key.
    let writes: RateLimiter
    /// New instance claims per key (a database write each), at the same rate.
    let claimWrites: RateLimiter
    let mutations = AsyncLock()
    let logger: Logger
    /// Whether this replica is in step with its database (always, for a store no other process
    /// writes).
    let sync: SyncHealth
    /// This process among the replicas, and the streams it holds, told to the others.
    let replicaID = UUID().uuidString.lowercased()
    let watchers: WatcherRegistry
    /// Each change's acknowledgements, from before it is published.
    let acks: Acknowledgements
    /// Wakes the console's live views.
    let feed = ChangeFeed()
    /// The `[[notify.webhook]]`s (a service of the application).
    public let notifier: Notifier
    /// Console sessions and sign-in links of this replica.
    let console: ConsoleSessions
    /// What the console's pages show, built once for all of them.
    let consoleSnapshots = ConsoleSnapshots()
    let supervisorsCounted = Mutex<(at: ContinuousClock.Instant, count: Int)?>(nil)
    /// Which key holds each instance, as this replica checked lately.
    let holders = InstanceHolders()

    public init(store: any AuthorityStore, configuration: AuthorityConfiguration = .init(), logger: Logger) async throws {
        self.store = store
        keyRing = try KeyRing(try await store.signingKeys())
        self.configuration = configuration
        self.logger = logger
        refusals = RefusalLog(store: store)
        writes = RateLimiter(rate: configuration.writeRate, burst: configuration.writeBurst)
        claimWrites = RateLimiter(rate: configuration.writeRate, burst: configuration.writeBurst)
        origin = try await store.origin()
        // Head first: a change committed while the state loads is caught up, never skipped.
        let head = try await store.head()
        state = LiveState(
            surfaces: Dictionary(uniqueKeysWithValues: try await store.surfaces().map { ($0.deviceId, $0) }),
            removed: try await store.removedSurfaces(),
            org: try await store.org(),
            keys: try await store.keys())
        hub = WatchHub(head: head, renewEvery: configuration.leaseLength / 3, feed: feed)
        acks = Acknowledgements(onChange: { [feed] in feed.poke() })
        notifier = Notifier(settings: configuration.settings.notify, logger: logger)
        console = ConsoleSessions(settings: configuration.settings.console, store: store)
        renewals = RenewalCache()
        replicator = Replicator(applied: head)
        sync = SyncHealth(shared: store is any SharedStore)
        watchers = WatcherRegistry(enabled: store is any SharedStore)
    }

    /// Throws 503 `NOT_READY` when this replica cannot vouch for being in step with the database.
    func requireReady() throws {
        if let why = sync.notReady(maxLag: configuration.maxLag) {
            throw APIError(.serviceUnavailable, "NOT_READY", "this replica is not ready: \(why); ask another")
        }
    }

    // MARK: - decisions

    var leaseSeconds: Double { configuration.leaseLength.timeInterval }

    /// A change's event, signed once when it is committed: the decision it makes, by itself
    /// (a surface's own state; the org's for a halt or resume).
    func seal(_ outcome: ChangeOutcome, _ change: Change) -> String {
        let issued = Timestamp.parse(change.at) ?? Date()
        var d = Decision(
            deviceId: "", allowed: false, code: .deviceNotFound, requestID: change.requestID,
            issuedAt: change.at, expiresAt: Timestamp.string(issued.addingTimeInterval(leaseSeconds)),
            kind: .change, origin: origin)
        switch outcome {
        case .surface(let r):
            d.deviceId = r.deviceId
            d.allowed = !r.revoked
            d.code = r.revoked ? .deviceRevoked : .allow
            d.revision = r.revision
            if r.changedBy != nil { (d.changedBy, d.changedAt, d.changeReason) = Self.attribution(r.changedBy, r.updatedAt, r.reason) }
        case .removed(let id, let revision):
            d.deviceId = id
            d.revision = revision
            (d.changedBy, d.changedAt, d.changeReason) = Self.attribution(change.actor, change.at, change.reason)
        case .org(let o):
            d.deviceId = OrgSubject.name
            d.allowed = !o.halted
            d.code = o.halted ? .orgHalted : .allow
            d.revision = o.revision
            (d.changedBy, d.changedAt, d.changeReason) = Self.attribution(o.changedBy, o.changedAt, o.reason)
        }
        return WatchStream.eventJSON(signer.sign(d))
    }

    static func attribution(_ by: String?, _ at: String?, _ why: String?) -> (String?, String?, String?) {
        (by.map(Decision.signableText), at, why.map(Decision.signableText).flatMap { $0.isEmpty ? nil : $0 })
    }

    /// The decision for `deviceId` now, with both revisions it rests on: a renewal (`lease`,
    /// the same for every stream) or a validate `answer` (with the client's nonce).
    func current(_ deviceId: String, kind: DecisionKind, requestID: String? = nil, nonce: String? = nil) async -> Decision {
        let (surface, removedAt, org) = await state.snapshot(deviceId)
        let code: DecisionCode
        var by: String?, at: String?, why: String?
        var cause = surface?.requestID
        if org.halted {
            code = .orgHalted
            (by, at, why) = Self.attribution(org.changedBy, org.changedAt, org.reason)
            cause = org.requestID
        } else if let s = surface {
            code = s.revoked ? .deviceRevoked : .allow
            if s.changedBy != nil { (by, at, why) = Self.attribution(s.changedBy, s.updatedAt, s.reason) }
            // After a resume, the surface runs again because of the resume: its decision names
            // that change (what the supervisors' "resumed" acknowledges), until the surface's
            // own next change.
            if !s.revoked, org.revision > s.revision, let resumed = org.requestID { cause = resumed }
        } else {
            code = .deviceNotFound
        }
        let now = Date()
        return signer.sign(
            Decision(
                deviceId: deviceId, allowed: code == .allow, code: code, requestID: requestID ?? cause ?? "",
                issuedAt: Timestamp.string(now), expiresAt: Timestamp.string(now.addingTimeInterval(leaseSeconds)),
                nonce: nonce, kind: kind, revision: surface?.revision ?? removedAt ?? 0, orgRevision: org.revision, origin: origin,
                changedBy: by, changedAt: at, changeReason: why))
    }

    /// The renewal of `deviceId`'s lease as every stream of this replica sends it: signed once
    /// per renewal period, not once per stream. nil when it rests on a revision above
    /// `delivered` — a change whose event is on its way to the stream and must come first.
    func renewal(for deviceId: String, delivered: UInt64 = .max) async -> String? {
        let (surface, removedAt, org) = await state.snapshot(deviceId)
        let revisions = (surface?.revision ?? removedAt ?? 0, org.revision)
        guard max(revisions.0, revisions.1) <= delivered else { return nil }
        let now = ContinuousClock.now
        if let cached = renewals.get(deviceId, revisions: revisions, freshAfter: now - configuration.leaseLength / 6) { return cached }
        let text = WatchStream.eventJSON(await current(deviceId, kind: .lease))
        renewals.put(deviceId, text: text, revisions: revisions, at: now)
        return text
    }

    // MARK: - mutations (durable first, then memory, then watchers)

    func register(_ deviceId: String, change: Change) async throws -> (RegisterOutcome, SurfaceRecord) {
        try await mutations.run {
            let (outcome, record, event) = try await store.register(deviceId, change: change, seal: seal)
            if let event { await committed(event, .surface(record)) }
            return (outcome, record)
        }
    }

    func setRevoked(_ deviceId: String, _ revoked: Bool, change: Change) async throws -> SurfaceRecord? {
        try await mutations.run {
            guard let (record, event) = try await store.setRevoked(deviceId, revoked: revoked, change: change, seal: seal) else {
                return nil
            }
            await committed(event, .surface(record))
            logger.notice(
                "\(revoked ? "revoked" : "restored") \(deviceId)",
                metadata: [
                    "by": "\(change.actor)", "reason": "\(change.reason ?? "")", "request_id": "\(change.requestID)",
                    "revision": "\(event.revision)",
                ])
            return record
        }
    }

    func remove(_ deviceId: String, change: Change) async throws -> Bool {
        try await mutations.run {
            guard let event = try await store.remove(deviceId, change: change, seal: seal) else { return false }
            await committed(event, .removed(deviceId: deviceId, revision: event.revision))
            return true
        }
    }

    func setHalted(_ halted: Bool, change: Change) async throws -> OrgState {
        try await mutations.run {
            let (org, event) = try await store.setHalted(halted, change: change, seal: seal)
            await committed(event, .org(org))
            logger.critical(
                "\(halted ? "org HALTED" : "org resumed")",
                metadata: [
                    "by": "\(change.actor)", "reason": "\(change.reason ?? "")", "request_id": "\(change.requestID)",
                    "revision": "\(event.revision)",
                ])
            return org
        }
    }

    /// Applies one change to memory and sends its event to the streams that watch it.
    func apply(_ event: ChangeEvent, _ outcome: ChangeOutcome) async {
        await state.apply(outcome)
        await acks.saw(event.requestID, revision: event.revision)
        await hub.publish(event)
        feed.poke()
    }

    /// A supervisor's report, here or relayed from another replica: it may acknowledge a change.
    func reported(_ report: Report) async {
        await acks.deliver(report)
        feed.poke()
    }

    /// Makes a revoke, restore, halt or resume and collects its acknowledgements from
    /// `watchers` (expected before the change is published, so that a quick supervisor's report
    /// is never missed). With `wait`, waits for them up to that long. Then the webhooks are told
    /// — queued, never waited for — and, `ack_timeout` later, told of any still missing.
    func tracked<T: Sendable>(
        _ action: ChangeAction, subject: String, change: Change, watchers: [FleetWatcher], wait: Duration?,
        _ make: () async throws -> T
    ) async throws -> (T, AckResult?) {
        let notify = configuration.settings.notify
        await acks.expect(
            action, subject: subject, change: change, expected: watchers,
            keep: max(wait ?? .zero, configuration.ackTracking, notify.ackTimeout + .seconds(1)))
        let made: T
        do {
            made = try await make()
        } catch {
            await acks.cancel(change.requestID)
            throw error
        }
        await acks.published(change.requestID)
        let event: NotifyEvent =
            switch action {
            case .revoke: .revoke
            case .restore: .restore
            case .halt: .halt
            case .resume: .resume
            }
        if notifier.wants(event) || notifier.wants(.acksMissing) {
            let rid = change.requestID
            if let t = await acks.change(rid) {
                if notifier.wants(event) { notifier.send(Notification(event: event, tracked: t, origin: origin)) }
                if notifier.wants(.acksMissing) && !watchers.isEmpty {
                    Task { [acks, notifier, origin] in
                        try? await Task.sleep(for: notify.ackTimeout)
                        if let t = await acks.change(rid), !t.missing.isEmpty {
                            notifier.send(Notification(event: .acksMissing, tracked: t, origin: origin))
                        }
                    }
                }
            }
        }
        guard let wait else { return (made, nil) }
        return (made, await acks.wait(change.requestID, timeout: wait))
    }

    /// The watchers of these surfaces (every surface: nil) on every replica, with the keys that
    /// hold their streams: whom a change's acknowledgements are expected from.
    func fleetWatchers(of deviceIds: [String]?) async -> [FleetWatcher] {
        var out = await hub.watcherKeys(of: deviceIds)
        if let shared = store as? any SharedStore {
            do { out += try await shared.fleetWatchers(of: deviceIds, except: replicaID) } catch {
                logger.warning(
                    "the other replicas' watchers are not known: acknowledgements from them will not be awaited",
                    metadata: ["error": "\(error)"])
            }
        }
        return out
    }

    /// Supervisor instances holding a watch stream on any replica: counted at most every 2 s
    /// (the console asks on every build; the other replicas' watchers are a database read).
    func supervisorCount() async -> Int {
        if let c = supervisorsCounted.withLock({ c in c.flatMap { ContinuousClock.now - $0.at < .seconds(2) ? $0.count : nil } }) {
            return c
        }
        let count = Set(await fleetWatchers(of: nil).map(\.instance)).count
        supervisorsCounted.withLock { $0 = (.now, count) }
        return count
    }

    /// Reads what other replicas committed since the last change applied here, and applies it.
    public func catchUp() async throws {
        await replicator.order.acquire()
        do {
            try await catchUpLocked()
            await replicator.order.release()
        } catch {
            await replicator.order.release()
            throw error
        }
    }

    /// Every step after the last one applied, batch by batch (`replicator.order` held).
    private func catchUpLocked() async throws {
        while true {
            let steps = try await replicator.next(from: store)
            for step in steps { await apply(step) }
            if steps.count < Replicator.batch { return }
        }
    }

    /// A change this replica committed, into memory and the streams in revision order.
    func committed(_ event: ChangeEvent, _ outcome: ChangeOutcome) async {
        await replicator.order.acquire()
        do {
            let steps = try await replicator.committed(event, outcome, store: store)
            for step in steps { await apply(step) }
            // Another replica's changes came in between and filled a batch: the rest.
            let applied = await replicator.applied
            if steps.count == Replicator.batch || applied < event.revision { try await catchUpLocked() }
        } catch {
            // Committed, but memory is behind: the sync service retries; until then this
            // replica's readiness says so.
            logger.error("catching up after a commit failed", metadata: ["error": "\(error)", "revision": "\(event.revision)"])
        }
        await replicator.order.release()
    }

    /// One step of replication: a change, or the whole state (every stream renewed with it).
    func apply(_ step: ReplicaStep) async {
        switch step {
        case .change(let event, let outcome):
            await apply(event, outcome)
        case .resync(let surfaces, let removed, let org, let head):
            logger.warning("replica resynchronising from the whole state", metadata: ["head": "\(head)"])
            for r in surfaces { await state.apply(.surface(r)) }
            for (id, rev) in removed { await state.apply(.removed(deviceId: id, revision: rev)) }
            await state.apply(.org(org))
            await hub.advance(to: head)
        }
    }

    // MARK: - keys

    /// The key record for a presented key, or nil. Reloads keys from the store at most every
    /// `keyRefresh`, so a key revoked through the CLI stops working within that time; a key
    /// created through the CLI works at once.
    ///
    /// A key not in the cached set that cannot be looked up because the store does not answer
    /// is a 503 (ask again, or another replica), never a 401: a 401 tells a supervisor its key
    /// is wrong, and it stops trying — a replica in its first moments, or a database restarting,
    /// would turn into supervisors that never register their surfaces.
    func authenticate(_ presented: String) async throws(APIError) -> KeyRecord? {
        // One hop to the state in the common case (keys loaded within the refresh period).
        var current = await state.keys(loadedWithin: configuration.keyRefresh)
        if current == nil {
            if let keys = try? await store.keys() { await state.setKeys(keys) }
            await reloadSigningKeys()
            current = await state.currentKeys()
        }
        if let found = APIKeys.match(presented, in: current ?? []) { return found }
        // An unknown key may be one created a moment ago (`tether keys create`, then use it at
        // once): look again, at most every 100 ms, so wrong keys cannot turn into disk reads.
        guard await state.keysAreStale(.milliseconds(100)) else { return nil }
        let keys: [KeyRecord]
        do {
            keys = try await store.keys()
        } catch {
            logger.warning("a key could not be checked: the store did not answer", metadata: ["error": "\(error)"])
            throw APIError(
                .serviceUnavailable, "NOT_READY",
                "the key could not be checked: this replica's store did not answer; ask again or another replica")
        }
        await state.setKeys(keys)
        return APIKeys.match(presented, in: keys)
    }

    /// A key by name, unless revoked: what a console session stands on, looked up on every
    /// request (refreshed like `authenticate`, so a key revoked through the CLI ends its
    /// sessions within `keyRefresh`).
    func liveKey(named name: String) async -> KeyRecord? {
        if await state.keysAreStale(configuration.keyRefresh), let keys = try? await store.keys() { await state.setKeys(keys) }
        return await state.currentKeys().first { $0.name == name && $0.revokedAt == nil }
    }

    /// Picks up a rotation made through another replica or the CLI.
    func reloadSigningKeys() async {
        do {
            if try keyRing.reload(try await store.signingKeys()) {
                logger.notice(
                    "signing keys changed",
                    metadata: [
                        "signing": "\(keyRing.signer.keyId)",
                        "published": "\(keyRing.published.map { "\($0.id):\($0.state.rawValue)" }.joined(separator: ","))",
                    ])
                publishKeySet()
            }
        } catch {
            logger.error("signing keys not reloaded; signing with the last good set", metadata: ["error": "\(error)"])
        }
    }

    /// Writes the published keys to `keySetFile`, if there is one.
    func publishKeySet() {
        guard let file = configuration.keySetFile else { return }
        do { try keyRing.keySetText.write(toFile: file, atomically: true, encoding: .utf8) } catch {
            logger.error("could not write the published signing keys", metadata: ["file": "\(file)", "error": "\(error)"])
        }
    }

    /// Deletes what is past its retention. Returns what went.
    @discardableResult
    public func prune(now: Date = Date()) async throws -> (audit: Int, reports: Int) {
        func before(_ d: Duration) -> String { Timestamp.string(now.addingTimeInterval(-d.timeInterval)) }
        await touchOpenInstances()
        if let n = try? await store.pruneInstances(idleBefore: before(claimIdleLimit)), n > 0 {
            logger.info(
                "retention: instance claims unused since \(before(claimIdleLimit)) forgotten", metadata: ["instances_deleted": "\(n)"])
        }
        let gone = try await store.prune(
            auditBefore: before(configuration.auditRetention), reportsBefore: before(configuration.reportRetention))
        if gone.audit + gone.reports > 0 {
            logger.info("retention", metadata: ["audit_deleted": "\(gone.audit)", "reports_deleted": "\(gone.reports)"])
        }
        return gone
    }

    /// Ends every watch stream (server shutdown).
    public func shutdown() async {
        await hub.shutdown()
        await acks.shutdown()
        feed.finishAll()
    }
}

/// Surfaces, org state and keys in memory.
actor LiveState {
    private var surfaces: [String: SurfaceRecord]
    /// The surfaces' names in order: what a page of the list is cut from (a binary search, not
    /// a sort of the whole fleet per request).
    private var names: [String]
    private(set) var revokedCount: Int
    /// Removed surfaces: the revision of their removal, for their `DEVICE_NOT_FOUND`.
    private var removed: [String: UInt64]
    private(set) var org: OrgState
    private var keys: [KeyRecord]
    private var keysLoaded = ContinuousClock.now
    /// Validates answered: counted outside the actor (a validate is the hottest path, and a
    /// counter is no reason for a hop onto the actor's executor).
    nonisolated let validationCount = Atomic<Int>(0)
    nonisolated var validations: Int { validationCount.load(ordering: .relaxed) }

    init(surfaces: [String: SurfaceRecord], removed: [String: UInt64], org: OrgState, keys: [KeyRecord]) {
        self.surfaces = surfaces
        self.names = surfaces.keys.sorted()
        self.revokedCount = surfaces.values.filter(\.revoked).count
        self.removed = removed
        self.org = org
        self.keys = keys
    }

    func snapshot(_ deviceId: String) -> (SurfaceRecord?, UInt64?, OrgState) { (surfaces[deviceId], removed[deviceId], org) }
    /// The names among `ids` that name no surface.
    func unknown(_ ids: [String]) -> [String] { ids.filter { surfaces[$0] == nil } }
    func all() -> [SurfaceRecord] { names.compactMap { surfaces[$0] } }
    var count: Int { names.count }

    /// Up to `limit` surfaces in name order after `after` (from the first when nil), and whether
    /// more follow.
    func page(after: String?, limit: Int) -> (records: [SurfaceRecord], more: Bool) {
        let start = after.map { insertionPoint(of: $0, exclusive: true) } ?? 0
        let end = min(names.count, start + limit)
        return (names[start..<end].compactMap { surfaces[$0] }, end < names.count)
    }

    /// The first `limit` surfaces in name order whose name contains `text` (lowercased; any when
    /// empty) or that `extra` names, revoked or not as `revoked` asks (either when nil), and how
    /// many match in all. Without a filter, a page: O(limit), whatever the fleet's size.
    func matching(_ text: String, extra: Set<String>, revoked: Bool?, limit: Int) -> (records: [SurfaceRecord], matching: Int) {
        if text.isEmpty && revoked == nil { return (page(after: nil, limit: limit).records, names.count) }
        var out: [SurfaceRecord] = []
        var count = 0
        for name in names {
            guard let r = surfaces[name], revoked == nil || r.revoked == revoked,
                text.isEmpty || extra.contains(name) || name.lowercased().contains(text)
            else { continue }
            count += 1
            if out.count < limit { out.append(r) }
        }
        return (out, count)
    }

    /// Where `name` is, or would be, in `names` (past it when `exclusive` and it is there).
    private func insertionPoint(of name: String, exclusive: Bool = false) -> Int {
        var (lo, hi) = (0, names.count)
        while lo < hi {
            let mid = (lo + hi) / 2
            if names[mid] < name || (exclusive && names[mid] == name) { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    func apply(_ outcome: ChangeOutcome) {
        switch outcome {
        case .surface(let r):
            let old = surfaces.updateValue(r, forKey: r.deviceId)
            if old == nil { names.insert(r.deviceId, at: insertionPoint(of: r.deviceId)) }
            revokedCount += (r.revoked ? 1 : 0) - (old?.revoked == true ? 1 : 0)
            removed[r.deviceId] = nil
        case .removed(let id, let revision):
            if let old = surfaces.removeValue(forKey: id) {
                let i = insertionPoint(of: id)
                if i < names.count && names[i] == id { names.remove(at: i) }
                if old.revoked { revokedCount -= 1 }
            }
            removed[id] = revision
        case .org(let o):
            org = o
        }
    }
    nonisolated func countValidation() { validationCount.add(1, ordering: .relaxed) }

    func keysAreStale(_ refresh: Duration) -> Bool { ContinuousClock.now - keysLoaded > refresh }
    /// The keys, unless loaded longer than `refresh` ago.
    func keys(loadedWithin refresh: Duration) -> [KeyRecord]? { keysAreStale(refresh) ? nil : keys }
    func setKeys(_ k: [KeyRecord]) {
        keys = k
        keysLoaded = .now
    }
    func currentKeys() -> [KeyRecord] { keys }
}

/// A FIFO lock for async code: one holder at a time, in arrival order.
actor AsyncLock {
    private var busy = false
    private var waiters: [CheckedContinuation<Void, Never>] = []

    func run<T: Sendable>(_ body: @Sendable () async throws -> T) async throws -> T {
        await acquire()
        defer { release() }
        return try await body()
    }

    func acquire() async {
        if !busy {
            busy = true
            return
        }
        await withCheckedContinuation { waiters.append($0) }
    }

    func release() {
        if waiters.isEmpty {
            busy = false
        } else {
            waiters.removeFirst().resume()
        }
    }
}
