import Foundation
import Logging
import PostgresNIO
import Synchronization
import TetherCore

/// The authority's state in PostgreSQL, shared by any number of replicas (`tether authority
/// serve --database postgresql://…`). Every change takes the next global revision by updating
/// the one `revision_head` row: its lock is held until commit, so revisions are handed out in
/// commit order and a rolled-back change gives its number back — no gaps. Each change also
/// sends `NOTIFY tether_changes` (delivered at commit): the other replicas' doorbell.
///
/// A doorbell carries no evidence: LISTEN and NOTIFY need no privilege on any table, so any
/// role that may connect can ring either channel and hear every ring. `tether_changes` says
/// only "read the revisions"; `tether_reports` says only which `relayed_reports` row to read,
/// with this store's own role.
public final class PostgresStore: SharedStore {
    let client: PostgresClient
    let logger: Logger
    private let running: Task<Void, Never>
    public let url: DatabaseURL
    static let channel = "tether_changes"
    static let reportChannel = "tether_reports"
    /// How long a relayed report is kept for the replicas to read: they read it within
    /// milliseconds of its ring; none waits for a report older than this.
    static let relayedKeep = "5 minutes"
    /// The relayed reports this replica delivered, across reconnections: a ring repeated
    /// (by anyone) does not deliver a report twice.
    private let delivered = Mutex(DeliveredIDs())

    /// Connects, and applies the schema's migrations under an advisory lock, so that replicas
    /// starting together apply each once. Fails when the database cannot be reached.
    public static func open(_ url: DatabaseURL, logger: Logger) async throws -> PostgresStore {
        let store = PostgresStore(url: url, logger: logger)
        do {
            // Reachable at all (10 s), then longer for the migrations: a replica starting with
            // others waits its turn for their lock.
            try await store.timed("a first query") { try await store.client.query("SELECT 1", logger: logger) }
            try await store.timed("migrate", within: .seconds(60)) { try await store.migrate() }
        } catch {
            store.close()
            throw StoreError("database \(url): \(Self.describe(error))")
        }
        return store
    }

    private init(url: DatabaseURL, logger: Logger) {
        self.url = url
        self.logger = logger
        var config = url.clientConfiguration()
        config.options.connectTimeout = .seconds(5)
        config.options.maximumConnections = 16
        // The server's own bounds, under `timed`'s: a statement or a lock wait that outlives them
        // is ended there, and a transaction left open by a replica that went away is rolled back.
        config.options.additionalStartupParameters = [
            ("statement_timeout", "30s"), ("lock_timeout", "15s"), ("idle_in_transaction_session_timeout", "60s"),
        ]
        // The pool retries a lost server every second and logs each try: only what is worse.
        var poolLogger = logger
        poolLogger.logLevel = max(logger.logLevel, .warning)
        let client = PostgresClient(configuration: config, backgroundLogger: poolLogger)
        self.client = client
        running = Task { await client.run() }
    }

    /// How long any call may take: a database that does not answer (down, partitioned, the
    /// pool retrying a dead address) is an error, never a request that hangs.
    public static let timeout: Duration = .seconds(10)

