// Revoke-to-watcher latency: a real `tether authority serve`, one watch stream on loopback,
// N revoke/restore cycles. For each revoke: time from sending it to its event at the watcher,
// and from its answer to the event. Baseline in the same run: a validate round trip.
// Run: bench/authority.sh (builds release, starts the server, runs wrk and this).
import AsyncHTTPClient
import Foundation
import Glibc
import NIOCore
import TetherAuthority
import TetherClient
import TetherCore

let args = CommandLine.arguments
// Thousands of watch streams: as many descriptors.
var fileLimit = rlimit()
getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &fileLimit)
fileLimit.rlim_cur = min(fileLimit.rlim_max, 1 << 20)
setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &fileLimit)
if args.count > 1 && args[1] == "--micro" {
    // Where a validate's CPU goes, per operation.
    let clock = ContinuousClock()
    func time(_ name: String, _ n: Int = 20000, _ body: () -> Void) {
        let t0 = clock.now
        for _ in 0..<n { body() }
        let us =
            Double((clock.now - t0).components.attoseconds) / 1e12 / Double(n) + Double((clock.now - t0).components.seconds) * 1e6
            / Double(n)
        print("\(name.padding(toLength: 36, withPad: " ", startingAt: 0)) \(String(format: "%8.2f", us)) µs")
    }
    let signer = DecisionSigner.generate()
    let d = Decision(
        deviceId: "bench", allowed: true, code: .allow, requestID: UUID().uuidString, issuedAt: Timestamp.string(Date()),
        expiresAt: Timestamp.string(Date()))
    time("Ed25519 sign") { _ = signer.sign(d) }
    time("Timestamp.string") { _ = Timestamp.string(Date()) }
    time("UUID().uuidString") { _ = UUID().uuidString }
    time("APIKeys.hash") { _ = APIKeys.hash("tk_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG") }
    let body = Data(#"{"deviceId": "bench-surface"}"#.utf8)
    time("JSONSerialization parse") { _ = try? JSONSerialization.jsonObject(with: body) }
    let obj: [String: Any] = [
        "allowed": true, "code": "ALLOW", "request_id": d.requestID, "deviceId": "bench", "issuedAt": d.issuedAt, "expiresAt": d.expiresAt,
        "signature": "x", "status": "ok",
    ]
    time("JSONSerialization write sorted") { _ = try? JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys]) }
    time("JSONWriter (sorted)") { _ = JSONWriter.data(obj) }
    exit(0)
}
guard args.count >= 4 else {
    print("usage: tether-bench-authority URL OPERATOR_KEY AGENT_KEY [iterations]")
    exit(64)
}
// URL may list replicas, comma-separated: the operator uses the first, the fan-out's watch
// streams are spread over all of them.
let urls = args[1].split(separator: ",").map(String.init)
let url = urls[0], opKey = args[2], agentKey = args[3]
let iterations = args.count > 4 ? Int(args[4]) ?? 1000 : 1000
let clock = ContinuousClock()

let op = AuthorityClient(endpoint: AuthorityEndpoint(url: url, key: opKey))
let agent = AuthorityClient(endpoint: AuthorityEndpoint(url: url, key: agentKey))
_ = try await agent.register("bench-surface")
if args.count > 5 && args[4] == "--fanout", let n = Int(args[5]) {
    try await fanout(n)
    exit(0)
}

/// Events seen by the watcher: request_id → arrival instant.
final class Arrivals: @unchecked Sendable {
    let lock = NSLock()
    var seen: [String: ContinuousClock.Instant] = [:]
    func add(_ rid: String, _ t: ContinuousClock.Instant) { lock.withLock { if seen[rid] == nil { seen[rid] = t } } }
    func get(_ rid: String) -> ContinuousClock.Instant? { lock.withLock { seen[rid] } }
}
let arrivals = Arrivals()
let watcher = Task {
    var req = HTTPClientRequest(url: url + "/api/v1/devices/watch?deviceId=bench-surface&instance=bench")
    req.headers.add(name: "x-org-key", value: agentKey)
    let resp = try await AuthorityClient.defaultHTTPClient.execute(req, timeout: .hours(1))
    var parser = SSEParser()
    for try await chunk in resp.body {
        let now = clock.now
        for e in try parser.feed(chunk.readableBytesView) where e.event == "decision" {
            if let o = try? JSONSerialization.jsonObject(with: Data(e.data.utf8)) as? [String: Any], let rid = o["request_id"] as? String {
                arrivals.add(rid, now)
            }
        }
    }
}
try await Task.sleep(for: .milliseconds(300))

func ms(_ d: Duration) -> Double { Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15 }
func pct(_ xs: [Double], _ p: Double) -> Double {
    let s = xs.sorted()
    return s[min(s.count - 1, Int((Double(s.count - 1) * p).rounded()))]
}

