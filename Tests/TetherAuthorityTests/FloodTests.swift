import Foundation
import Testing
import TetherAuthority
import TetherClient
import TetherCore

/// The attack of issue 12: bad keys, oversized bodies, slow clients and a stream storm from one
/// agent key, all at once, against a live authority; meanwhile a well-behaved supervisor
/// validates and holds a watch stream. Its latencies are measured quiet, then under the flood,
/// in the same run, and printed as ratios. The assertions are generous: every answer arrives
/// and is right, and well inside a lease, which is what keeps a fleet running.
@Suite("Flood: a well-behaved supervisor beside a hostile flood", .serialized, .timeLimit(.minutes(3)))
struct FloodTests {
    @Test("validate and the watch stream keep answering under a flood of bad keys, huge bodies, slow clients and a stream storm")
    func floodLeavesSupervisorsServed() async throws {
        let t = try await TestAuthority.make(lease: .seconds(15)) {
            $0.maxStreamsPerKey = 100
            $0.writeRate = 50
            $0.writeBurst = 50
        }
        let flooder = try await t.agentKey("flooder")
        let server = try await DirectServer(t) {
            $0.limits.idleTimeout = .seconds(2)
            $0.limits.bodyTimeout = .seconds(2)
            $0.limits.maxConnections = 900
        }
        defer { server.stop() }
        let url = "http://127.0.0.1:\(server.port)"
        let agent = AuthorityClient(endpoint: AuthorityEndpoint(url: url, key: t.agentKey))
        let op = AuthorityClient(endpoint: AuthorityEndpoint(url: url, key: t.operatorKey))
        _ = try await agent.register("good-1")
        let watch = WatchReader(port: server.port, key: t.agentKey, surfaces: ["good-1"], instance: "good-host")
        defer { watch.cancel() }
        #expect(await watch.wait { $0.allowed } != nil, "the good stream opened")

        let quiet = try await measure(agent: agent, op: op, watch: watch, rounds: 8)

        let flood = Flood(port: server.port, flooderKey: flooder)
        flood.start()
        try await Task.sleep(for: .seconds(3))  // let it build up: the storm reaches its cap, slow heads churn
        let loud = try await measure(agent: agent, op: op, watch: watch, rounds: 8)
        let volume = flood.stop()

        func ms(_ d: Duration) -> String { String(format: "%.2f ms", d.timeInterval * 1000) }
        func ratio(_ a: Duration, _ b: Duration) -> String { String(format: "×%.1f", b.timeInterval / max(a.timeInterval, 1e-6)) }
        print(
            """
            flood figures (same run): quiet → under flood
              validate p50 \(ms(quiet.validate.p50)) → \(ms(loud.validate.p50)) (\(ratio(quiet.validate.p50, loud.validate.p50))), p99 \(ms(quiet.validate.p99)) → \(ms(loud.validate.p99)) (\(ratio(quiet.validate.p99, loud.validate.p99)))
              revoke → watch event p50 \(ms(quiet.watch.p50)) → \(ms(loud.watch.p50)) (\(ratio(quiet.watch.p50, loud.watch.p50))), max \(ms(quiet.watch.p99)) → \(ms(loud.watch.p99)) (\(ratio(quiet.watch.p99, loud.watch.p99)))
              the flood: \(volume)
            """)
        #expect(
            volume.badKeys > 100 && volume.oversized > 10 && volume.streamsRefused > 10 && volume.slowOpened > 100,
            "the flood ran: \(volume)")
        #expect(volume.streamsHeld <= 100, "the storm held no more than its key's cap: \(volume.streamsHeld)")
        // A lease is 15 s; a supervisor's validate times out at 10 s. Well inside both:
        #expect(loud.validate.p99 < .seconds(2), "validate answered under the flood: p99 \(ms(loud.validate.p99))")
        #expect(loud.watch.p99 < .seconds(3), "revocations reached the good stream under the flood: max \(ms(loud.watch.p99))")
        #expect(!watch.isEnded, "the good stream survived the flood")
    }

    struct Latencies {
        var validate: Stats
        var watch: Stats
    }
    struct Stats {
        var p50: Duration, p99: Duration
        init(_ samples: [Duration]) {
            let s = samples.sorted()
            p50 = s[s.count / 2]
            p99 = s[min(s.count - 1, Int(Double(s.count) * 0.99))]
        }
    }

    /// 200 validates, then `rounds` revoke/restore pairs timed from the operator's request to
    /// the event on the good stream.
    func measure(agent: AuthorityClient, op: AuthorityClient, watch: WatchReader, rounds: Int) async throws -> Latencies {
        var v: [Duration] = []
        for i in 0..<200 {
            let start = ContinuousClock.now
            let a = try await agent.validate("good-1", nonce: "n\(i)")
            v.append(ContinuousClock.now - start)
            #expect(a.status == 200 && a["code"] as? String == "ALLOW", "validate answered: \(a.status)")
        }
        var w: [Duration] = []
        for _ in 0..<rounds {
            for revoke in [true, false] {
                let start = ContinuousClock.now
                let a =
                    revoke
                    ? try await op.revoke("good-1", reason: "flood test", wait: nil)
                    : try await op.restore("good-1", reason: nil, wait: nil)
                let rid = try #require(a["request_id"] as? String)
                var seen: Duration?
                while seen == nil, ContinuousClock.now - start < .seconds(10) {
                    if watch.decisions().contains(where: { $0.requestID == rid }) {
                        seen = ContinuousClock.now - start
                    } else {
                        try await Task.sleep(for: .milliseconds(1))
                    }
                }
                w.append(try #require(seen, "the change reached the good stream"))
            }
        }
        return Latencies(validate: Stats(v), watch: Stats(w))
    }
}

