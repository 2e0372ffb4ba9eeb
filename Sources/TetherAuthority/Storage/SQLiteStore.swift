import Foundation
import GRDB
import TetherCore

/// The embedded default store: one SQLite file in WAL mode with `synchronous=FULL`, so a
/// committed transaction — a revoke and its audit entry — is on disk before the answer goes out.
public final class SQLiteStore: AuthorityStore {
    private let pool: DatabasePool
    public let path: String

    public init(path: String) throws {
        var config = Configuration()
        config.prepareDatabase { db in
            // FULL: fsync the WAL at every commit. NORMAL (WAL's usual setting) can lose the
            // last transactions on power loss; a lost revocation is not acceptable here.
            try db.execute(sql: "PRAGMA synchronous = FULL")
            try db.execute(sql: "PRAGMA foreign_keys = ON")
        }
        config.busyMode = .timeout(5)
        pool = try DatabasePool(path: path, configuration: config)
        self.path = path
        try Self.migrator.migrate(pool)
    }

    static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("v1") { db in
            try db.execute(
                sql: """
                    CREATE TABLE surfaces (
                        device_id TEXT PRIMARY KEY,
                        revoked INTEGER NOT NULL DEFAULT 0,
                        created_at TEXT NOT NULL,
                        updated_at TEXT NOT NULL,
                        reason TEXT,
                        changed_by TEXT
                    );
                    CREATE TABLE org (
                        id INTEGER PRIMARY KEY CHECK (id = 1),
                        halted INTEGER NOT NULL,
                        reason TEXT,
                        changed_by TEXT,
                        changed_at TEXT
                    );
                    INSERT INTO org (id, halted) VALUES (1, 0);
                    CREATE TABLE api_keys (
                        name TEXT PRIMARY KEY,
                        role TEXT NOT NULL,
                        hash TEXT NOT NULL UNIQUE,
                        created_at TEXT NOT NULL,
                        revoked_at TEXT
                    );
                    CREATE TABLE audit (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        at TEXT NOT NULL,
                        actor TEXT NOT NULL,
                        action TEXT NOT NULL,
                        device_id TEXT,
                        reason TEXT,
                        request_id TEXT NOT NULL
                    );
                    CREATE INDEX audit_device ON audit(device_id, id);
                    CREATE TABLE reports (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        device_id TEXT NOT NULL,
                        instance TEXT NOT NULL,
                        state TEXT NOT NULL,
                        pids TEXT NOT NULL,
                        at TEXT NOT NULL,
                        request_id TEXT,
                        received_at TEXT NOT NULL
                    );
                    CREATE INDEX reports_device ON reports(device_id, id);
                    """)
        }
        // A removed surface leaves a tombstone with its last state: registering it again
        // brings that state back, so remove + register never un-revokes.
        m.registerMigration("v2-tombstones") { db in
            try db.execute(
                sql: """
                    CREATE TABLE tombstones (
                        device_id TEXT PRIMARY KEY,
                        revoked INTEGER NOT NULL,
                        reason TEXT,
                        changed_by TEXT,
                        removed_at TEXT NOT NULL
                    );
                    """)
        }
        // Agent keys scoped to surfaces (comma-separated patterns) and one instance.
        m.registerMigration("v3-key-scopes") { db in
            try db.execute(sql: "ALTER TABLE api_keys ADD COLUMN surfaces TEXT")
            try db.execute(sql: "ALTER TABLE api_keys ADD COLUMN instance TEXT")
        }
        // Global revisions: each change of a surface or of the org takes the next one and
        // stores its signed event; `origin` names the deployment in every decision.
        m.registerMigration("v4-revisions") { db in
            try db.execute(sql: StoreSchema.revisionsSQLite)
            try db.execute(sql: "INSERT INTO meta (key, value) VALUES ('origin', ?)", arguments: [StoreSchema.newOrigin()])
        }
        // Signing keys in the database (a state directory's signing.key is imported at start).
        m.registerMigration("v5-signing-keys") { db in
            try db.execute(sql: StoreSchema.signingKeys)
        }
        // What a report says for a human: the calls a gate denied.
        m.registerMigration("v6-report-detail") { db in
            try db.execute(sql: "ALTER TABLE reports ADD COLUMN detail TEXT")
        }
        // Console sign-in links and sessions, by their token's SHA-256.
        m.registerMigration("v7-console-tokens") { db in
            try db.execute(sql: StoreSchema.consoleTokens)
        }
        // Which key holds each instance name (`InstanceClaim`).
        m.registerMigration("v8-instance-claims") { db in
            try db.execute(sql: StoreSchema.instances)
            try db.execute(sql: StoreSchema.instancesIndex)
        }
        return m
    }

    // MARK: - surfaces

    public func origin() async throws -> String {
        try await pool.read { db in
            guard let o = try String.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'origin'") else {
                throw StoreError("the database has no origin (meta table): not a tether authority database")
            }
            return o
        }
    }

    public func surfaces() async throws -> [SurfaceRecord] {
        try await pool.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM surfaces ORDER BY device_id").map(Self.surface)
        }
    }

    public func removedSurfaces() async throws -> [String: UInt64] {
        try await pool.read { db in
            var out: [String: UInt64] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT device_id, revision FROM tombstones") {
                out[row["device_id"]] = UInt64(row["revision"] as Int64)
            }
            return out
        }
    }

    public func register(
        _ deviceId: String, change: Change, seal: @escaping EventSealer
    ) async throws -> (RegisterOutcome, SurfaceRecord, ChangeEvent?) {
        try await pool.write { db in
            if let row = try Row.fetchOne(db, sql: "SELECT * FROM surfaces WHERE device_id = ?", arguments: [deviceId]) {
                let s = Self.surface(row)
                return (s.revoked ? .revoked : .exists, s, nil)
            }
            let revision = try Self.nextRevision(db)
            if let grave = try Row.fetchOne(db, sql: "SELECT * FROM tombstones WHERE device_id = ?", arguments: [deviceId]) {
                // Back with the state it was removed in: a revoked surface stays revoked.
                let revoked = (grave["revoked"] as Int) != 0
                try db.execute(
                    sql:
                        "INSERT INTO surfaces (device_id, revoked, created_at, updated_at, reason, changed_by, revision, request_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    arguments: [
                        deviceId, revoked ? 1 : 0, change.at, change.at, grave["reason"] as String?, grave["changed_by"] as String?,
                        Int64(revision), change.requestID,
                    ])
                try db.execute(sql: "DELETE FROM tombstones WHERE device_id = ?", arguments: [deviceId])
                try Self.audit(
                    db, change, action: revoked ? "register (was removed while revoked: stays revoked)" : "register (was removed)",
                    deviceId: deviceId)
                let record = SurfaceRecord(
                    deviceId: deviceId, revoked: revoked, createdAt: change.at, updatedAt: change.at,
                    reason: grave["reason"], changedBy: grave["changed_by"], revision: revision, requestID: change.requestID)
                let event = try Self.addEvent(db, revision, deviceId, change, seal(.surface(record), change))
                return (revoked ? .revoked : .created, record, event)
            }
            try db.execute(
                sql: "INSERT INTO surfaces (device_id, revoked, created_at, updated_at, revision, request_id) VALUES (?, 0, ?, ?, ?, ?)",
                arguments: [deviceId, change.at, change.at, Int64(revision), change.requestID])
            try Self.audit(db, change, action: "register", deviceId: deviceId)
            let record = SurfaceRecord(
                deviceId: deviceId, revoked: false, createdAt: change.at, updatedAt: change.at, revision: revision,
                requestID: change.requestID)
            let event = try Self.addEvent(db, revision, deviceId, change, seal(.surface(record), change))
            return (.created, record, event)
        }
    }

    public func setRevoked(
        _ deviceId: String, revoked: Bool, change: Change, seal: @escaping EventSealer
    ) async throws -> (SurfaceRecord, ChangeEvent)? {
        try await pool.write { db in
            guard try Row.fetchOne(db, sql: "SELECT 1 FROM surfaces WHERE device_id = ?", arguments: [deviceId]) != nil else { return nil }
            let revision = try Self.nextRevision(db)
            try db.execute(
                sql:
                    "UPDATE surfaces SET revoked = ?, updated_at = ?, reason = ?, changed_by = ?, revision = ?, request_id = ? WHERE device_id = ?",
                arguments: [revoked ? 1 : 0, change.at, change.reason, change.actor, Int64(revision), change.requestID, deviceId])
            try Self.audit(db, change, action: revoked ? "revoke" : "unrevoke", deviceId: deviceId)
            guard
                let record = try Row.fetchOne(db, sql: "SELECT * FROM surfaces WHERE device_id = ?", arguments: [deviceId]).map(
                    Self.surface)
            else { return nil }
            return (record, try Self.addEvent(db, revision, deviceId, change, seal(.surface(record), change)))
        }
    }

    public func remove(_ deviceId: String, change: Change, seal: @escaping EventSealer) async throws -> ChangeEvent? {
        try await pool.write { db in
            guard let row = try Row.fetchOne(db, sql: "SELECT * FROM surfaces WHERE device_id = ?", arguments: [deviceId]) else {
                return nil
            }
            let revision = try Self.nextRevision(db)
            try db.execute(
                sql:
                    "INSERT OR REPLACE INTO tombstones (device_id, revoked, reason, changed_by, removed_at, revision) VALUES (?, ?, ?, ?, ?, ?)",
                arguments: [
                    deviceId, row["revoked"] as Int, row["reason"] as String?, row["changed_by"] as String?, change.at, Int64(revision),
                ])
            try db.execute(sql: "DELETE FROM surfaces WHERE device_id = ?", arguments: [deviceId])
            try Self.audit(db, change, action: "remove", deviceId: deviceId)
            return try Self.addEvent(db, revision, deviceId, change, seal(.removed(deviceId: deviceId, revision: revision), change))
        }
    }

    // MARK: - org

    public func org() async throws -> OrgState {
        try await pool.read { db in try Self.org(db) }
    }

    public func setHalted(_ halted: Bool, change: Change, seal: @escaping EventSealer) async throws -> (OrgState, ChangeEvent) {
        try await pool.write { db in
            let revision = try Self.nextRevision(db)
            try db.execute(
                sql: "UPDATE org SET halted = ?, reason = ?, changed_by = ?, changed_at = ?, revision = ?, request_id = ? WHERE id = 1",
                arguments: [halted ? 1 : 0, change.reason, change.actor, change.at, Int64(revision), change.requestID])
            try Self.audit(db, change, action: halted ? "halt" : "resume", deviceId: nil)
            let org = OrgState(
                halted: halted, reason: change.reason, changedBy: change.actor, changedAt: change.at, revision: revision,
                requestID: change.requestID)
            return (org, try Self.addEvent(db, revision, OrgSubject.name, change, seal(.org(org), change)))
        }
    }

    // MARK: - revisions

    public func head() async throws -> UInt64 {
        try await pool.read { db in UInt64(try Int64.fetchOne(db, sql: "SELECT revision FROM revision_head WHERE id = 1") ?? 0) }
    }

    public func changes(after revision: UInt64, limit: Int) async throws -> ChangeBatch {
        // One read transaction: the events and the state they left, from the same snapshot.
        try await pool.read { db in
            let head = UInt64(try Int64.fetchOne(db, sql: "SELECT revision FROM revision_head WHERE id = 1") ?? 0)
            let events = try Row.fetchAll(
                db, sql: "SELECT * FROM events WHERE revision > ? ORDER BY revision LIMIT ?", arguments: [Int64(revision), limit]
            ).map {
                ChangeEvent(
                    revision: UInt64($0["revision"] as Int64), subject: $0["subject"], requestID: $0["request_id"], text: $0["event"])
            }
            var surfaces: [String: SurfaceRecord] = [:], removed: [String: UInt64] = [:]
            for subject in Set(events.map(\.subject)) where subject != OrgSubject.name {
                if let row = try Row.fetchOne(db, sql: "SELECT * FROM surfaces WHERE device_id = ?", arguments: [subject]) {
                    surfaces[subject] = Self.surface(row)
                } else {
                    removed[subject] = UInt64(
                        try Int64.fetchOne(db, sql: "SELECT revision FROM tombstones WHERE device_id = ?", arguments: [subject]) ?? 0)
                }
            }
            return ChangeBatch(events: events, surfaces: surfaces, removed: removed, org: try Self.org(db), head: head)
        }
    }

    /// The next global revision. SQLite has one writer at a time: the transaction that takes
    /// it commits before another can take the next.
    static func nextRevision(_ db: Database) throws -> UInt64 {
        try db.execute(sql: "UPDATE revision_head SET revision = revision + 1 WHERE id = 1")
        return UInt64(try Int64.fetchOne(db, sql: "SELECT revision FROM revision_head WHERE id = 1") ?? 0)
    }

    static func addEvent(_ db: Database, _ revision: UInt64, _ subject: String, _ change: Change, _ text: String) throws -> ChangeEvent {
        try db.execute(
            sql: "INSERT INTO events (revision, subject, request_id, at, event) VALUES (?, ?, ?, ?, ?)",
            arguments: [Int64(revision), subject, change.requestID, change.at, text])
        return ChangeEvent(revision: revision, subject: subject, requestID: change.requestID, text: text)
    }

    static func org(_ db: Database) throws -> OrgState {
        guard let row = try Row.fetchOne(db, sql: "SELECT * FROM org WHERE id = 1") else { return .running }
        return OrgState(
            halted: (row["halted"] as Int) != 0, reason: row["reason"], changedBy: row["changed_by"], changedAt: row["changed_at"],
            revision: UInt64(row["revision"] as Int64), requestID: row["request_id"])
    }

    // MARK: - signing keys

    public func signingKeys() async throws -> [SigningKeyRecord] {
        try await pool.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM signing_keys ORDER BY created_at, id").map {
                SigningKeyRecord(
                    id: $0["id"], privateKey: $0["private_key"], publicKey: $0["public_key"],
                    state: SigningKeyRecord.State(rawValue: $0["state"]) ?? .retired, createdAt: $0["created_at"],
                    activatedAt: $0["activated_at"], retireAfter: $0["retire_after"],
                    endorsement: $0["endorsement"], endorsedBy: $0["endorsed_by"])
            }
        }
    }

    public func putSigningKey(_ k: SigningKeyRecord, change: Change) async throws {
        try await pool.write { db in
            try db.execute(
                sql: """
                    INSERT INTO signing_keys (id, private_key, public_key, state, created_at, activated_at, retire_after, endorsement, endorsed_by)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                    ON CONFLICT (id) DO UPDATE SET state = excluded.state, activated_at = excluded.activated_at,
                        retire_after = excluded.retire_after, endorsement = excluded.endorsement, endorsed_by = excluded.endorsed_by
                    """,
                arguments: [
                    k.id, k.privateKey, k.publicKey, k.state.rawValue, k.createdAt, k.activatedAt, k.retireAfter, k.endorsement,
                    k.endorsedBy,
                ])
            try Self.audit(db, change, action: "signing-key-\(k.state.rawValue):\(k.id)", deviceId: nil)
        }
    }

    public func deleteSigningKey(id: String, change: Change) async throws {
        try await pool.write { db in
            try db.execute(sql: "DELETE FROM signing_keys WHERE id = ?", arguments: [id])
            if db.changesCount > 0 { try Self.audit(db, change, action: "signing-key-forgotten:\(id)", deviceId: nil) }
        }
    }

    // MARK: - keys

    public func keys() async throws -> [KeyRecord] {
        try await pool.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM api_keys ORDER BY name").map {
                KeyRecord(
                    name: $0["name"], role: Role(rawValue: $0["role"]) ?? .agent, hash: $0["hash"],
                    createdAt: $0["created_at"], revokedAt: $0["revoked_at"],
                    surfaces: ($0["surfaces"] as String?).map { $0.split(separator: ",").map(String.init) },
                    instance: $0["instance"])
            }
        }
    }

    public func addKey(_ key: KeyRecord, change: Change) async throws {
        try await pool.write { db in
            if try Row.fetchOne(db, sql: "SELECT 1 FROM api_keys WHERE name = ?", arguments: [key.name]) != nil {
                throw StoreError("a key named \(key.name) exists already")
            }
            try db.execute(
                sql: "INSERT INTO api_keys (name, role, hash, created_at, surfaces, instance) VALUES (?, ?, ?, ?, ?, ?)",
                arguments: [key.name, key.role.rawValue, key.hash, key.createdAt, key.surfaces?.joined(separator: ","), key.instance])
            try Self.audit(db, change, action: "key-create:\(key.role.rawValue):\(key.name)", deviceId: nil, reason: key.scopeDescription)
        }
    }

    public func revokeKey(named name: String, change: Change) async throws -> Bool {
        try await pool.write { db in
            try db.execute(
                sql: "UPDATE api_keys SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL",
                arguments: [change.at, name])
            guard db.changesCount > 0 else { return false }
            try Self.audit(db, change, action: "key-revoke:\(name)", deviceId: nil)
            return true
        }
    }

    // MARK: - audit, reports, usage

    public func audit(
        limit: Int, deviceId: String?, actor: String?, since: String?, until: String?, before: Int64?
    ) async throws -> [AuditEntry] {
        try await pool.read { db in
            // Timestamps are all the authority's fixed-width UTC form: they compare as text.
            var clauses: [String] = [], args: [(any DatabaseValueConvertible)?] = []
            if let before {
                clauses.append("id < ?")
                args.append(before)
            }
            if let deviceId {
                clauses.append("device_id = ?")
                args.append(deviceId)
            }
            if let actor {
                let prefix = consoleActorPrefix(actor)
                clauses.append("(actor = ? OR substr(actor, 1, ?) = ?)")
                args += [actor, prefix.count, prefix]
            }
            if let since {
                clauses.append("at >= ?")
                args.append(since)
            }
            if let until {
                clauses.append("at <= ?")
                args.append(until)
            }
            let filter = clauses.isEmpty ? "" : "WHERE " + clauses.joined(separator: " AND ")
            args.append(limit)
            let rows = try Row.fetchAll(
                db, sql: "SELECT * FROM audit \(filter) ORDER BY id DESC LIMIT ?", arguments: StatementArguments(args))
            return rows.map {
                AuditEntry(
                    id: $0["id"], at: $0["at"], actor: $0["actor"], action: $0["action"],
                    deviceId: $0["device_id"], reason: $0["reason"], requestID: $0["request_id"])
            }
        }
    }

    public func prune(auditBefore: String, reportsBefore: String) async throws -> (audit: Int, reports: Int) {
        try await pool.write { db in
            try db.execute(sql: "DELETE FROM audit WHERE at < ?", arguments: [auditBefore])
            let audit = db.changesCount
            try db.execute(sql: "DELETE FROM reports WHERE received_at < ?", arguments: [reportsBefore])
            let reports = db.changesCount
            // Change events serve resumes (Last-Event-ID): a supervisor away longer than the
            // retention gets the current state instead. The newest is kept.
            try db.execute(
                sql: "DELETE FROM events WHERE at < ? AND revision < (SELECT revision FROM revision_head WHERE id = 1)",
                arguments: [reportsBefore])
            return (audit, reports)
        }
    }

    public func addRefusals(_ rows: [RefusalRow]) async throws {
        try await pool.write { db in
            for r in rows {
                try db.execute(
                    sql: "INSERT INTO audit (at, actor, action, device_id, reason, request_id) VALUES (?, ?, ?, NULL, ?, ?)",
                    arguments: [r.last, r.actor, r.action, r.reason, UUID().uuidString])
            }
        }
    }

    public func addReport(_ r: Report) async throws {
        try await pool.write { db in
            try db.execute(
                sql:
                    "INSERT INTO reports (device_id, instance, state, pids, at, request_id, received_at, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                arguments: [
                    r.deviceId, r.instance, r.state, r.pids.map(String.init).joined(separator: ","), r.at, r.requestID, r.receivedAt,
                    r.detail,
                ])
            // Keep the last 200 reports of each surface.
            try db.execute(
                sql: """
                    DELETE FROM reports WHERE device_id = ? AND id <= (
                        SELECT id FROM reports WHERE device_id = ? ORDER BY id DESC LIMIT 1 OFFSET 200)
                    """, arguments: [r.deviceId, r.deviceId])
        }
    }

    public func reports(deviceId: String, limit: Int) async throws -> [Report] {
        try await pool.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM reports WHERE device_id = ? ORDER BY id DESC LIMIT ?", arguments: [deviceId, limit])
                .map(Self.report)
        }
    }

    public func latestReports(of deviceIds: [String]) async throws -> [Report] {
        var out: [Report] = []
        for chunk in stride(from: 0, to: deviceIds.count, by: 500).map({ Array(deviceIds[$0..<min($0 + 500, deviceIds.count)]) }) {
            let marks = Array(repeating: "?", count: chunk.count).joined(separator: ",")
            out += try await pool.read { db in
                try Row.fetchAll(
                    db,
                    sql: """
                        SELECT * FROM reports WHERE id IN (
                            SELECT MAX(id) FROM reports WHERE device_id IN (\(marks)) GROUP BY device_id, instance)
                        """, arguments: StatementArguments(chunk)
                ).map(Self.report)
            }
        }
        return out
    }

    private static func report(_ row: Row) -> Report {
        Report(
            deviceId: row["device_id"], instance: row["instance"], state: row["state"],
            pids: (row["pids"] as String).split(separator: ",").compactMap { Int32($0) },
            at: row["at"], requestID: row["request_id"], receivedAt: row["received_at"], detail: row["detail"])
    }

    public func usage() async throws -> Usage {
        try await pool.read { db in
            Usage(
                surfaces: try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM surfaces") ?? 0,
                revoked: try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM surfaces WHERE revoked = 1") ?? 0,
                keys: try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM api_keys WHERE revoked_at IS NULL") ?? 0,
                auditEntries: try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM audit") ?? 0,
                reports: try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM reports") ?? 0
            )
        }
    }

    // MARK: - rows

    static func surface(_ row: Row) -> SurfaceRecord {
        SurfaceRecord(
            deviceId: row["device_id"], revoked: (row["revoked"] as Int) != 0,
            createdAt: row["created_at"], updatedAt: row["updated_at"],
            reason: row["reason"], changedBy: row["changed_by"],
            revision: UInt64(row["revision"] as Int64), requestID: row["request_id"])
    }

    // MARK: - console tokens

    public func addConsoleToken(_ t: ConsoleTokenRecord) async throws {
        try await pool.write { db in
            try db.execute(
                sql:
                    "INSERT INTO console_tokens (digest, kind, key_name, csrf, client, created_at, last_seen, expires_at, used) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                arguments: [t.digest, t.kind.rawValue, t.keyName, t.csrf, t.client, t.createdAt, t.lastSeen, t.expiresAt, t.used ? 1 : 0])
        }
    }

    public func consoleToken(digest: String) async throws -> ConsoleTokenRecord? {
        try await pool.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM console_tokens WHERE digest = ?", arguments: [digest]).map { r in
                ConsoleTokenRecord(
                    digest: r["digest"], kind: ConsoleTokenRecord.Kind(rawValue: r["kind"]) ?? .link, keyName: r["key_name"],
                    csrf: r["csrf"],
                    client: r["client"], createdAt: r["created_at"], lastSeen: r["last_seen"], expiresAt: r["expires_at"],
                    used: (r["used"] as Int) != 0)
            }
        }
    }

    public func useConsoleLink(digest: String) async throws -> Bool {
        try await pool.write { db in
            try db.execute(sql: "UPDATE console_tokens SET used = 1 WHERE digest = ? AND kind = 'link' AND used = 0", arguments: [digest])
            return db.changesCount == 1
        }
    }

    public func touchConsoleSession(digest: String, at: Double) async throws {
        try await pool.write { db in
            try db.execute(sql: "UPDATE console_tokens SET last_seen = ? WHERE digest = ? AND kind = 'session'", arguments: [at, digest])
        }
    }

    public func deleteConsoleToken(digest: String) async throws {
        try await pool.write { db in try db.execute(sql: "DELETE FROM console_tokens WHERE digest = ?", arguments: [digest]) }
    }

    public func deleteConsoleSessions(keyName: String) async throws {
        try await pool.write { db in
            try db.execute(sql: "DELETE FROM console_tokens WHERE kind = 'session' AND key_name = ?", arguments: [keyName])
        }
    }

    @discardableResult
    public func pruneConsoleTokens(before: Double, idleBefore: Double) async throws -> Int {
        try await pool.write { db in
            try db.execute(
                sql: "DELETE FROM console_tokens WHERE expires_at < ? OR (kind = 'session' AND last_seen < ?)",
                arguments: [before, idleBefore])
            return db.changesCount
        }
    }

    static func audit(_ db: Database, _ c: Change, action: String, deviceId: String?, reason: String? = nil) throws {
        try db.execute(
            sql: "INSERT INTO audit (at, actor, action, device_id, reason, request_id) VALUES (?, ?, ?, ?, ?, ?)",
            arguments: [c.at, c.actor, action, deviceId, reason ?? c.reason, c.requestID])
    }
}

