import Foundation
import Logging
import TetherCore

public struct AuthorityConfiguration: Sendable {
    /// How long an allow is good for. Supervisors stop their workers when it passes unrenewed.
    public var leaseLength: Duration = .seconds(15)
    /// Largest request body accepted.
    public var maxBodySize = 64 * 1024
    /// Longest `?wait=` a revoke or halt may ask for.
    public var maxAckWait: Duration = .seconds(60)
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
    /// `writeBurst`. Past it: 429 `RATE_LIMITED` with `Retry-After`.
    public var writeRate = 100.0
    public var writeBurst = 1_000.0
    /// How long audit entries and reports are kept (checked every `refusalWindow`); reports are
    /// also capped at the last 200 per surface.
    public var auditRetention: Duration = .seconds(365 * 24 * 3600)
    public var reportRetention: Duration = .seconds(30 * 24 * 3600)

    public init() {}
}

/// The authority's live state. The store is the truth on disk; this holds the same surfaces and
/// org state in memory so that validate and watch never wait on disk, and serialises every
/// mutation so that watchers see changes in the order they became durable.
public final class Authority: Sendable {
    public let store: any AuthorityStore
    public let signer: DecisionSigner
    public let configuration: AuthorityConfiguration
    let hub = WatchHub()
    let state: LiveState
    /// Refused requests, aggregated for the audit log.
    public let refusals: RefusalLog
    /// Register and report rates per key.
    let writes: RateLimiter
    let mutations = AsyncLock()
    let logger: Logger

    public init(store: any AuthorityStore, signer: DecisionSigner, configuration: AuthorityConfiguration = .init(), logger: Logger) async throws {
        self.store = store
        self.signer = signer
        self.configuration = configuration
        self.logger = logger
        refusals = RefusalLog(store: store)
        writes = RateLimiter(rate: configuration.writeRate, burst: configuration.writeBurst)
        state = LiveState(
            surfaces: Dictionary(uniqueKeysWithValues: try await store.surfaces().map { ($0.deviceId, $0) }),
            org: try await store.org(),
            keys: try await store.keys())
    }

    // MARK: - decisions

    /// The decision for `deviceId` now, signed. `requestID` ties it to the request that asked
    /// (validate) or to the change that caused it (watch).
    func decision(for deviceId: String, requestID: String, nonce: String?, seq: UInt64?) async -> Decision {
        let (surface, org) = await state.snapshot(deviceId)
        let code: DecisionCode
        // The operator change the decision rests on: the halt, else the surface's last
        // revoke or restore.
        var by: String?, at: String?, why: String?
        if org.halted {
            code = .orgHalted
            (by, at, why) = (org.changedBy, org.changedAt, org.reason)
        } else if let s = surface {
            code = s.revoked ? .deviceRevoked : .allow
            if s.changedBy != nil { (by, at, why) = (s.changedBy, s.updatedAt, s.reason) }
        } else {
            code = .deviceNotFound
        }
        let now = Date()
        let lease = Double(configuration.leaseLength.components.seconds) + Double(configuration.leaseLength.components.attoseconds) / 1e18
        return signer.sign(Decision(
            deviceId: deviceId, allowed: code == .allow, code: code, requestID: requestID,
            issuedAt: Timestamp.string(now), expiresAt: Timestamp.string(now.addingTimeInterval(lease)),
            nonce: nonce, seq: seq,
            changedBy: by.map(Decision.signableText), changedAt: at,
            changeReason: why.map(Decision.signableText).flatMap { $0.isEmpty ? nil : $0 }))
    }

    // MARK: - mutations (durable first, then memory, then watchers)

    func register(_ deviceId: String, change: Change) async throws -> (RegisterOutcome, SurfaceRecord) {
        try await mutations.run {
            let (outcome, record) = try await store.register(deviceId, change: change)
            // New in memory: created, or back from a tombstone (possibly revoked).
            if await state.snapshot(deviceId).0 == nil {
                await state.put(record)
                await hub.publish(deviceIds: [deviceId], requestID: change.requestID)
            }
            return (outcome, record)
        }
    }

    func setRevoked(_ deviceId: String, _ revoked: Bool, change: Change) async throws -> SurfaceRecord? {
        try await mutations.run {
            guard let record = try await store.setRevoked(deviceId, revoked: revoked, change: change) else { return nil }
            await state.put(record)
            await hub.publish(deviceIds: [deviceId], requestID: change.requestID)
            logger.notice("\(revoked ? "revoked" : "restored") \(deviceId)", metadata: ["by": "\(change.actor)", "reason": "\(change.reason ?? "")", "request_id": "\(change.requestID)"])
            return record
        }
    }

