import Foundation
import TetherCore

// The API's answers (docs/openapi.yaml describes the same). Optional fields are left out when
// empty, except where a field documents "none on record" as an explicit null (the org's
// change, an audit entry's surface).

/// `{"status": "error", "code": …, "error": …, "request_id": …}`
struct ErrorAnswer: Encodable {
    var status = "error"
    var code: String
    var error: String
    var requestID: String
    /// A watch refused for some of its surfaces: which (nil: left out).
    var refused: [String]? = nil
    enum CodingKeys: String, CodingKey { case status, code, error, requestID = "request_id", refused }
}

/// `GET /healthz`, `POST devices/report`
struct OKAnswer: Encodable {
    var status = "ok"
    var requestID: String
    enum CodingKeys: String, CodingKey { case status, requestID = "request_id" }
}

/// `GET /api/v1/public-key`
struct PublicKeyAnswer: Encodable {
    var status = "ok"
    var publicKey: String
    var algorithm = "ed25519"
    var keyId: String
    var origin: String
    var requestID: String
    enum CodingKeys: String, CodingKey { case status, publicKey, algorithm, keyId, origin, requestID = "request_id" }
}

/// `GET /api/v1/signing-keys`: every published key, oldest first, each new one endorsed by
/// the key before it.
struct SigningKeysAnswer: Encodable {
    struct Key: Encodable {
        var keyId: String
        var publicKey: String
        var algorithm = "ed25519"
        var state: String
        var activatesAt: String?
        var retireAfter: String?
        var endorsedBy: String?
        var endorsement: String?

        init(_ p: KeyRing.Published) {
            keyId = p.id
            publicKey = p.publicKey
            state = p.state.rawValue
            activatesAt = p.activatesAt
            retireAfter = p.retireAfter
            endorsedBy = p.endorsedBy
            endorsement = p.endorsement
        }
    }
    var status = "ok"
    var origin: String
    var keys: [Key]
    var requestID: String
    enum CodingKeys: String, CodingKey { case status, origin, keys, requestID = "request_id" }
}

/// `POST devices/register`: `status` is MachineID's: `ok` (created), `exists` or `revoked`.
struct RegisterAnswer: Encodable {
    var status: String
    var deviceId: String
    var created: Bool
    var revoked: Bool
    var createdAt: String
    var requestID: String
    enum CodingKeys: String, CodingKey { case status, deviceId, created, revoked, createdAt, requestID = "request_id" }
}

/// A decision as validate answers it and a watch stream sends it: the signed fields, plus
/// MachineID's legacy `status` (`ok`, `revoked`, `not_found`, `halted`) and `reason` (the code
/// of a deny).
struct DecisionAnswer: Encodable {
    var decision: Decision
    enum Legacy: String, CodingKey { case status, reason }

    func encode(to encoder: any Encoder) throws {
        try decision.encode(to: encoder)
        var c = encoder.container(keyedBy: Legacy.self)
        try c.encode(Self.status(of: decision.code), forKey: .status)
        if !decision.allowed { try c.encode(decision.code.rawValue, forKey: .reason) }
    }

    /// MachineID's legacy `status`.
    static func status(of code: DecisionCode) -> String {
        switch code {
        case .allow: return "ok"
        case .deviceRevoked: return "revoked"
        case .deviceNotFound: return "not_found"
        case .orgHalted: return "halted"
        default: return "error"
        }
    }
}

/// The org's halt, with its change: `reason`, `changedBy`, `changedAt` are null when none is on record.
struct OrgAnswer: Encodable {
    var org: OrgState
    enum CodingKeys: String, CodingKey { case halted, reason, changedBy, changedAt }
    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(org.halted, forKey: .halted)
        try c.encode(org.reason, forKey: .reason)
        try c.encode(org.changedBy, forKey: .changedBy)
        try c.encode(org.changedAt, forKey: .changedAt)
    }
}

/// A supervisor's report, as on-call reads it.
struct ReportAnswer: Encodable {
    var report: Report
    /// Set where the answer spans surfaces (acknowledgements).
    var withDevice = false
    enum CodingKeys: String, CodingKey { case deviceId, instance, state, pids, at, requestID = "request_id", receivedAt, detail }
    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        if withDevice { try c.encode(report.deviceId, forKey: .deviceId) }
        try c.encode(report.instance, forKey: .instance)
        try c.encode(report.state, forKey: .state)
        try c.encode(report.pids, forKey: .pids)
        try c.encode(report.at, forKey: .at)
        try c.encode(report.requestID, forKey: .requestID)
        try c.encode(report.receivedAt, forKey: .receivedAt)
        try c.encodeIfPresent(report.detail, forKey: .detail)
    }
}

