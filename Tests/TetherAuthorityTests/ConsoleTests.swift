import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import TetherAuthority
import TetherCore
import Testing

/// The console's sign-in, sessions and change checks over real HTTP (the browser flows are in
/// Tests/console, under Chromium). Each attack a hostile page, a stolen agent key or a stale
/// session would try is refused, and nothing changes.
@Suite(.timeLimit(.minutes(2)))
struct ConsoleTests {
    /// A browser's cookie jar, as far as these tests need one.
    struct Jar {
        var cookies: [String: String] = [:]
        mutating func take(_ r: TestResponse) {
            for field in r.headers where field.name == .setCookie {
                let pair = field.value.split(separator: ";")[0].split(separator: "=", maxSplits: 1).map(String.init)
                if pair.count == 2 { cookies[pair[0]] = pair[1].isEmpty ? nil : pair[1] }
            }
        }
        var header: String { cookies.map { "\($0.key)=\($0.value)" }.joined(separator: "; ") }
    }

    static func headers(_ jar: Jar, form: Bool = false, csrf: String? = nil, origin: String? = nil) -> HTTPFields {
        var h = HTTPFields()
        if !jar.cookies.isEmpty { h[.cookie] = jar.header }
        h[.contentType] = form ? "application/x-www-form-urlencoded" : "application/json"
        if let csrf { h[HTTPField.Name("x-csrf-token")!] = csrf }
        if let origin { h[.origin] = origin }
        return h
    }

    static func formBody(_ fields: [String: String]) -> ByteBuffer {
        let allowed = CharacterSet.alphanumerics.union(CharacterSet(charactersIn: "-._~"))
        return ByteBuffer(
            string: fields.map { "\($0.key)=\($0.value.addingPercentEncoding(withAllowedCharacters: allowed)!)" }.joined(separator: "&"))
    }

    static func text(_ r: TestResponse) -> String { String(buffer: r.body) }

    /// Opens the sign-in form (its cookie and field), then posts `fields` with them.
    static func signIn(_ c: some TestClientProtocol, _ jar: inout Jar, _ fields: [String: String]) async throws -> TestResponse {
        let page = try await c.execute(uri: "/console/sign-in", method: .get, headers: headers(jar)) { $0 }
        jar.take(page)
        let pre = try #require(jar.cookies["tether_signin"])
        let r = try await c.execute(
            uri: "/console/sign-in", method: .post, headers: headers(jar, form: true), body: formBody(fields.merging(["pre": pre]) { $1 })
        ) { $0 }
        jar.take(r)
        return r
    }

    static func csrf(_ c: some TestClientProtocol, _ jar: Jar) async throws -> String {
        let page = try await c.execute(uri: "/console/surfaces", method: .get, headers: headers(jar)) { text($0) }
        let m = try #require(page.firstMatch(of: /name="csrf-token" content="([^"]+)"/))
        return String(m.1)
    }

    @Test func pagesNeedASessionAndCarryTheSecurityHeaders() async throws {
        let t = try await TestAuthority.make()
        try await t.application().test(.router) { c in
            for path in ["/console", "/console/surfaces", "/console/audit"] {
                try await c.execute(uri: path, method: .get) { r in
                    #expect(r.status == .seeOther)
                    #expect(r.headers[.location] == "/console/sign-in")
                    #expect(r.headers[.contentSecurityPolicy]?.contains("script-src 'self'") == true)
                    #expect(r.headers[.contentSecurityPolicy]?.contains("'unsafe-inline'") == false)
                }
            }
            for path in ["/console/state.json", "/console/events", "/console/audit.csv", "/console/audit.json"] {
                try await c.execute(uri: path, method: .get) { r in
                    #expect(r.status == .unauthorized, "\(path)")
                    #expect(r.headers[.contentSecurityPolicy] != nil)
                }
            }
            // The pages themselves hold no inline script or style.
            let page = try await c.execute(uri: "/console/sign-in", method: .get) { Self.text($0) }
            #expect(!page.contains("<script>") && !page.contains("style=") && !page.contains("onclick"))
        }
    }

