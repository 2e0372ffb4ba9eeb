import Foundation
import Glibc
import Testing
import TetherTestKit

/// `tether run` (watch mode, polls while the stream is down) against a real authority with a
/// fault-injecting proxy between them. Lease 1 s, poll interval 200 ms.
@Suite("tether run through a fault-injecting proxy", .serialized, .timeLimit(.minutes(10)))
struct ProxyFaultTests {
    /// A lease of 1 s, then a poll and a freeze: "within the lease" with a generous margin for
    /// a loaded CI machine.
    static let bound = 3.0

    /// A real authority (1 s lease), a proxy in front of it, and `tether run` through the
    /// proxy with a worker ticking a file; waits until it ticks.
    struct Setup {
        let authority: LiveAuthority
        let proxy: FaultProxy
        let marker: String
        let file: String
        let run: TetherProcess
    }

    func start(_ name: String) async throws -> Setup {
        let a = try await LiveAuthority(lease: "1s")
        let proxy = try FaultProxy(upstreamPort: a.server.port, signer: try await FaultProxy.activeSigner(stateDirectory: a.dir))
        let m = Workers.marker(name)
        let file = workerDirectory("e2e-\(name)") + "/ticks"
        let p = try TetherProcess(
            [
                "run", "--dir", a.dir, "--authority", proxy.url, "--key-file", a.dir + "/agent.key",
                "--public-key", a.dir + "/signing.pub", "--surface", "\(name)-1", "--poll-interval", "200ms",
                "--",
            ] + Workers.loop(m, file: file))
        #expect(await eventually(20) { fileSize(file) > 0 }, "\(p.stderr)")
        return Setup(authority: a, proxy: proxy, marker: m, file: file, run: p)
    }

    /// Sets `fault`; returns how long until every process was stopped (nil: not within 10 s).
    func timeToStop(_ proxy: FaultProxy, _ fault: FaultProxy.Fault, _ m: String) async -> Double? {
        let t0 = Date()
        proxy.set(fault)
        guard await eventually(10, { Workers.allStopped(m) }) else { return nil }
        return Date().timeIntervalSince(t0)
    }

    @Test(
        "refused, reset, hung, 1 byte/s, 5xx, garbage, oversized, unsigned, wrongly signed, replayed: stopped within the lease, reason logged; resumed on a valid allow"
    )
    func faults() async throws {
        let s = try await start("proxy")
        let (proxy, m, file, p) = (s.proxy, s.marker, s.file, s.run)
        let cases: [(FaultProxy.Fault, String)] = [
            (.refuse, "LEASE_EXPIRED"), (.reset, "LEASE_EXPIRED"), (.hang, "LEASE_EXPIRED"), (.slow, "LEASE_EXPIRED"),
            (.status(503), "LEASE_EXPIRED"), (.status(500), "LEASE_EXPIRED"), (.garbage, "BAD_RESPONSE"),
            (.oversized(32 << 20), "LEASE_EXPIRED"), (.stripSignature, "BAD_SIGNATURE"),
            (.corruptSignature, "BAD_SIGNATURE"), (.replay, "BAD_SIGNATURE"),
        ]
        var times: [String] = []
        for (fault, code) in cases {
            let logged = p.stderr.components(separatedBy: "code=\(code)").count
            let took = await timeToStop(proxy, fault, m)
            times.append("\(fault): \(took.map { String(format: "%.2f s", $0) } ?? "NOT STOPPED")")
            #expect(
                took != nil && took! < Self.bound,
                "\(fault): stopped in \(String(describing: took)) s: \(liveProcesses(withMarker: m).map { "\($0.pid) \($0.state)" })\n\(p.stderr.suffix(1500))"
            )
            #expect(
                await eventually(3) { p.stderr.components(separatedBy: "code=\(code)").count > logged },
                "\(fault): \(code) not logged\n\(p.stderr.suffix(1500))")
            #expect(await Workers.stoppedGrowing(file), "\(fault)")
            proxy.set(.none)
            #expect(await eventually(10) { Workers.noneStopped(m) }, "\(fault): not resumed\n\(p.stderr.suffix(1000))")
            #expect(await Workers.growing(file), "\(fault)")
        }
        print("proxy faults, fault → every process stopped: " + times.joined(separator: "; "))
        p.signal(SIGINT)
        #expect(await p.exitCode(within: 20) != nil)
    }

    @Test(
        "the authority's clock an hour off either way: renewals keep the worker running; silence stops it within the lease, not an hour later"
    )
    func clockSkew() async throws {
        let s = try await start("skew")
        let (proxy, m, file, p) = (s.proxy, s.marker, s.file, s.run)
        for skew in [3600.0, -3600.0] {
            proxy.set(.skew(skew))
            // Several leases long: every renewal was skewed and still counted.
            try await Task.sleep(for: .seconds(3))
            #expect(Workers.noneStopped(m), "skew \(skew): stopped while renewals arrive\n\(p.stderr.suffix(1500))")
            #expect(await Workers.growing(file), "skew \(skew)")
            let took = await timeToStop(proxy, .hang, m)
            #expect(took != nil && took! < Self.bound, "skew \(skew): silence stopped it in \(String(describing: took)) s")
            proxy.set(.skew(skew))
            #expect(await eventually(10) { Workers.noneStopped(m) }, "skew \(skew): not resumed\n\(p.stderr.suffix(1500))")
        }
        proxy.set(.none)
        try await Task.sleep(for: .seconds(2))
        #expect(Workers.noneStopped(m), "back to the right clock (an hour ahead of the last allow): still running")
        p.signal(SIGINT)
        #expect(await p.exitCode(within: 20) != nil)
    }
}
