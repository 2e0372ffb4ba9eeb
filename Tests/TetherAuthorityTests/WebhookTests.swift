import Crypto
import Foundation
import Glibc
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Synchronization
import TetherAuthority
import TetherCore
import Testing

/// `[[notify.webhook]]` against a real receiver on loopback: the payloads, their signatures,
/// the Slack form, retries with backoff, and `acks_missing` for a supervisor that never
/// acknowledged. (A hung receiver against a real revoke: EnforcementTests/WebhookLatencyTests.)
@Suite(.serialized, .timeLimit(.minutes(2)))
struct WebhookTests {
    /// What the receiver got, and what it answers (a status per request, in order; then 200).
    final class Receiver: Sendable {
        struct Post: Sendable {
            var path: String
            var headers: HTTPFields
            var body: Data
            var at: ContinuousClock.Instant
        }
        let posts = Mutex<[Post]>([])
        let answers: Mutex<[HTTPResponse.Status]>

        init(answers: [HTTPResponse.Status] = []) { self.answers = Mutex(answers) }

        var application: some ApplicationProtocol {
            let router = Router()
            router.post("/{hook}") { [self] req, _ -> Response in
                var r = req
                let body = try await r.collectBody(upTo: 1 << 20)
                posts.withLock { $0.append(Post(path: req.uri.path, headers: req.headers, body: Data(buffer: body), at: .now)) }
                let status = answers.withLock { $0.isEmpty ? .ok : $0.removeFirst() }
                return Response(status: status)
            }
            return Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        }

        func waitFor(_ n: Int, timeout: Duration = .seconds(15)) async -> [Post] {
            let end = ContinuousClock.now + timeout
            while ContinuousClock.now < end {
                let p = posts.withLock { $0 }
                if p.count >= n { return p }
                try? await Task.sleep(for: .milliseconds(50))
            }
            return posts.withLock { $0 }
        }
    }

    static let secret = "webhook-test-secret-0123456789abcdef"

    static func hook(_ name: String, port: Int, format: WebhookSettings.Format = .json, events: Set<NotifyEvent>? = nil) -> WebhookSettings
    {
        var h = WebhookSettings(name: name, url: "http://127.0.0.1:\(port)/\(name)")
        h.format = format
        if format == .json { h.secret = secret }
        if let events { h.events = events }
        return h
    }

    static func verify(_ p: Receiver.Post) -> Bool {
        guard let ts = p.headers[HTTPField.Name("x-tether-webhook-timestamp")!],
            let sig = p.headers[HTTPField.Name("x-tether-webhook-signature")!]
        else { return false }
        var text = Data(ts.utf8)
        text.append(UInt8(ascii: "."))
        text.append(p.body)
        let mac = HMAC<SHA256>.authenticationCode(for: text, using: SymmetricKey(data: Data(secret.utf8)))
        return sig == "v1=" + mac.map { String(format: "%02x", $0) }.joined()
    }

    static func object(_ p: Receiver.Post) -> [String: Any] {
        (try? JSONSerialization.jsonObject(with: p.body) as? [String: Any]) ?? [:]
    }