/// The hostile traffic, from plain threads (not the Swift concurrency pool the server runs on):
/// four threads of bad keys, two of 256 KiB bodies, one holding 150 slow request heads open
/// (re-opened as the idle timeout closes them), one opening watch streams for one agent key
/// naming 64 made-up surfaces each, past its cap, as fast as it is answered.
final class Flood: @unchecked Sendable {
    struct Volume: CustomStringConvertible {
        var badKeys = 0, oversized = 0, slowOpened = 0, streamsHeld = 0, streamsRefused = 0, other = 0
        var description: String {
            "\(badKeys) bad-key requests (401), \(oversized) oversized bodies (413), \(slowOpened) slow heads opened, \(streamsHeld) storm streams held, \(streamsRefused) refused (429), \(other) other answers"
        }
    }
    let port: Int
    let flooderKey: String
    private let lock = NSLock()
    private var volume = Volume()
    private var running = true
    private var threads: [Thread] = []
    private let done = DispatchGroup()

    init(port: Int, flooderKey: String) {
        self.port = port
        self.flooderKey = flooderKey
    }

    var isRunning: Bool { lock.withLock { running } }
    func count(_ f: (inout Volume) -> Void) { lock.withLock { f(&volume) } }

    func start() {
        for _ in 0..<4 { spawn(badKeys) }
        for _ in 0..<2 { spawn(oversized) }
        spawn(slowHeads)
        spawn(streamStorm)
    }

    func stop() -> Volume {
        lock.withLock { running = false }
        done.wait()
        return lock.withLock { volume }
    }

    private func spawn(_ body: @escaping @Sendable () -> Void) {
        done.enter()
        let t = Thread {
            body()
            self.done.leave()
        }
        t.start()
        threads.append(t)
    }

    /// One request on a fresh connection; the status code answered (0: none).
    private func request(_ text: String, socket s: RawSocket? = nil) -> Int {
        guard let s = s ?? (try? RawSocket(port: port)) else { return 0 }
        s.send(text)
        let head = String(decoding: s.readUntilClosed(timeout: .seconds(5)).data.prefix(12), as: UTF8.self)
        return Int(head.dropFirst(9).prefix(3)) ?? 0
    }

    private func badKeys() {
        let body = #"{"deviceId":"good-1"}"#
        while isRunning {
            let status = request(
                "POST /api/v1/devices/validate HTTP/1.1\r\nHost: a\r\nconnection: close\r\nx-org-key: tk_\(UUID().uuidString)\r\ncontent-type: application/json\r\ncontent-length: \(body.utf8.count)\r\n\r\n\(body)"
            )
            count { if status == 401 { $0.badKeys += 1 } else { $0.other += 1 } }
        }
    }

    private func oversized() {
        let body = "{\"deviceId\": \"" + String(repeating: "x", count: 256 * 1024) + "\"}"
        while isRunning {
            let status = request(
                "POST /api/v1/devices/validate HTTP/1.1\r\nHost: a\r\nconnection: close\r\nx-org-key: \(flooderKey)\r\ncontent-type: application/json\r\ncontent-length: \(body.utf8.count)\r\n\r\n\(body)"
            )
            count { if status == 413 { $0.oversized += 1 } else { $0.other += 1 } }
        }
    }

    private func slowHeads() {
        var held: [RawSocket] = []
        while isRunning {
            // Drop what the server closed, open up to 150 again.
            held.removeAll { s in
                var p = pollfd(fd: s.fd, events: Int16(POLLIN), revents: 0)
                return poll(&p, 1, 0) > 0
            }
            while held.count < 150, let s = try? RawSocket(port: port) {
                s.send("GET /healthz HTTP/1.1\r\nHost: a\r\n")
                held.append(s)
                count { $0.slowOpened += 1 }
            }
            usleep(50_000)
        }
    }

    private func streamStorm() {
        let ghosts = (0..<64).map { "deviceId=ghost-\($0)" }.joined(separator: "&")
        var held: [RawSocket] = []
        while isRunning {
            guard let s = try? RawSocket(port: port) else { continue }
            s.send(
                "GET /api/v1/devices/watch?deviceId=good-1&\(ghosts)&instance=storm HTTP/1.1\r\nHost: a\r\nx-org-key: \(flooderKey)\r\n\r\n"
            )
            let head = String(decoding: s.readFirst(timeout: .seconds(2)).prefix(12), as: UTF8.self)
            switch Int(head.dropFirst(9).prefix(3)) ?? 0 {
            case 200:
                held.append(s)
                count { $0.streamsHeld = max($0.streamsHeld, held.count) }
            case 429: count { $0.streamsRefused += 1 }
            default: count { $0.other += 1 }
            }
        }
    }
}