    ///
    /// The call returns at the deadline even when the query does not: postgres-nio waits for a
    /// query's answer without heeding cancellation, so a task group (which waits for its children)
    /// would wait as long as a database that stopped answering without closing the connection. The
    /// query is cancelled and left to end when its connection does.
    func timed<T: Sendable>(
        _ what: String, within limit: Duration = PostgresStore.timeout, _ body: @escaping @Sendable () async throws -> T
    ) async throws -> T {
        let race = Race<T>()
        let url = self.url
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (c: CheckedContinuation<T, any Error>) in
                race.start(c)
                let work = Task {
                    do { race.end(.success(try await body())) } catch { race.end(.failure(error)) }
                }
                race.onCancel { work.cancel() }
                Task {
                    try? await Task.sleep(for: limit)
                    race.end(.failure(StoreError("the database (\(url)) did not answer \(what) within \(DurationText.format(limit))")))
                }
            }
        } onCancel: {
            race.end(.failure(CancellationError()))
        }
    }

    /// Ends the connection pool.
    public func close() { running.cancel() }

    static func describe(_ error: any Error) -> String {
        if let p = error as? PSQLError {
            if let m = p.serverInfo?[.message] { return "\(m) (\(p.serverInfo?[.sqlState] ?? ""))" }
            return "\(p.code)" + (p.underlying.map { ": \($0)" } ?? "")
        }
        if let t = error as? PostgresTransactionError {
            return describe(t.closureError ?? t.commitError ?? t.beginError ?? t.rollbackError ?? error)
        }
        return "\(error)"
    }

    // MARK: - schema

    /// Versioned migrations: each runs once, in order, in one transaction with the version it
    /// records. `pg_advisory_xact_lock` makes a replica that starts at the same moment wait.
    static let migrations: [(version: Int, name: String, sql: [String])] = [
        (1, "schema", PostgresSchema.v1),
        (2, "replicas-and-their-watchers", PostgresSchema.v2),
        (3, "report-detail", ["ALTER TABLE reports ADD COLUMN detail text"]),
        (4, "console-tokens", [StoreSchema.consoleTokens, "CREATE INDEX console_tokens_key ON console_tokens(key_name)"]),
        (5, "relayed-reports", PostgresSchema.v5),
        (6, "instance-claims", PostgresSchema.v6),
    ]

    func migrate() async throws {
        try await transaction { db in
            try await db.query("SELECT pg_advisory_xact_lock(7410013)", logger: logger)
            try await db.query(
                "CREATE TABLE IF NOT EXISTS tether_schema (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())",
                logger: logger)
            var applied = Set<Int>()
            for try await v in try await db.query("SELECT version FROM tether_schema", logger: logger).decode(Int.self) {
                applied.insert(v)
            }
            for m in Self.migrations where !applied.contains(m.version) {
                for statement in m.sql { try await db.query(PostgresQuery(unsafeSQL: statement), logger: logger) }
                if m.version == 1 {
                    let origin = StoreSchema.newOrigin()
                    try await db.query("INSERT INTO meta (key, value) VALUES ('origin', \(origin))", logger: logger)
                }
                try await db.query("INSERT INTO tether_schema (version, name) VALUES (\(m.version), \(m.name))", logger: logger)
                logger.notice("database migrated", metadata: ["version": "\(m.version)", "name": "\(m.name)"])
            }
        }
    }

    /// The schema versions applied, oldest first.
    public func schemaVersions() async throws -> [Int] {
        try await timed("schemaVersions") { [self] in
            var out: [Int] = []
            for try await v in try await client.query("SELECT version FROM tether_schema ORDER BY version", logger: logger).decode(Int.self)
            { out.append(v) }
            return out
        }
    }

    // MARK: - transactions

    /// A change that turned out to change nothing: rolled back, its answer returned.
    struct NoChange<T: Sendable>: Error { let value: T }

    func transaction<T: Sendable>(_ body: (PostgresConnection) async throws -> T) async throws -> T {
        try await client.withConnection { db in
            try await db.query("BEGIN", logger: logger)
            do {
                let value = try await body(db)
                try await db.query("COMMIT", logger: logger)
                return value
            } catch {
                _ = try? await db.query("ROLLBACK", logger: logger)
                throw error
            }
        }
    }

    /// Every row of `query`, each made into a value by `make`.
    func rows<T>(_ query: PostgresQuery, _ make: (PostgresRandomAccessRow) throws -> T) async throws -> [T] {
        var out: [T] = []
        for try await row in try await client.query(query, logger: logger) { out.append(try make(row.makeRandomAccess())) }
        return out
    }

    /// Takes the next revision: the row stays locked until this transaction ends, so every
    /// other change waits, and reads after this one see everything committed before it.
    func nextRevision(_ db: PostgresConnection) async throws -> UInt64 {
        let rows = try await db.query("UPDATE revision_head SET revision = revision + 1 WHERE id = 1 RETURNING revision", logger: logger)
        for try await r in rows.decode(Int64.self) { return UInt64(r) }
        throw StoreError("revision_head has no row")
    }

    func addEvent(
        _ db: PostgresConnection, _ revision: UInt64, _ subject: String, _ change: Change, _ text: String
    ) async throws -> ChangeEvent {
        try await db.query(
            "INSERT INTO events (revision, subject, request_id, at, event) VALUES (\(Int64(revision)), \(subject), \(change.requestID), \(change.at), \(text))",
            logger: logger)
        try await db.query("SELECT pg_notify(\(Self.channel), \(String(revision)))", logger: logger)
        return ChangeEvent(revision: revision, subject: subject, requestID: change.requestID, text: text)
    }

    func audit(_ db: PostgresConnection, _ c: Change, action: String, deviceId: String?, reason: String? = nil) async throws {
        try await db.query(
            "INSERT INTO audit (at, actor, action, device_id, reason, request_id) VALUES (\(c.at), \(c.actor), \(action), \(deviceId), \(reason ?? c.reason), \(c.requestID))",
            logger: logger)
    }

    // MARK: - surfaces

    public func origin() async throws -> String {
        try await timed("origin") { [self] in
            for try await o in try await client.query("SELECT value FROM meta WHERE key = 'origin'", logger: logger).decode(String.self) {
                return o
            }
            throw StoreError("the database has no origin (meta table): not a tether authority database")
        }
    }

    public func surfaces() async throws -> [SurfaceRecord] {
        try await timed("surfaces") { [self] in
            try await surfaceRows(client.query("SELECT * FROM surfaces ORDER BY device_id", logger: logger))
        }
    }

    func surfaceRows(_ rows: PostgresRowSequence) async throws -> [SurfaceRecord] {
        var out: [SurfaceRecord] = []
        for try await row in rows { out.append(try Self.surface(row)) }
        return out
    }

    static func surface(_ row: PostgresRow) throws -> SurfaceRecord {
        let r = row.makeRandomAccess()
        return SurfaceRecord(
            deviceId: try r["device_id"].decode(String.self), revoked: try r["revoked"].decode(Bool.self),
            createdAt: try r["created_at"].decode(String.self), updatedAt: try r["updated_at"].decode(String.self),
            reason: try r["reason"].decode(String?.self), changedBy: try r["changed_by"].decode(String?.self),
            revision: UInt64(try r["revision"].decode(Int64.self)), requestID: try r["request_id"].decode(String?.self))
    }

    public func removedSurfaces() async throws -> [String: UInt64] {
        try await timed("removedSurfaces") { [self] in
            var out: [String: UInt64] = [:]
            for try await (id, rev) in try await client.query("SELECT device_id, revision FROM tombstones", logger: logger).decode(
                (String, Int64).self)
            {
                out[id] = UInt64(rev)
            }
            return out
        }
    }

    func surface(_ db: PostgresConnection, _ id: String, lock: Bool = false) async throws -> SurfaceRecord? {
        let rows = try await db.query(
            PostgresQuery(unsafeSQL: "SELECT * FROM surfaces WHERE device_id = $1" + (lock ? " FOR UPDATE" : ""), binds: Self.binds(id)),
            logger: logger)
        return try await surfaceRows(rows).first
    }

    static func binds(_ values: (any PostgresDynamicTypeEncodable)?...) -> PostgresBindings {
        var b = PostgresBindings()
        for v in values {
            if let v { b.append(v) } else { b.appendNull() }
        }
        return b
    }

    public func register(
        _ deviceId: String, change: Change, seal: @escaping EventSealer
    ) async throws -> (RegisterOutcome, SurfaceRecord, ChangeEvent?) {
        try await timed("register") { [self] in
            // Most registrations are of a surface that exists (every supervisor start): no lock.
            if let s = try await client.withConnection({ try await surface($0, deviceId) }) {
                return (s.revoked ? .revoked : .exists, s, nil)
            }
            do {
                return try await transaction { db in
                    let revision = try await nextRevision(db)
                    // Another replica may have made it meanwhile: seen now, under the lock.
                    if let s = try await surface(db, deviceId) { throw NoChange(value: s) }
                    var grave: (revoked: Bool, reason: String?, by: String?)?
                    for try await (revoked, reason, by) in try await db.query(
                        "SELECT revoked, reason, changed_by FROM tombstones WHERE device_id = \(deviceId)", logger: logger
                    ).decode((Bool, String?, String?).self) {
                        grave = (revoked, reason, by)
                    }
                    let record: SurfaceRecord
                    if let grave {
                        // Back with the state it was removed in: a revoked surface stays revoked.
                        try await db.query(
                            "INSERT INTO surfaces (device_id, revoked, created_at, updated_at, reason, changed_by, revision, request_id) VALUES (\(deviceId), \(grave.revoked), \(change.at), \(change.at), \(grave.reason), \(grave.by), \(Int64(revision)), \(change.requestID))",
                            logger: logger)
                        try await db.query("DELETE FROM tombstones WHERE device_id = \(deviceId)", logger: logger)
                        try await audit(
                            db, change,
                            action: grave.revoked ? "register (was removed while revoked: stays revoked)" : "register (was removed)",
                            deviceId: deviceId)
                        record = SurfaceRecord(
                            deviceId: deviceId, revoked: grave.revoked, createdAt: change.at, updatedAt: change.at,
                            reason: grave.reason, changedBy: grave.by, revision: revision, requestID: change.requestID)
                    } else {
                        try await db.query(
                            "INSERT INTO surfaces (device_id, revoked, created_at, updated_at, revision, request_id) VALUES (\(deviceId), false, \(change.at), \(change.at), \(Int64(revision)), \(change.requestID))",
                            logger: logger)
                        try await audit(db, change, action: "register", deviceId: deviceId)
                        record = SurfaceRecord(
                            deviceId: deviceId, revoked: false, createdAt: change.at, updatedAt: change.at, revision: revision,
                            requestID: change.requestID)
                    }
                    let event = try await addEvent(db, revision, deviceId, change, seal(.surface(record), change))
                    return (record.revoked ? .revoked : .created, record, event)
                }
            } catch let n as NoChange<SurfaceRecord> {
                return (n.value.revoked ? .revoked : .exists, n.value, nil)
            }
        }
    }

    public func setRevoked(
        _ deviceId: String, revoked: Bool, change: Change, seal: @escaping EventSealer
    ) async throws -> (SurfaceRecord, ChangeEvent)? {
        try await timed("setRevoked") { [self] in
            do {
                return try await transaction { db in
                    let revision = try await nextRevision(db)
                    guard try await surface(db, deviceId) != nil else { throw NoChange(value: 0) }
                    try await db.query(
                        "UPDATE surfaces SET revoked = \(revoked), updated_at = \(change.at), reason = \(change.reason), changed_by = \(change.actor), revision = \(Int64(revision)), request_id = \(change.requestID) WHERE device_id = \(deviceId)",
                        logger: logger)
                    try await audit(db, change, action: revoked ? "revoke" : "unrevoke", deviceId: deviceId)
                    guard let record = try await surface(db, deviceId) else {
                        throw StoreError("surface \(deviceId) vanished inside its transaction")
                    }
                    return (record, try await addEvent(db, revision, deviceId, change, seal(.surface(record), change)))
                }
            } catch is NoChange<Int> {
                return nil
            }
        }
    }

    public func remove(_ deviceId: String, change: Change, seal: @escaping EventSealer) async throws -> ChangeEvent? {
        try await timed("remove") { [self] in
            do {
                return try await transaction { db in
                    let revision = try await nextRevision(db)
                    guard let s = try await surface(db, deviceId) else { throw NoChange(value: 0) }
                    try await db.query(
                        """
                        INSERT INTO tombstones (device_id, revoked, reason, changed_by, removed_at, revision)
                        VALUES (\(deviceId), \(s.revoked), \(s.reason), \(s.changedBy), \(change.at), \(Int64(revision)))
                        ON CONFLICT (device_id) DO UPDATE SET revoked = EXCLUDED.revoked, reason = EXCLUDED.reason,
                            changed_by = EXCLUDED.changed_by, removed_at = EXCLUDED.removed_at, revision = EXCLUDED.revision
                        """, logger: logger)
                    try await db.query("DELETE FROM surfaces WHERE device_id = \(deviceId)", logger: logger)
                    try await audit(db, change, action: "remove", deviceId: deviceId)
                    return try await addEvent(
                        db, revision, deviceId, change, seal(.removed(deviceId: deviceId, revision: revision), change))
                }
            } catch is NoChange<Int> {
                return nil
            }
        }
    }

    // MARK: - org

    public func org() async throws -> OrgState {
        try await timed("org") { [self] in
            try await client.withConnection { try await org($0) }
        }
    }

    func org(_ db: PostgresConnection) async throws -> OrgState {
        for try await row in try await db.query("SELECT * FROM org WHERE id = 1", logger: logger) {
            let r = row.makeRandomAccess()
            return OrgState(
                halted: try r["halted"].decode(Bool.self), reason: try r["reason"].decode(String?.self),
                changedBy: try r["changed_by"].decode(String?.self), changedAt: try r["changed_at"].decode(String?.self),
                revision: UInt64(try r["revision"].decode(Int64.self)), requestID: try r["request_id"].decode(String?.self))
        }
        return .running
    }

    public func setHalted(_ halted: Bool, change: Change, seal: @escaping EventSealer) async throws -> (OrgState, ChangeEvent) {
        try await timed("setHalted") { [self] in
            try await transaction { db in
                let revision = try await nextRevision(db)
                try await db.query(
                    "UPDATE org SET halted = \(halted), reason = \(change.reason), changed_by = \(change.actor), changed_at = \(change.at), revision = \(Int64(revision)), request_id = \(change.requestID) WHERE id = 1",
                    logger: logger)
                try await audit(db, change, action: halted ? "halt" : "resume", deviceId: nil)
                let org = OrgState(
                    halted: halted, reason: change.reason, changedBy: change.actor, changedAt: change.at, revision: revision,
                    requestID: change.requestID)
                return (org, try await addEvent(db, revision, OrgSubject.name, change, seal(.org(org), change)))
            }
        }
    }

    // MARK: - revisions

    public func head() async throws -> UInt64 {
        try await timed("head") { [self] in
            for try await r in try await client.query("SELECT revision FROM revision_head WHERE id = 1", logger: logger).decode(Int64.self)
            { return UInt64(r) }
            return 0
        }
    }

    public func changes(after revision: UInt64, limit: Int) async throws -> ChangeBatch {
        try await timed("changes") { [self] in
            // REPEATABLE READ: the events and the state they left, from one snapshot.
            try await client.withConnection { db in
                try await db.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", logger: logger)
                do {
                    var head: UInt64 = 0
                    for try await r in try await db.query("SELECT revision FROM revision_head WHERE id = 1", logger: logger).decode(
                        Int64.self)
                    { head = UInt64(r) }
                    var events: [ChangeEvent] = []
                    for try await (rev, subject, rid, text) in try await db.query(
                        "SELECT revision, subject, request_id, event FROM events WHERE revision > \(Int64(revision)) ORDER BY revision LIMIT \(limit)",
                        logger: logger
                    ).decode((Int64, String, String, String).self) {
                        events.append(ChangeEvent(revision: UInt64(rev), subject: subject, requestID: rid, text: text))
                    }
                    var surfaces: [String: SurfaceRecord] = [:], removed: [String: UInt64] = [:]
                    let touched = Array(Set(events.map(\.subject)).subtracting([OrgSubject.name]))
                    if !touched.isEmpty {
                        for s in try await surfaceRows(db.query("SELECT * FROM surfaces WHERE device_id = ANY(\(touched))", logger: logger))
                        { surfaces[s.deviceId] = s }
                        for try await (id, rev) in try await db.query(
                            "SELECT device_id, revision FROM tombstones WHERE device_id = ANY(\(touched))", logger: logger
                        ).decode((String, Int64).self) {
                            if surfaces[id] == nil { removed[id] = UInt64(rev) }
                        }
                    }
                    let org = try await org(db)
                    try await db.query("COMMIT", logger: logger)
                    return ChangeBatch(events: events, surfaces: surfaces, removed: removed, org: org, head: head)
                } catch {
                    _ = try? await db.query("ROLLBACK", logger: logger)
                    throw error
                }
            }
        }
    }

    /// LISTENs on its own pooled connection until that connection fails or the task ends.
    public func listenForChanges(
        _ onChange: @escaping @Sendable () async -> Void, onReport: @escaping @Sendable (Report) async -> Void
    ) async throws {
        try await client.withConnection { db in
            try await db.listen(on: Self.reportChannel) { reports in
                try await db.listen(on: Self.channel) { changes in
                    // Listening: what was committed before LISTEN took effect is read now.
                    await onChange()
                    try await withThrowingTaskGroup(of: Void.self) { group in
                        group.addTask { for try await _ in changes { await onChange() } }
                        group.addTask {
                            for try await n in reports {
                                if let r = await self.relayed(n.payload) { await onReport(r) }
                            }
                        }
                        // Either sequence ending means the connection is gone: listen again.
                        _ = try await group.next()
                        group.cancelAll()
                    }
                }
            }
        }
    }

    // MARK: - replicas, their watchers, reports

    public func heartbeat(replica: String, added: [FleetWatcher], removed: [FleetWatcher]) async throws {
        try await timed("heartbeat") { [self] in
            try await transaction { db in
                try await db.query(
                    "INSERT INTO replicas (id, seen_at) VALUES (\(replica), now()) ON CONFLICT (id) DO UPDATE SET seen_at = now()",
                    logger: logger)
                if !removed.isEmpty {
                    try await db.query(
                        """
                        DELETE FROM watchers w USING unnest(\(removed.map(\.instance)), \(removed.map(\.surface))) AS r(instance, surface)
                        WHERE w.replica = \(replica) AND w.instance = r.instance AND w.surface = r.surface
                        """, logger: logger)
                }
                if !added.isEmpty {
                    try await db.query(
                        """
                        INSERT INTO watchers (replica, instance, surface, key_name)
                        SELECT \(replica), * FROM unnest(\(added.map(\.instance)), \(added.map(\.surface)), \(added.map(\.keyName)))
                        ON CONFLICT (replica, instance, surface) DO UPDATE SET key_name = EXCLUDED.key_name
                        """, logger: logger)
                }
                // Replicas gone for 30 s (SIGKILLed: no goodbye) take their streams with them.
                try await db.query("DELETE FROM replicas WHERE seen_at < now() - interval '30 seconds'", logger: logger)
                try await db.query(
                    PostgresQuery(unsafeSQL: "DELETE FROM relayed_reports WHERE created_at < now() - interval '\(Self.relayedKeep)'"),
                    logger: logger)
            }
        }
    }

    public func fleetWatchers(of surfaces: [String]?, except replica: String) async throws -> [FleetWatcher] {
        try await timed("fleetWatchers") { [self] in
            let rows = try await client.query(
                """
                SELECT w.instance, w.surface, w.key_name FROM watchers w JOIN replicas r ON r.id = w.replica
                WHERE w.replica <> \(replica) AND r.seen_at > now() - interval '10 seconds'
                  AND (\(surfaces == nil) OR w.surface = ANY(\(surfaces ?? [])))
                """, logger: logger)
            var out: [FleetWatcher] = []
            for try await (i, s, k) in rows.decode((String, String, String).self) {
                out.append(FleetWatcher(instance: i, surface: s, keyName: k))
            }
            return out
        }
    }

    /// Stores the report for the other replicas and rings with its row's id alone: whoever
    /// hears the ring learns nothing, and a ring that names no row delivers nothing.
    public func publishReport(_ r: Report) async throws {
        let pids = r.pids.prefix(200).map(String.init).joined(separator: ",")
        try await timed("publishReport") { [self] in
            // One statement: the row and its ring commit together.
            try await client.query(
                """
                WITH row AS (
                    INSERT INTO relayed_reports (device_id, instance, state, pids, at, request_id, received_at, detail, key_name)
                    VALUES (\(r.deviceId), \(r.instance), \(r.state), \(pids), \(r.at), \(r.requestID), \(r.receivedAt), \(r.detail), \(r.keyName))
                    RETURNING id)
                SELECT pg_notify(\(Self.reportChannel), id::text) FROM row
                """, logger: logger)
        }
    }

    /// The report a ring on `tether_reports` names, read from the table with this store's role;
    /// nil for a payload that is not a row id, a row that does not exist (any role may ring), or
    /// one delivered already.
    func relayed(_ payload: String) async -> Report? {
        guard let id = Self.relayedID(payload) else {
            logger.debug("ignored a report ring that is not a row id", metadata: ["payload": "\(payload.prefix(40))"])
            return nil
        }
        guard !delivered.withLock({ $0.contains(id) }) else { return nil }
        let report: Report?
        do { report = try await relayedReport(id: id) } catch {
            logger.warning("could not read a relayed report", metadata: ["id": "\(id)", "error": "\(Self.describe(error))"])
            return nil
        }
        guard let report else {
            logger.debug("ignored a report ring naming no row", metadata: ["id": "\(id)"])
            return nil
        }
        // Marked only once read: a ring naming a row not committed yet cannot keep it out.
        return delivered.withLock { $0.insert(id) } ? report : nil
    }

    /// A plain decimal row id, or nil.
    static func relayedID(_ payload: String) -> Int64? {
        guard !payload.isEmpty, payload.utf8.count <= 18, payload.utf8.allSatisfy({ (0x30...0x39).contains($0) }) else { return nil }
        return Int64(payload)
    }

    func relayedReport(id: Int64) async throws -> Report? {
        try await timed("relayedReport") { [self] in
            try await rows(
                PostgresQuery(
                    unsafeSQL: "SELECT * FROM relayed_reports WHERE id = $1 AND created_at > now() - interval '\(Self.relayedKeep)'",
                    binds: Self.binds(id))
            ) { r in
                var report = Report(
                    deviceId: try r["device_id"].decode(String.self), instance: try r["instance"].decode(String.self),
                    state: try r["state"].decode(String.self),
                    pids: try r["pids"].decode(String.self).split(separator: ",").compactMap { Int32($0) },
                    at: try r["at"].decode(String.self), requestID: try r["request_id"].decode(String?.self),
                    receivedAt: try r["received_at"].decode(String.self), detail: try r["detail"].decode(String?.self))
                // Whose report it is comes from the row: an acknowledgement counts only from
                // the key holding the stream.
                report.keyName = try r["key_name"].decode(String.self)
                return report
            }.first
        }
    }

    // MARK: - signing keys

    public func signingKeys() async throws -> [SigningKeyRecord] {
        try await timed("signingKeys") { [self] in
            try await rows("SELECT * FROM signing_keys ORDER BY created_at, id") { r in
                SigningKeyRecord(
                    id: try r["id"].decode(String.self), privateKey: try r["private_key"].decode(String.self),
                    publicKey: try r["public_key"].decode(String.self),
                    state: SigningKeyRecord.State(rawValue: try r["state"].decode(String.self)) ?? .retired,
                    createdAt: try r["created_at"].decode(String.self), activatedAt: try r["activated_at"].decode(String?.self),
                    retireAfter: try r["retire_after"].decode(String?.self), endorsement: try r["endorsement"].decode(String?.self),
                    endorsedBy: try r["endorsed_by"].decode(String?.self))
            }
        }
    }

    public func putSigningKey(_ k: SigningKeyRecord, change: Change) async throws {
        try await timed("putSigningKey") { [self] in
            try await transaction { db in
                try await db.query(
                    """
                    INSERT INTO signing_keys (id, private_key, public_key, state, created_at, activated_at, retire_after, endorsement, endorsed_by)
                    VALUES (\(k.id), \(k.privateKey), \(k.publicKey), \(k.state.rawValue), \(k.createdAt), \(k.activatedAt), \(k.retireAfter), \(k.endorsement), \(k.endorsedBy))
                    ON CONFLICT (id) DO UPDATE SET state = EXCLUDED.state, activated_at = EXCLUDED.activated_at,
                        retire_after = EXCLUDED.retire_after, endorsement = EXCLUDED.endorsement, endorsed_by = EXCLUDED.endorsed_by
                    """, logger: logger)
                try await audit(db, change, action: "signing-key-\(k.state.rawValue):\(k.id)", deviceId: nil)
            }
        }
    }

    public func deleteSigningKey(id: String, change: Change) async throws {
        try await timed("deleteSigningKey") { [self] in
            try await transaction { db in
                var found = false
                for try await _ in try await db.query("DELETE FROM signing_keys WHERE id = \(id) RETURNING 1", logger: logger) {
                    found = true
                }
                if found { try await audit(db, change, action: "signing-key-forgotten:\(id)", deviceId: nil) }
            }
        }
    }

    // MARK: - keys

    public func keys() async throws -> [KeyRecord] {
        try await timed("keys") { [self] in
            try await rows("SELECT * FROM api_keys ORDER BY name") { r in
                KeyRecord(
                    name: try r["name"].decode(String.self), role: Role(rawValue: try r["role"].decode(String.self)) ?? .agent,
                    hash: try r["hash"].decode(String.self), createdAt: try r["created_at"].decode(String.self),
                    revokedAt: try r["revoked_at"].decode(String?.self),
                    surfaces: try r["surfaces"].decode(String?.self).map { $0.split(separator: ",").map(String.init) },
                    instance: try r["instance"].decode(String?.self))
            }
        }
    }

    public func addKey(_ key: KeyRecord, change: Change) async throws {
        try await timed("addKey") { [self] in
            try await transaction { db in
                var exists = false
                for try await _ in try await db.query("SELECT 1 FROM api_keys WHERE name = \(key.name)", logger: logger) { exists = true }
                if exists { throw StoreError("a key named \(key.name) exists already") }
                try await db.query(
                    "INSERT INTO api_keys (name, role, hash, created_at, surfaces, instance) VALUES (\(key.name), \(key.role.rawValue), \(key.hash), \(key.createdAt), \(key.surfaces?.joined(separator: ",")), \(key.instance))",
                    logger: logger)
                try await audit(
                    db, change, action: "key-create:\(key.role.rawValue):\(key.name)", deviceId: nil, reason: key.scopeDescription)
            }
        }
    }

    public func revokeKey(named name: String, change: Change) async throws -> Bool {
        try await timed("revokeKey") { [self] in
            try await transaction { db in
                var found = false
                for try await _ in try await db.query(
                    "UPDATE api_keys SET revoked_at = \(change.at) WHERE name = \(name) AND revoked_at IS NULL RETURNING name",
                    logger: logger)
                { found = true }
                if found { try await audit(db, change, action: "key-revoke:\(name)", deviceId: nil) }
                return found
            }
        }
    }

    // MARK: - audit, reports, usage

    public func audit(
        limit: Int, deviceId: String?, actor: String?, since: String?, until: String?, before: Int64?
    ) async throws -> [AuditEntry] {
        try await timed("audit") { [self] in
            var clauses: [String] = []
            var binds = PostgresBindings()
            if let before {
                binds.append(before)
                clauses.append("id < $\(binds.count)")
            }
            if let deviceId {
                binds.append(deviceId)
                clauses.append("device_id = $\(binds.count)")
            }
            if let actor {
                let prefix = consoleActorPrefix(actor)
                binds.append(actor)
                binds.append(prefix)
                clauses.append("(actor = $\(binds.count - 1) OR starts_with(actor, $\(binds.count)))")
            }
            if let since {
                binds.append(since)
                clauses.append("at >= $\(binds.count)")
            }
            if let until {
                binds.append(until)
                clauses.append("at <= $\(binds.count)")
            }
            binds.append(limit)
            let filter = clauses.isEmpty ? "" : "WHERE " + clauses.joined(separator: " AND ")
            return try await rows(
                PostgresQuery(unsafeSQL: "SELECT * FROM audit \(filter) ORDER BY id DESC LIMIT $\(binds.count)", binds: binds)
            ) { r in
                AuditEntry(
                    id: try r["id"].decode(Int64.self), at: try r["at"].decode(String.self), actor: try r["actor"].decode(String.self),
                    action: try r["action"].decode(String.self), deviceId: try r["device_id"].decode(String?.self),
                    reason: try r["reason"].decode(String?.self), requestID: try r["request_id"].decode(String.self))
            }
        }
    }

    public func addReport(_ r: Report) async throws {
        try await timed("addReport") { [self] in
            try await transaction { db in
                try await db.query(
                    "INSERT INTO reports (device_id, instance, state, pids, at, request_id, received_at, detail) VALUES (\(r.deviceId), \(r.instance), \(r.state), \(r.pids.map(String.init).joined(separator: ",")), \(r.at), \(r.requestID), \(r.receivedAt), \(r.detail))",
                    logger: logger)
                // Keep the last 200 reports of each surface.
                try await db.query(
                    """
                    DELETE FROM reports WHERE device_id = \(r.deviceId) AND id <= (
                        SELECT id FROM reports WHERE device_id = \(r.deviceId) ORDER BY id DESC LIMIT 1 OFFSET 200)
                    """, logger: logger)
            }
        }
    }

    public func addRefusals(_ rows: [RefusalRow]) async throws {
        try await timed("addRefusals") { [self] in
            try await transaction { db in
                for r in rows {
                    try await db.query(
                        "INSERT INTO audit (at, actor, action, device_id, reason, request_id) VALUES (\(r.last), \(r.actor), \(r.action), NULL, \(r.reason), \(UUID().uuidString))",
                        logger: logger)
                }
            }
        }
    }

    public func reports(deviceId: String, limit: Int) async throws -> [Report] {
        try await timed("reports") { [self] in
            try await rows("SELECT * FROM reports WHERE device_id = \(deviceId) ORDER BY id DESC LIMIT \(limit)", Self.report)
        }
    }

    public func latestReports(of deviceIds: [String]) async throws -> [Report] {
        guard !deviceIds.isEmpty else { return [] }
        return try await timed("latestReports") { [self] in
            try await rows(
                """
                SELECT * FROM reports WHERE id IN (
                    SELECT MAX(id) FROM reports WHERE device_id = ANY(\(deviceIds)) GROUP BY device_id, instance)
                """, Self.report)
        }
    }

    private static func report(_ r: PostgresRandomAccessRow) throws -> Report {
        Report(
            deviceId: try r["device_id"].decode(String.self), instance: try r["instance"].decode(String.self),
            state: try r["state"].decode(String.self),
            pids: try r["pids"].decode(String.self).split(separator: ",").compactMap { Int32($0) },
            at: try r["at"].decode(String.self), requestID: try r["request_id"].decode(String?.self),
            receivedAt: try r["received_at"].decode(String.self), detail: try r["detail"].decode(String?.self))
    }

    public func usage() async throws -> Usage {
        try await timed("usage") { [self] in
            let sql: PostgresQuery = """
                SELECT (SELECT count(*) FROM surfaces), (SELECT count(*) FROM surfaces WHERE revoked),
                       (SELECT count(*) FROM api_keys WHERE revoked_at IS NULL), (SELECT count(*) FROM audit), (SELECT count(*) FROM reports)
                """
            for try await (s, r, k, a, p) in try await client.query(sql, logger: logger).decode((Int64, Int64, Int64, Int64, Int64).self) {
                return Usage(surfaces: Int(s), revoked: Int(r), keys: Int(k), auditEntries: Int(a), reports: Int(p))
            }
            throw StoreError("usage: no row")
        }
    }

    // MARK: - console tokens

    public func addConsoleToken(_ t: ConsoleTokenRecord) async throws {
        try await timed("addConsoleToken") { [self] in
            try await client.query(
                "INSERT INTO console_tokens (digest, kind, key_name, csrf, client, created_at, last_seen, expires_at, used) VALUES (\(t.digest), \(t.kind.rawValue), \(t.keyName), \(t.csrf), \(t.client), \(t.createdAt), \(t.lastSeen), \(t.expiresAt), \(t.used ? 1 : 0))",
                logger: logger)
        }
    }

    public func consoleToken(digest: String) async throws -> ConsoleTokenRecord? {
        try await timed("consoleToken") { [self] in
            try await rows(
                "SELECT digest, kind, key_name, csrf, client, created_at, last_seen, expires_at, used FROM console_tokens WHERE digest = \(digest)"
            ) { r in
                ConsoleTokenRecord(
                    digest: try r["digest"].decode(String.self),
                    kind: ConsoleTokenRecord.Kind(rawValue: try r["kind"].decode(String.self)) ?? .link,
                    keyName: try r["key_name"].decode(String.self), csrf: try r["csrf"].decode(String?.self),
                    client: try r["client"].decode(String?.self),
                    createdAt: try r["created_at"].decode(Double.self), lastSeen: try r["last_seen"].decode(Double.self),
                    expiresAt: try r["expires_at"].decode(Double.self), used: try r["used"].decode(Int32.self) != 0)
            }.first
        }
    }

    public func useConsoleLink(digest: String) async throws -> Bool {
        try await timed("useConsoleLink") { [self] in
            var used = false
            for try await _ in try await client.query(
                "UPDATE console_tokens SET used = 1 WHERE digest = \(digest) AND kind = 'link' AND used = 0 RETURNING 1", logger: logger)
            { used = true }
            return used
        }
    }

    public func touchConsoleSession(digest: String, at: Double) async throws {
        try await timed("touchConsoleSession") { [self] in
            try await client.query(
                "UPDATE console_tokens SET last_seen = \(at) WHERE digest = \(digest) AND kind = 'session'", logger: logger)
        }
    }

    public func deleteConsoleToken(digest: String) async throws {
        try await timed("deleteConsoleToken") { [self] in
            try await client.query("DELETE FROM console_tokens WHERE digest = \(digest)", logger: logger)
        }
    }

    public func deleteConsoleSessions(keyName: String) async throws {
        try await timed("deleteConsoleSessions") { [self] in
            try await client.query("DELETE FROM console_tokens WHERE kind = 'session' AND key_name = \(keyName)", logger: logger)
        }
    }

    @discardableResult
    public func pruneConsoleTokens(before: Double, idleBefore: Double) async throws -> Int {
        try await timed("pruneConsoleTokens") { [self] in
            var n = 0
            for try await _ in try await client.query(
                "DELETE FROM console_tokens WHERE expires_at < \(before) OR (kind = 'session' AND last_seen < \(idleBefore)) RETURNING 1",
                logger: logger)
            { n += 1 }
            return n
        }
    }

    public func prune(auditBefore: String, reportsBefore: String) async throws -> (audit: Int, reports: Int) {
        try await timed("prune") { [self] in
            try await transaction { db in
                var audit = 0, reports = 0
                for try await _ in try await db.query("DELETE FROM audit WHERE at < \(auditBefore) RETURNING 1", logger: logger) {
                    audit += 1
                }
                for try await _ in try await db.query(
                    "DELETE FROM reports WHERE received_at < \(reportsBefore) RETURNING 1", logger: logger)
                { reports += 1 }
                try await db.query(
                    "DELETE FROM events WHERE at < \(reportsBefore) AND revision < (SELECT revision FROM revision_head WHERE id = 1)",
                    logger: logger)
                return (audit, reports)
            }
        }
    }
}

