import Foundation
import HTTPTypes
import Hummingbird
import TetherCore

/// What supervisors do: register a surface, ask for a decision, hold a watch stream, report.
/// Any key may call these; an agent key scoped to surfaces or bound to an instance only within
/// that scope (403 outside it).
struct AgentRoutes {
    let authority: Authority
    let bodies: BodyReader

    func add(to group: RouterGroup<AuthorityContext>) {
        group.post("devices/register", use: register)
        group.post("devices/validate", use: validate)
        group.get("devices/watch", use: watch)
        group.post("devices/report", use: report)
    }

    @Sendable func register(_ req: Request, _ ctx: AuthorityContext) async throws -> Response {
        let body = try await bodies.read(RegisterRequest.self, from: req)
        let key = try ctx.requireScope([body.surface])
        try await limitWrites(key)
        let (outcome, record) = try await authority.register(body.surface, change: change(key, nil, ctx))
        return JSONBody.response(
            RegisterAnswer(
                status: outcome.rawValue, deviceId: body.surface, created: outcome == .created,
                revoked: record.revoked, createdAt: record.createdAt, requestID: ctx.requestID))
    }

    @Sendable func validate(_ req: Request, _ ctx: AuthorityContext) async throws -> Response {
        let body = try await bodies.read(ValidateRequest.self, from: req)
        _ = try ctx.requireScope([body.surface])
        authority.state.countValidation()
        try authority.requireReady()
        let d = await authority.current(body.surface, kind: .answer, requestID: ctx.requestID, nonce: body.nonce)
        var headers = HTTPFields()
        if let sig = d.signature { headers[.tetherSignature] = sig }
        headers[.contentType] = "application/json"
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: DecisionJSON.answer(d))))
    }

    @Sendable func watch(_ req: Request, _ ctx: AuthorityContext) async throws -> Response {
        let key = try ctx.requireKey()
        let query = req.uri.queryParameters
        let ids = query.getAll("deviceId").map { String($0) }
        guard !ids.isEmpty else { throw APIError.badRequest("name at least one surface: ?deviceId=NAME (repeatable)") }
        let limits = authority.configuration
        guard ids.count <= limits.maxSurfacesPerStream else {
            throw APIError.badRequest("at most \(limits.maxSurfacesPerStream) surfaces per stream; got \(ids.count)")
        }
        for id in ids where !SurfaceName.isValid(id) {
            throw APIError.badRequest("invalid deviceId \"\(id.prefix(140))\": \(SurfaceName.rule)")
        }
        let instance = query.get("instance").map { String($0) } ?? key.instance ?? Authority.anonymousPrefix + ctx.requestID.prefix(8)
        guard SurfaceName.isValid(instance) else { throw APIError.badRequest("invalid instance: \(SurfaceName.rule)") }
        let scoped = try ctx.requireScope(ids, instance: instance)
        // Events are signed once for every stream: a nonce (older clients send one) is not echoed.
        if let nonce = query.get("nonce"), !Decision.isValidNonce(String(nonce)) { throw APIError.badRequest("invalid nonce") }
        var after: UInt64?
        if let last = req.headers[.lastEventID] {
            guard let n = UInt64(last), String(n) == last else {
                throw APIError.badRequest("Last-Event-ID must be a revision (a decimal number); got \"\(last.prefix(40))\"")
            }
            after = n
        }
        try authority.requireReady()
        let surfaces = Array(Set(ids)).sorted()
        // A stream names surfaces that exist, and a few the key may yet register (a supervisor
        // waits for an operator to create them): not thousands of made-up names.
        let unknown = await authority.state.unknown(surfaces)
        if unknown.count > limits.maxUnknownPerStream {
            var e = APIError(
                .notFound, "DEVICE_NOT_FOUND",
                "\(unknown.count) of the surfaces named do not exist (at most \(limits.maxUnknownPerStream) may): \(unknown.prefix(5).joined(separator: ", "))\(unknown.count > 5 ? ", …" : ""); register them first"
            )
            e.refused = Array(unknown.prefix(1000))
            throw e
        }
        // Last: a request refused for anything else leaves no claim behind.
        try await authority.claim(instance, by: scoped, requestID: ctx.requestID)
        return try await WatchStream.response(authority: authority, surfaces: surfaces, instance: instance, after: after, context: ctx)
    }

    @Sendable func report(_ req: Request, _ ctx: AuthorityContext) async throws -> Response {
        let body = try await bodies.read(ReportRequest.self, from: req)
        let key = try ctx.requireScope([body.deviceId], instance: body.instance)
        // An acknowledgement a change still waits for is never refused for the key's rate.
        if await !authority.acks.owes(
            body.requestID, instance: body.instance, deviceId: body.deviceId, keyName: key.name, state: body.state)
        {
            try await limitWrites(key)
        }
        try await authority.claim(body.instance, by: key, requestID: ctx.requestID)
        let now = Timestamp.string(Date())
        let report = Report(
            deviceId: body.deviceId, instance: body.instance, state: body.state, pids: body.processIDs,
            at: body.at ?? now, requestID: body.requestID, receivedAt: now, detail: body.detail, keyName: key.name)
        try await authority.record(report)
        return JSONBody.response(OKAnswer(requestID: ctx.requestID))
    }

    /// Register and report: `writeRate` a second per key, past a burst. 429 with Retry-After.
    func limitWrites(_ key: KeyRecord) async throws {
        guard let wait = await authority.writes.take(key.name) else { return }
        var e = APIError(
            .tooManyRequests, "RATE_LIMITED",
            "the key \"\(key.name)\" sends registrations and reports faster than \(Int(authority.configuration.writeRate)) a second; retry after \(DurationText.format(wait))"
        )
        e.retryAfter = max(1, Int(wait.components.seconds) + (wait.components.attoseconds > 0 ? 1 : 0))
        throw e
    }
}
