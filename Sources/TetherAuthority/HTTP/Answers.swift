import Foundation
import TetherCore

// The API's answers (docs/openapi.yaml describes the same). Optional fields are left out when
// empty, except where a field documents "none on record" as an explicit null (the org's
// change, an audit entry's surface).

typealias ErrorAnswer = ErrorBody

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

/// `POST devices/remove`
struct RemoveAnswer: Encodable {
    var status = "ok"
    var deviceId: String
    var state = "removed"
    var requestID: String
    enum CodingKeys: String, CodingKey { case status, deviceId, state, requestID = "request_id" }
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

typealias ConsoleLinkAnswer = ConsoleLink

// MARK: - the wire's answers (TetherCore), made from the store's records

extension ReportView {
    init(_ r: Report, withSurface: Bool = false) {
        self.init(
            surface: withSurface ? r.deviceId : nil, instance: r.instance, state: r.state, pids: r.pids, at: r.at,
            requestID: r.requestID, receivedAt: r.receivedAt, detail: r.detail)
    }
}

extension OrgView {
    init(_ org: OrgState) { self.init(halted: org.halted, reason: org.reason, changedBy: org.changedBy, changedAt: org.changedAt) }
}

/// Who answered a revoke, restore, halt or resume asked with `?wait=`, and who did not in time.
struct AckLists: Encodable {
    var acks: [ReportView]
    var missing: [MissingAck]

    init(_ r: AckResult) {
        acks = r.acked.map { ReportView($0, withSurface: true) }
        missing = r.missing.map { MissingAck(instance: $0.instance, surface: $0.deviceId) }
    }
}

extension AuditPage.Entry {
    init(_ e: AuditEntry) {
        self.init(id: e.id, at: e.at, actor: e.actor, action: e.action, surface: e.deviceId, reason: e.reason, requestID: e.requestID)
    }
}