// MARK: - instance claims

extension PostgresStore {
    public func claimInstance(_ instance: String, keyName: String, takeOver: String?, change: Change) async throws -> InstanceClaim {
        try await timed("claimInstance") { [self] in
            try await transaction { db in
                // Two replicas claiming at once: one insert wins, the other reads its row.
                for try await _ in try await db.query(
                    """
                    INSERT INTO instances (name, key_name, claimed_at, last_seen) VALUES (\(instance), \(keyName), \(change.at), \(change.at))
                    ON CONFLICT (name) DO NOTHING RETURNING 1
                    """, logger: logger)
                {
                    return InstanceClaim(instance: instance, keyName: keyName, claimedAt: change.at, lastSeen: change.at)
                }
                var found: InstanceClaim?
                for try await (k, c, l) in try await db.query(
                    "SELECT key_name, claimed_at, last_seen FROM instances WHERE name = \(instance) FOR UPDATE", logger: logger
                ).decode((String, String, String).self) {
                    found = InstanceClaim(instance: instance, keyName: k, claimedAt: c, lastSeen: l)
                }
                guard var held = found else { throw StoreError("the claim of \(instance) went while it was read; try again") }
                if held.keyName == keyName {
                    try await db.query("UPDATE instances SET last_seen = \(change.at) WHERE name = \(instance)", logger: logger)
                    held.lastSeen = change.at
                    return held
                }
                guard let why = takeOver else { return held }
                try await db.query(
                    "UPDATE instances SET key_name = \(keyName), claimed_at = \(change.at), last_seen = \(change.at) WHERE name = \(instance)",
                    logger: logger)
                try await audit(
                    db, change, action: "instance-takeover:\(instance)", deviceId: nil,
                    reason: "from the key \(held.keyName): \(why)")
                return InstanceClaim(instance: instance, keyName: keyName, claimedAt: change.at, lastSeen: change.at)
            }
        }
    }