/// `GET devices/list`
struct ListAnswer: Encodable {
    struct Device: Encodable {
        var deviceId: String
        var state: String
        var revoked: Bool
        var createdAt: String
        var updatedAt: String
        var reason: String?
        var changedBy: String?
        var watchers: [String]
        var lastReport: ReportAnswer?
        /// The key holding each instance named in `watchers` and `lastReport`.
        var holders: [String: String]
    }
    var status = "ok"
    var devices: [Device]
    var count: Int
    var org: OrgAnswer
    var requestID: String
    enum CodingKeys: String, CodingKey { case status, devices, count, org, requestID = "request_id" }
}

/// `GET instances`
struct InstancesAnswer: Encodable {
    struct Instance: Encodable {
        var instance: String
        var key: String
        var claimedAt: String
        var lastSeen: String
        /// Streams open as it, on any replica.
        var connected: Bool
    }
    var status = "ok"
    var instances: [Instance]
    var requestID: String
    enum CodingKeys: String, CodingKey { case status, instances, requestID = "request_id" }
}

/// `POST instances/release`
struct InstanceReleaseAnswer: Encodable {
    var status = "released"
    var instance: String
    /// The key that held it.
    var key: String
    var claimedAt: String
    var requestID: String
    enum CodingKeys: String, CodingKey { case status, instance, key, claimedAt, requestID = "request_id" }
}

/// Who answered a revoke, restore, halt or resume asked with `?wait=`, and who did not in time.
struct AckAnswer: Encodable {
    struct Missing: Encodable { var instance: String; var deviceId: String }
    var acks: [ReportAnswer]
    var missing: [Missing]

    init(_ r: AckResult) {
        acks = r.acked.map { ReportAnswer(report: $0, withDevice: true) }
        missing = r.missing.map { Missing(instance: $0.instance, deviceId: $0.deviceId) }
    }
}

/// `POST devices/revoke`, `devices/unrevoke`
struct SurfaceChangeAnswer: Encodable {
    var status = "ok"
    var deviceId: String
    var state: String
    var revoked: Bool
    var changedAt: String
    var reason: String?
    /// Watch streams holding the surface when it changed.
    var watchers: Int
    var requestID: String
    var acks: [ReportAnswer]?
    var missing: [AckAnswer.Missing]?
    enum CodingKeys: String, CodingKey { case status, deviceId, state, revoked, changedAt, reason, watchers, requestID = "request_id", acks, missing }
}

/// `POST devices/remove`
struct RemoveAnswer: Encodable {
    var status = "ok"
    var deviceId: String
    var state = "removed"
    var requestID: String
    enum CodingKeys: String, CodingKey { case status, deviceId, state, requestID = "request_id" }
}

/// `POST org/halt`, `org/resume`
struct OrgChangeAnswer: Encodable {
    var status = "ok"
    var halted: Bool
    var org: OrgAnswer
    var watchers: Int
    var requestID: String
    var acks: [ReportAnswer]?
    var missing: [AckAnswer.Missing]?
    enum CodingKeys: String, CodingKey { case status, halted, org, watchers, requestID = "request_id", acks, missing }
}

/// `GET audit`
struct AuditAnswer: Encodable {
    struct Entry: Encodable {
        var entry: AuditEntry
        enum CodingKeys: String, CodingKey { case id, at, actor, action, deviceId, reason, requestID = "request_id" }
        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(entry.id, forKey: .id)
            try c.encode(entry.at, forKey: .at)
            try c.encode(entry.actor, forKey: .actor)
            try c.encode(entry.action, forKey: .action)
            try c.encode(entry.deviceId, forKey: .deviceId)
            try c.encode(entry.reason, forKey: .reason)
            try c.encode(entry.requestID, forKey: .requestID)
        }
    }
    var status = "ok"
    var entries: [Entry]
    var requestID: String
    enum CodingKeys: String, CodingKey { case status, entries, requestID = "request_id" }
}

/// `GET usage`
struct UsageAnswer: Encodable {
    var status = "ok"
    var devices: Int
    var active: Int
    var revoked: Int
    var keys: Int
    var auditEntries: Int
    var reports: Int
    var watchConnections: Int
    var validations: Int
    var halted: Bool
    var requestID: String
    enum CodingKeys: String, CodingKey {
        case status, devices, active, revoked, keys, auditEntries, reports, watchConnections, validations, halted
        case requestID = "request_id"
    }
}

/// `POST console/link`
struct ConsoleLinkAnswer: Encodable {
    var status = "ok"
    /// Appended to the authority's URL: the link to open.
    var path: String
    /// The whole link, where the authority knows its public address (`[console] public_url`).
    var url: String?
    var expiresAt: String
    var requestID: String
    enum CodingKeys: String, CodingKey { case status, path, url, expiresAt, requestID = "request_id" }
}
