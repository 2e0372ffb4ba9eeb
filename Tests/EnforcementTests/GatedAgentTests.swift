import Foundation
import Glibc
import Testing
import TetherCore
import TetherTestKit

/// A Python agent under `tether run` with gates, against a real authority: revoking a gate's
/// surface makes only its calls fail, with EPERM, while the agent runs on.
@Suite("Gated agents: exec, net and write revoked while the agent runs", .serialized, .timeLimit(.minutes(10)))
struct GatedAgentTests {
    /// Runs a shell command, writes a file, makes an HTTP request, reads a file — in a loop,
    /// one line per action to a log it opened at its start ("7 net OK", "8 net ERR 1").
    static let agent = #"""
        import errno, os, subprocess, sys, time, urllib.error, urllib.request
        log_path, work, url = sys.argv[1], sys.argv[2], sys.argv[3]
        log = open(log_path, "a", buffering=1)
        def attempt(i, name, action):
            try:
                action()
                log.write(f"{i} {name} OK\n")
            except urllib.error.HTTPError:
                log.write(f"{i} {name} OK\n")   # an answer came back: the request went out
            except urllib.error.URLError as e:
                log.write(f"{i} {name} ERR {getattr(e.reason, 'errno', None) or 0}\n")
            except OSError as e:
                log.write(f"{i} {name} ERR {e.errno or 0}\n")
        def shell(): subprocess.run(["/bin/sh", "-c", "true"], check=True)
        def write():
            with open(f"{work}/note.txt", "w") as f: f.write("plan step\n")
        def http(): urllib.request.urlopen(url, timeout=3).read()
        def read():
            with open("/etc/hostname") as f: f.read()
        i = 0
        while True:
            i += 1
            for name, action in (("exec", shell), ("write", write), ("net", http), ("read", read)):
                attempt(i, name, action)
            time.sleep(0.1)
        """#

    struct Agent {
        let process: TetherProcess
        let log: String
        let marker: String
    }

    static func start(_ a: LiveAuthority, surface: String, extra: [String] = []) throws -> Agent {
        let dir = workerDirectory("gated")
        let script = dir + "/agent.py"
        try agent.write(toFile: script, atomically: true, encoding: .utf8)
        chmod(script, 0o644)
        let m = Workers.marker("gated")
        let log = dir + "/agent.log"
        FileManager.default.createFile(atPath: log, contents: nil)
        chmod(log, 0o666)
        let gates = ["--gate", "exec=\(surface).exec", "--gate", "net=\(surface).net", "--gate", "write=\(surface).write"]
        // The authority on the host's loopback is the agent's server: reached through the
        // network stack's gateway, which only --net host-loopback leads there.
        let url = a.url.replacingOccurrences(of: "127.0.0.1", with: "10.0.2.2") + "/healthz"
        let p = try a.run(surface, gates + ["--net", "host-loopback"] + extra, ["/usr/bin/python3", "-B", script, log, dir, url, m])
        return Agent(process: p, log: log, marker: m)
    }

    /// The results of the last `n` complete rounds: action → answers seen.
    static func recent(_ log: String, rounds n: Int = 2) -> [String: Set<String>] {
        let lines = (try? String(contentsOfFile: log, encoding: .utf8))?.split(separator: "\n") ?? []
        let parsed = lines.compactMap { l -> (Int, String, String)? in
            let f = l.split(separator: " ", maxSplits: 2)
            guard f.count == 3, let i = Int(f[0]) else { return nil }
            return (i, String(f[1]), String(f[2]))
        }
        guard let last = parsed.last?.0 else { return [:] }
        var out: [String: Set<String>] = [:]
        for (i, name, answer) in parsed where i < last && i >= last - n { out[name, default: []].insert(answer) }
        return out
    }

    /// Waits until the last rounds show exactly `expected` for each action.
    static func settles(_ log: String, _ expected: [String: String], within seconds: Double = 10) async -> Bool {
        await eventually(seconds) {
            let r = recent(log)
            return expected.allSatisfy { r[$0.key] == [$0.value] }
        }
    }

    static let allOK = ["exec": "OK", "write": "OK", "net": "OK", "read": "OK"]

    @Test(
        "each gate revoked in turn: only its action fails with EPERM, the agent runs on; restored, it works again; the main surface still freezes"
    )
    func gatesOneByOne() async throws {
        let a = try await LiveAuthority()
        let ag = try Self.start(a, surface: "ga")
        #expect(await Self.settles(ag.log, Self.allOK, within: 30), "\(ag.process.stderr)\n\(Self.recent(ag.log))")
        for gate in ["exec", "net", "write"] {
            let (rc, out, _) = try a.op(["revoke", "ga.\(gate)", "--reason", "test: \(gate)", "--wait", "5s"])
            #expect(rc == 0)
            #expect(out.contains("gate_closed"), "the supervisor acknowledges the gate: \(out)")
            var expected = Self.allOK
            expected[gate] = "ERR \(EPERM)"
            #expect(await Self.settles(ag.log, expected), "\(gate) revoked: \(Self.recent(ag.log))")
            // Never stopped: every process of the agent keeps running.
            #expect(Workers.noneStopped(ag.marker), "\(liveProcesses(withMarker: ag.marker))")
            // The denials reach the authority, aggregated: on-call sees them in tether status.
            #expect(
                await eventually(5) {
                    let (_, status, _) = (try? a.op(["status", "ga.\(gate)"])) ?? (1, "", "")
                    return status.contains("denied by") && status.contains("×")
                }, "status of ga.\(gate)")
            #expect(await eventually(5) { ag.process.stderr.contains("gate denied") && ag.process.stderr.contains("gate=\(gate)") })
            let (rc2, out2, _) = try a.op(["restore", "ga.\(gate)", "--wait", "5s"])
            #expect(rc2 == 0)
            #expect(out2.contains("gate_open"), "\(out2)")
            #expect(await Self.settles(ag.log, Self.allOK), "\(gate) restored: \(Self.recent(ag.log))")
        }
        // The main surface: the whole tree frozen, as without gates.
        try a.op(["revoke", "ga", "--wait", "5s"])
        #expect(await eventually(5) { Workers.allStopped(ag.marker) })
        try a.op(["restore", "ga", "--wait", "5s"])
        #expect(await eventually(5) { Workers.noneStopped(ag.marker) })
        #expect(await Self.settles(ag.log, Self.allOK))

        // The supervisor killed: nothing answers the gates any more, and the keeper ends the
        // agent. No gated action succeeds after the kill.
        let before = (try? String(contentsOfFile: ag.log, encoding: .utf8))?.count ?? 0
        ag.process.signal(SIGKILL)
        #expect(await eventually(10) { Workers.gone(ag.marker) }, "\(liveProcesses(withMarker: ag.marker))")
        let after = String(((try? String(contentsOfFile: ag.log, encoding: .utf8)) ?? "").dropFirst(before))
        let lateSuccesses = after.split(separator: "\n").filter { $0.hasSuffix(" OK") && !$0.contains(" read ") }
        // An action already past its gate may finish; more than one round of them may not.
        #expect(lateSuccesses.count <= 3, "\(after)")
    }

    @Test("record mode: a revoked net gate denies nothing, and says what it would have denied")
    func recordMode() async throws {
        let a = try await LiveAuthority()
        let ag = try Self.start(a, surface: "gr", extra: ["--gate-mode", "net=record"])
        #expect(await Self.settles(ag.log, Self.allOK, within: 30), "\(ag.process.stderr)")
        try a.op(["revoke", "gr.net", "--wait", "5s"])
        try await Task.sleep(for: .milliseconds(500))
        #expect(await Self.settles(ag.log, Self.allOK))
        #expect(
            await eventually(5) {
                ag.process.stderr.contains("gate would deny (record mode)") && ag.process.stderr.contains("call=connect")
            })
        #expect(
            await eventually(5) {
                let (_, status, _) = (try? a.op(["status", "gr.net"])) ?? (1, "", "")
                return status.contains("[record]")
            })
        ag.process.signal(SIGTERM)
        _ = await ag.process.exitCode(within: 20)
    }

    @Test("git push --no-verify to a local bare repository fails under a revoked exec or write gate, and succeeds with both open")
    func gitPush() async throws {
        let a = try await LiveAuthority()
        let dir = workerDirectory("gated-git")
        let bare = dir + "/bare.git", clone = dir + "/clone"
        let git = { (args: [String]) async throws -> (Int32, String, String) in try await offPool { try runToEnd("/usr/bin/git", args) } }
        #expect(try await git(["init", "-q", "--bare", "-b", "main", bare]).0 == 0)
        #expect(try await git(["init", "-q", "-b", "main", clone]).0 == 0)
        try "plan\n".write(toFile: clone + "/plan.txt", atomically: true, encoding: .utf8)
        #expect(try await git(["-C", clone, "add", "plan.txt"]).0 == 0)
        #expect(try await git(["-C", clone, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "plan"]).0 == 0)
        #expect(try await git(["-C", clone, "remote", "add", "origin", bare]).0 == 0)
        _ = try await offPool { try runToEnd("/bin/chmod", ["-R", "a+rwX", dir]) }
        // The worker is another uid than the repositories' owner; git-receive-pack, which a
        // push runs for a local repository, reads the global configuration too.
        try "[safe]\n\tdirectory = *\n".write(toFile: dir + "/gitconfig", atomically: true, encoding: .utf8)
        chmod(dir + "/gitconfig", 0o644)
        let env = ["--env", "GIT_CONFIG_GLOBAL=\(dir)/gitconfig"]
        let push = ["/usr/bin/git", "-C", clone, "push", "--no-verify", "origin", "main"]
        func pushed() async -> Bool { ((try? await git(["--git-dir", bare, "rev-parse", "--verify", "-q", "main"]))?.0 ?? 1) == 0 }

        // A first run registers the surfaces (MachineID's flow).
        #expect(await (try a.run("gp", ["--gate", "exec=gp.exec", "--gate", "write=gp.write"], ["true"])).exitCode(within: 30) == 0)
        for gate in ["exec", "write"] {
            #expect(try a.op(["revoke", "gp.\(gate)"]).0 == 0)
            let p = try a.run("gp", env + ["--gate", "\(gate)=gp.\(gate)"], push)
            let code = await p.exitCode(within: 60)
            #expect(code != 0 && code != nil, "push under a revoked \(gate) gate: \(p.stderr)")
            #expect(p.stderr.contains("gate denied") && p.stderr.contains("gate=\(gate)"), "\(p.stderr)")
            #expect(!(await pushed()), "nothing reached the bare repository")
            _ = try a.op(["restore", "gp.\(gate)"])
        }
        // The control: the same push with both gates open goes through.
        let p = try a.run("gp", env + ["--gate", "exec=gp.exec", "--gate", "write=gp.write"], push)
        #expect(await p.exitCode(within: 60) == 0, "\(p.stderr)")
        #expect(await pushed())
    }
}
