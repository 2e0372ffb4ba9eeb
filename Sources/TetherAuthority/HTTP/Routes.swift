import Foundation
import HTTPTypes
import Hummingbird
import TetherCore

/// The authority's HTTP API (MachineID-compatible; see docs/api.md).
public func buildRouter(authority: Authority) -> Router<AuthorityContext> {
    let router = Router(context: AuthorityContext.self)
    router.add(middleware: JSONErrorMiddleware())
    router.get("/healthz") { _, ctx in
        JSONOut.response(["status": "ok", "request_id": ctx.requestID])
    }
    router.get("/api/v1/public-key") { _, ctx in
        JSONOut.response(["status": "ok", "publicKey": authority.signer.publicBase64, "algorithm": "ed25519", "request_id": ctx.requestID])
    }

    let api = router.group("api/v1")
        .add(middleware: RefusalAuditMiddleware<AuthorityContext>(authority: authority))
        .add(middleware: KeyMiddleware<AuthorityContext>(authority: authority))
    let maxBody = authority.configuration.maxBodySize

    // MARK: agent routes

    api.post("devices/register") { req, ctx in
        let deviceId = try await JSONIn.parse(req, context: ctx, maxSize: maxBody, allowed: ["deviceId"]).deviceId()
        let key = try ctx.requireScope([deviceId])
        try await limitWrites(authority, key)
        let (outcome, record) = try await authority.register(deviceId, change: change(key, nil, ctx))
        return JSONOut.response([
            "status": outcome.rawValue, "deviceId": deviceId, "created": outcome == .created,
            "revoked": record.revoked, "createdAt": record.createdAt, "request_id": ctx.requestID,
        ])
    }

    api.post("devices/validate") { req, ctx in
        let body = try await JSONIn.parse(req, context: ctx, maxSize: maxBody, allowed: ["deviceId", "nonce"])
        let deviceId = try body.deviceId()
        _ = try ctx.requireScope([deviceId])
        let nonce = try body.string("nonce")
        if let nonce, !Decision.isValidNonce(nonce) {
            throw APIError.badRequest("invalid nonce: 1 to 128 characters of A-Z a-z 0-9 . _ : + / = -")
        }
        await authority.state.countValidation()
        let d = await authority.decision(for: deviceId, requestID: ctx.requestID, nonce: nonce, seq: nil)
        var headers = HTTPFields()
        if let sig = d.signature { headers[.tetherSignature] = sig }
        return JSONOut.response(decisionObject(d), headers: headers)
    }

    api.get("devices/watch") { req, ctx in
        _ = try ctx.requireKey()
        let ids = req.uri.queryParameters.getAll("deviceId").map { String($0) }
        guard !ids.isEmpty else { throw APIError.badRequest("name at least one surface: ?deviceId=NAME (repeatable)") }
        guard ids.count <= 10_000 else { throw APIError.badRequest("at most 10000 surfaces per stream") }
        for id in ids where !SurfaceName.isValid(id) {
            throw APIError.badRequest("invalid deviceId \"\(id.prefix(140))\": \(SurfaceName.rule)")
        }
        let key = try ctx.requireKey()
        let instance: String = req.uri.queryParameters.get("instance").map { String($0) } ?? key.instance ?? "anonymous-\(ctx.requestID.prefix(8))"
        guard SurfaceName.isValid(instance) else { throw APIError.badRequest("invalid instance: \(SurfaceName.rule)") }
        _ = try ctx.requireScope(ids, instance: instance)
        let nonce = req.uri.queryParameters.get("nonce")
        if let nonce, !Decision.isValidNonce(nonce) { throw APIError.badRequest("invalid nonce") }
        return try await WatchStream.response(authority: authority, surfaces: Array(Set(ids)).sorted(), instance: instance, nonce: nonce, context: ctx)
    }

    api.post("devices/report") { req, ctx in
        let body = try await JSONIn.parse(req, context: ctx, maxSize: maxBody, allowed: ["deviceId", "instance", "state", "pids", "at", "request_id"])
        let deviceId = try body.deviceId()
        let instance = try body.string("instance", required: true)!
        guard SurfaceName.isValid(instance) else { throw APIError.badRequest("invalid instance: \(SurfaceName.rule)") }
        let key = try ctx.requireScope([deviceId], instance: instance)
        try await limitWrites(authority, key)
        let state = try body.string("state", required: true)!
        guard Report.states.contains(state) else {
            throw APIError.badRequest("unknown state \"\(state.prefix(40))\"; expected \(Report.states.sorted().joined(separator: ", "))")
        }
        let at = try body.string("at") ?? Timestamp.string(Date())
        guard Timestamp.parse(at) != nil else { throw APIError.badRequest("\"at\" must be an RFC 3339 time") }
        let rid = try body.string("request_id", max: 128)
        let report = Report(deviceId: deviceId, instance: instance, state: state, pids: try body.pids("pids"),
                            at: at, requestID: rid, receivedAt: Timestamp.string(Date()), keyName: key.name)
        try await authority.store.addReport(report)
        await authority.hub.deliver(report)
        return JSONOut.response(["status": "ok", "request_id": ctx.requestID])
    }

    // MARK: operator routes

    api.get("devices/list") { req, ctx in
        _ = try ctx.requireOperator("listing surfaces")
        var surfaces = await authority.state.all()
        if let only = req.uri.queryParameters.get("deviceId") {
            surfaces = surfaces.filter { $0.deviceId == only }
            if surfaces.isEmpty { throw APIError.notFound(only) }
        }
        var devices: [[String: Any?]] = []
        for s in surfaces {
            let watchers = await authority.hub.watchers(of: [s.deviceId]).map(\.instance).sorted()
            let last = try await authority.store.reports(deviceId: s.deviceId, limit: 1).first
            devices.append([
                "deviceId": s.deviceId, "state": s.revoked ? "revoked" : "active", "revoked": s.revoked,
                "createdAt": s.createdAt, "updatedAt": s.updatedAt, "reason": s.reason, "changedBy": s.changedBy,
                "watchers": watchers, "lastReport": last.map(reportObject),
            ])
        }
        let org = await authority.state.org
        return JSONOut.response([
            "status": "ok", "devices": devices.map { $0.compactMapValues { $0 } }, "count": devices.count,
            "org": orgObject(org), "request_id": ctx.requestID,
        ])
    }

    for (path, revoke) in [("devices/revoke", true), ("devices/unrevoke", false)] {
        api.post(RouterPath(path)) { req, ctx in
            let key = try ctx.requireOperator(revoke ? "revoking a surface" : "restoring a surface")
            let body = try await JSONIn.parse(req, context: ctx, maxSize: maxBody, allowed: ["deviceId", "reason"])
            let deviceId = try body.deviceId()
            let reason = try body.string("reason", max: 1000)
            let wait = try waitDuration(req, authority)
            let watchers = await authority.hub.watchers(of: [deviceId])
            let ackKey = wait == nil ? nil : await authority.hub.expectAcks(
                requestID: ctx.requestID, expected: watchers, accepting: revoke ? Report.stoppedStates : Report.runningStates)
            guard let record = try await authority.setRevoked(deviceId, revoke, change: change(key, reason, ctx)) else {
                if let ackKey { await authority.hub.cancelAcks(ackKey) }
                throw APIError.notFound(deviceId)
            }
            var out: [String: Any?] = [
                "status": "ok", "deviceId": deviceId, "state": record.revoked ? "revoked" : "active",
                "revoked": record.revoked, "changedAt": record.updatedAt, "reason": reason,
                "watchers": watchers.count, "request_id": ctx.requestID,
            ]
            if let wait, let ackKey { out.merge(await acks(authority, ackKey, wait)) { $1 } }
            return JSONOut.response(out)
        }
    }

    api.post("devices/remove") { req, ctx in
        let key = try ctx.requireOperator("removing a surface")
        let body = try await JSONIn.parse(req, context: ctx, maxSize: maxBody, allowed: ["deviceId", "reason"])
        let deviceId = try body.deviceId()
        guard try await authority.remove(deviceId, change: change(key, try body.string("reason", max: 1000), ctx)) else {
            throw APIError.notFound(deviceId)
        }
        return JSONOut.response(["status": "ok", "deviceId": deviceId, "state": "removed", "request_id": ctx.requestID])
    }

    for (path, halt) in [("org/halt", true), ("org/resume", false)] {
        api.post(RouterPath(path)) { req, ctx in
            let key = try ctx.requireOperator(halt ? "halting the org" : "resuming the org")
            let body = try await JSONIn.parse(req, context: ctx, maxSize: maxBody, allowed: ["reason"])
            let reason = try body.string("reason", max: 1000)
            if halt && (reason ?? "").trimmingCharacters(in: .whitespaces).isEmpty {
                throw APIError.badRequest("a halt needs a reason: {\"reason\": \"INC-481: agents deleting data\"}")
            }
            let wait = try waitDuration(req, authority)
            let watchers = await authority.hub.watchers(of: nil)
            let ackKey = wait == nil ? nil : await authority.hub.expectAcks(
                requestID: ctx.requestID, expected: watchers, accepting: halt ? Report.stoppedStates : Report.runningStates)
            let org = try await authority.setHalted(halt, change: change(key, reason, ctx))
            var out: [String: Any?] = [
                "status": "ok", "halted": org.halted, "org": orgObject(org), "watchers": watchers.count,
                "request_id": ctx.requestID,
            ]
            if let wait, let ackKey { out.merge(await acks(authority, ackKey, wait)) { $1 } }
            return JSONOut.response(out)
        }
    }

    api.get("audit") { req, ctx in
        _ = try ctx.requireOperator("reading the audit log")
        let limit = min(max(Int(req.uri.queryParameters.get("limit") ?? "100") ?? 100, 1), 10_000)
        let deviceId = req.uri.queryParameters.get("deviceId").map { String($0) }
        // RFC 3339 times, normalised to the stored form so they compare as text.
        func bound(_ name: String) throws -> String? {
            guard let text = req.uri.queryParameters.get(name) else { return nil }
            guard let date = Timestamp.parse(String(text)) else { throw APIError.badRequest("?\(name)= takes an RFC 3339 time, e.g. 2026-11-26T03:00:00Z") }
            return Timestamp.string(date)
        }
        let entries = try await authority.store.audit(limit: limit, deviceId: deviceId, since: try bound("since"), until: try bound("until"))
        return JSONOut.response([
            "status": "ok", "request_id": ctx.requestID,
            "entries": entries.map { e -> [String: Any] in
                ["id": e.id, "at": e.at, "actor": e.actor, "action": e.action, "deviceId": e.deviceId ?? NSNull(),
                 "reason": e.reason ?? NSNull(), "request_id": e.requestID]
            },
        ])
    }

    api.get("usage") { _, ctx in
        _ = try ctx.requireOperator("reading usage")
        let u = try await authority.store.usage()
        return JSONOut.response([
            "status": "ok", "devices": u.surfaces, "active": u.surfaces - u.revoked, "revoked": u.revoked,
            "keys": u.keys, "auditEntries": u.auditEntries, "reports": u.reports,
            "watchConnections": await authority.hub.connectionCount,
            "validations": await authority.state.validations,
            "halted": await authority.state.org.halted, "request_id": ctx.requestID,
        ])
    }
    return router
}

