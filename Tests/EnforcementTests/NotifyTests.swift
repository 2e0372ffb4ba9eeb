import Foundation
import Glibc
import Testing
import TetherTestKit

@Suite("sd_notify: what systemd hears", .serialized, .timeLimit(.minutes(5)))
struct NotifyTests {
    @Test("tether run: READY=1 once the worker runs, watchdog pings from its loop, STATUS on a revoke, STOPPING at the end")
    func run() async throws {
        let a = try await LiveAuthority()
        let sock = try NotifySocket()
        let m = Workers.marker("notify")
        let p = try TetherProcess(
            [
                "run", "--dir", a.dir, "--authority", a.url, "--key-file", a.dir + "/agent.key",
                "--surface", "notify-1", "--", "sh", "-c", "while :; do sleep 0.05; done", m,
            ],
            env: ["NOTIFY_SOCKET": sock.path, "WATCHDOG_USEC": "200000"])
        #expect(await eventually(20) { sock.saw("READY=1") }, "\(p.stderr)")
        #expect(sock.statuses().contains { $0.hasPrefix("notify-1: running") })
        let pings = sock.messages.filter { $0 == "WATCHDOG=1" }.count
        try await Task.sleep(for: .milliseconds(500))
        #expect(sock.messages.filter { $0 == "WATCHDOG=1" }.count >= pings + 3, "pings every 100 ms")
        try a.op(["revoke", "notify-1"])
        #expect(await eventually(5) { sock.statuses().contains { $0.hasPrefix("notify-1: frozen (revoked ") } }, "\(sock.statuses())")
        p.signal(SIGTERM)
        #expect(await p.exitCode(within: 20) != nil)
        #expect(sock.saw("STOPPING=1"))
    }

    @Test("tether supervise: READY=1 when the authority answers, a status line per change, RELOADING=1 with MONOTONIC_USEC on SIGHUP")
    func supervise() async throws {
        let a = try await LiveAuthority()
        let sock = try NotifySocket()
        let m = Workers.marker("notify-sv")
        let path = temporaryDirectory("e2e-sv") + "/s.toml"
        try """
        [authority]
        url = "\(a.url)"
        key_file = "\(a.dir)/agent.key"

        [[worker]]
        name = "agent-02"
        command = ["sh", "-c", "while :; do sleep 0.05; done", "\(m)"]
        """.write(toFile: path, atomically: true, encoding: .utf8)
        let p = try TetherProcess(["supervise", "--config", path], env: ["NOTIFY_SOCKET": sock.path, "WATCHDOG_USEC": "400000"])
        #expect(
            await eventually(20) { sock.saw("READY=1") && sock.statuses().contains("1 worker: 1 running") },
            "\(sock.statuses()) \(p.stderr)")
        // An on-call engineer with her own operator key: the status names her and her reason.
        let (rc, aliceKey, err) = try runTether(["keys", "create", "--dir", a.dir, "--role", "operator", "--name", "alice"])
        #expect(rc == 0, "\(err)")
        let keyFile = a.dir + "/alice.key"
        try aliceKey.write(toFile: keyFile, atomically: true, encoding: .utf8)
        chmod(keyFile, 0o600)  // a key readable by everyone is refused
        let (rrc, _, rerr) = try runTether(["revoke", "agent-02", "--reason", "INC-481", "--authority", a.url, "--key-file", keyFile])
        #expect(rrc == 0, "\(rerr)")
        #expect(
            await eventually(5) {
                sock.statuses().contains { $0.hasPrefix("1 worker: 1 frozen (agent-02 revoked ") && $0.hasSuffix(" by alice: INC-481)") }
            }, "\(sock.statuses())")
        #expect(p.stderr.contains("by=alice") && p.stderr.contains("reason=INC-481"), "the enforcer's log names her too")
        #expect(sock.saw("WATCHDOG=1"))
        p.signal(SIGHUP)
        #expect(await eventually(5) { sock.messages.contains { $0.hasPrefix("RELOADING=1\nMONOTONIC_USEC=") } })
        p.signal(SIGTERM)
        #expect(await p.exitCode(within: 20) == 0)
        #expect(sock.saw("STOPPING=1"))
    }
}
