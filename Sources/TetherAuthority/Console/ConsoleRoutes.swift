import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import ServiceLifecycle
import TetherCore

/// The on-call console at `/console`: plain HTML, one stylesheet, one script, all served from
/// this binary (docs/console.md).
///
/// Operators only. Sign-in takes an operator key, or a one-time link from `tether console`;
/// the session is a cookie (`HttpOnly`, `SameSite=Strict`, `Secure` under TLS, idle and
/// absolute expiry), every change carries the session's CSRF token and comes from this
/// origin, and the key is looked up again on every request (a revoked key's sessions end at
/// once). Changes are audited as "KEY via console (ADDRESS)".
struct ConsoleRoutes {
    let authority: Authority
    let bodies: BodyReader
    /// Cookies are `Secure` when the authority serves TLS.
    let secure: Bool

    static let sessionCookie = "tether_session"
    static let preCookie = "tether_signin"

    func add(to router: Router<AuthorityContext>) {
        let c = router.group("console").add(middleware: ConsoleHeaders())
        c.get("") { req, ctx in try await page(req, ctx, .overview) }
        c.get("surfaces") { req, ctx in try await page(req, ctx, .surfaces) }
        c.get("audit") { req, ctx in try await page(req, ctx, .audit) }
        c.get("sign-in", use: signInPage)
        c.post("sign-in", use: signIn)
        c.post("sign-out", use: signOut)
        c.get("assets/console.css") { _, _ in asset(ConsoleAssets.css, type: "text/css; charset=utf-8") }
        c.get("assets/console.js") { _, _ in asset(ConsoleAssets.js, type: "text/javascript; charset=utf-8") }
        c.get("assets/icon.svg") { _, _ in asset(ConsoleAssets.icon, type: "image/svg+xml") }
        c.get("state.json", use: stateJSON)
        c.get("events", use: events)
        c.get("audit.json") { req, ctx in try await audit(req, ctx, csv: false) }
        c.get("audit.csv") { req, ctx in try await audit(req, ctx, csv: true) }
        c.post("api/revoke") { req, ctx in try await changeSurface(req, ctx, revoke: true) }
        c.post("api/restore") { req, ctx in try await changeSurface(req, ctx, revoke: false) }
        c.post("api/halt") { req, ctx in try await changeOrg(req, ctx, halt: true) }
        c.post("api/resume") { req, ctx in try await changeOrg(req, ctx, halt: false) }
    }

    // MARK: - sessions

    struct SignedIn {
        var session: ConsoleSessions.Session
        var key: KeyRecord
        var token: String
    }

    enum Check { case ok(SignedIn), expired, none }

    /// The request's session, if it stands and its key is still a valid operator key.
    func session(_ req: Request) async -> Check {
        guard let token = req.cookies[Self.sessionCookie]?.value, !token.isEmpty, token.utf8.count <= 64 else { return .none }
        // A store that cannot be read signs nobody in (fail closed).
        switch (try? await authority.console.session(token)) ?? ConsoleSessions.SessionOutcome.none {
        case .none: return .none
        case .expired: return .expired
        case .valid(let s):
            guard let key = await currentKey(named: s.keyName), key.role == .operator else {
                try? await authority.console.closeAll(keyName: s.keyName)
                return .none
            }
            return .ok(SignedIn(session: s, key: key, token: token))
        }
    }

    func currentKey(named name: String) async -> KeyRecord? { await authority.liveKey(named: name) }

    /// A change: a session, a matching CSRF token, and a request from this origin.
    func requireChange(_ req: Request) async throws -> SignedIn {
        guard case .ok(let s) = await session(req) else {
            throw APIError(.unauthorized, "SIGNED_OUT", "not signed in to the console (or the session expired): sign in again")
        }
        try requireSameOrigin(req)
        guard let sent = req.headers[.csrfToken], Self.equal(sent, s.session.csrf) else {
            throw APIError(.forbidden, "CSRF", "the request lacks the page's CSRF token (X-CSRF-Token): reload the page")
        }
        return s
    }

    /// A browser sends `Origin` (and `Sec-Fetch-Site`) with every POST: one from another
    /// site is refused whatever cookies it carries.
    func requireSameOrigin(_ req: Request) throws {
        if let site = req.headers[.secFetchSite], site != "same-origin" && site != "none" {
            throw APIError(
                .forbidden, "CROSS_ORIGIN", "a console change must come from the console's own pages (Sec-Fetch-Site: \(site.prefix(20)))")
        }
        if let origin = req.headers[.origin], let host = req.head.authority {
            let bare = origin.split(separator: "/", omittingEmptySubsequences: true).last.map(String.init) ?? ""
            guard bare == host else {
                throw APIError(
                    .forbidden, "CROSS_ORIGIN",
                    "a console change must come from the console's own pages (Origin \(origin.prefix(80)) is not \(host.prefix(80)))")
            }
        }
    }

