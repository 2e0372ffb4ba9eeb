import Foundation
import Glibc
import Synchronization
import Testing
import TetherClient
import TetherCore
import TetherTestKit

/// A supervisor under a flood of changes applies the newest verdict first: a revoke at the end
/// of thousands of queued changes stops the worker as soon as one on a quiet stream would, and
/// every change overtaken is acknowledged (as what the worker did, or as superseded).
@Suite("the newest verdict first", .serialized, .timeLimit(.minutes(10)))
struct VerdictFloodTests {
    @Test("a flood of revokes and restores, then a revoke: stopped within a second of its answer; the flood is acknowledged")
    func floodThenRevoke() async throws {
        let a = try await LiveAuthority(lease: "5s")
        let m = Workers.marker("flood")
        let file = workerDirectory("e2e") + "/ticks"
        let p = try a.run("flood-1", ["--profile", "none"], Workers.tree(m, file: file))
        #expect(await eventually(20) { liveProcesses(withMarker: m).count >= 4 && fileSize(file) > 0 }, "\(p.stderr)")
        let key = try String(contentsOfFile: a.dir + "/operator.key", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let op = AuthorityClient(endpoint: AuthorityEndpoint(url: a.url, key: key))

        // 1. A flood, from four senders as fast as the authority answers: each change a verdict
        // the supervisor receives, most of them overtaken before they could be applied.
        let pairs = 1500
        let flood = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { g in
            for lane in 0..<4 {
                g.addTask {
                    for i in stride(from: lane, to: pairs, by: 4) {
                        let revoked = try await op.revoke("flood-1", reason: "flood \(i)", wait: nil).status
                        let restored = try await op.restore("flood-1", reason: "flood \(i)", wait: nil).status
                        #expect(revoked == 200 && restored == 200)
                    }
                }
            }
            try await g.waitForAll()
        }
        let floodTook = ContinuousClock.now - flood

        // 2. The revoke at its end: every process of the tree stopped — read from /proc — within
        // two seconds of asking, however many changes came before it (applied one by one, the
        // flood put the supervisor seconds behind the authority).
        let sent = ContinuousClock.now
        let done = Flag()
        let revoke = Task {
            defer { done.set() }
            return try await op.revoke("flood-1", reason: "the last one", wait: .seconds(20))
        }
        // Read until half a second after the answer: the stop is when the tree was last seen
        // not all stopped (a supervisor still working through the flood thaws it again and again).
        var lastRunning = sent
        var answeredAt: ContinuousClock.Instant?
        while ContinuousClock.now - sent < .seconds(30) {
            if !Workers.allStopped(m, atLeast: 4) { lastRunning = .now }
            if answeredAt == nil && done.isSet { answeredAt = .now }
            if let answeredAt, ContinuousClock.now - answeredAt > .milliseconds(500) { break }
            try await Task.sleep(for: .milliseconds(2))
        }
        let stoppedIn: Duration? = answeredAt == nil ? nil : lastRunning - sent
        let answer = try await revoke.value
        let body = try answer.decode(SurfaceChanged.self)
        #expect(body.acks?.map(\.state) == ["stopped"], "\(answer.object)")
        #expect(body.missing?.isEmpty ?? true)
        #expect(stoppedIn != nil, "the final revoke never stopped the tree: \(liveProcesses(withMarker: m))")
        #expect(stoppedIn ?? .seconds(99) < .seconds(2), "stopped \(stoppedIn ?? .zero) after the revoke was asked")
        #expect(await Workers.stoppedGrowing(file))
        #expect(p.stderr.contains("verdicts superseded"), "the flood was applied change by change")
        // How many were applied depends on how fast the authority took the flood (on a busy
        // machine the supervisor keeps up with more of it): said, not bounded.
        let stops = p.stderr.components(separatedBy: "worker stopped").count - 1
        print(
            p.stderr.split(separator: "\n").filter { $0.contains("stopped") || $0.contains("superseded") }.suffix(8).joined(separator: "\n")
        )
        print("flood: \(2 * pairs) changes in \(floodTook), \(stops) stops applied; the last revoke stopped in \(stoppedIn ?? .zero)")

        // 3. Changes made at once, each waited for: every one is acknowledged — by the state
        // the worker took for it, or as superseded by a newer one it did apply.
        try await withThrowingTaskGroup(of: SurfaceChanged.self) { g in
            for i in 0..<60 {
                g.addTask {
                    let answer =
                        i % 2 == 0
                        ? try await op.restore("flood-1", reason: "burst \(i)", wait: .seconds(20))
                        : try await op.revoke("flood-1", reason: "burst \(i)", wait: .seconds(20))
                    return try answer.decode(SurfaceChanged.self)
                }
            }
            for try await changed in g {
                #expect(changed.missing?.isEmpty ?? true, "\(changed.requestID) not acknowledged: \(changed)")
                let states = Set(changed.acks?.map(\.state) ?? [])
                #expect(states.count == 1)
                let expected: Set<String> = changed.revoked ? ["stopped", "superseded"] : ["resumed", "running", "superseded"]
                #expect(states.isSubset(of: expected), "\(changed)")
            }
        }

        p.signal(SIGTERM)
        #expect(await p.exitCode(within: 20) != nil)
        #expect(await eventually(5) { Workers.gone(m) })
    }
}

/// Set once, read from anywhere.
final class Flag: Sendable {
    private let value = Mutex(false)
    func set() { value.withLock { $0 = true } }
    var isSet: Bool { value.withLock { $0 } }
}