    public func instances() async throws -> [InstanceClaim] {
        try await timed("instances") { [self] in
            var out: [InstanceClaim] = []
            for try await (n, k, c, l) in try await client.query(
                "SELECT name, key_name, claimed_at, last_seen FROM instances ORDER BY name", logger: logger
            ).decode((String, String, String, String).self) {
                out.append(InstanceClaim(instance: n, keyName: k, claimedAt: c, lastSeen: l))
            }
            return out
        }
    }

    public func releaseInstance(_ instance: String, change: Change) async throws -> InstanceClaim? {
        try await timed("releaseInstance") { [self] in
            try await transaction { db in
                var held: InstanceClaim?
                for try await (k, c, l) in try await db.query(
                    "DELETE FROM instances WHERE name = \(instance) RETURNING key_name, claimed_at, last_seen", logger: logger
                ).decode((String, String, String).self) {
                    held = InstanceClaim(instance: instance, keyName: k, claimedAt: c, lastSeen: l)
                }
                if let held {
                    try await audit(
                        db, change, action: "instance-release:\(instance)", deviceId: nil,
                        reason: "held by the key \(held.keyName) since \(held.claimedAt)" + (change.reason.map { ": \($0)" } ?? ""))
                }
                return held
            }
        }
    }

    public func pruneInstances(idleBefore before: String) async throws -> Int {
        try await timed("pruneInstances") { [self] in
            var n = 0
            for try await _ in try await client.query("DELETE FROM instances WHERE last_seen < \(before) RETURNING 1", logger: logger) {
                n += 1
            }
            return n
        }
    }