// MARK: - instance claims

extension SQLiteStore {
    public func claimInstance(_ instance: String, keyName: String, takeOver: String?, change: Change) async throws -> InstanceClaim {
        try await pool.write { db in
            guard let row = try Row.fetchOne(db, sql: "SELECT * FROM instances WHERE name = ?", arguments: [instance]) else {
                try db.execute(
                    sql: "INSERT INTO instances (name, key_name, claimed_at, last_seen) VALUES (?, ?, ?, ?)",
                    arguments: [instance, keyName, change.at, change.at])
                return InstanceClaim(instance: instance, keyName: keyName, claimedAt: change.at, lastSeen: change.at)
            }
            var held = Self.claim(row)
            if held.keyName == keyName {
                try db.execute(sql: "UPDATE instances SET last_seen = ? WHERE name = ?", arguments: [change.at, instance])
                held.lastSeen = change.at
                return held
            }
            guard let why = takeOver else { return held }
            try db.execute(
                sql: "UPDATE instances SET key_name = ?, claimed_at = ?, last_seen = ? WHERE name = ?",
                arguments: [keyName, change.at, change.at, instance])
            try Self.audit(
                db, change, action: "instance-takeover:\(instance)", deviceId: nil,
                reason: "from the key \(held.keyName): \(why)")
            return InstanceClaim(instance: instance, keyName: keyName, claimedAt: change.at, lastSeen: change.at)
        }
    }

