import Foundation

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

    public init(name: String, role: Role, hash: String, createdAt: String, revokedAt: String? = nil) {
        self.name = name
        self.role = role
        self.hash = hash
        self.createdAt = createdAt
        self.revokedAt = revokedAt
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
}

public struct OrgState: Sendable, Equatable {
    public var halted: Bool
    public var reason: String?
    public var changedBy: String?
    public var changedAt: String?

    public static let running = OrgState(halted: false)
}

public struct AuditEntry: Sendable, Equatable {
    public var id: Int64
    public var at: String
    public var actor: String
    public var action: String
    public var deviceId: String?
    public var reason: String?
    public var requestID: String
}

/// What a supervisor reports it did about a decision.
public struct Report: Sendable, Equatable {
    public var deviceId: String
    public var instance: String
    /// `stopped`, `killed`, `resumed`, `exited`, `started`
    public var state: String
    public var pids: [Int32]
    /// When the supervisor did it (its clock), RFC 3339.
    public var at: String
    /// The request id of the decision it acted on.
    public var requestID: String?
    public var receivedAt: String

    public static let states: Set<String> = ["stopped", "killed", "resumed", "exited", "started", "running"]
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
public protocol AuthorityStore: Sendable {
    func surfaces() async throws -> [SurfaceRecord]
    func register(_ deviceId: String, change: Change) async throws -> (RegisterOutcome, SurfaceRecord)
    /// nil when the surface does not exist.
    func setRevoked(_ deviceId: String, revoked: Bool, change: Change) async throws -> SurfaceRecord?
    func remove(_ deviceId: String, change: Change) async throws -> Bool

    func org() async throws -> OrgState
    func setHalted(_ halted: Bool, change: Change) async throws -> OrgState

    func keys() async throws -> [KeyRecord]
    func addKey(_ key: KeyRecord, change: Change) async throws
    /// false when no such key exists or it is already revoked.
    func revokeKey(named name: String, change: Change) async throws -> Bool

    func audit(limit: Int, deviceId: String?) async throws -> [AuditEntry]
    func addReport(_ report: Report) async throws
    func reports(deviceId: String, limit: Int) async throws -> [Report]
    func usage() async throws -> Usage
}

public struct StoreError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