    @Test func signInWithAnOperatorKeyNotAnAgentKey() async throws {
        let t = try await TestAuthority.make()
        try await t.application().test(.router) { c in
            var agent = Jar()
            let refused = try await Self.signIn(c, &agent, ["key": t.agentKey])
            #expect(refused.status == .forbidden)
            #expect(Self.text(refused).contains("agent key"))
            #expect(agent.cookies["tether_session"] == nil)

            var wrong = Jar()
            #expect(try await Self.signIn(c, &wrong, ["key": "tk_not_a_key"]).status == .unauthorized)

            var op = Jar()
            let ok = try await Self.signIn(c, &op, ["key": t.operatorKey])
            #expect(ok.status == .seeOther)
            #expect(ok.headers[.location] == "/console")
            let cookie = try #require(ok.headers[values: .setCookie].first { $0.hasPrefix("tether_session=") })
            #expect(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict") && cookie.contains("Path=/console"))
            #expect(!cookie.contains("Secure"))  // no TLS here; under TLS: below
            try await c.execute(uri: "/console/state.json", method: .get, headers: Self.headers(op)) { r in
                #expect(r.status == .ok)
                #expect(json(r)["signedInAs"] as? String == "operator")
            }
        }
    }

    @Test func cookiesAreSecureUnderTLS() async throws {
        let t = try await TestAuthority.make()
        let router = buildRouter(authority: t.authority, tls: true)
        try await Application(router: router).test(.router) { c in
            var jar = Jar()
            let ok = try await Self.signIn(c, &jar, ["key": t.operatorKey])
            #expect(ok.headers[values: .setCookie].first { $0.hasPrefix("tether_session=") }?.contains("Secure") == true)
        }
    }

    @Test func behindAProxyLinksUseThePublicAddressAndCookiesAreSecure() async throws {
        let t = try await TestAuthority.make {
            $0.settings.console.publicURL = "https://tether.example.com"
            $0.settings.console.secureCookies = true
        }
        try await t.application().test(.router) { c in
            let answer = try await c.post("/api/v1/console/link", key: t.operatorKey, [:]).1
            let url = try #require(answer["url"] as? String)
            #expect(url.hasPrefix("https://tether.example.com/console/sign-in?link="))
            #expect(url.hasSuffix(try #require(answer["path"] as? String)))
            var jar = Jar()
            let ok = try await Self.signIn(c, &jar, ["key": t.operatorKey])
            #expect(ok.headers[values: .setCookie].first { $0.hasPrefix("tether_session=") }?.contains("Secure") == true)
        }
    }

    @Test func aSignInFormPostedFromElsewhereIsRefused() async throws {
        let t = try await TestAuthority.make()
        try await t.application().test(.router) { c in
            // No form token (a page on another site posting to the console): refused.
            var h = HTTPFields()
            h[.contentType] = "application/x-www-form-urlencoded"
            try await c.execute(
                uri: "/console/sign-in", method: .post, headers: h, body: Self.formBody(["key": t.operatorKey, "pre": "x"])
            ) { r in
                #expect(r.status == .forbidden)
                #expect(r.headers[values: .setCookie].allSatisfy { !$0.hasPrefix("tether_session=") })
            }
            h[.origin] = "https://evil.example"
            try await c.execute(uri: "/console/sign-in", method: .post, headers: h, body: Self.formBody(["key": t.operatorKey])) { r in
                #expect(r.status == .forbidden)
            }
        }
    }

    @Test func aLinkSignsInOnce() async throws {
        let t = try await TestAuthority.make()
        try await t.application().test(.router) { c in
            // Only an operator key makes one.
            #expect(try await c.post("/api/v1/console/link", key: t.agentKey, [:]).0 == .forbidden)
            let (status, answer) = try await c.post("/api/v1/console/link", key: t.operatorKey, [:])
            #expect(status == .ok)
            let path = try #require(answer["path"] as? String)
            let token = String(try #require(path.split(separator: "=").last))
            // Opening the page does not use it (a chat client's preview cannot burn it).
            try await c.execute(uri: path, method: .get) { r in #expect(r.status == .ok) }
            var first = Jar()
            #expect(try await Self.signIn(c, &first, ["link": token]).status == .seeOther)
            #expect(first.cookies["tether_session"] != nil)
            var replay = Jar()
            let again = try await Self.signIn(c, &replay, ["link": token])
            #expect(again.status == .unauthorized)
            #expect(Self.text(again).contains("used already"))
            #expect(replay.cookies["tether_session"] == nil)
            var made = Jar()
            #expect(try await Self.signIn(c, &made, ["link": "not-a-token"]).status == .unauthorized)
        }
    }

    @Test(
        "replicas on one database: a link made through one signs in through another, and the session works on both; signed out on one, out on both",
        .timeLimit(.minutes(2)))
    func acrossReplicas() async throws {
        let url = try await TestPostgres.freshDatabase()
        let first = try await PostgresStore.open(url, logger: testLogger)
        let second = try await PostgresStore.open(url, logger: testLogger)
        defer {
            first.close()
            second.close()
        }
        let dir = StateDirectory(path: temporaryDirectory("tether-console-replicas"))
        let created = try await dir.initialize(actor: "test", store: first)
        var config = AuthorityConfiguration()
        config.keyRefresh = .milliseconds(50)
        let a = try await Authority(store: first, configuration: config, logger: testLogger)
        let b = try await Authority(store: second, configuration: config, logger: testLogger)
        try await Application(router: buildRouter(authority: a)).test(.router) { ca in
            try await Application(router: buildRouter(authority: b)).test(.router) { cb in
                let path = try #require(try await ca.post("/api/v1/console/link", key: created.operatorKey, [:]).1["path"] as? String)
                var jar = Jar()
                #expect(try await Self.signIn(cb, &jar, ["link": String(path.split(separator: "=").last!)]).status == .seeOther)
                for c in [ca, cb] as [any TestClientProtocol] {
                    #expect(try await c.execute(uri: "/console/state.json", method: .get, headers: Self.headers(jar)) { $0.status } == .ok)
                }
                // The same link on the first replica: used already.
                var again = Jar()
                #expect(
                    Self.text(try await Self.signIn(ca, &again, ["link": String(path.split(separator: "=").last!)])).contains(
                        "used already"))
                // Signed out through one: the cookie is worth nothing on the other.
                let token = try await Self.csrf(cb, jar)
                _ = try await cb.execute(
                    uri: "/console/sign-out", method: .post, headers: Self.headers(jar, form: true), body: Self.formBody(["csrf": token])
                ) { $0 }
                #expect(
                    try await ca.execute(uri: "/console/state.json", method: .get, headers: Self.headers(jar)) { $0.status }
                        == .unauthorized)
            }
        }
    }

