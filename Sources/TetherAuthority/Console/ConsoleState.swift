import Foundation
import TetherCore

/// What the console's pages show, as one JSON document: sent whole on every change (the pages
/// render it; nothing is patched), and served at `/console/state.json`.
struct ConsoleState: Encodable {
    struct Counts: Encodable {
        var surfaces: Int
        var revoked: Int
        /// Supervisor instances holding a watch stream (on any replica).
        var supervisors: Int
    }

    struct Supervisor: Encodable {
        var instance: String
        /// Holds a watch stream of this surface now.
        var connected: Bool
        /// Its last report on this surface.
        var state: String?
        var pids: [Int32]?
        var at: String?
        var detail: String?
    }

    struct Surface: Encodable {
        var deviceId: String
        var revoked: Bool
        var updatedAt: String
        var changedBy: String?
        var reason: String?
        var supervisors: [Supervisor]
        /// The gates of this surface: the surfaces named `THIS.exec`, `THIS.net`, `THIS.write`
        /// (docs/gates.md's convention). A revoked gate surface is a closed gate.
        var gates: [Gate] = []
        /// For a gate surface: the surface it gates, and which gate it is.
        var gateOf: String?
        var gateKind: String?
    }

    struct Gate: Encodable {
        var kind: String
        var surface: String
        var closed: Bool
        /// What the gate's last report said (the denials, under a closed gate).
        var lastReport: String?
        var detail: String?
    }

    static let gateKinds = ["exec", "net", "write"]

    /// `agent-01.net` → ("agent-01", "net"), where `agent-01` is a surface.
    static func gate(_ name: String, among names: Set<String>) -> (parent: String, kind: String)? {
        guard let dot = name.lastIndex(of: ".") else { return nil }
        let parent = String(name[..<dot]), kind = String(name[name.index(after: dot)...])
        return gateKinds.contains(kind) && names.contains(parent) ? (parent, kind) : nil
    }

    struct ChangeView: Encodable {
        var requestId: String
        var action: String
        var subject: String
        var actor: String
        var reason: String?
        var at: String
        /// Still collecting acknowledgements.
        var collecting: Bool
        /// As `?wait=` answers them (`tether revoke --wait`).
        var acknowledgements: AckLists
        enum CodingKeys: String, CodingKey { case requestId, action, subject, actor, reason, at, collecting }
        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(requestId, forKey: .requestId)
            try c.encode(action, forKey: .action)
            try c.encode(subject, forKey: .subject)
            try c.encode(actor, forKey: .actor)
            try c.encodeIfPresent(reason, forKey: .reason)
            try c.encode(at, forKey: .at)
            try c.encode(collecting, forKey: .collecting)
            try acknowledgements.encode(to: encoder)
        }
    }

    var now: String
    var origin: String
    var signedInAs: String
    var org: OrgView
    var counts: Counts
    var surfaces: [Surface]
    var changes: [ChangeView]

    /// The state for one viewer: built at most every `ConsoleSnapshots.maxAge` for all of them.
    static func make(_ authority: Authority, signedInAs: String) async throws -> ConsoleState {
        var s = try await authority.consoleSnapshots.current(authority)
        s.signedInAs = signedInAs
        return s
    }

    /// Reads everything the pages show: the surfaces, every one's reports (a query each), the
    /// watchers of every replica. Not per viewer and not per change: see `ConsoleSnapshots`.
    static func build(_ authority: Authority) async throws -> ConsoleState {
        let signedInAs = ""
        let org = await authority.state.org
        let surfaces = await authority.state.all()
        var watching: [String: Set<String>] = [:]
        var instances = Set<String>()
        for w in await authority.fleetWatchers(of: nil) {
            watching[w.surface, default: []].insert(w.instance)
            instances.insert(w.instance)
        }
        var views: [Surface] = []
        for s in surfaces {
            // The latest report of each supervisor, connected or not (one that was killed
            // still shows what it last said).
            var latest: [String: Report] = [:]
            for r in try await authority.reports(of: s.deviceId, limit: 50) where latest[r.instance] == nil { latest[r.instance] = r }
            let names = Set(latest.keys).union(watching[s.deviceId] ?? [])
            let sups = names.sorted().map { i in
                let r = latest[i]
                return Supervisor(
                    instance: i, connected: watching[s.deviceId]?.contains(i) ?? false, state: r?.state, pids: r?.pids, at: r?.at,
                    detail: r?.detail)
            }
            views.append(
                Surface(
                    deviceId: s.deviceId, revoked: s.revoked, updatedAt: s.updatedAt, changedBy: s.changedBy, reason: s.reason,
                    supervisors: sups))
        }
        let names = Set(views.map(\.deviceId))
        var gates: [String: [Gate]] = [:]
        for i in views.indices {
            guard let (parent, kind) = gate(views[i].deviceId, among: names) else { continue }
            views[i].gateOf = parent
            views[i].gateKind = kind
            let last = views[i].supervisors.filter { $0.at != nil }.max { ($0.at ?? "") < ($1.at ?? "") }
            gates[parent, default: []].append(
                Gate(kind: kind, surface: views[i].deviceId, closed: views[i].revoked, lastReport: last?.state, detail: last?.detail))
        }
        for i in views.indices { views[i].gates = (gates[views[i].deviceId] ?? []).sorted { $0.kind < $1.kind } }
        let now = Date()
        let changes = await authority.acks.recent(limit: 20).map { t in
            ChangeView(
                requestId: t.change.requestID, action: t.action.rawValue, subject: t.subject, actor: t.change.actor,
                reason: t.change.reason,
                at: t.change.at, collecting: now <= t.until && !t.missing.isEmpty,
                acknowledgements: AckLists(AckResult(acked: t.acked, missing: t.missing)))
        }
        return ConsoleState(
            now: Timestamp.string(now), origin: authority.origin, signedInAs: signedInAs,
            org: OrgView(org),
            counts: Counts(surfaces: surfaces.count, revoked: surfaces.filter(\.revoked).count, supervisors: instances.count),
            surfaces: views, changes: changes)
    }
}

