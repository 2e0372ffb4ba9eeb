import Foundation
import TetherCore

/// What the supervisor may do with a surface right now, and why.
public struct Verdict: Sendable, Equatable {
    public var surface: String
    public var allowed: Bool
    public var code: DecisionCode
    /// The request id of the decision behind it (the change to acknowledge), if any.
    public var requestID: String?
    /// When an allow stops being good without renewal.
    public var until: Date?
    /// When the authority issued the decision behind it (by the authority's clock).
    public var decidedAt: Date?
    /// The operator change behind the decision, as the authority signed it: who, when (by
    /// the authority's clock), why. Nil for the client's own verdicts (`LEASE_EXPIRED`, …).
    public var changedBy: String?
    public var changedAt: Date?
    public var changeReason: String?
    /// The authority's revision this verdict rests on (the later of the surface's and the
    /// org's), where the authority keeps revisions: it only ever grows for a surface.
    public var revision: UInt64?

    public init(surface: String, allowed: Bool, code: DecisionCode, requestID: String?, until: Date?, decidedAt: Date? = nil) {
        self.surface = surface
        self.allowed = allowed
        self.code = code
        self.requestID = requestID
        self.until = until
        self.decidedAt = decidedAt
    }

    /// "by alice: INC-481", "by alice", or "" when the decision names no operator.
    public var attribution: String { Decision.attribution(by: changedBy, reason: changeReason) }

    func attributed(to d: Decision, changedAt: Date?) -> Verdict {
        var v = self
        v.changedBy = d.changedBy
        v.changedAt = changedAt
        v.changeReason = d.changeReason
        if let r = d.revision { v.revision = max(r, d.orgRevision ?? 0) }
        return v
    }

    /// The verdict without what changes at every renewal: two verdicts with the same key are
    /// the same news.
    public var changeKey: Verdict {
        var k = self
        k.until = nil
        k.decidedAt = nil
        // With revisions, the revision names the change: a validate answer's request id is
        // its own request's, not news.
        if k.revision != nil { k.requestID = nil }
        return k
    }
}

/// The lease bookkeeping of one surface, fail-closed: an allow is good until its `expiresAt`
/// (or, from an authority that sends no lease fields — MachineID — for `failClosedAfter` after it
/// was received); after that, with no renewal, the surface is denied with `LEASE_EXPIRED`.
public struct Lease: Sendable, Equatable {
    public let surface: String
    public let failClosedAfter: TimeInterval
    public private(set) var last: Decision?
    public private(set) var receivedAt: Date?
    /// Set when the last thing learnt was not a decision (bad signature, garbage, 5xx): a deny
    /// that stands until a good decision arrives.
    public private(set) var fault: DecisionCode?
    /// `last`'s times, read once when it arrived (every lease check needs them).
    private var issued: Date?
    private var expires: Date?
    private var changed: Date?

    /// How far back an authority's clock must jump to count as a step rather than a repeat.
    public static let clockStep: TimeInterval = 300

    public init(surface: String, failClosedAfter: TimeInterval) {
        self.surface = surface
        self.failClosedAfter = failClosedAfter
    }

    public mutating func apply(_ d: Decision, at now: Date) {
        // An allow no newer than the one held (same or a little earlier issuedAt) is a cache
        // or a stuck clock, not a renewal: it must not restart the lease, or an answer repeated
        // forever would hold a worker up forever. An issuedAt far behind is the authority's
        // clock stepped back (NTP): a new baseline, or every worker would stay frozen for the
        // size of the step. (Replays of old answers are refused earlier, by nonce and seq.)
        let n = Timestamp.parse(d.issuedAt)
        if let prev = last, prev.allowed, d.allowed, fault == nil, let p = issued, let n,
            n <= p, p.timeIntervalSince(n) < Self.clockStep
        {
            return
        }
        last = d
        issued = n
        expires = d.expiresAt.isEmpty ? nil : Timestamp.parse(d.expiresAt)
        changed = d.changedAt.flatMap(Timestamp.parse)
        receivedAt = now
        fault = nil
    }