// MARK: - helpers

/// Register and report: `writeRate` a second per key, past a burst. 429 with Retry-After.
func limitWrites(_ authority: Authority, _ key: KeyRecord) async throws {
    if let wait = await authority.writes.take(key.name) {
        var e = APIError(.tooManyRequests, "RATE_LIMITED", "the key \"\(key.name)\" sends registrations and reports faster than \(Int(authority.configuration.writeRate)) a second; retry after \(DurationText.format(wait))")
        e.retryAfter = max(1, Int(wait.components.seconds) + (wait.components.attoseconds > 0 ? 1 : 0))
        throw e
    }
}

func change(_ key: KeyRecord, _ reason: String?, _ ctx: AuthorityContext) -> Change {
    Change(actor: key.name, reason: reason, requestID: ctx.requestID, at: Timestamp.string(Date()))
}

func decisionObject(_ d: Decision) -> [String: Any?] {
    let legacy: String
    switch d.code {
    case .allow: legacy = "ok"
    case .deviceRevoked: legacy = "revoked"
    case .deviceNotFound: legacy = "not_found"
    case .orgHalted: legacy = "halted"
    default: legacy = "error"
    }
    return [
        "allowed": d.allowed, "code": d.code.rawValue, "request_id": d.requestID, "deviceId": d.deviceId,
        "issuedAt": d.issuedAt, "expiresAt": d.expiresAt, "nonce": d.nonce, "seq": d.seq,
        "changedBy": d.changedBy, "changedAt": d.changedAt, "changeReason": d.changeReason,
        "signature": d.signature,
        // MachineID's legacy fields
        "status": legacy, "reason": d.allowed ? nil : d.code.rawValue,
    ]
}

