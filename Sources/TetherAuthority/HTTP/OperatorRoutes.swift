import Foundation
import HTTPTypes
import Hummingbird
import TetherCore

/// What on-call does: list, revoke, restore, remove, halt and resume the org, read the audit
/// log and usage. Operator keys only (`OperatorOnlyMiddleware`: 403 for an agent key).
struct OperatorRoutes {
    let authority: Authority
    let bodies: BodyReader

    func add(to group: RouterGroup<AuthorityContext>) {
        group.get("devices/list", use: list)
        group.post("devices/revoke") { req, ctx in try await changeSurface(req, ctx, revoke: true) }
        group.post("devices/unrevoke") { req, ctx in try await changeSurface(req, ctx, revoke: false) }
        group.post("devices/remove", use: remove)
        group.post("org/halt") { req, ctx in try await changeOrg(req, ctx, halt: true) }
        group.post("org/resume") { req, ctx in try await changeOrg(req, ctx, halt: false) }
        group.get("audit", use: audit)
        group.get("usage", use: usage)
        group.get("instances", use: instances)
        group.post("instances/release", use: releaseInstance)
        group.post("console/link", use: consoleLink)
    }

    /// A one-time console sign-in link for the calling operator key (`tether console`).
    @Sendable func consoleLink(_ req: Request, _ ctx: AuthorityContext) async throws -> Response {
        let key = try ctx.requireKey()
        guard authority.configuration.settings.console.enabled else {
            throw APIError(.notFound, "CONSOLE_DISABLED", "the console is disabled on this authority ([console] enabled = false)")
        }
        let (token, expires) = try await authority.console.makeLink(keyName: key.name)
        ctx.logger.notice("console sign-in link made", metadata: ["key": "\(key.name)", "client": "\(ctx.client)"])
        let path = "/console/sign-in?link=\(token)"
        return JSONBody.response(
            ConsoleLinkAnswer(
                path: path, url: authority.configuration.settings.console.publicURL.map { $0 + path },
                expiresAt: Timestamp.string(expires), requestID: ctx.requestID))
    }

    /// One page of surfaces in name order: `?limit=` (1 to 10000, default 1000) after `?after=`
    /// (a name; `next` of the page before). Each page costs the same whatever the fleet's size:
    /// its watchers, its last reports and its holders in one look each.
    @Sendable func list(_ req: Request, _ ctx: AuthorityContext) async throws -> Response {
        let query = req.uri.queryParameters
        let total = await authority.state.count
        var surfaces: [SurfaceRecord]
        var more = false
        if let only = query.get("deviceId") {
            guard let s = await authority.state.snapshot(String(only)).0 else { throw APIError.notFound(String(only.prefix(140))) }
            surfaces = [s]
        } else {
            var limit = 1000
            if let text = query.get("limit") {
                guard let n = Int(text), (1...10_000).contains(n) else { throw APIError.badRequest("?limit= takes 1 to 10000") }
                limit = n
            }
            (surfaces, more) = await authority.state.page(after: query.get("after").map { String($0) }, limit: limit)
        }
        let names = surfaces.map(\.deviceId)
        var watching: [String: Set<String>] = [:]
        for w in await authority.fleetWatchers(of: names) { watching[w.surface, default: []].insert(w.instance) }
        var last: [String: Report] = [:]
        for r in try await authority.latestReports(of: names) where (last[r.deviceId]?.receivedAt ?? "") <= r.receivedAt {
            last[r.deviceId] = r
        }
        let holders = Dictionary(try await authority.instances().map { ($0.instance, $0.keyName) }) { a, _ in a }
        let devices = surfaces.map { s in
            let watchers = (watching[s.deviceId] ?? []).sorted()
            let report = last[s.deviceId]
            var named: [String: String] = [:]
            for i in watchers + (report.map { [$0.instance] } ?? []) { named[i] = holders[i] }
            return SurfaceView(
                surface: s.deviceId, state: s.revoked ? "revoked" : "active", revoked: s.revoked,
                createdAt: s.createdAt, updatedAt: s.updatedAt, reason: s.reason, changedBy: s.changedBy,
                watchers: watchers, lastReport: report.map { ReportView($0) }, holders: named)
        }
        return JSONBody.response(
            SurfaceList(
                devices: devices, total: total, next: more ? names.last : nil, org: OrgView(await authority.state.org),
                requestID: ctx.requestID))
    }

    func changeSurface(_ req: Request, _ ctx: AuthorityContext, revoke: Bool) async throws -> Response {
        let key = try ctx.requireKey()
        let body = try await bodies.read(SurfaceChangeRequest.self, from: req)
        guard
            let made = try await authority.changeSurface(
                body.surface, revoke: revoke, change: change(key, body.reason, ctx), wait: try waitDuration(req))
        else {
            throw APIError.notFound(body.surface)
        }
        let record = made.value
        let acks = made.acks.map(AckLists.init)
        return JSONBody.response(
            SurfaceChanged(
                surface: body.surface, state: record.revoked ? "revoked" : "active", revoked: record.revoked,
                changedAt: record.updatedAt, reason: body.reason, watchers: made.watchers, requestID: ctx.requestID,
                acks: acks?.acks, missing: acks?.missing))
    }

