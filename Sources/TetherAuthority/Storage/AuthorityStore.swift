import Foundation
import TetherCore

/// What an API key may do.
public enum Role: String, Sendable, Codable, CaseIterable {
    /// register, validate, watch, report: what a supervisor needs, and no more.
    case agent
    /// everything: revoke, unrevoke, remove, halt, resume, list, audit, usage.
    case `operator`
}

public struct KeyRecord: Sendable, Equatable {
    public var name: String
    public var role: Role
    /// Lowercase hex SHA-256 of the key. Keys carry 256 random bits, so a fast hash is enough.
    public var hash: String
    public var createdAt: String
    public var revokedAt: String?
    /// An agent key's scope: the surfaces it may act for (names or patterns with `*`), and the
    /// one instance it may watch and report as. nil: unscoped (keys made before scopes).
    public var surfaces: [String]?
    public var instance: String?

    public init(
        name: String, role: Role, hash: String, createdAt: String, revokedAt: String? = nil,
        surfaces: [String]? = nil, instance: String? = nil
    ) {
        self.name = name
        self.role = role
        self.hash = hash
        self.createdAt = createdAt
        self.revokedAt = revokedAt
        self.surfaces = surfaces
        self.instance = instance
    }

    /// Whether this key may register, validate, watch or report for `surface`.
    public func mayActFor(_ surface: String) -> Bool {
        guard role == .agent, let patterns = surfaces else { return true }
        return patterns.contains { SurfacePattern.matches($0, surface) }
    }

    /// Whether this key may watch or report as `instance`.
    public func mayUse(instance i: String) -> Bool {
        guard role == .agent, let bound = instance else { return true }
        return bound == i
    }

    /// "unscoped", or "surfaces agent-*,ci-7; instance host-a".
    public var scopeDescription: String {
        if role == .operator { return "everything" }
        guard surfaces != nil || instance != nil else { return "unscoped" }
        var parts: [String] = []
        if let s = surfaces { parts.append("surfaces \(s.joined(separator: ","))") }
        if let i = instance { parts.append("instance \(i)") }
        return parts.joined(separator: "; ")
    }
}

/// Surface names and patterns for key scopes: a name, or a name with `*` standing for any run
/// of characters (`agent-*`, `*-prod`, `*`).
public enum SurfacePattern {
    public static func isValid(_ p: String) -> Bool {
        !p.isEmpty && p.count <= 128 && SurfaceName.isValid(p.replacingOccurrences(of: "*", with: "x"))
    }

    public static func matches(_ pattern: String, _ name: String) -> Bool {
        let parts = pattern.split(separator: "*", omittingEmptySubsequences: false).map(String.init)
        if parts.count == 1 { return pattern == name }
        guard name.hasPrefix(parts.first!), name.hasSuffix(parts.last!),
            name.count >= parts.first!.count + parts.last!.count
        else { return false }
        var rest = Substring(name.dropFirst(parts.first!.count).dropLast(parts.last!.count))
        for middle in parts.dropFirst().dropLast() where !middle.isEmpty {
            guard let r = rest.range(of: middle) else { return false }
            rest = rest[r.upperBound...]
        }
        return true
    }
}

public struct SurfaceRecord: Sendable, Equatable {
    public var deviceId: String
    public var revoked: Bool
    public var createdAt: String
    public var updatedAt: String
    /// Reason and key name of the last revoke or restore.
    public var reason: String?
    public var changedBy: String?
    /// The global revision of the surface's last change (0: before revisions), and the
    /// request that made it: what acknowledgements name.
    public var revision: UInt64 = 0
    public var requestID: String?
}

public struct OrgState: Sendable, Equatable {
    public var halted: Bool
    public var reason: String?
    public var changedBy: String?
    public var changedAt: String?
    /// The revision of the last halt or resume (0: never), and its request.
    public var revision: UInt64 = 0
    public var requestID: String?