func reportObject(_ r: Report) -> [String: Any] {
    ["instance": r.instance, "state": r.state, "pids": r.pids.map(Int.init), "at": r.at,
     "request_id": r.requestID ?? NSNull(), "receivedAt": r.receivedAt]
}

func orgObject(_ o: OrgState) -> [String: Any] {
    ["halted": o.halted, "reason": o.reason ?? NSNull(), "changedBy": o.changedBy ?? NSNull(), "changedAt": o.changedAt ?? NSNull()]
}

func waitDuration(_ req: Request, _ authority: Authority) throws -> Duration? {
    guard let w = req.uri.queryParameters.get("wait") else { return nil }
    guard let d = DurationText.parse(String(w)) else { throw APIError.badRequest("?wait= takes a duration like 5s or 500ms") }
    guard d <= authority.configuration.maxAckWait else {
        throw APIError.badRequest("?wait= is at most \(DurationText.format(authority.configuration.maxAckWait))")
    }
    return d
}

func acks(_ authority: Authority, _ key: UUID, _ wait: Duration) async -> [String: Any?] {
    let result = await authority.hub.awaitAcks(key, timeout: wait)
    return [
        "acks": result.acked.map { r -> [String: Any] in var o = reportObject(r); o["deviceId"] = r.deviceId; return o },
        "missing": result.missing.map { ["instance": $0.instance, "deviceId": $0.deviceId] },
    ]
}