    public func touchInstances(_ names: [String], at: String) async throws {
        guard !names.isEmpty else { return }
        try await timed("touchInstances") { [self] in
            try await client.query("UPDATE instances SET last_seen = \(at) WHERE name = ANY(\(names))", logger: logger)
        }
    }
}

/// The relayed reports this replica delivered: the last few ids, and below them a floor
/// (a ring of an old row, repeated, is not delivered again).
struct DeliveredIDs {
    static let kept = 1024
    private var recent: Set<Int64> = []
    private var order: [Int64] = []
    private var floor: Int64 = 0

    func contains(_ id: Int64) -> Bool { id <= floor || recent.contains(id) }

    /// False when it was delivered already.
    mutating func insert(_ id: Int64) -> Bool {
        guard !contains(id) else { return false }
        recent.insert(id)
        order.append(id)
        // Ids commit nearly but not exactly in order: the floor rises only past the oldest kept.
        if order.count > Self.kept {
            let old = order.removeFirst()
            recent.remove(old)
            floor = max(floor, old)
        }
        return true
    }
}

/// The PostgreSQL schema, version by version.
enum PostgresSchema {
    /// Instance claims. The streams open when a fleet upgrades are claimed for the key holding
    /// them (an instance two keys hold is left to the first to come back), so that no other
    /// key takes them in the moments the supervisors reconnect.
    static let v6 = [
        StoreSchema.instances,
        StoreSchema.instancesIndex,
        """
        INSERT INTO instances (name, key_name, claimed_at, last_seen)
        SELECT instance, min(key_name), to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
               to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
        FROM watchers WHERE instance NOT LIKE 'anonymous-%'
        GROUP BY instance HAVING count(DISTINCT key_name) = 1
        """,
    ]

