import Foundation

/// `POST /api/v1/devices/report`, as a supervisor sends it. `surface` is MachineID's
/// `deviceId` on the wire.
public struct ReportBody: Codable, Sendable, Equatable {
    public var surface: String
    public var instance: String
    public var state: ReportState
    public var pids: [Int32]
    /// When the supervisor saw it (RFC 3339).
    public var at: String?
    /// The request id of the decision acted on (the change this acknowledges).
    public var requestID: String?
    /// What happened, for a human: one printable line of at most 1000 characters.
    public var detail: String?

    enum CodingKeys: String, CodingKey {
        case surface = "deviceId", instance, state, pids, at, detail
        case requestID = "request_id"
    }

    public init(
        surface: String, instance: String, state: ReportState, pids: [Int32], at: String? = nil, requestID: String? = nil,
        detail: String? = nil
    ) {
        (self.surface, self.instance, self.state, self.pids, self.at, self.requestID, self.detail) = (
            surface, instance, state, pids, at, requestID, detail
        )
    }
}

/// A supervisor's report, as the authority answers it (a surface's last report, an
/// acknowledgement). `surface` is set where the answer spans surfaces (acknowledgements).
public struct ReportView: Codable, Sendable, Equatable {
    public var surface: String?
    public var instance: String
    public var state: String
    public var pids: [Int32]
    public var at: String
    public var requestID: String?
    public var receivedAt: String
    public var detail: String?

    enum CodingKeys: String, CodingKey {
        case surface = "deviceId", instance, state, pids, at, receivedAt, detail
        case requestID = "request_id"
    }

    public init(
        surface: String?, instance: String, state: String, pids: [Int32], at: String, requestID: String?, receivedAt: String,
        detail: String?
    ) {
        (self.surface, self.instance, self.state, self.pids, self.at) = (surface, instance, state, pids, at)
        (self.requestID, self.receivedAt, self.detail) = (requestID, receivedAt, detail)
    }

    // `request_id` is null when the report named no change (not left out); the rest as usual.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encodeIfPresent(surface, forKey: .surface)
        try c.encode(instance, forKey: .instance)
        try c.encode(state, forKey: .state)
        try c.encode(pids, forKey: .pids)
        try c.encode(at, forKey: .at)
        try c.encode(requestID, forKey: .requestID)
        try c.encode(receivedAt, forKey: .receivedAt)
        try c.encodeIfPresent(detail, forKey: .detail)
    }
}

/// A supervisor (an instance and a surface) that had not acknowledged a change in time.
public struct MissingAck: Codable, Sendable, Equatable {
    public var instance: String
    public var surface: String
    enum CodingKeys: String, CodingKey { case instance, surface = "deviceId" }
    public init(instance: String, surface: String) { (self.instance, self.surface) = (instance, surface) }
}