    public func instances() async throws -> [InstanceClaim] {
        try await pool.read { db in try Row.fetchAll(db, sql: "SELECT * FROM instances ORDER BY name").map(Self.claim) }
    }

    public func releaseInstance(_ instance: String, change: Change) async throws -> InstanceClaim? {
        try await pool.write { db in
            guard let row = try Row.fetchOne(db, sql: "SELECT * FROM instances WHERE name = ?", arguments: [instance]) else { return nil }
            let held = Self.claim(row)
            try db.execute(sql: "DELETE FROM instances WHERE name = ?", arguments: [instance])
            try Self.audit(
                db, change, action: "instance-release:\(instance)", deviceId: nil,
                reason: "held by the key \(held.keyName) since \(held.claimedAt)" + (change.reason.map { ": \($0)" } ?? ""))
            return held
        }
    }

    public func pruneInstances(idleBefore before: String) async throws -> Int {
        try await pool.write { db in
            try db.execute(sql: "DELETE FROM instances WHERE last_seen < ?", arguments: [before])
            return db.changesCount
        }
    }

    public func touchInstances(_ names: [String], at: String) async throws {
        guard !names.isEmpty else { return }
        try await pool.write { db in
            for n in names { try db.execute(sql: "UPDATE instances SET last_seen = ? WHERE name = ?", arguments: [at, n]) }
        }
    }

    static func claim(_ row: Row) -> InstanceClaim {
        InstanceClaim(instance: row["name"], keyName: row["key_name"], claimedAt: row["claimed_at"], lastSeen: row["last_seen"])
    }
}
