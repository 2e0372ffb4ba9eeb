import Foundation

// What the authority answers on-call's commands: the server encodes these, `tether` decodes
// them (docs/openapi.yaml describes the same). `surface` is MachineID's `deviceId` on the wire.

/// The org's halt: `reason`, `changedBy`, `changedAt` are null when none is on record.
public struct OrgView: Codable, Sendable, Equatable {
    public var halted: Bool
    public var reason: String?
    public var changedBy: String?
    public var changedAt: String?

    public init(halted: Bool, reason: String?, changedBy: String?, changedAt: String?) {
        (self.halted, self.reason, self.changedBy, self.changedAt) = (halted, reason, changedBy, changedAt)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(halted, forKey: .halted)
        try c.encode(reason, forKey: .reason)
        try c.encode(changedBy, forKey: .changedBy)
        try c.encode(changedAt, forKey: .changedAt)
    }
}

/// One surface in `GET devices/list`.
public struct SurfaceView: Codable, Sendable, Equatable {
    public var surface: String
    public var state: String
    public var revoked: Bool
    public var createdAt: String
    public var updatedAt: String
    public var reason: String?
    public var changedBy: String?
    /// The instances with a watch stream open on it.
    public var watchers: [String]
    public var lastReport: ReportView?
    /// The key holding each instance named in `watchers` and `lastReport`.
    public var holders: [String: String]

    enum CodingKeys: String, CodingKey {
        case surface = "deviceId", state, revoked, createdAt, updatedAt, reason, changedBy, watchers, lastReport, holders
    }

    // `holders` is read where present: an authority from before instance claims sends none.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(
            surface: try c.decode(String.self, forKey: .surface), state: try c.decode(String.self, forKey: .state),
            revoked: try c.decode(Bool.self, forKey: .revoked), createdAt: try c.decode(String.self, forKey: .createdAt),
            updatedAt: try c.decode(String.self, forKey: .updatedAt), reason: try c.decodeIfPresent(String.self, forKey: .reason),
            changedBy: try c.decodeIfPresent(String.self, forKey: .changedBy), watchers: try c.decode([String].self, forKey: .watchers),
            lastReport: try c.decodeIfPresent(ReportView.self, forKey: .lastReport),
            holders: try c.decodeIfPresent([String: String].self, forKey: .holders) ?? [:])
    }

    public init(
        surface: String, state: String, revoked: Bool, createdAt: String, updatedAt: String, reason: String?, changedBy: String?,
        watchers: [String], lastReport: ReportView?, holders: [String: String]
    ) {
        (self.surface, self.state, self.revoked, self.createdAt, self.updatedAt) = (surface, state, revoked, createdAt, updatedAt)
        (self.reason, self.changedBy, self.watchers, self.lastReport, self.holders) = (reason, changedBy, watchers, lastReport, holders)
    }
}

/// `GET devices/list`
public struct SurfaceList: Codable, Sendable, Equatable {
    public var status = "ok"
    /// One page, in name order.
    public var devices: [SurfaceView]
    /// How many on this page.
    public var count: Int
    /// Surfaces in all (nil from an authority before pages).
    public var total: Int?
    /// When more follow: the `after` of the next page (the last name on this one).
    public var next: String?
    public var org: OrgView
    public var requestID: String
    enum CodingKeys: String, CodingKey { case status, devices, count, total, next, org, requestID = "request_id" }

    public init(devices: [SurfaceView], total: Int? = nil, next: String? = nil, org: OrgView, requestID: String) {
        (self.devices, self.count, self.total, self.next, self.org, self.requestID) = (devices, devices.count, total, next, org, requestID)
    }
}

/// `POST devices/revoke`, `devices/unrevoke`; with `?wait=`, who acknowledged and who not.
public struct SurfaceChanged: Codable, Sendable, Equatable {
    public var status = "ok"
    public var surface: String
    public var state: String
    public var revoked: Bool
    public var changedAt: String
    public var reason: String?
    /// Watch streams holding the surface when it changed.
    public var watchers: Int
    public var requestID: String
    public var acks: [ReportView]?
    public var missing: [MissingAck]?
    enum CodingKeys: String, CodingKey {
        case status, surface = "deviceId", state, revoked, changedAt, reason, watchers, requestID = "request_id", acks, missing
    }