    public static let running = OrgState(halted: false)
}

/// A committed change as every replica sends it: its global revision and its decision,
/// signed once when it was written.
public struct ChangeEvent: Sendable, Equatable {
    public var revision: UInt64
    /// The surface, or `OrgSubject.name` for a halt or resume.
    public var subject: String
    public var requestID: String
    /// The signed decision as JSON: the same bytes for every stream of every replica.
    public var text: String

    public init(revision: UInt64, subject: String, requestID: String, text: String) {
        self.revision = revision
        self.subject = subject
        self.requestID = requestID
        self.text = text
    }
}

/// What a change left behind, for the decision its event states.
public enum ChangeOutcome: Sendable {
    case surface(SurfaceRecord)
    case removed(deviceId: String, revision: UInt64)
    case org(OrgState)
}

/// Signs a change's event inside the change's transaction, once its revision is known.
public typealias EventSealer = @Sendable (ChangeOutcome, Change) throws -> String

/// The changes after a revision, and — read in the same snapshot — the state of everything
/// they touched: what a replica needs to catch up.
public struct ChangeBatch: Sendable {
    public var events: [ChangeEvent]
    /// Touched surfaces that exist, and those that were removed (with the removal's revision).
    public var surfaces: [String: SurfaceRecord]
    public var removed: [String: UInt64]
    public var org: OrgState
    /// The newest revision committed when the batch was read.
    public var head: UInt64
}

/// An authority signing key (Ed25519) as the store keeps it, shared by every replica.
///
/// A key is `next` (published: supervisors learn it, nothing is signed with it yet), then
/// `active` (everything is signed with it), then `retired` (published until `retireAfter`,
/// when the last lease it signed has ended; then forgotten).
public struct SigningKeyRecord: Sendable, Equatable {
    public enum State: String, Sendable { case next, active, retired }
    public var id: String
    /// Base64 of the 32-byte private key.
    public var privateKey: String
    public var publicKey: String
    public var state: State
    public var createdAt: String
    public var activatedAt: String?
    public var retireAfter: String?
    /// For a key made by a rotation: the previous key's signature over `endorsementBytes`,
    /// so that a supervisor that trusts the previous key can trust this one.
    public var endorsement: String?
    public var endorsedBy: String?

    public init(
        id: String, privateKey: String, publicKey: String, state: State, createdAt: String,
        activatedAt: String? = nil, retireAfter: String? = nil, endorsement: String? = nil, endorsedBy: String? = nil
    ) {
        self.id = id
        self.privateKey = privateKey
        self.publicKey = publicKey
        self.state = state
        self.createdAt = createdAt
        self.activatedAt = activatedAt
        self.retireAfter = retireAfter
        self.endorsement = endorsement
        self.endorsedBy = endorsedBy
    }
}

public struct AuditEntry: Sendable, Equatable {
    public var id: Int64
    public var at: String
    public var actor: String
    public var action: String
    public var deviceId: String?
    public var reason: String?
    public var requestID: String

    public init(id: Int64, at: String, actor: String, action: String, deviceId: String?, reason: String?, requestID: String) {
        (self.id, self.at, self.actor, self.action, self.deviceId, self.reason, self.requestID) = (
            id, at, actor, action, deviceId, reason, requestID
        )
    }
}

/// What a supervisor reports it did about a decision.
public struct Report: Sendable, Equatable {
    public var deviceId: String
    public var instance: String
    /// One of `ReportState.all`.
    public var state: String
    public var pids: [Int32]
    /// When the supervisor did it (its clock), RFC 3339.
    public var at: String
    /// The request id of the decision it acted on.
    public var requestID: String?
    public var receivedAt: String
    /// What happened, for a human (the calls a gate denied).
    public var detail: String? = nil
    /// The key that sent it (not stored): an acknowledgement counts only from the key that
    /// holds the instance's watch stream.
    public var keyName: String = ""

}