    static func equal(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8), y = Array(b.utf8)
        guard x.count == y.count else { return false }
        var diff: UInt8 = 0
        for i in 0..<x.count { diff |= x[i] ^ y[i] }
        return diff == 0
    }

    func cookie(_ name: String, _ value: String, maxAge: Int?) -> Cookie {
        Cookie(name: name, value: value, maxAge: maxAge, path: "/console", secure: secure, httpOnly: true, sameSite: .strict)
    }

    func redirect(_ to: String, cookies: [Cookie] = []) -> Response {
        var r = Response(status: .seeOther, headers: [.location: to])
        for c in cookies { r.setCookie(c) }
        return r
    }

    // MARK: - pages

    func page(_ req: Request, _ ctx: AuthorityContext, _ which: ConsolePages.Page) async throws -> Response {
        switch await session(req) {
        case .none: return redirect("/console/sign-in")
        case .expired: return redirect("/console/sign-in?expired=1")
        case .ok(let s): return html(ConsolePages.page(which, keyName: s.key.name, csrf: s.session.csrf))
        }
    }

    func html(_ text: String, status: HTTPResponse.Status = .ok, cookies: [Cookie] = []) -> Response {
        var r = Response(
            status: status, headers: [.contentType: "text/html; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(string: text)))
        for c in cookies { r.setCookie(c) }
        return r
    }

    func asset(_ text: String, type: String) -> Response {
        Response(status: .ok, headers: [.contentType: type], body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    /// The sign-in form, with a fresh token in a cookie and in the form (a sign-in posted from
    /// another site has neither).
    @Sendable func signInPage(_ req: Request, _ ctx: AuthorityContext) async throws -> Response {
        let q = req.uri.queryParameters
        let note: String? = q.get("expired") != nil ? "Your session ended. Sign in again." : nil
        return signInForm(link: q.get("link").map { String($0) }, note: note, error: nil, status: .ok)
    }

    func signInForm(link: String?, note: String?, error: String?, status: HTTPResponse.Status) -> Response {
        let pre = ConsoleSessions.token()
        return html(
            ConsolePages.signIn(pre: pre, link: link, note: note, error: error), status: status,
            cookies: [cookie(Self.preCookie, pre, maxAge: 3600)])
    }

    @Sendable func signIn(_ req: Request, _ ctx: AuthorityContext) async throws -> Response {
        try requireSameOrigin(req)
        let form = try await Form.read(req, maxSize: 4096)
        let link = form["link"].flatMap { $0.isEmpty ? nil : $0 }
        func refuse(_ status: HTTPResponse.Status, _ message: String, who: String) async -> Response {
            await authority.refusals.record(status: Int(status.code), who: who, path: "/console/sign-in")
            ctx.logger.notice("console sign-in refused", metadata: ["client": "\(ctx.client)", "why": "\(message)"])
            return signInForm(link: nil, note: nil, error: message, status: status)
        }
        guard let pre = req.cookies[Self.preCookie]?.value, let sent = form["pre"], Self.equal(pre, sent) else {
            return await refuse(.forbidden, "The sign-in form expired or did not come from this console. Try again.", who: "unknown key")
        }
        let key: KeyRecord
        if let link {
            switch try await authority.console.redeem(link) {
            case .unknown:
                return await refuse(
                    .unauthorized, "This sign-in link is not known to this authority. Run tether console again.", who: "unknown link")
            case .used:
                return await refuse(
                    .unauthorized, "This sign-in link was used already: a link works once. Run tether console again.", who: "used link")
            case .expired: return await refuse(.unauthorized, "This sign-in link expired. Run tether console again.", who: "expired link")
            case .valid(let name):
                guard let k = await currentKey(named: name), k.role == .operator else {
                    return await refuse(.unauthorized, "The key that made this link is revoked.", who: name)
                }
                key = k
            }
        } else {
            guard let presented = form["key"]?.trimmingCharacters(in: .whitespacesAndNewlines), !presented.isEmpty,
                presented.utf8.count <= 256,
                let k = try await authority.authenticate(presented)
            else { return await refuse(.unauthorized, "That key is not known to this authority.", who: "unknown key") }
            guard k.role == .operator else {
                return await refuse(
                    .forbidden, "The key \"\(k.name)\" is an agent key: only operator keys sign in to the console.", who: k.name)
            }
            key = k
        }
        let s = try await authority.console.open(keyName: key.name, client: ctx.client)
        ctx.logger.notice(
            "console sign-in", metadata: ["key": "\(key.name)", "client": "\(ctx.client)", "with": "\(link == nil ? "key" : "link")"])
        return redirect(
            "/console",
            cookies: [
                cookie(Self.sessionCookie, s.token, maxAge: Int(authority.console.settings.sessionLifetime.components.seconds)),
                cookie(Self.preCookie, "", maxAge: 0),
            ])
    }

    @Sendable func signOut(_ req: Request, _ ctx: AuthorityContext) async throws -> Response {
        try requireSameOrigin(req)
        let form = try await Form.read(req, maxSize: 4096)
        if case .ok(let s) = await session(req) {
            guard let sent = form["csrf"], Self.equal(sent, s.session.csrf) else {
                throw APIError(.forbidden, "CSRF", "the sign-out lacks the page's CSRF token: reload the page")
            }
            try await authority.console.close(s.token)
            ctx.logger.notice("console sign-out", metadata: ["key": "\(s.key.name)", "client": "\(ctx.client)"])
        }
        return redirect("/console/sign-in", cookies: [cookie(Self.sessionCookie, "", maxAge: 0)])
    }

    // MARK: - data

    func requireReader(_ req: Request) async throws -> SignedIn {
        switch await session(req) {
        case .ok(let s): return s
        case .expired: throw APIError(.unauthorized, "SESSION_EXPIRED", "the console session expired: sign in again")
        case .none: throw APIError(.unauthorized, "SIGNED_OUT", "not signed in to the console")
        }
    }

    @Sendable func stateJSON(_ req: Request, _ ctx: AuthorityContext) async throws -> Response {
        let s = try await requireReader(req)
        return JSONBody.response(try await ConsoleState.make(authority, view: try view(req), signedInAs: s.key.name))
    }

    /// The pages' live feed: the whole state at once, again whenever something changed
    /// (at most every 100 ms), and every 5 s regardless (what other replicas received). Ends
    /// with `event: signed-out` when the session does.
    /// The viewer's search and state filter (`ConsoleView`).
    func view(_ req: Request) throws -> ConsoleView {
        let q = req.uri.queryParameters
        var fields: [String: String] = [:]
        for name in ["q", "state"] { if let v = q.get(name) { fields[name] = String(v) } }
        return try ConsoleView(query: fields)
    }

    @Sendable func events(_ req: Request, _ ctx: AuthorityContext) async throws -> Response {
        let s = try await requireReader(req)
        let view = try view(req)
        let (id, wakes) = authority.feed.subscribe()
        let authority = self.authority
        let logger = ctx.logger
        return Response(
            status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"],
            body: .init { writer in
                do {
                    try await withGracefulShutdownHandler {
                        try await writer.write(ByteBuffer(string: "retry: 2000\n\n"))
                        // Every 5 s regardless: what other replicas received shows too.
                        let ticker = Task {
                            while !Task.isCancelled {
                                try await Task.sleep(for: .seconds(5))
                                authority.feed.poke(id)
                            }
                        }
                        defer { ticker.cancel() }
                        var next = wakes.makeAsyncIterator()
                        while true {
                            guard await authority.console.stands(s.token), await currentKey(named: s.key.name)?.role == .operator else {
                                try await writer.write(ByteBuffer(string: "event: signed-out\ndata: {}\n\n"))
                                break
                            }
                            let state = try await ConsoleState.make(authority, view: view, signedInAs: s.key.name)
                            try await writer.write(
                                ByteBuffer(string: "event: state\ndata: " + String(decoding: JSONBody.data(state), as: UTF8.self) + "\n\n"))
                            // The next wake-up (ends when the stream is finished), then a moment
                            // for what comes with it.
                            guard await next.next() != nil else { break }
                            try await Task.sleep(for: .milliseconds(100))
                        }
                    } onGracefulShutdown: {
                        authority.feed.unsubscribe(id)
                    }
                } catch {
                    logger.debug("console stream ended", metadata: ["error": "\(error)"])
                }
                authority.feed.unsubscribe(id)
                try? await writer.finish(nil)
            })
    }

    @Sendable func audit(_ req: Request, _ ctx: AuthorityContext, csv: Bool) async throws -> Response {
        _ = try await requireReader(req)
        let q = req.uri.queryParameters
        func text(_ name: String) -> String? { q.get(name).map { String($0) }.flatMap { $0.isEmpty ? nil : $0 } }
        var limit = 500
        if let l = text("limit") {
            guard let n = Int(l), (1...10_000).contains(n) else { throw APIError.badRequest("limit takes 1 to 10000") }
            limit = n
        }
        func bound(_ name: String) throws -> String? {
            guard let t = text(name) else { return nil }
            guard let d = Timestamp.parse(t) ?? Self.localInput(t) else {
                throw APIError.badRequest("\(name) takes a time like 2026-11-26T03:00:00Z")
            }
            return Timestamp.string(d)
        }
        let rows = try await authority.audit(
            limit: limit, deviceId: text("surface"), actor: text("actor"), since: try bound("since"), until: try bound("until"))
        if csv {
            return Response(
                status: .ok,
                headers: [.contentType: "text/csv; charset=utf-8", .contentDisposition: "attachment; filename=\"tether-audit.csv\""],
                body: .init(byteBuffer: ByteBuffer(string: ConsoleAuditExport.csv(rows))))
        }
        var headers = HTTPFields()
        if q.get("download") != nil { headers[.contentDisposition] = "attachment; filename=\"tether-audit.json\"" }
        return JSONBody.response(["entries": ConsoleAuditExport.entries(rows)], headers: headers)
    }

    /// `<input type="datetime-local">` sends "2026-11-26T03:00" (taken as UTC: the page says so).
    static func localInput(_ t: String) -> Date? {
        Timestamp.parse(t + ":00Z") ?? Timestamp.parse(t + "Z")
    }

    // MARK: - changes

    struct ChangeMade: Encodable {
        var requestId: String
        var watchers: Int
    }

    func made(_ s: SignedIn, _ reason: String?, _ ctx: AuthorityContext) throws -> Change {
        let r = reason?.trimmingCharacters(in: .whitespacesAndNewlines)
        return Change(
            actor: "\(s.key.name) via console (\(ctx.client))", reason: (r?.isEmpty ?? true) ? nil : r, requestID: ctx.requestID,
            at: Timestamp.string(Date()))
    }

    func changeSurface(_ req: Request, _ ctx: AuthorityContext, revoke: Bool) async throws -> Response {
        let s = try await requireChange(req)
        let body = try await bodies.read(SurfaceChangeRequest.self, from: req)
        let change = try made(s, body.reason, ctx)
        if revoke && change.reason == nil { throw APIError.badRequest("a revoke from the console needs a reason") }
        guard let made = try await authority.changeSurface(body.surface, revoke: revoke, change: change, wait: nil) else {
            throw APIError.notFound(body.surface)
        }
        return JSONBody.response(ChangeMade(requestId: ctx.requestID, watchers: made.watchers))
    }

    func changeOrg(_ req: Request, _ ctx: AuthorityContext, halt: Bool) async throws -> Response {
        let s = try await requireChange(req)
        let body = try await bodies.read(ConsoleOrgChangeRequest.self, from: req)
        let change = try made(s, body.reason, ctx)
        if halt {
            guard change.reason != nil else { throw APIError.badRequest("a halt needs a reason") }
            // Deliberate: the operator types HALT, not only clicks.
            guard body.confirm == "HALT" else { throw APIError.badRequest("to halt everything, type HALT in the confirmation field") }
        }
        let made = try await authority.changeOrg(halt: halt, change: change, wait: nil)
        return JSONBody.response(ChangeMade(requestId: ctx.requestID, watchers: made.watchers))
    }
}

/// Every console answer: a strict Content-Security-Policy (this origin's script and style
/// only, nothing inline, no frames), no caching, a referrer only to this origin (a sign-in
/// link never leaks to another site; `no-referrer` would make browsers send `Origin: null`,
/// which the origin check refuses), no sniffing. API errors are answered here as JSON with the same headers.
struct ConsoleHeaders: RouterMiddleware {
    static let policy =
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

    func handle(
        _ request: Request, context: AuthorityContext, next: (Request, AuthorityContext) async throws -> Response
    ) async throws -> Response {
        var r: Response
        do {
            r = try await next(request, context)
        } catch let e as APIError {
            r = JSONErrorMiddleware<AuthorityContext>.response(e, context: context)
        }
        r.headers[.contentSecurityPolicy] = Self.policy
        r.headers[.xContentTypeOptions] = "nosniff"
        r.headers[.referrerPolicy] = "same-origin"
        r.headers[.xFrameOptions] = "DENY"
        r.headers[.cacheControl] = "no-store"
        return r
    }
}

/// `application/x-www-form-urlencoded`.
enum Form {
    static func read(_ req: Request, maxSize: Int) async throws -> [String: String] {
        var r = req
        guard let buffer = try? await r.collectBody(upTo: maxSize) else {
            throw APIError(.contentTooLarge, "PAYLOAD_TOO_LARGE", "the form is larger than \(maxSize) bytes")
        }
        return parse(String(buffer: buffer))
    }

    static func parse(_ text: String) -> [String: String] {
        var out: [String: String] = [:]
        for pair in text.split(separator: "&") {
            let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            func decode(_ s: Substring) -> String { s.replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? "" }
            out[decode(kv[0])] = kv.count > 1 ? decode(kv[1]) : ""
        }
        return out
    }
}

extension HTTPField.Name {
    static let csrfToken = HTTPField.Name("x-csrf-token")!
    static let secFetchSite = HTTPField.Name("sec-fetch-site")!
    static let referrerPolicy = HTTPField.Name("referrer-policy")!
    static let xFrameOptions = HTTPField.Name("x-frame-options")!
}
