import Foundation
import TetherCore

// The API's request bodies (docs/openapi.yaml describes the same): the wire's (TetherCore/Wire),
// each with its own range checks here — a name is a surface name, a text has a byte bound, a
// state is one the API knows — and the report and the console's forms, which only the
// authority reads.

typealias RegisterRequest = RegisterBody
typealias ValidateRequest = ValidateBody
typealias SurfaceChangeRequest = SurfaceChangeBody
typealias OrgChangeRequest = OrgChangeBody
typealias InstanceReleaseRequest = InstanceReleaseBody

extension RegisterBody: RequestBody {
    mutating func validate() throws { surface = try Check.surface(surface) }
}

extension ValidateBody: RequestBody {
    static let keys: Set<String> = ["deviceId", "nonce"]

    static func fastDecode(_ bytes: Data) -> ValidateBody? {
        guard let f = FlatStrings.parse(bytes, keys: keys), let id = f["deviceId"] else { return nil }
        return ValidateBody(surface: id, nonce: f["nonce"])
    }

    mutating func validate() throws {
        surface = try Check.surface(surface)
        if let nonce, !Decision.isValidNonce(nonce) {
            throw BodyError("invalid nonce: 1 to 128 characters of A-Z a-z 0-9 . _ : + / = -")
        }
    }
}

extension SurfaceChangeBody: RequestBody {
    mutating func validate() throws {
        surface = try Check.surface(surface)
        try Check.length("reason", reason, max: 1000)
    }
}

extension InstanceReleaseBody: RequestBody {
    mutating func validate() throws {
        guard SurfaceName.isValid(instance) else { throw BodyError("invalid instance \"\(instance.prefix(140))\": \(SurfaceName.rule)") }
        try Check.length("reason", reason, max: 1000)
    }
}

extension OrgChangeBody: RequestBody {
    mutating func validate() throws { try Check.length("reason", reason, max: 1000) }
}

/// `POST devices/report`: a supervisor says what its worker is doing.
struct ReportRequest: RequestBody {
    var deviceId: String
    var instance: String
    var state: String
    /// Read as numbers, then checked to be process ids: the JSON decoder calls 1.5 for an
    /// integer field "not valid JSON", with no field named.
    var pids: [Double]?
    /// When the supervisor saw it (RFC 3339); the time of receipt when absent.
    var at: String?
    /// The change this answers (the `request_id` of the decision that caused it).
    var requestID: String?
    /// For a human: what a gate denied ("connect ×3 by 1234 (/usr/bin/curl)").
    var detail: String?
    enum CodingKeys: String, CodingKey, CaseIterable {
        case deviceId, instance, state, pids, at, detail
        case requestID = "request_id"
    }
    mutating func validate() throws {
        deviceId = try Check.surface(deviceId)
        guard SurfaceName.isValid(instance) else { throw BodyError("invalid instance: \(SurfaceName.rule)") }
        guard ReportState.all.contains(state) else {
            throw BodyError("unknown state \"\(state.prefix(40))\"; expected \(ReportState.all.sorted().joined(separator: ", "))")
        }
        if let at, Timestamp.parse(at) == nil { throw BodyError("\"at\" must be an RFC 3339 time") }
        try Check.length("request_id", requestID, max: 128)
        if let detail, detail.unicodeScalars.count > 1000 { throw BodyError("\"detail\" is longer than 1000 characters") }
        if let detail, detail.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) {
            throw BodyError("\"detail\" holds a control character: one line of text")
        }
        for (i, p) in (pids ?? []).enumerated() where !(p >= 1 && p <= Double(Int32.max) && p == p.rounded()) {
            throw BodyError("\"pids[\(i)]\" must be a process id: pids are an array of positive integers")
        }
    }

    var processIDs: [Int32] { (pids ?? []).map { Int32($0) } }
}

/// The console's halt and resume: a halt is confirmed by typing HALT.
struct ConsoleOrgChangeRequest: RequestBody {
    var reason: String?
    var confirm: String?
    enum CodingKeys: String, CodingKey, CaseIterable { case reason, confirm }
    mutating func validate() throws {
        try Check.length("reason", reason, max: 1000)
        try Check.length("confirm", confirm, max: 16)
    }
}

enum Check {
    static func surface(_ s: String) throws -> String {
        guard SurfaceName.isValid(s) else { throw BodyError("invalid deviceId \"\(s.prefix(140))\": \(SurfaceName.rule)") }
        return s
    }

    static func length(_ field: String, _ value: String?, max: Int) throws {
        if let value, value.utf8.count > max { throw BodyError("\"\(field)\" is longer than \(max) bytes") }
    }
}
