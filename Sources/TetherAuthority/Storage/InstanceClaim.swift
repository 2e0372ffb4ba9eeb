import Foundation

/// Which key holds an instance name: the first key that watched or reported as it, or a key
/// scoped to it (`keys create --instance`). Only the holder may open the instance's watch
/// stream or report as it, on every replica and across restarts — so another agent key cannot
/// stand in for a supervisor and forge the "stopped" that on-call reads. An operator releases
/// a claim (`tether instances release`) when a host comes back with a new key.
public struct InstanceClaim: Sendable, Equatable {
    public var instance: String
    public var keyName: String
    public var claimedAt: String
    /// Refreshed when the holder watches or reports (at most every `Authority.claimRecheck`)
    /// and, for streams still open, hourly; a claim idle for the report retention is pruned.
    public var lastSeen: String

    public init(instance: String, keyName: String, claimedAt: String, lastSeen: String) {
        (self.instance, self.keyName, self.claimedAt, self.lastSeen) = (instance, keyName, claimedAt, lastSeen)
    }
}

extension StoreSchema {
    /// The instances' holders (the same text for both stores).
    static let instances = """
        CREATE TABLE instances (
            name TEXT PRIMARY KEY,
            key_name TEXT NOT NULL,
            claimed_at TEXT NOT NULL,
            last_seen TEXT NOT NULL
        )
        """
    static let instancesIndex = "CREATE INDEX instances_last_seen ON instances(last_seen)"
}