    /// Reports relayed between replicas: a ring on `tether_reports` names a row by its id.
    static let v5 = [
        """
        CREATE TABLE relayed_reports (
            id bigserial PRIMARY KEY, device_id text NOT NULL, instance text NOT NULL, state text NOT NULL,
            pids text NOT NULL, at text NOT NULL, request_id text, received_at text NOT NULL, detail text,
            key_name text NOT NULL, created_at timestamptz NOT NULL DEFAULT now())
        """,
        "CREATE INDEX relayed_reports_created ON relayed_reports(created_at)",
    ]

    /// Which replicas are alive, and the watch streams each holds (for acknowledgements
    /// awaited on one replica from supervisors connected to another).
    static let v2 = [
        "CREATE TABLE replicas (id text PRIMARY KEY, seen_at timestamptz NOT NULL)",
        """
        CREATE TABLE watchers (
            replica text NOT NULL REFERENCES replicas(id) ON DELETE CASCADE, instance text NOT NULL,
            surface text NOT NULL, key_name text NOT NULL, PRIMARY KEY (replica, instance, surface))
        """,
        "CREATE INDEX watchers_surface ON watchers(surface)",
    ]

    static let v1 = [
        """
        CREATE TABLE surfaces (
            device_id text PRIMARY KEY, revoked boolean NOT NULL DEFAULT false,
            created_at text NOT NULL, updated_at text NOT NULL, reason text, changed_by text,
            revision bigint NOT NULL DEFAULT 0, request_id text)
        """,
        """
        CREATE TABLE org (
            id integer PRIMARY KEY CHECK (id = 1), halted boolean NOT NULL, reason text, changed_by text,
            changed_at text, revision bigint NOT NULL DEFAULT 0, request_id text)
        """,
        "INSERT INTO org (id, halted) VALUES (1, false)",
        """
        CREATE TABLE api_keys (
            name text PRIMARY KEY, role text NOT NULL, hash text NOT NULL UNIQUE, created_at text NOT NULL,
            revoked_at text, surfaces text, instance text)
        """,
        """
        CREATE TABLE audit (
            id bigserial PRIMARY KEY, at text NOT NULL, actor text NOT NULL, action text NOT NULL,
            device_id text, reason text, request_id text NOT NULL)
        """,
        "CREATE INDEX audit_device ON audit(device_id, id)",
        "CREATE INDEX audit_at ON audit(at)",
        """
        CREATE TABLE reports (
            id bigserial PRIMARY KEY, device_id text NOT NULL, instance text NOT NULL, state text NOT NULL,
            pids text NOT NULL, at text NOT NULL, request_id text, received_at text NOT NULL)
        """,
        "CREATE INDEX reports_device ON reports(device_id, id)",
        """
        CREATE TABLE tombstones (
            device_id text PRIMARY KEY, revoked boolean NOT NULL, reason text, changed_by text,
            removed_at text NOT NULL, revision bigint NOT NULL DEFAULT 0)
        """,
        "CREATE TABLE revision_head (id integer PRIMARY KEY CHECK (id = 1), revision bigint NOT NULL)",
        "INSERT INTO revision_head (id, revision) VALUES (1, 0)",
        """
        CREATE TABLE events (
            revision bigint PRIMARY KEY, subject text NOT NULL, request_id text NOT NULL, at text NOT NULL, event text NOT NULL)
        """,
        "CREATE INDEX events_at ON events(at)",
        "CREATE TABLE meta (key text PRIMARY KEY, value text NOT NULL)",
        StoreSchema.signingKeys,
    ]
}