    @Test func everyChangeIsToldSignedAndInSlacksForm() async throws {
        let receiver = Receiver()
        try await receiver.application.test(.live) { rc in
            let port = try #require(rc.port)
            let t = try await TestAuthority.make { c in
                c.settings.notify.webhooks = [
                    Self.hook("json", port: port), Self.hook("slack", port: port, format: .slack, events: [.revoke, .halt]),
                ]
            }
            try await t.application().test(.live) { c in
                #expect(try await c.post("/api/v1/devices/register", key: t.agentKey, ["deviceId": "w1"]).0 == .ok)
                #expect(
                    try await c.post("/api/v1/devices/revoke", key: t.operatorKey, ["deviceId": "w1", "reason": "INC-3: loops"]).0 == .ok)
                #expect(try await c.post("/api/v1/devices/unrevoke", key: t.operatorKey, ["deviceId": "w1"]).0 == .ok)
                #expect(try await c.post("/api/v1/org/halt", key: t.operatorKey, ["reason": "INC-4"]).0 == .ok)
                #expect(try await c.post("/api/v1/org/resume", key: t.operatorKey, [:]).0 == .ok)
                let posts = await receiver.waitFor(6)
                let json = posts.filter { $0.path == "/json" }
                #expect(json.map { Self.object($0)["event"] as? String } == ["revoke", "restore", "halt", "resume"])
                #expect(json.allSatisfy(Self.verify))
                let revoke = Self.object(try #require(json.first))
                #expect(revoke["subject"] as? String == "w1")
                #expect(revoke["actor"] as? String == "operator")
                #expect(revoke["reason"] as? String == "INC-3: loops")
                #expect(revoke["origin"] as? String == t.authority.origin)
                #expect((revoke["requestId"] as? String)?.isEmpty == false)
                #expect(json.first?.headers[HTTPField.Name("x-tether-event")!] == "revoke")
                // A body changed in transit, or replayed under another timestamp, does not verify.
                var forged = try #require(json.first)
                forged.body = Data(String(decoding: forged.body, as: UTF8.self).replacingOccurrences(of: "INC-3", with: "INC-9").utf8)
                #expect(!Self.verify(forged))
                var replayed = try #require(json.first)
                replayed.headers[HTTPField.Name("x-tether-webhook-timestamp")!] = "1"
                #expect(!Self.verify(replayed))
                // Slack: its events only, a text a human reads, no signature.
                let slack = posts.filter { $0.path == "/slack" }
                #expect(slack.count == 2)
                let firstSlack = try #require(slack.first)
                let text = try #require(Self.object(firstSlack)["text"] as? String)
                #expect(text.contains("w1") && text.contains("revoked") && text.contains("INC-3: loops"))
                #expect(slack.last.flatMap { Self.object($0)["text"] as? String }?.contains("ORG HALTED") == true)
                #expect(slack.first?.headers[HTTPField.Name("x-tether-webhook-signature")!] == nil)
            }
        }
    }

    @Test func failuresAreRetriedWithBackoffAndRefusalsAreNot() async throws {
        // Two 503s, then 200: three attempts of one delivery. Then a 400: one attempt.
        let receiver = Receiver(answers: [.serviceUnavailable, .serviceUnavailable, .ok, .badRequest])
        try await receiver.application.test(.live) { rc in
            let port = try #require(rc.port)
            let t = try await TestAuthority.make { c in
                var h = Self.hook("json", port: port, events: [.revoke])
                h.retries = 3
                c.settings.notify.webhooks = [h]
            }
            try await t.application().test(.live) { c in
                #expect(try await c.post("/api/v1/devices/register", key: t.agentKey, ["deviceId": "w1"]).0 == .ok)
                let sent = ContinuousClock.now
                #expect(try await c.post("/api/v1/devices/revoke", key: t.operatorKey, ["deviceId": "w1", "reason": "r"]).0 == .ok)
                // The revoke answered long before the retries end: they are not on its path
                // (on it, the answer would wait out 1 s + 2 s of backoff). 2.5 s, not 1: the
                // whole suite on 2 cores once took the revoke 1.46 s.
                #expect(ContinuousClock.now - sent < .milliseconds(2500))
                let posts = await receiver.waitFor(3)
                #expect(posts.count == 3)
                let ids = Set(posts.compactMap { $0.headers[HTTPField.Name("x-tether-delivery")!] })
                #expect(ids.count == 1)  // one delivery, retried: receivers drop duplicates by it
                if posts.count == 3 {
                    // 1 s, then 2 s (less a margin for scheduling).
                    #expect(posts[1].at - posts[0].at >= .milliseconds(900))
                    #expect(posts[2].at - posts[1].at >= .milliseconds(1900))
                }
                #expect(try await c.post("/api/v1/devices/unrevoke", key: t.operatorKey, ["deviceId": "w1"]).0 == .ok)
                #expect(try await c.post("/api/v1/devices/revoke", key: t.operatorKey, ["deviceId": "w1", "reason": "again"]).0 == .ok)
                let after = await receiver.waitFor(4)
                try await Task.sleep(for: .milliseconds(1500))
                #expect(receiver.posts.withLock { $0.count } == 4, "a 400 is final: \(after.count)")
            }
        }
    }