    public init(
        surface: String, state: String, revoked: Bool, changedAt: String, reason: String?, watchers: Int, requestID: String,
        acks: [ReportView]?, missing: [MissingAck]?
    ) {
        (self.surface, self.state, self.revoked, self.changedAt, self.reason) = (surface, state, revoked, changedAt, reason)
        (self.watchers, self.requestID, self.acks, self.missing) = (watchers, requestID, acks, missing)
    }
}

/// `POST org/halt`, `org/resume`
public struct OrgChanged: Codable, Sendable, Equatable {
    public var status = "ok"
    public var halted: Bool
    public var org: OrgView
    public var watchers: Int
    public var requestID: String
    public var acks: [ReportView]?
    public var missing: [MissingAck]?
    enum CodingKeys: String, CodingKey { case status, halted, org, watchers, requestID = "request_id", acks, missing }

    public init(org: OrgView, watchers: Int, requestID: String, acks: [ReportView]?, missing: [MissingAck]?) {
        (self.halted, self.org, self.watchers, self.requestID, self.acks, self.missing) = (
            org.halted, org, watchers, requestID, acks, missing
        )
    }
}

/// `GET instances`
public struct InstanceList: Codable, Sendable, Equatable {
    public struct Instance: Codable, Sendable, Equatable {
        public var instance: String
        public var key: String
        public var claimedAt: String
        public var lastSeen: String
        /// Streams open as it, on any replica.
        public var connected: Bool
        public init(instance: String, key: String, claimedAt: String, lastSeen: String, connected: Bool) {
            (self.instance, self.key, self.claimedAt, self.lastSeen, self.connected) = (instance, key, claimedAt, lastSeen, connected)
        }
    }
    public var status = "ok"
    public var instances: [Instance]
    public var requestID: String
    enum CodingKeys: String, CodingKey { case status, instances, requestID = "request_id" }
    public init(instances: [Instance], requestID: String) { (self.instances, self.requestID) = (instances, requestID) }
}

/// `POST instances/release`
public struct InstanceReleased: Codable, Sendable, Equatable {
    public var status = "released"
    public var instance: String
    /// The key that held it.
    public var key: String
    public var claimedAt: String
    public var requestID: String
    enum CodingKeys: String, CodingKey { case status, instance, key, claimedAt, requestID = "request_id" }
    public init(instance: String, key: String, claimedAt: String, requestID: String) {
        (self.instance, self.key, self.claimedAt, self.requestID) = (instance, key, claimedAt, requestID)
    }
}

/// `GET audit`: entries newest first; `deviceId` and `reason` null when none.
public struct AuditPage: Codable, Sendable, Equatable {
    public struct Entry: Codable, Sendable, Equatable {
        public var id: Int64
        public var at: String
        public var actor: String
        public var action: String
        public var surface: String?
        public var reason: String?
        public var requestID: String
        enum CodingKeys: String, CodingKey { case id, at, actor, action, surface = "deviceId", reason, requestID = "request_id" }
        public init(id: Int64, at: String, actor: String, action: String, surface: String?, reason: String?, requestID: String) {
            (self.id, self.at, self.actor, self.action, self.surface, self.reason, self.requestID) = (
                id, at, actor, action, surface, reason, requestID
            )
        }
        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(id, forKey: .id)
            try c.encode(at, forKey: .at)
            try c.encode(actor, forKey: .actor)
            try c.encode(action, forKey: .action)
            try c.encode(surface, forKey: .surface)
            try c.encode(reason, forKey: .reason)
            try c.encode(requestID, forKey: .requestID)
        }
    }
    public var status = "ok"
    public var entries: [Entry]
    /// When older entries match too: the `before` of the next page (the last id on this one).
    public var next: Int64?
    public var requestID: String
    enum CodingKeys: String, CodingKey { case status, entries, next, requestID = "request_id" }
    public init(entries: [Entry], next: Int64? = nil, requestID: String) {
        (self.entries, self.next, self.requestID) = (entries, next, requestID)
    }
}