/// A console sign-in link or session, shared by the replicas: kept by the SHA-256 of its
/// token (the token itself is never stored). Times are wall-clock seconds since 1970, which
/// every replica reads alike.
public struct ConsoleTokenRecord: Sendable, Equatable {
    public enum Kind: String, Sendable { case link, session }
    public var digest: String
    public var kind: Kind
    public var keyName: String
    /// A session's CSRF token (sent back with every change; not a secret from its holder).
    public var csrf: String?
    /// Where it was made from (a session's client address).
    public var client: String?
    public var createdAt: Double
    public var lastSeen: Double
    /// A link's end; a session's absolute end.
    public var expiresAt: Double
    /// A link that signed someone in.
    public var used: Bool

    public init(
        digest: String, kind: Kind, keyName: String, csrf: String? = nil, client: String? = nil,
        createdAt: Double, lastSeen: Double, expiresAt: Double, used: Bool = false
    ) {
        (self.digest, self.kind, self.keyName, self.csrf, self.client) = (digest, kind, keyName, csrf, client)
        (self.createdAt, self.lastSeen, self.expiresAt, self.used) = (createdAt, lastSeen, expiresAt, used)
    }
}

public enum RegisterOutcome: String, Sendable {
    case created = "ok"
    case exists
    case revoked
}

public struct Usage: Sendable, Equatable {
    public var surfaces: Int
    public var revoked: Int
    public var keys: Int
    public var auditEntries: Int
    public var reports: Int
}

/// A mutation's bookkeeping: who, why, which request. Written to the audit log in the same
/// transaction as the change.
public struct Change: Sendable {
    public var actor: String
    public var reason: String?
    public var requestID: String
    public var at: String

    public init(actor: String, reason: String?, requestID: String, at: String) {
        self.actor = actor
        self.reason = reason
        self.requestID = requestID
        self.at = at
    }
}

/// Durable state of an authority. Every mutating call returns only once the change and its
/// audit entry are on disk: an acknowledged revocation survives a crash.
///
/// Every change of a surface or of the org takes the next global revision — in commit order,
/// without gaps, across every replica on the same database — and stores its signed event
/// (`seal`) in the same transaction.
public protocol AuthorityStore: Sendable {
    /// The deployment's name, made once with the schema: every decision names it.
    func origin() async throws -> String
    func surfaces() async throws -> [SurfaceRecord]
    /// Removed surfaces and the revisions of their removal.
    func removedSurfaces() async throws -> [String: UInt64]
    /// The event is nil when the surface existed already (no change).
    func register(
        _ deviceId: String, change: Change, seal: @escaping EventSealer
    ) async throws -> (RegisterOutcome, SurfaceRecord, ChangeEvent?)
    /// nil when the surface does not exist.
    func setRevoked(
        _ deviceId: String, revoked: Bool, change: Change, seal: @escaping EventSealer
    ) async throws -> (SurfaceRecord, ChangeEvent)?
    func remove(_ deviceId: String, change: Change, seal: @escaping EventSealer) async throws -> ChangeEvent?

    func org() async throws -> OrgState
    func setHalted(_ halted: Bool, change: Change, seal: @escaping EventSealer) async throws -> (OrgState, ChangeEvent)

    /// The newest committed revision.
    func head() async throws -> UInt64
    /// Up to `limit` changes after `revision`, oldest first, with the state they touched.
    func changes(after revision: UInt64, limit: Int) async throws -> ChangeBatch

    /// Every signing key not yet forgotten, oldest first.
    func signingKeys() async throws -> [SigningKeyRecord]
    /// Adds a key, or updates one of the same id (its state, times, endorsement).
    func putSigningKey(_ key: SigningKeyRecord, change: Change) async throws
    /// Forgets a retired key (no lease it signed is left).
    func deleteSigningKey(id: String, change: Change) async throws