    @Test func aLinkExpires() async throws {
        let t = try await TestAuthority.make { $0.settings.console.linkLifetime = .seconds(1) }
        try await t.application().test(.router) { c in
            let late = try #require(try await c.post("/api/v1/console/link", key: t.operatorKey, [:]).1["path"] as? String)
            try await Task.sleep(for: .milliseconds(1300))
            var expired = Jar()
            let r = try await Self.signIn(c, &expired, ["link": String(late.split(separator: "=").last!)])
            #expect(r.status == .unauthorized)
            #expect(Self.text(r).contains("expired"))
            #expect(expired.cookies["tether_session"] == nil)
        }
    }

    @Test func anIdleSessionEndsAndARevokedKeyEndsItsSessions() async throws {
        // 3 s idle: the first request after sign-in comes well within it, even under load.
        let t = try await TestAuthority.make { $0.settings.console.idleTimeout = .seconds(3) }
        try await t.application().test(.router) { c in
            var jar = Jar()
            _ = try await Self.signIn(c, &jar, ["key": t.operatorKey])
            #expect(try await c.execute(uri: "/console/state.json", method: .get, headers: Self.headers(jar)) { $0.status } == .ok)
            try await Task.sleep(for: .milliseconds(3300))
            try await c.execute(uri: "/console/state.json", method: .get, headers: Self.headers(jar)) { r in
                #expect(r.status == .unauthorized)
                #expect(json(r)["code"] as? String == "SESSION_EXPIRED")
            }
            try await c.execute(uri: "/console", method: .get, headers: Self.headers(jar)) { r in
                #expect(r.headers[.location] == "/console/sign-in")  // ended: no session any more
            }

            // A second operator key, signed in, then revoked through the store (the CLI's way).
            let key = APIKeys.generate()
            try await t.authority.store.addKey(
                KeyRecord(name: "oncall-b", role: .operator, hash: APIKeys.hash(key), createdAt: Timestamp.string(Date())),
                change: Change(actor: "test", reason: nil, requestID: "r", at: Timestamp.string(Date())))
            var b = Jar()
            #expect(try await Self.signIn(c, &b, ["key": key]).status == .seeOther)
            #expect(try await c.execute(uri: "/console/state.json", method: .get, headers: Self.headers(b)) { $0.status } == .ok)
            _ = try await t.authority.store.revokeKey(
                named: "oncall-b", change: Change(actor: "test", reason: nil, requestID: "r2", at: Timestamp.string(Date())))
            try await Task.sleep(for: .milliseconds(200))
            #expect(try await c.execute(uri: "/console/state.json", method: .get, headers: Self.headers(b)) { $0.status } == .unauthorized)
        }
    }

