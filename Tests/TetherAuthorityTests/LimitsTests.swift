import Foundation
import Hummingbird
import HummingbirdTesting
import Testing
import TetherAuthority
import TetherCore

/// What slow, silent and numerous clients can hold of the authority: each test is the attack.
@Suite("Connection limits: idle, slow and silent clients, the connection cap", .serialized, .timeLimit(.minutes(2)))
struct LimitsTests {
    @Test("a connection that sends nothing, or a request head that never ends, is closed after the idle timeout")
    func idleAndSlowHeadsAreClosed() async throws {
        let t = try await TestAuthority.make()
        try await t.application(limits: { $0.idleTimeout = .seconds(1) }).test(.live) { c in
            let port = try #require(c.port)
            let silent = try RawSocket(port: port)
            let slow = try RawSocket(port: port)
            slow.send("GET /healthz HTTP/1.1\r\nHost: a\r\n")  // and never the blank line
            for (name, s) in [("silent", silent), ("slow head", slow)] {
                let r = s.readUntilClosed(timeout: .seconds(10))
                #expect(r.closed, "\(name): closed by the server")
                #expect(r.after < .seconds(8), "\(name): within a margin of the 1 s idle timeout (took \(r.after))")
            }
            // A kept-alive connection between requests is idle too; a fresh one still serves.
            let ok = try RawSocket(port: port)
            ok.send("GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
            let r = ok.readUntilClosed(timeout: .seconds(10))
            #expect(String(decoding: r.data, as: UTF8.self).hasPrefix("HTTP/1.1 200"))
            #expect(r.closed, "closed once idle after its answer")
        }
    }

    @Test("a body sent a byte at a time gets 408 when the body timeout passes, though each byte resets the idle timer")
    func slowBodiesTimeOut() async throws {
        let t = try await TestAuthority.make()
        try await t.application(limits: {
            $0.idleTimeout = .seconds(2)
            $0.bodyTimeout = .seconds(1)
        }).test(.live) { c in
            let port = try #require(c.port)
            let s = try RawSocket(port: port)
            s.send(
                "POST /api/v1/devices/validate HTTP/1.1\r\nHost: a\r\nx-org-key: \(t.agentKey)\r\ncontent-type: application/json\r\ncontent-length: 64\r\n\r\n{"
            )
            var answer = Data()
            for _ in 0..<8 where answer.isEmpty {
                answer = s.read(for: .milliseconds(500))
                s.send(" ")
            }
            let text = String(decoding: answer, as: UTF8.self)
            #expect(text.hasPrefix("HTTP/1.1 408"), "\(text.prefix(200))")
            #expect(text.contains("REQUEST_TIMEOUT"))
        }
    }

    @Test("on a kept-alive connection each request's body deadline counts from its own head, not from the connection's first")
    func bodyDeadlinePerRequest() async throws {
        let t = try await TestAuthority.make()
        try await t.application(limits: {
            $0.idleTimeout = .seconds(5)
            $0.bodyTimeout = .seconds(1)
        }).test(.live) { c in
            let port = try #require(c.port)
            let s = try RawSocket(port: port)
            // A quick request at 0 s: the connection's deadline timer is armed for 1 s.
            s.send("GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
            #expect(String(decoding: s.readFirst(timeout: .seconds(5)), as: UTF8.self).hasPrefix("HTTP/1.1 200"))
            try await Task.sleep(for: .milliseconds(600))
            // A head at ~0.6 s whose body ends at ~1.2 s: past the first timer, within its own second.
            let body = #"{"deviceId": "a1"}"#
            s.send(
                "POST /api/v1/devices/validate HTTP/1.1\r\nHost: a\r\nx-org-key: \(t.agentKey)\r\ncontent-type: application/json\r\ncontent-length: \(body.utf8.count)\r\n\r\n{"
            )
            try await Task.sleep(for: .milliseconds(600))
            s.send(String(body.dropFirst()))
            let second = String(decoding: s.readFirst(timeout: .seconds(5)), as: UTF8.self)
            #expect(!second.hasPrefix("HTTP/1.1 408"), "a request within its own deadline: \(second.prefix(120))")
            #expect(second.hasPrefix("HTTP/1.1 "), "answered: \(second.prefix(120))")
            // And a body that never ends still gets its 408, about a second after its head.
            let start = ContinuousClock.now
            s.send(
                "POST /api/v1/devices/validate HTTP/1.1\r\nHost: a\r\nx-org-key: \(t.agentKey)\r\ncontent-type: application/json\r\ncontent-length: 64\r\n\r\n{"
            )
            let third = String(decoding: s.readFirst(timeout: .seconds(6)), as: UTF8.self)
            #expect(third.hasPrefix("HTTP/1.1 408"), "\(third.prefix(120))")
            #expect(ContinuousClock.now - start < .seconds(4), "near the 1 s deadline (took \(ContinuousClock.now - start))")
        }
    }

    @Test("a watch stream outlives the idle timeout: it is an answer in progress, renewed every lease/3")
    func watchStreamsAreNeverIdle() async throws {
        let t = try await TestAuthority.make(lease: .seconds(3))
        try await t.application(limits: { $0.idleTimeout = .milliseconds(500) }).test(.live) { c in
            let port = try #require(c.port)
            _ = try await c.post("/api/v1/devices/register", key: t.agentKey, ["deviceId": "a1"])
            let r = WatchReader(port: port, key: t.agentKey, surfaces: ["a1"], instance: "h")
            try await Task.sleep(for: .seconds(3))
            #expect(!r.isEnded, "the stream is open after 6 idle timeouts")
            #expect(r.decisions().count >= 3, "renewals kept arriving: \(r.decisions().count)")
        }
    }

    @Test("past the connection cap the server stops accepting; a closed connection lets the next one in")
    func connectionCap() async throws {
        let t = try await TestAuthority.make()
        // Served directly: HummingbirdTesting's .live drops the connection cap.
        let server = try await DirectServer(t) {
            $0.limits.maxConnections = 16
            $0.limits.idleTimeout = .seconds(60)
        }
        defer { server.stop() }
        try await Task.sleep(for: .milliseconds(100))  // the readiness probe's connection closes
        var held = try (0..<16).map { _ in try RawSocket(port: server.port) }
        try await Task.sleep(for: .milliseconds(200))
        // The kernel completes the handshake (the backlog); the server does not take it.
        let waiting = try RawSocket(port: server.port)
        waiting.send("GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
        #expect(waiting.readFirst(timeout: .seconds(1)).isEmpty, "no answer while 16 connections are open")
        held.removeFirst()
        let answer = String(decoding: waiting.readFirst(timeout: .seconds(5)), as: UTF8.self)
        #expect(answer.hasPrefix("HTTP/1.1 200"), "served once one closed: \(answer.prefix(80))")
        _ = held
    }

    @Test("a TLS handshake that never completes is closed at the handshake deadline, well before the idle timeout")
    func stalledHandshakesAreClosed() async throws {
        let t = try await TestAuthority.make()
        try makeCertificate(in: t.directory.path)
        let server = try await DirectServer(t) {
            $0.tlsCertificate = t.directory.path + "/tls.crt"
            $0.tlsKey = t.directory.path + "/tls.key"
            $0.limits.handshakeTimeout = .seconds(1)
            $0.limits.idleTimeout = .seconds(60)
        }
        defer { server.stop() }
        let s = try RawSocket(port: server.port)
        s.send("\u{16}\u{03}\u{01}")  // the start of a ClientHello, and nothing more
        let r = s.readUntilClosed(timeout: .seconds(20))
        #expect(r.closed, "closed by the server")
        #expect(r.after < .seconds(10), "at the 1 s handshake deadline, not the 60 s idle timeout (took \(r.after))")
    }
}