    @Test func aHungWebhookDoesNotHoldTheShutdown() async throws {
        // A port that takes connections into its backlog and never answers.
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, len) == 0 && listen(fd, 16) == 0 && getsockname(fd, $0, &len) == 0
            }
        }
        let port = Int(UInt16(bigEndian: addr.sin_port))
        let t = try await TestAuthority.make { c in
            var h = Self.hook("json", port: port)
            h.timeout = .seconds(30)
            h.retries = 5
            c.settings.notify.webhooks = [h]
        }
        let stopping = Mutex(ContinuousClock.now)
        try await t.application().test(.live) { c in
            #expect(try await c.post("/api/v1/devices/register", key: t.agentKey, ["deviceId": "w1"]).0 == .ok)
            #expect(try await c.post("/api/v1/devices/revoke", key: t.operatorKey, ["deviceId": "w1", "reason": "r"]).0 == .ok)
            try await Task.sleep(for: .milliseconds(300))
            stopping.withLock { $0 = .now }
        }
        // The application's graceful shutdown gave the hung delivery its grace (5 s), not its
        // 30 s timeout and five retries.
        let took = ContinuousClock.now - stopping.withLock { $0 }
        #expect(took < .seconds(12), "shutdown took \(took)")
    }

    @Test func missingAcknowledgementsAreToldAfterTheTimeout() async throws {
        let receiver = Receiver()
        try await receiver.application.test(.live) { rc in
            let port = try #require(rc.port)
            let t = try await TestAuthority.make { c in
                c.settings.notify.ackTimeout = .seconds(1)
                c.settings.notify.webhooks = [Self.hook("json", port: port, events: [.acksMissing])]
            }
            try await t.application().test(.live) { c in
                let authPort = try #require(c.port)
                #expect(try await c.post("/api/v1/devices/register", key: t.agentKey, ["deviceId": "w1"]).0 == .ok)
                // A supervisor that watches and never acknowledges.
                let silent = try RawSocket(port: authPort)
                silent.send(
                    "GET /api/v1/devices/watch?deviceId=w1&instance=host-silent HTTP/1.1\r\nHost: x\r\nx-org-key: \(t.agentKey)\r\n\r\n")
                _ = silent.readFirst(timeout: .seconds(5))
                #expect(try await c.post("/api/v1/devices/revoke", key: t.operatorKey, ["deviceId": "w1", "reason": "INC-5"]).0 == .ok)
                let posts = await receiver.waitFor(1, timeout: .seconds(10))
                let post = try #require(posts.first)
                let o = Self.object(post)
                #expect(o["event"] as? String == "acks_missing")
                let missing = o["missing"] as? [[String: Any]] ?? []
                #expect(
                    missing.count == 1 && missing.first?["instance"] as? String == "host-silent"
                        && missing.first?["deviceId"] as? String == "w1")
                #expect(Self.verify(post))
                // A change everyone acknowledged in time is not told (nobody watches w2).
                #expect(try await c.post("/api/v1/devices/register", key: t.agentKey, ["deviceId": "w2"]).0 == .ok)
                #expect(try await c.post("/api/v1/devices/revoke", key: t.operatorKey, ["deviceId": "w2", "reason": "x"]).0 == .ok)
                try await Task.sleep(for: .milliseconds(1800))
                #expect(receiver.posts.withLock { $0.count } == 1)
            }
        }
    }
}