    @Test func aSessionEndsAtItsLifetimeHoweverBusy() async throws {
        let t = try await TestAuthority.make { $0.settings.console.sessionLifetime = .seconds(2) }
        try await t.application().test(.router) { c in
            var jar = Jar()
            _ = try await Self.signIn(c, &jar, ["key": t.operatorKey])
            var last = HTTPResponse.Status.ok
            let end = ContinuousClock.now + .seconds(10)
            // Used every 200 ms (never idle), it still ends.
            while last == .ok && ContinuousClock.now < end {
                last = try await c.execute(uri: "/console/state.json", method: .get, headers: Self.headers(jar)) { $0.status }
                try await Task.sleep(for: .milliseconds(200))
            }
            #expect(last == .unauthorized)
        }
    }

    @Test func changesNeedTheTokenAndTheOriginAndAreAuditedAsTheConsole() async throws {
        let t = try await TestAuthority.make()
        try await t.application().test(.router) { c in
            #expect(try await c.post("/api/v1/devices/register", key: t.agentKey, ["deviceId": "w1"]).0 == .ok)
            var jar = Jar()
            _ = try await Self.signIn(c, &jar, ["key": t.operatorKey])
            let token = try await Self.csrf(c, jar)
            let revoke = body(["deviceId": "w1", "reason": "INC-1"])
            try await c.execute(uri: "/console/api/revoke", method: .post, headers: Self.headers(jar), body: revoke) { r in
                #expect(r.status == .forbidden)
                #expect(json(r)["code"] as? String == "CSRF")
            }
            try await c.execute(
                uri: "/console/api/revoke", method: .post, headers: Self.headers(jar, csrf: String(token.reversed())), body: revoke
            ) { r in
                #expect(r.status == .forbidden)
            }
            try await c.execute(
                uri: "/console/api/revoke", method: .post, headers: Self.headers(jar, csrf: token, origin: "https://evil.example"),
                body: revoke
            ) { r in
                #expect(r.status == .forbidden)
                #expect(json(r)["code"] as? String == "CROSS_ORIGIN")
            }
            // Another session's token does not do either.
            var other = Jar()
            _ = try await Self.signIn(c, &other, ["key": t.operatorKey])
            try await c.execute(uri: "/console/api/revoke", method: .post, headers: Self.headers(other, csrf: token), body: revoke) { r in
                #expect(r.status == .forbidden)
            }
            #expect(try await t.authority.store.surfaces().first { $0.deviceId == "w1" }?.revoked == false)

            // A revoke needs a reason; a halt needs HALT typed.
            try await c.execute(
                uri: "/console/api/revoke", method: .post, headers: Self.headers(jar, csrf: token), body: body(["deviceId": "w1"])
            ) { r in
                #expect(r.status == .badRequest)
            }
            try await c.execute(
                uri: "/console/api/halt", method: .post, headers: Self.headers(jar, csrf: token),
                body: body(["reason": "x", "confirm": "halt"])
            ) { r in
                #expect(r.status == .badRequest)
            }
            #expect(try await t.authority.store.org().halted == false)

            try await c.execute(uri: "/console/api/revoke", method: .post, headers: Self.headers(jar, csrf: token), body: revoke) { r in
                #expect(r.status == .ok)
            }
            #expect(try await t.authority.store.surfaces().first { $0.deviceId == "w1" }?.revoked == true)
            let entry = try #require(try await t.authority.store.audit(limit: 1, deviceId: "w1", since: nil, until: nil).first)
            #expect(entry.action == "revoke")
            #expect(entry.actor.hasPrefix("operator via console ("))
            #expect(entry.reason == "INC-1")
            // The actor filter finds the key's console changes by its name.
            #expect(
                try await t.authority.store.audit(limit: 10, deviceId: nil, actor: "operator", since: nil, until: nil).contains {
                    $0.requestID == entry.requestID
                })
            #expect(try await t.authority.store.audit(limit: 10, deviceId: nil, actor: "oper", since: nil, until: nil).isEmpty)

            // Signed out: the cookie is worth nothing, the token neither.
            try await c.execute(
                uri: "/console/sign-out", method: .post, headers: Self.headers(jar, form: true), body: Self.formBody(["csrf": token])
            ) { r in
                #expect(r.status == .seeOther)
            }
            try await c.execute(uri: "/console/api/restore", method: .post, headers: Self.headers(jar, csrf: token), body: revoke) { r in
                #expect(r.status == .unauthorized)
            }
        }
    }

    @Test func theAuditExportDefusesFormulas() async throws {
        let rows = [
            AuditEntry(
                id: 1, at: "2026-11-26T03:00:00.000Z", actor: "ops", action: "revoke", deviceId: "w1",
                reason: "=HYPERLINK(\"http://x\",\"y\")", requestID: "r")
        ]
        let csv = ConsoleAuditExport.csv(rows)
        #expect(csv.contains("\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\""))
        #expect(csv.hasPrefix("id,at,actor,action,surface,reason,request_id\r\n"))
    }
}