/// The audit log as the console filters and exports it.
public enum ConsoleAuditExport {
    struct Entry: Encodable {
        var id: Int64
        var at: String
        var actor: String
        var action: String
        var deviceId: String?
        var reason: String?
        var requestId: String
    }

    static func entries(_ rows: [AuditEntry]) -> [Entry] {
        rows.map {
            Entry(
                id: $0.id, at: $0.at, actor: $0.actor, action: $0.action, deviceId: $0.deviceId, reason: $0.reason, requestId: $0.requestID)
        }
    }

    /// RFC 4180: every field quoted, quotes doubled, CRLF line ends. A field that a spreadsheet
    /// would run as a formula (=, +, -, @, tab, CR first) gets a leading apostrophe: audit text
    /// comes partly from reasons anyone with a key typed.
    public static func csv(_ rows: [AuditEntry]) -> String {
        func field(_ s: String?) -> String {
            var v = s ?? ""
            if let c = v.first, "=+-@\t\r".contains(c) { v = "'" + v }
            return "\"" + v.replacingOccurrences(of: "\"", with: "\"\"") + "\""
        }
        var out = "id,at,actor,action,surface,reason,request_id\r\n"
        for r in rows {
            out +=
                [String(r.id), r.at, r.actor, r.action, r.deviceId ?? "", r.reason ?? "", r.requestID].map(field).joined(separator: ",")
                + "\r\n"
        }
        return out
    }
}

/// The console's state, built once for every viewer: a new build when something changed
/// (`ChangeFeed.generation`) — at most one per `minInterval`, however many changes and open
/// consoles — or when the last is `maxAge` old (what other replicas received). A burst of
/// reports from ten thousand supervisors costs one build (a reports query per surface) per
/// period, not one per report per viewer.
actor ConsoleSnapshots {
    static let minInterval: Duration = .milliseconds(250)
    static let maxAge: Duration = .seconds(4)
    private var last: (at: ContinuousClock.Instant, generation: UInt64, state: ConsoleState)?
    private var building: Task<ConsoleState, any Error>?

    func current(_ authority: Authority) async throws -> ConsoleState {
        // A build under way may predate the change that woke this viewer: look again after it
        // (`finish` has stored it, and cleared `building`, before its task ends).
        while let b = building { _ = try? await b.value }
        if let l = last, l.generation == authority.feed.generation, ContinuousClock.now - l.at < Self.maxAge { return l.state }
        let since = last.map { ContinuousClock.now - $0.at }
        let task = Task {
            do {
                if let since, since < Self.minInterval { try await Task.sleep(for: Self.minInterval - since) }
                // Read before building: the state shows at least every change poked until now.
                let generation = authority.feed.generation
                let state = try await ConsoleState.build(authority)
                await self.finish((ContinuousClock.now, generation, state))
                return state
            } catch {
                await self.finish(nil)
                throw error
            }
        }
        building = task
        return try await task.value
    }

    private func finish(_ built: (at: ContinuousClock.Instant, generation: UInt64, state: ConsoleState)?) {
        if let built { last = built }
        building = nil
    }
}
