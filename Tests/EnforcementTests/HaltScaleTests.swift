import Foundation
import Glibc
import Testing
import TetherCore
import TetherTestKit

/// An org halt lands everywhere at once: one `tether supervise` of 40 workers and four of 5
/// (separate processes, separate cgroups) against one authority. `tether halt --wait` answers
/// with a ✔ for every (supervisor, surface) and no ✘, and /proc shows every process of every
/// worker stopped; `tether resume --wait` likewise, and every worker runs again. The size CI
/// affords; bench/run.py section 6 runs 1,000 workers.
@Suite("An org halt across many supervisors", .serialized, .timeLimit(.minutes(10)))
struct HaltScaleTests {
    static let sizes = [40, 5, 5, 5, 5]

    @Test("halt and resume: 60 workers under 5 supervisors, every process frozen and thawed, every acknowledgement listed")
    func haltEverywhere() async throws {
        let a = try await LiveAuthority(lease: "15s")
        var sups: [TetherProcess] = []
        var markers: [String] = []
        defer { sups.forEach { $0.signal(SIGKILL) } }
        for (s, n) in Self.sizes.enumerated() {
            var workers = ""
            for j in 0..<n {
                let name = "halt-\(s)-\(j)", m = Workers.marker(name)
                markers.append(m)
                workers += """
                    [[worker]]
                    name = "\(name)"
                    command = ["sh", "-c", "while :; do sleep 1; done", "\(m)"]

                    """
            }
            let path = temporaryDirectory("tether-halt") + "/s.toml"
            try """
            \(a.authorityTable)
            instance = "halt-sup-\(s)"

            [supervisor]
            shutdown_timeout = "5s"

            \(workers)
            """.write(toFile: path, atomically: true, encoding: .utf8)
            sups.append(try TetherProcess(["supervise", "--config", path]))
        }
        let total = Self.sizes.reduce(0, +)
        #expect(
            await eventually(90) { markers.allSatisfy { !liveProcesses(withMarker: $0).isEmpty } },
            "\(sups.map { $0.stderr.suffix(600) }.joined(separator: "\n"))")
        // Every surface watched by its supervisor before the halt: what the halt expects.
        #expect(
            await eventually(30) {
                guard let (rc, out, _) = try? a.op(["surfaces", "--json"]), rc == 0,
                    let o = try? JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any],
                    let devices = o["devices"] as? [[String: Any]]
                else { return false }
                return devices.filter { ($0["watchers"] as? [String])?.isEmpty == false }.count == total
            })

        // One surface revoked before the halt: its worker is stopped already, and says so for
        // the halt (read from the kernel); the resume does not run it, and owes no answer.
        let (rcRevoke, outRevoke, _) = try a.op(["revoke", "halt-1-0", "--reason", "revoked first", "--wait", "20s"])
        #expect(rcRevoke == 0 && outRevoke.contains("stopped"), "\(outRevoke)")
        let revokedMarker = markers[Self.sizes[0]]

        // The halt, timed from its sending to the last process seen stopped in /proc.
        let sent = ContinuousClock.now
        let halt = Task { try a.op(["halt", "--reason", "scale test", "--wait", "30s"]) }
        var frozenAt: ContinuousClock.Instant?
        while frozenAt == nil && ContinuousClock.now - sent < .seconds(30) {
            if markers.allSatisfy({ Workers.allStopped($0) }) { frozenAt = .now }
            try await Task.sleep(for: .milliseconds(5))
        }
        let (rc, out, err) = try await halt.value
        #expect(rc == 0, "\(err)")
        let acks = out.split(separator: "\n").filter { $0.contains("✔") }
        #expect(acks.count == total, "\(acks.count) of \(total) acknowledged:\n\(out)")
        #expect(acks.allSatisfy { $0.contains(": stopped at") }, "\(out)")
        #expect(!out.contains("✘"), "\(out)")
        #expect(frozenAt != nil, "not every worker stopped: \(markers.filter { !Workers.allStopped($0) }.count) running")
        print(
            "halt: \(total) workers under \(Self.sizes.count) supervisors, sent → every process stopped in \(frozenAt.map { $0 - sent } ?? .zero)"
        )

        let resumed = ContinuousClock.now
        let (rc2, out2, err2) = try a.op(["resume", "--reason", "scale test done", "--wait", "30s"])
        #expect(rc2 == 0, "\(err2)")
        let acks2 = out2.split(separator: "\n").filter { $0.contains("✔") }
        #expect(!out2.contains("halt-1-0)"), "the revoked surface is not expected to resume: \(out2)")
        #expect(
            acks2.count == total - 1 && !out2.contains("✘"),
            "\(acks2.count) of \(total):\n\(out2.suffix(1500))\n\(sups.map { String($0.stderr.suffix(3000)) }.joined(separator: "\n---\n"))"
        )
        #expect(await eventually(10) { markers.filter { $0 != revokedMarker }.allSatisfy { Workers.noneStopped($0) } })
        #expect(Workers.allStopped(revokedMarker), "the revoked worker stays stopped through the resume")
        print("resume: every process running again \(ContinuousClock.now - resumed) after sending")
    }
}
