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
    /// The first `ConsoleView.pageSize` surfaces the view matches, in name order.
    var surfaces: [Surface]
    /// How many surfaces the view matches in all.
    var matching: Int
    var changes: [ChangeView]

    /// The state for one viewer: built at most every `ConsoleSnapshots.maxAge` for all of them.
    static func make(_ authority: Authority, view: ConsoleView, signedInAs: String) async throws -> ConsoleState {
        var s = try await authority.consoleSnapshots.current(authority, view: view)
        s.signedInAs = signedInAs
        return s
    }

    /// Reads what one view shows: its page of surfaces (and their gates), their supervisors and
    /// last reports — one read each, for the page, whatever the fleet's size — and the counts the
    /// authority keeps. Not per viewer and not per change: see `ConsoleSnapshots`.
    static func build(_ authority: Authority, view: ConsoleView) async throws -> ConsoleState {
        let signedInAs = ""
        let org = await authority.state.org
        // A search names a supervisor too: the surfaces its streams watch.
        var watchedBy = Set<String>()
        if !view.text.isEmpty {
            for w in await authority.fleetWatchers(of: nil) where w.instance.lowercased().contains(view.text) {
                watchedBy.insert(w.surface)
            }
        }
        let (page, matching) = await authority.state.matching(
            view.text, extra: watchedBy, revoked: view.revoked, limit: ConsoleView.pageSize)
        // The gates of the page's surfaces, and the surfaces its gates gate: named, looked up.
        var records = Dictionary(page.map { ($0.deviceId, $0) }) { a, _ in a }
        for r in page {
            var related = gateKinds.map { "\(r.deviceId).\($0)" }
            if let dot = r.deviceId.lastIndex(of: "."), gateKinds.contains(String(r.deviceId[r.deviceId.index(after: dot)...])) {
                related.append(String(r.deviceId[..<dot]))
            }
            for name in related where records[name] == nil {
                if let found = await authority.state.snapshot(name).0 { records[name] = found }
            }
        }
        let names = Array(records.keys)
        var watching: [String: Set<String>] = [:]
        for w in await authority.fleetWatchers(of: names) { watching[w.surface, default: []].insert(w.instance) }
        // The latest report of each supervisor, connected or not (one that was killed still
        // shows what it last said).
        var latest: [String: [String: Report]] = [:]
        for r in try await authority.latestReports(of: names) { latest[r.deviceId, default: [:]][r.instance] = r }
        func surfaceView(_ s: SurfaceRecord) -> Surface {
            let reports = latest[s.deviceId] ?? [:]
            let sups = Set(reports.keys).union(watching[s.deviceId] ?? []).sorted().map { i in
                let r = reports[i]
                return Supervisor(
                    instance: i, connected: watching[s.deviceId]?.contains(i) ?? false, state: r?.state, pids: r?.pids, at: r?.at,
                    detail: r?.detail)
            }
            return Surface(
                deviceId: s.deviceId, revoked: s.revoked, updatedAt: s.updatedAt, changedBy: s.changedBy, reason: s.reason,
                supervisors: sups)
        }
        let all = Set(names)
        var views = page.map(surfaceView)
        for i in views.indices {
            let id = views[i].deviceId
            if let (parent, kind) = gate(id, among: all) {
                views[i].gateOf = parent
                views[i].gateKind = kind
            }
            views[i].gates = gateKinds.compactMap { kind -> Gate? in
                guard let g = records["\(id).\(kind)"] else { return nil }
                let sv = surfaceView(g)
                let last = sv.supervisors.filter { $0.at != nil }.max { ($0.at ?? "") < ($1.at ?? "") }
                return Gate(kind: kind, surface: g.deviceId, closed: g.revoked, lastReport: last?.state, detail: last?.detail)
            }
        }
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
            counts: Counts(
                surfaces: await authority.state.count, revoked: await authority.state.revokedCount,
                supervisors: await authority.supervisorCount()),
            surfaces: views, matching: matching, changes: changes)
    }
}

/// What one console viewer asks to see: a search (a surface's or a connected supervisor's name,
/// any part, any case) and a state; the first `pageSize` surfaces that match.
struct ConsoleView: Hashable, Sendable {
    static let pageSize = 200
    var text: String = ""
    /// Only revoked (true), only active (false), or both.
    var revoked: Bool? = nil

    init(text: String = "", revoked: Bool? = nil) {
        self.text = text
        self.revoked = revoked
    }

    /// From `?q=` and `?state=all|revoked|active`.
    init(query: [String: String]) throws {
        let q = (query["q"] ?? "").trimmingCharacters(in: .whitespaces).lowercased()
        guard q.count <= 140 else { throw APIError.badRequest("?q= is longer than 140 characters") }
        text = q
        switch query["state"] ?? "all" {
        case "all", "": revoked = nil
        case "revoked": revoked = true
        case "active": revoked = false
        case let other: throw APIError.badRequest("?state= takes all, revoked or active; got \"\(other.prefix(40))\"")
        }
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

/// The console's state, built once for every viewer of the same view: a new build when
/// something changed (`ChangeFeed.generation`) — at most one per `minInterval`, however many
/// changes and open consoles — or when the last is `maxAge` old (what other replicas received).
/// A build reads one page (`ConsoleView.pageSize` surfaces), not the fleet: a burst of reports
/// from ten thousand supervisors costs one page's reads per period and view. The newest
/// `maxViews` views are kept.
actor ConsoleSnapshots {
    static let minInterval: Duration = .milliseconds(250)
    static let maxAge: Duration = .seconds(4)
    static let maxViews = 32

    private struct Slot {
        var last: (at: ContinuousClock.Instant, generation: UInt64, state: ConsoleState)?
        var building: Task<ConsoleState, any Error>?
        var used = ContinuousClock.now
    }

    private var slots: [ConsoleView: Slot] = [:]

    func current(_ authority: Authority, view: ConsoleView) async throws -> ConsoleState {
        // A build under way may predate the change that woke this viewer: look again after it
        // (`finish` has stored it, and cleared `building`, before its task ends).
        while let b = slots[view]?.building { _ = try? await b.value }
        slots[view, default: Slot()].used = .now
        if let l = slots[view]?.last, l.generation == authority.feed.generation, ContinuousClock.now - l.at < Self.maxAge {
            return l.state
        }
        let since = slots[view]?.last.map { ContinuousClock.now - $0.at }
        let task = Task {
            do {
                if let since, since < Self.minInterval { try await Task.sleep(for: Self.minInterval - since) }
                // Read before building: the state shows at least every change poked until now.
                let generation = authority.feed.generation
                let state = try await ConsoleState.build(authority, view: view)
                await self.finish(view, (ContinuousClock.now, generation, state))
                return state
            } catch {
                await self.finish(view, nil)
                throw error
            }
        }
        slots[view, default: Slot()].building = task
        if slots.count > Self.maxViews,
            let oldest = slots.filter({ $0.value.building == nil }).min(by: { $0.value.used < $1.value.used })?.key
        {
            slots[oldest] = nil
        }
        return try await task.value
    }

    private func finish(_ view: ConsoleView, _ built: (at: ContinuousClock.Instant, generation: UInt64, state: ConsoleState)?) {
        if let built { slots[view, default: Slot()].last = built }
        slots[view]?.building = nil
    }
}