    @Sendable func remove(_ req: Request, _ ctx: AuthorityContext) async throws -> Response {
        let key = try ctx.requireKey()
        let body = try await bodies.read(SurfaceChangeRequest.self, from: req)
        guard try await authority.remove(body.surface, change: change(key, body.reason, ctx)) else {
            throw APIError.notFound(body.surface)
        }
        return JSONBody.response(RemoveAnswer(deviceId: body.surface, requestID: ctx.requestID))
    }

    func changeOrg(_ req: Request, _ ctx: AuthorityContext, halt: Bool) async throws -> Response {
        let key = try ctx.requireKey()
        let body = try await bodies.read(OrgChangeRequest.self, from: req)
        if halt && (body.reason ?? "").trimmingCharacters(in: .whitespaces).isEmpty {
            throw APIError.badRequest("a halt needs a reason: {\"reason\": \"INC-481: agents deleting data\"}")
        }
        let made = try await authority.changeOrg(halt: halt, change: change(key, body.reason, ctx), wait: try waitDuration(req))
        let acks = made.acks.map(AckLists.init)
        return JSONBody.response(
            OrgChanged(
                org: OrgView(made.value), watchers: made.watchers, requestID: ctx.requestID,
                acks: acks?.acks, missing: acks?.missing))
    }

    @Sendable func audit(_ req: Request, _ ctx: AuthorityContext) async throws -> Response {
        let query = req.uri.queryParameters
        var limit = 100
        if let text = query.get("limit") {
            guard let n = Int(text), (1...10_000).contains(n) else { throw APIError.badRequest("?limit= takes 1 to 10000") }
            limit = n
        }
        let deviceId = query.get("deviceId").map { String($0) }
        // RFC 3339 times, normalised to the stored form so they compare as text.
        func bound(_ name: String) throws -> String? {
            guard let text = query.get(name) else { return nil }
            guard let date = Timestamp.parse(String(text)) else {
                throw APIError.badRequest("?\(name)= takes an RFC 3339 time, e.g. 2026-11-26T03:00:00Z")
            }
            return Timestamp.string(date)
        }
        let actor = query.get("actor").map { String($0) }
        var before: Int64?
        if let text = query.get("before") {
            guard let n = Int64(text), n > 0 else { throw APIError.badRequest("?before= takes an entry's id (the `next` of a page)") }
            before = n
        }
        // One more than asked: whether another page follows.
        var entries = try await authority.audit(
            limit: limit + 1, deviceId: deviceId, actor: actor, since: try bound("since"), until: try bound("until"), before: before)
        let more = entries.count > limit
        if more { entries.removeLast() }
        return JSONBody.response(
            AuditPage(entries: entries.map(AuditPage.Entry.init), next: more ? entries.last?.id : nil, requestID: ctx.requestID))
    }

    @Sendable func usage(_ req: Request, _ ctx: AuthorityContext) async throws -> Response {
        let u = try await authority.usage()
        return JSONBody.response(
            UsageAnswer(
                devices: u.surfaces, active: u.surfaces - u.revoked, revoked: u.revoked, keys: u.keys,
                auditEntries: u.auditEntries, reports: u.reports, watchConnections: await authority.hub.connectionCount,
                validations: authority.state.validations, halted: await authority.state.org.halted, requestID: ctx.requestID))
    }

    /// Every instance's holder.
    @Sendable func instances(_ req: Request, _ ctx: AuthorityContext) async throws -> Response {
        let connected = Set(await authority.fleetWatchers(of: nil).map(\.instance))
        let all = try await authority.instances().map {
            InstanceList.Instance(
                instance: $0.instance, key: $0.keyName, claimedAt: $0.claimedAt, lastSeen: $0.lastSeen,
                connected: connected.contains($0.instance))
        }
        return JSONBody.response(InstanceList(instances: all, requestID: ctx.requestID))
    }

    /// Ends an instance's claim: its host was rebuilt with a new key. 404 when no key holds it.
    @Sendable func releaseInstance(_ req: Request, _ ctx: AuthorityContext) async throws -> Response {
        let key = try ctx.requireKey()
        let body = try await bodies.read(InstanceReleaseRequest.self, from: req)
        guard let held = try await authority.release(body.instance, change: change(key, body.reason, ctx)) else {
            throw APIError(.notFound, "INSTANCE_NOT_FOUND", "no key holds the instance \(body.instance)")
        }
        ctx.logger.notice("instance released", metadata: ["instance": "\(body.instance)", "held_by": "\(held.keyName)"])
        return JSONBody.response(
            InstanceReleased(instance: body.instance, key: held.keyName, claimedAt: held.claimedAt, requestID: ctx.requestID))
    }

    /// `?wait=5s`: how long a change waits for the acknowledgements of its watchers.
    func waitDuration(_ req: Request) throws -> Duration? {
        guard let w = req.uri.queryParameters.get("wait") else { return nil }
        guard let d = DurationText.parse(String(w)) else { throw APIError.badRequest("?wait= takes a duration like 5s or 500ms") }
        guard d <= authority.configuration.maxAckWait else {
            throw APIError.badRequest("?wait= is at most \(DurationText.format(authority.configuration.maxAckWait))")
        }
        return d
    }
}