    func remove(_ deviceId: String, change: Change) async throws -> Bool {
        try await mutations.run {
            guard try await store.remove(deviceId, change: change) else { return false }
            await state.remove(deviceId)
            await hub.publish(deviceIds: [deviceId], requestID: change.requestID)
            return true
        }
    }

    func setHalted(_ halted: Bool, change: Change) async throws -> OrgState {
        try await mutations.run {
            let org = try await store.setHalted(halted, change: change)
            await state.setOrg(org)
            await hub.publishOrgChange(requestID: change.requestID)
            logger.critical("\(halted ? "org HALTED" : "org resumed")", metadata: ["by": "\(change.actor)", "reason": "\(change.reason ?? "")", "request_id": "\(change.requestID)"])
            return org
        }
    }

    // MARK: - keys

    /// The key record for a presented key, or nil. Reloads keys from the store at most every
    /// `keyRefresh`, so a key revoked through the CLI stops working within that time; a key
    /// created through the CLI works at once.
    func authenticate(_ presented: String) async -> KeyRecord? {
        if await state.keysAreStale(configuration.keyRefresh) {
            if let keys = try? await store.keys() { await state.setKeys(keys) }
        }
        if let found = APIKeys.match(presented, in: await state.currentKeys()) { return found }
        // An unknown key may be one created a moment ago (`tether keys create`, then use it at
        // once): look again, at most every 100 ms, so wrong keys cannot turn into disk reads.
        guard await state.keysAreStale(.milliseconds(100)), let keys = try? await store.keys() else { return nil }
        await state.setKeys(keys)
        return APIKeys.match(presented, in: keys)
    }

    /// Deletes what is past its retention. Returns what went.
    @discardableResult
    public func prune(now: Date = Date()) async throws -> (audit: Int, reports: Int) {
        func before(_ d: Duration) -> String { Timestamp.string(now.addingTimeInterval(-d.timeInterval)) }
        let gone = try await store.prune(auditBefore: before(configuration.auditRetention), reportsBefore: before(configuration.reportRetention))
        if gone.audit + gone.reports > 0 {
            logger.info("retention", metadata: ["audit_deleted": "\(gone.audit)", "reports_deleted": "\(gone.reports)"])
        }
        return gone
    }

    /// Ends every watch stream (server shutdown).
    public func shutdown() async { await hub.shutdown() }
}

/// Surfaces, org state and keys in memory.
actor LiveState {
    private var surfaces: [String: SurfaceRecord]
    private(set) var org: OrgState
    private var keys: [KeyRecord]
    private var keysLoaded = ContinuousClock.now
    private(set) var validations = 0

    init(surfaces: [String: SurfaceRecord], org: OrgState, keys: [KeyRecord]) {
        self.surfaces = surfaces
        self.org = org
        self.keys = keys
    }

    func snapshot(_ deviceId: String) -> (SurfaceRecord?, OrgState) { (surfaces[deviceId], org) }
    /// The names among `ids` that name no surface.
    func unknown(_ ids: [String]) -> [String] { ids.filter { surfaces[$0] == nil } }
    func all() -> [SurfaceRecord] { surfaces.values.sorted { $0.deviceId < $1.deviceId } }
    func put(_ r: SurfaceRecord) { surfaces[r.deviceId] = r }
    func remove(_ id: String) { surfaces[id] = nil }
    func setOrg(_ o: OrgState) { org = o }
    func countValidation() { validations += 1 }

    func keysAreStale(_ refresh: Duration) -> Bool { ContinuousClock.now - keysLoaded > refresh }
    func setKeys(_ k: [KeyRecord]) {
        keys = k
        keysLoaded = .now
    }
    func currentKeys() -> [KeyRecord] { keys }
}

/// A FIFO lock for async code: one mutation at a time, in arrival order.
actor AsyncLock {
    private var busy = false
    private var waiters: [CheckedContinuation<Void, Never>] = []

    func run<T: Sendable>(_ body: @Sendable () async throws -> T) async throws -> T {
        await acquire()
        defer { release() }
        return try await body()
    }

    private func acquire() async {
        if !busy {
            busy = true
            return
        }
        await withCheckedContinuation { waiters.append($0) }
    }

    private func release() {
        if waiters.isEmpty {
            busy = false
        } else {
            waiters.removeFirst().resume()
        }
    }
}