/// The first of a query, its deadline and its caller's cancellation to end resumes the caller;
/// the query is cancelled if it was not the one.
final class Race<T: Sendable>: Sendable {
    private let state = Mutex<
        (continuation: CheckedContinuation<T, any Error>?, ended: Result<T, any Error>?, cancel: (@Sendable () -> Void)?)
    >(
        (nil, nil, nil))

    func start(_ c: CheckedContinuation<T, any Error>) {
        let early = state.withLock { s -> Result<T, any Error>? in
            if let e = s.ended { return e }
            s.continuation = c
            return nil
        }
        if let early { c.resume(with: early) }
    }

    func onCancel(_ cancel: @escaping @Sendable () -> Void) {
        let ended = state.withLock { s -> Bool in
            s.cancel = cancel
            return s.ended != nil && s.continuation == nil
        }
        if ended { cancel() }
    }

    func end(_ result: Result<T, any Error>) {
        let (c, cancel) = state.withLock { s -> (CheckedContinuation<T, any Error>?, (@Sendable () -> Void)?) in
            guard s.ended == nil else { return (nil, nil) }
            s.ended = result
            defer { s.continuation = nil }
            return (s.continuation, s.cancel)
        }
        c?.resume(with: result)
        if case .failure = result { cancel?() }
    }
}