    func keys() async throws -> [KeyRecord]
    func addKey(_ key: KeyRecord, change: Change) async throws
    /// false when no such key exists or it is already revoked.
    func revokeKey(named name: String, change: Change) async throws -> Bool

    /// Newest first; `since`/`until` bound `at` (inclusive), in the authority's timestamp form;
    /// `actor` is a key's name: its own entries and those it made through the console
    /// ("NAME via console (ADDRESS)").
    /// `before`: only entries with a smaller id (the next page of a long log).
    func audit(limit: Int, deviceId: String?, actor: String?, since: String?, until: String?, before: Int64?) async throws -> [AuditEntry]
    func addReport(_ report: Report) async throws
    /// Aggregated refusals (see `RefusalLog`), as audit rows.
    func addRefusals(_ rows: [RefusalRow]) async throws
    func reports(deviceId: String, limit: Int) async throws -> [Report]
    /// The newest report of each (surface, instance) among `deviceIds`: one query for a page of
    /// surfaces, not one per surface.
    func latestReports(of deviceIds: [String]) async throws -> [Report]
    func usage() async throws -> Usage
    /// Console sign-in links and sessions (`ConsoleSessions`): on the shared database, a link
    /// made through one replica signs in through any, and a session lives on every replica.
    func addConsoleToken(_ token: ConsoleTokenRecord) async throws
    func consoleToken(digest: String) async throws -> ConsoleTokenRecord?
    /// Marks an unused link used, in one statement (two replicas cannot both use it): true
    /// when this call used it.
    func useConsoleLink(digest: String) async throws -> Bool
    /// Sets a session's `lastSeen`.
    func touchConsoleSession(digest: String, at: Double) async throws
    func deleteConsoleToken(digest: String) async throws
    /// Ends every session of a key.
    func deleteConsoleSessions(keyName: String) async throws
    /// Deletes links and sessions that ended before `before` (sessions also when idle since
    /// `idleBefore`); returns how many went.
    @discardableResult
    func pruneConsoleTokens(before: Double, idleBefore: Double) async throws -> Int

    /// Claims `instance` for `keyName` when no key holds it — or from another key when
    /// `takeOver` says why (the key is scoped to it; the holder's key is revoked; audited) —
    /// and marks it seen. Returns the holder after the call: another key's claim when this one
    /// was not taken.
    func claimInstance(_ instance: String, keyName: String, takeOver: String?, change: Change) async throws -> InstanceClaim
    /// Deletes the claims not used since `before` (the authority's timestamp form).
    func pruneInstances(idleBefore before: String) async throws -> Int
    /// Every claim, by name.
    func instances() async throws -> [InstanceClaim]
    /// Ends a claim (audited): the next key to watch or report as the instance holds it.
    /// nil when no key held it.
    func releaseInstance(_ instance: String, change: Change) async throws -> InstanceClaim?
    /// Marks claims seen (the instances of streams open for a long time).
    func touchInstances(_ names: [String], at: String) async throws

    /// Deletes audit entries and reports older than the given times (the authority's
    /// timestamp form), and change events as old as reports; returns how many of each went.
    func prune(auditBefore: String, reportsBefore: String) async throws -> (audit: Int, reports: Int)
}

extension AuthorityStore {
    public func audit(limit: Int, deviceId: String?, since: String?, until: String?) async throws -> [AuditEntry] {
        try await audit(limit: limit, deviceId: deviceId, actor: nil, since: since, until: until, before: nil)
    }

    public func audit(limit: Int, deviceId: String?, actor: String?, since: String?, until: String?) async throws -> [AuditEntry] {
        try await audit(limit: limit, deviceId: deviceId, actor: actor, since: since, until: until, before: nil)
    }
}

/// The prefix of the audit actor of a change a key made through the console.
public func consoleActorPrefix(_ keyName: String) -> String { keyName + " via " }

public struct StoreError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
