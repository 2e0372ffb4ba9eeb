import Foundation
import Synchronization
import TetherClient
import TetherCore

/// One answer of `LiveDecisions`: a verdict, or why there is none (always a deny).
public struct LiveAnswer: Sendable, Equatable {
    public var allowed: Bool
    public var code: String
    public var surface: String
    public var until: String?
    public var requestID: String?
    public var changedBy: String?
    public var changedAt: String?
    public var reason: String?
    public var revision: UInt64?
    public var error: String?

    static func deny(_ surface: String, _ code: String, _ error: String) -> LiveAnswer {
        LiveAnswer(allowed: false, code: code, surface: surface, error: error)
    }

    init(
        allowed: Bool, code: String, surface: String, until: String? = nil, requestID: String? = nil, changedBy: String? = nil,
        changedAt: String? = nil, reason: String? = nil, revision: UInt64? = nil, error: String? = nil
    ) {
        self.allowed = allowed
        self.code = code
        self.surface = surface
        self.until = until
        self.requestID = requestID
        self.changedBy = changedBy
        self.changedAt = changedAt
        self.reason = reason
        self.revision = revision
        self.error = error
    }

    init(_ v: Verdict) {
        self.init(
            allowed: v.allowed, code: v.code.rawValue, surface: v.surface, until: v.until.map(Timestamp.string), requestID: v.requestID,
            changedBy: v.changedBy, changedAt: v.changedAt.map(Timestamp.string), reason: v.changeReason, revision: v.revision)
    }

    /// The decision socket's JSON.
    public var json: [String: Any] {
        var o: [String: Any] = ["allowed": allowed, "code": code, "surface": surface]
        if let until { o["until"] = until }
        if let requestID { o["request_id"] = requestID }
        if let changedBy { o["changedBy"] = changedBy }
        if let changedAt { o["changedAt"] = changedAt }
        if let reason { o["reason"] = reason }
        if let revision { o["revision"] = revision }
        if let error { o["error"] = error }
        return o
    }

    /// "agent-01 is DEVICE_REVOKED (by alice at …: INC-42)", for people.
    public var sentence: String {
        LocalDecision.describe(surface: surface, code: code, changedBy: changedBy, changedAt: changedAt, reason: reason, error: error)
    }

}

/// A worker's decisions from the supervisor's live leases: its surface, its gates' surfaces and
/// sub-surfaces of its surface (`agent-01.mcp.github`). A sub-surface enters the watch on its
/// first question — if it exists at the authority (an unknown one in the watch would count
/// against the stream's limit of unknown surfaces) and the worker has not brought in too many;
/// until the watch has a decision for it, it is asked afresh (one round trip, fail closed).
/// `watch` is given every sub-surface brought in so far.
///
/// A question that needs the authority (a sub-surface not yet watched) is within a budget per
/// worker: `newPerSecond` a second after a burst of `newBurst`, at most `inFlight` at once.
/// Past it the answer is a deny (`RATE_LIMITED`, `BUSY`) that costs the authority nothing: a
/// worker asking about made-up names cannot turn its socket into a flood of validates. Only a
/// decision about a surface that exists (ALLOW, DEVICE_REVOKED, ORG_HALTED) brings a name into
/// the watch — not a refusal (a scoped key's 403), which would be refused again on every
/// reconnect of the stream.
public final class LiveDecisions: Sendable {
    public let surface: String
    let gateSurfaces: Set<String>
    private let verdict: @Sendable (String) async -> Verdict?
    private let watch: @Sendable ([String]) async -> Void
    private let check: @Sendable (String) async -> DecisionCheck.Outcome
    private let onRefused: @Sendable (String) -> Void
    private let subSurfaces = Mutex<(added: [String], missing: [String: Date])>(([], [:]))
    private let budget = Mutex<(tokens: Double, at: ContinuousClock.Instant, inFlight: Int)>((Double(LiveDecisions.newBurst), .now, 0))

    /// Sub-surfaces one worker may bring into the watch.
    public static let maxSubSurfaces = 16
    /// Questions that need the authority, per worker: a burst, then a steady rate, and at once.
    public static let newBurst = 20
    public static let newPerSecond = 2.0
    public static let inFlight = 4
    /// Names remembered as missing at the authority (5 s each), at most.
    static let maxMissing = 1024

