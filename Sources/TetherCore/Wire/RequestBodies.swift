import Foundation

// What a supervisor and on-call send the authority: `tether` encodes these, the authority
// decodes them strictly (unknown fields refused, every range checked: TetherAuthority's
// `RequestBody` conformances). `surface` is MachineID's `deviceId` on the wire.

/// `POST devices/register`
public struct RegisterBody: Codable, Sendable, Equatable {
    public var surface: String
    public enum CodingKeys: String, CodingKey, CaseIterable { case surface = "deviceId" }
    public init(surface: String) { self.surface = surface }
}

/// `POST devices/validate`
public struct ValidateBody: Codable, Sendable, Equatable {
    public var surface: String
    /// Echoed in the signed answer: binds it to this request.
    public var nonce: String?
    public enum CodingKeys: String, CodingKey, CaseIterable { case surface = "deviceId", nonce }
    public init(surface: String, nonce: String? = nil) { (self.surface, self.nonce) = (surface, nonce) }
}

/// `POST devices/revoke`, `devices/unrevoke`, `devices/remove`
public struct SurfaceChangeBody: Codable, Sendable, Equatable {
    public var surface: String
    /// Why: shown to on-call next to the decision, signed, audited.
    public var reason: String?
    public enum CodingKeys: String, CodingKey, CaseIterable { case surface = "deviceId", reason }
    public init(surface: String, reason: String? = nil) { (self.surface, self.reason) = (surface, reason) }
}

/// `POST org/halt`, `org/resume`
public struct OrgChangeBody: Codable, Sendable, Equatable {
    public var reason: String?
    public enum CodingKeys: String, CodingKey, CaseIterable { case reason }
    public init(reason: String? = nil) { self.reason = reason }
}

/// `POST instances/release`
public struct InstanceReleaseBody: Codable, Sendable, Equatable {
    public var instance: String
    /// Why (audited): "host-a rebuilt with a new key".
    public var reason: String?
    public enum CodingKeys: String, CodingKey, CaseIterable { case instance, reason }
    public init(instance: String, reason: String? = nil) { (self.instance, self.reason) = (instance, reason) }
}
