import Foundation
import Glibc
import Testing
import TetherTestKit

/// A webhook that accepts connections and never answers must not slow a revoke: revoke →
/// every process `T`, measured against an authority without webhooks, in the same run.
@Suite("webhooks are never on the path of a revoke", .serialized, .timeLimit(.minutes(5)))
struct WebhookLatencyTests {
    /// A TCP port that takes connections into its backlog and never reads them.
    final class HungReceiver: @unchecked Sendable {
        let fd: Int32
        let port: Int
        init() throws {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            self.fd = fd
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_addr.s_addr = inet_addr("127.0.0.1")
            var len = socklen_t(MemoryLayout<sockaddr_in>.size)
            let ok = withUnsafeMutablePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(fd, $0, len) == 0 && listen(fd, 128) == 0 && getsockname(fd, $0, &len) == 0
                }
            }
            guard ok else { throw POSIXError(.EADDRINUSE) }
            port = Int(UInt16(bigEndian: addr.sin_port))
        }
        /// Connections the authority made that wait in the backlog (it did try to deliver).
        func pending() -> Int {
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            var n = 0
            while case let c = accept(fd, nil, nil), c >= 0 {
                close(c)
                n += 1
            }
            return n
        }
        deinit { close(fd) }
    }

    /// Revoke (the CLI, as on-call runs it) → every worker process stopped, then restore.
    static func revokeToStopped(_ a: LiveAuthority, _ surface: String, _ marker: String) async throws -> Duration {
        let start = ContinuousClock.now
        let (rc, _, err) = try await offPool { try a.op(["revoke", surface, "--reason", "latency"]) }
        #expect(rc == 0, "\(err)")
        #expect(await eventually(10) { Workers.allStopped(marker, atLeast: 2) })
        let took = ContinuousClock.now - start
        _ = try await offPool { try a.op(["restore", surface]) }
        #expect(await eventually(10) { Workers.noneStopped(marker, atLeast: 2) })
        return took
    }

    @Test("revoke → stopped with a hung webhook, against none")
    func hungWebhookDelaysNothing() async throws {
        let hung = try HungReceiver()
        let secretDir = workerDirectory("webhook")
        try "hung-receiver-secret-0123456789\n".write(toFile: secretDir + "/secret", atomically: true, encoding: .utf8)
        chmod(secretDir + "/secret", 0o600)
        let plain = try await LiveAuthority(lease: "3s")
        let withHook = try await LiveAuthority(
            lease: "3s",
            settings: """
                [notify]
                ack_timeout = "1s"

                [[notify.webhook]]
                name = "hung"
                url = "http://127.0.0.1:\(hung.port)/hook"
                secret_file = "\(secretDir)/secret"
                timeout = "30s"
                retries = 5
                """)
        let m1 = Workers.marker("nohook"), m2 = Workers.marker("hunghook")
        let w1 = try plain.run("lat-plain", [], Workers.tree(m1, file: workerDirectory("lat") + "/a"))
        let w2 = try withHook.run("lat-hung", [], Workers.tree(m2, file: workerDirectory("lat") + "/b"))
        defer {
            w1.signal(SIGKILL)
            w2.signal(SIGKILL)
        }
        #expect(await eventually(15) { Workers.noneStopped(m1, atLeast: 2) && Workers.noneStopped(m2, atLeast: 2) })
        var base: [Duration] = [], hooked: [Duration] = []
        // Interleaved, so that both see the same machine.
        for _ in 0..<6 {
            base.append(try await Self.revokeToStopped(plain, "lat-plain", m1))
            hooked.append(try await Self.revokeToStopped(withHook, "lat-hung", m2))
        }
        func median(_ d: [Duration]) -> Duration { d.sorted()[d.count / 2] }
        let (b, h) = (median(base), median(hooked))
        print("revoke → stopped, median of 6: no webhook \(b), hung webhook \(h) (ratio \(String(format: "%.2f", h / b)))")
        // A generous bound: the hung receiver holds every delivery for 30 s; had one been on
        // the path, each revoke would take that long.
        #expect(h < b + .milliseconds(500), "no webhook \(base), hung webhook \(hooked)")
        #expect(h < .seconds(3))
        // The control: the authority did try the webhook (its connection waits, unanswered).
        #expect(hung.pending() >= 1)
    }
}