    public init(
        surface: String, gateSurfaces: [String], verdict: @escaping @Sendable (String) async -> Verdict?,
        watch: @escaping @Sendable ([String]) async -> Void, check: @escaping @Sendable (String) async -> DecisionCheck.Outcome,
        onRefused: @escaping @Sendable (String) -> Void = { _ in }
    ) {
        self.surface = surface
        self.gateSurfaces = Set(gateSurfaces)
        self.verdict = verdict
        self.watch = watch
        self.check = check
        self.onRefused = onRefused
    }

    /// Takes one question from the budget: nil, or the refusal's code.
    private func spend() -> String? {
        budget.withLock { b in
            let now = ContinuousClock.now
            let elapsed = now - b.at
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            b.tokens = min(Double(Self.newBurst), b.tokens + seconds * Self.newPerSecond)
            b.at = now
            guard b.inFlight < Self.inFlight else { return "BUSY" }
            guard b.tokens >= 1 else { return "RATE_LIMITED" }
            b.tokens -= 1
            b.inFlight += 1
            return nil
        }
    }

    private func release() { budget.withLock { $0.inFlight -= 1 } }

    public var watchedSubSurfaces: [String] { subSurfaces.withLock { $0.added } }

    /// Whether `s` is the worker's to ask about.
    public func isOwn(_ s: String) -> Bool { s == surface || gateSurfaces.contains(s) || isSub(s) }

    func isSub(_ s: String) -> Bool { s.hasPrefix(surface + ".") && s.count > surface.count + 1 }

    public func decide(_ s: String) async -> LiveAnswer {
        guard isOwn(s) else {
            return .deny(s, "NOT_YOURS", "\(s) is not this worker's surface, one of its gates' or a sub-surface of \(surface)")
        }
        let v = await verdict(s)
        if isSub(s) && (v == nil || v?.requestID == nil) { return await subSurface(s) }
        guard let v else { return .deny(s, DecisionCode.leaseExpired.rawValue, "no decision for \(s) yet") }
        return LiveAnswer(v)
    }

    private func subSurface(_ s: String) async -> LiveAnswer {
        let state = subSurfaces.withLock { ($0.added.count, $0.added.contains(s), $0.missing[s]) }
        if let at = state.2, Date().timeIntervalSince(at) < 5 {
            return .deny(s, DecisionCode.deviceNotFound.rawValue, "\(s) does not exist at the authority; an operator can create it")
        }
        guard state.1 || state.0 < Self.maxSubSurfaces else {
            onRefused("TOO_MANY")
            return .deny(s, "TOO_MANY", "this worker already watches \(Self.maxSubSurfaces) sub-surfaces")
        }
        if let code = spend() {
            onRefused(code)
            return .deny(
                s, code,
                code == "BUSY"
                    ? "this worker already has \(Self.inFlight) questions at the authority; ask again when one is answered"
                    : "this worker asks about new sub-surfaces faster than \(Int(Self.newPerSecond)) a second (after \(Self.newBurst)); ask again later"
            )
        }
        let outcome = await check(s)
        release()
        let answer: LiveAnswer
        switch outcome {
        case .allowed(let d):
            answer = LiveAnswer(
                allowed: true, code: d.code.rawValue, surface: s, until: d.expiresAt.isEmpty ? nil : d.expiresAt, requestID: d.requestID)
        case .denied(let d, let code, let detail):
            if code == .deviceNotFound {
                subSurfaces.withLock { st in
                    if st.missing.count >= Self.maxMissing {
                        let now = Date()
                        st.missing = st.missing.filter { now.timeIntervalSince($0.value) < 5 }
                        if st.missing.count >= Self.maxMissing { st.missing.removeAll() }
                    }
                    st.missing[s] = Date()
                }
                return .deny(s, code.rawValue, "\(s) does not exist at the authority; an operator can create it")
            }
            // A refusal, not a decision about the surface (a scoped key's 403, an answer that
            // did not verify): said, never watched.
            guard code == .deviceRevoked || code == .orgHalted else {
                return LiveAnswer(allowed: false, code: code.rawValue, surface: s, requestID: d?.requestID, error: detail)
            }
            answer = LiveAnswer(
                allowed: false, code: code.rawValue, surface: s, requestID: d?.requestID, changedBy: d?.changedBy,
                changedAt: d?.changedAt, reason: d?.changeReason,
                error: code == .deviceRevoked || code == .orgHalted ? nil : detail)
        case .unreachable(let m):
            return .deny(s, DecisionCode.authorityUnreachable.rawValue, m)
        }
        let first = subSurfaces.withLock { st -> Bool in
            guard !st.added.contains(s) else { return false }
            st.added.append(s)
            return true
        }
        if first { await watch(watchedSubSurfaces) }
        return answer
    }
}