var sendToEvent: [Double] = [], answerToEvent: [Double] = [], validateRTT: [Double] = []
for i in 0..<iterations {
    let v0 = clock.now
    _ = try await agent.validate("bench-surface", nonce: nil)
    validateRTT.append(ms(clock.now - v0))

    let revoke = i % 2 == 0
    let t0 = clock.now
    let answer =
        revoke
        ? try await op.revoke("bench-surface", reason: "bench", wait: nil)
        : try await op.restore("bench-surface", reason: "bench", wait: nil)
    let t1 = clock.now
    guard let rid = answer["request_id"] as? String else { fatalError("no request id") }
    var arrived: ContinuousClock.Instant?
    while arrived == nil {
        arrived = arrivals.get(rid)
        if arrived == nil { try await Task.sleep(for: .microseconds(50)) }
        if clock.now - t1 > .seconds(5) { fatalError("event \(rid) never arrived") }
    }
    if revoke {
        sendToEvent.append(ms(arrived! - t0))
        answerToEvent.append(ms(arrived! - t1))
    }
}
watcher.cancel()
let base = pct(validateRTT, 0.5)
func row(_ name: String, _ xs: [Double]) {
    print(
        "\(name.padding(toLength: 42, withPad: " ", startingAt: 0)) median \(String(format: "%7.3f", pct(xs, 0.5))) ms  p99 \(String(format: "%7.3f", pct(xs, 0.99))) ms  ×\(String(format: "%.2f", pct(xs, 0.5) / base))"
    )
}
print("\(iterations / 2) revokes (and as many restores), one watch stream, loopback")
row("validate round trip (baseline)", validateRTT)
row("revoke sent → event at watcher", sendToEvent)
row("revoke answered → event at watcher", answerToEvent)
print("(negative: the event reached the watcher before the answer reached the operator)")

/// `"request_id":"…"` of an event's JSON.
func requestID(in data: String) -> String? {
    guard let r = data.range(of: "\"request_id\":\"") else { return nil }
    return String(data[r.upperBound...].prefix { $0 != "\"" })
}

/// N watch streams on one surface; for a few revokes, the time from the revoke's answer until
/// the last of the N watchers has its event.
func fanout(_ n: Int) async throws {
    var config = HTTPClient.Configuration()
    config.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = n + 10
    config.timeout.connect = .seconds(30)
    let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: config)
    let surface = "fanout-surface"
    _ = try await agent.register(surface)
    final class Seen: @unchecked Sendable {
        let lock = NSLock()
        var byRID: [String: Set<Int>] = [:]  // watchers that have had the event
        var last: [String: ContinuousClock.Instant] = [:]
        var initial = 0
        func add(_ rid: String?, watcher: Int, initial isInitial: Bool) {
            lock.withLock {
                if isInitial {
                    initial += 1
                    return
                }
                guard let rid, byRID[rid, default: []].insert(watcher).inserted else { return }
                last[rid] = ContinuousClock.now
            }
        }
    }
    let seen = Seen()
    var tasks: [Task<Void, Never>] = []
    for i in 0..<n {
        tasks.append(
            Task {
                var req = HTTPClientRequest(url: urls[i % urls.count] + "/api/v1/devices/watch?deviceId=\(surface)&instance=w\(i)")
                req.headers.add(name: "x-org-key", value: agentKey)
                // Ten thousand connects at once overflow the listen backlog: the kernel drops SYNs
                // and the client retries; a connect that gives up is tried again, not counted lost.
                var answer: HTTPClientResponse?
                for attempt in 0..<30 where answer == nil && !Task.isCancelled {
                    answer = try? await client.execute(req, timeout: .hours(1))
                    if answer == nil { try? await Task.sleep(for: .milliseconds(100 * (attempt + 1))) }
                }
                guard let resp = answer else { return }
                var parser = SSEParser()
                var first = true
                do {
                    for try await chunk in resp.body {
                        for e in try parser.feed(chunk.readableBytesView) where e.event == "decision" {
                            // The request id by a plain search: ten thousand JSON parses per change
                            // in this one process would measure the bench, not the authority.
                            seen.add(requestID(in: e.data), watcher: i, initial: first)
                            first = false
                        }
                    }
                } catch {}
            })
    }
    let openStart = clock.now
    while seen.lock.withLock({ seen.initial }) < n {
        try await Task.sleep(for: .milliseconds(20))
        if clock.now - openStart > .seconds(120) {
            print("only \(seen.lock.withLock { seen.initial }) of \(n) streams opened")
            break
        }
    }
    print(
        "\(seen.lock.withLock { seen.initial }) watch streams open on one surface after \(String(format: "%.1f", ms(clock.now - openStart) / 1000)) s"
    )
    let opened = seen.lock.withLock { seen.initial }
    var results: [Double] = []
    for round in 0..<6 {
        let a =
            round % 2 == 0
            ? try await op.revoke(surface, reason: "fanout", wait: nil) : try await op.restore(surface, reason: "fanout", wait: nil)
        let t1 = clock.now
        let rid = a["request_id"] as! String
        while seen.lock.withLock({ seen.byRID[rid]?.count ?? 0 }) < opened && clock.now - t1 < .seconds(30) {
            try await Task.sleep(for: .milliseconds(1))
        }
        let (count, last) = seen.lock.withLock { (seen.byRID[rid]?.count ?? 0, seen.last[rid]) }
        let allMs = last.map { ms($0 - t1) } ?? .nan
        results.append(allMs)
        print("  change \(round + 1): \(count)/\(n) watchers had it, the last \(String(format: "%.1f", allMs)) ms after the answer")
    }
    print(
        "median time for one change to reach all \(n) watchers: \(String(format: "%.1f", pct(results, 0.5))) ms, max \(String(format: "%.1f", results.max() ?? .nan)) ms"
    )
    tasks.forEach { $0.cancel() }
    // A client dropped without shutdown() trips AsyncHTTPClient's assertion in debug builds
    // (when its last reference goes, which raced with exit(0)).
    try? await client.shutdown()
}