    /// A verdict the client reached itself (`BAD_SIGNATURE`, `BAD_RESPONSE`): deny now.
    public mutating func fail(_ code: DecisionCode) { fault = code }

    public func expiry() -> Date? {
        guard let d = last, d.allowed, d.code == .allow, let at = receivedAt else { return nil }
        if let e = expires {
            // The lease's length, counted from when we received it: the authority's clock may
            // be off by an hour either way, and must neither stretch a lease nor void every one.
            if let i = issued { return at.addingTimeInterval(max(0, e.timeIntervalSince(i))) }
            return e
        }
        return at.addingTimeInterval(failClosedAfter)
    }

    public func verdict(at now: Date) -> Verdict {
        if let fault { return Verdict(surface: surface, allowed: false, code: fault, requestID: last?.requestID, until: nil) }
        guard let d = last else {
            return Verdict(surface: surface, allowed: false, code: .authorityUnreachable, requestID: nil, until: nil)
        }
        let decided = issued
        guard d.allowed, d.code == .allow else {
            return Verdict(
                surface: surface, allowed: false, code: d.code == .allow ? .badResponse : d.code, requestID: d.requestID, until: nil,
                decidedAt: decided
            ).attributed(to: d, changedAt: changed)
        }
        guard let until = expiry(), now < until else {
            return Verdict(surface: surface, allowed: false, code: .leaseExpired, requestID: d.requestID, until: nil)
        }
        return Verdict(surface: surface, allowed: true, code: .allow, requestID: d.requestID, until: until, decidedAt: decided).attributed(
            to: d, changedAt: changed)
    }
}

/// The revisions a supervisor holds from its authority: each surface's last change, the org's
/// last halt or resume, the deployment (origin) they come from. A decision that would take any
/// of them back — a replayed event, a lagging replica's renewal — is not applied: revisions
/// only go forward, whichever replica or connection brings them.
public struct Revisions: Sendable {
    public private(set) var surface: [String: UInt64] = [:]
    public private(set) var org: UInt64 = 0
    public private(set) var orgHalted = false
    public private(set) var origin: String?

    public init() {}

    public enum Acceptance: Sendable, Equatable {
        /// New: apply it.
        case applied
        /// A renewal or answer newer than the events received: an event was missed, and this
        /// carries the state it made. Apply it.
        case caughtUp
        /// A change already held (a resume overlapping what came before): nothing to do.
        case duplicate
        /// Older than what is held: not applied, and its lease extends nothing.
        case stale
        /// From another deployment than the decisions held so far: a deny.
        case foreign(String)
    }

    public mutating func accept(_ d: Decision) -> Acceptance {
        if let o = d.origin {
            if let held = origin, held != o { return .foreign(o) }
            origin = o
        }
        // An authority without revisions (MachineID): nothing to compare.
        guard let kind = d.kind else { return .applied }
        switch kind {
        case .change:
            let r = d.revision ?? 0
            if d.deviceId == OrgSubject.name {
                guard r > org else { return .duplicate }
                org = r
                orgHalted = d.code == .orgHalted
            } else {
                guard r > surface[d.deviceId, default: 0] else { return .duplicate }
                surface[d.deviceId] = r
            }
            return .applied
        case .lease, .answer:
            let s = d.revision ?? 0, o = d.orgRevision ?? 0
            let held = surface[d.deviceId]
            if s < (held ?? 0) || o < org { return .stale }
            let newer = held != nil && (s > held! || o > org)
            surface[d.deviceId] = s
            org = o
            orgHalted = d.code == .orgHalted
            return newer ? .caughtUp : .applied
        }
    }

    /// Forgets a surface no longer watched.
    public mutating func forget(_ surface: String) { self.surface[surface] = nil }
}
