import Foundation
import Glibc
import Testing
import TetherClient
import TetherCore
import TetherSystem
import TetherTestKit

/// `tether hook` with each agent's real hook payloads (Fixtures/hooks), and the decision socket
/// it asks: allow, deny, tool-mapped deny, and every failure a deny.
@Suite("Agent hooks and the decision socket", .serialized, .timeLimit(.minutes(10)))
struct HookTests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/hooks").path

    static func fixture(_ name: String) -> Data {
        FileManager.default.contents(atPath: "\(fixtures)/\(name).json")!
    }

    /// `tether hook ARGS` with `input` on stdin, from the test process, off the cooperative pool
    /// (a silent socket holds it for seconds: other suites' timers must not wait for that).
    static func hook(_ args: [String], input: Data, env: [String: String] = [:]) async throws -> (Int32, String, String) {
        let file = temporaryDirectory("hook-in") + "/in.json"
        FileManager.default.createFile(atPath: file, contents: input)
        return try await offPool { try runToEnd("/bin/sh", ["-c", "exec \"$0\" hook \"$@\" < \(file)", tetherBinary] + args, env: env) }
    }

    @Test("every agent's payload is read; the deny is in its own format, exit 2 with the reason")
    func payloads() throws {
        for (agent, name, tool) in [
            ("claude-code", "claude-code-bash", "Bash"), ("claude-code", "claude-code-mcp", "mcp__github__create_issue"),
            ("codex", "codex-bash", "Bash"), ("gemini", "gemini-shell", "run_shell_command"),
        ] {
            let kind = AgentHook.Agent(rawValue: agent)!
            #expect(
                try AgentHook.parse(Self.fixture(name), agent: kind).get()
                    == AgentHook.Call(tool: tool, event: kind == .gemini ? "BeforeTool" : "PreToolUse"))
            let out = AgentHook.output(allowed: false, reason: "tether: \(tool) denied", agent: kind)
            #expect(out.exitCode == 2 && out.stderr == "tether: \(tool) denied\n")
            let o = try #require(try JSONSerialization.jsonObject(with: Data(out.stdout.utf8)) as? [String: Any])
            if kind == .gemini {
                #expect(o["decision"] as? String == "deny" && o["reason"] as? String == "tether: \(tool) denied")
            } else {
                let h = try #require(o["hookSpecificOutput"] as? [String: Any])
                #expect(h["permissionDecision"] as? String == "deny" && h["hookEventName"] as? String == "PreToolUse")
                #expect(h["permissionDecisionReason"] as? String == "tether: \(tool) denied")
            }
            #expect(AgentHook.output(allowed: true, reason: "", agent: kind) == AgentHook.Output(stdout: "{}\n", stderr: "", exitCode: 0))
        }
        // Tool mapping: globs, first match wins.
        let rules = try ["mcp__github__*=a.mcp.github", "Bash=a.exec", "*=a.tools"].map { try AgentHook.Mapping.parse($0).get() }
        #expect(AgentHook.surface(for: "mcp__github__create_issue", in: rules) == "a.mcp.github")
        #expect(AgentHook.surface(for: "Bash", in: rules) == "a.exec")
        #expect(AgentHook.surface(for: "Write", in: rules) == "a.tools")
        #expect(AgentHook.surface(for: "Write", in: Array(rules.prefix(2))) == nil)
    }

    @Test("whatever goes wrong is a deny: input, usage, socket, answer, authority, signature")
    func failuresDeny() async throws {
        let bash = Self.fixture("claude-code-bash")
        let dir = temporaryDirectory("hook-fail")
        // A socket that accepts and never answers, and one that answers garbage.
        let silent = try UnixListener(path: dir + "/silent.sock", reply: nil)
        let garbage = try UnixListener(path: dir + "/garbage.sock", reply: "{\"allowed\": \"yes\"}\n")
        let liar = try UnixListener(path: dir + "/liar.sock", reply: "{\"allowed\": true, \"code\": \"DEVICE_REVOKED\"}\n")
        defer {
            silent.stop()
            garbage.stop()
            liar.stop()
        }
        let cases: [(String, [String], Data, [String: String], String)] = [
            ("not JSON", ["claude-code", "--socket", dir + "/none.sock"], Data("not json".utf8), [:], "not a JSON object"),
            (
                "no tool_name", ["claude-code", "--socket", dir + "/none.sock"], Data("{\"hook_event_name\":\"PreToolUse\"}".utf8), [:],
                "no tool_name"
            ),
            ("empty input", ["gemini", "--socket", dir + "/none.sock"], Data(), [:], "no hook input"),
            (
                "another event", ["claude-code", "--socket", dir + "/none.sock"], Self.fixture("claude-code-notification"), [:],
                "not Notification"
            ),
            ("the wrong agent's event", ["gemini", "--socket", dir + "/none.sock"], bash, [:], "answers BeforeTool"),
            ("unknown agent", ["cursor"], bash, [:], "not an agent"),
            ("bad mapping", ["claude-code", "--map", "Bash"], bash, [:], "TOOL=SURFACE"),
            // The hook's own arguments: the parser's usage errors (exit 64) and help (exit 0)
            // would let the call run. Each is a deny with the parser's message.
            ("misspelled option", ["claude-code", "--mapp", "Bash=x"], bash, [:], "Unknown option '--mapp'"),
            ("--map without a value", ["claude-code", "--map"], bash, [:], "Missing value for '--map"),
            ("no agent at all", [], bash, [:], "Missing expected argument"),
            (
                "an unknown flag", ["codex", "--socket", dir + "/none.sock", "--bogus"], Self.fixture("codex-bash"), [:],
                "Unknown option '--bogus'"
            ),
            ("-h", ["-h"], bash, [:], "denied: the hook's own arguments did not parse"),
            (
                "--help after the agent", ["gemini", "--help"], Self.fixture("gemini-shell"), [:],
                "denied: the hook's own arguments did not parse"
            ),
            ("an option as --name=value with a bad value", ["claude-code", "--map=Bash"], bash, [:], "TOOL=SURFACE"),
            ("no socket, no surface", ["claude-code"], bash, [:], "no decision socket"),
            ("socket gone (a dead supervisor)", ["claude-code", "--socket", dir + "/none.sock"], bash, [:], "is the supervisor running"),
            ("socket silent", ["claude-code", "--socket", dir + "/silent.sock"], bash, [:], "TIMEOUT"),
            ("garbage answer", ["claude-code", "--socket", dir + "/garbage.sock"], bash, [:], "BAD_RESPONSE"),
            ("allowed but not ALLOW", ["claude-code", "--socket", dir + "/liar.sock"], bash, [:], "DEVICE_REVOKED"),
            (
                "authority unreachable",
                ["codex", "--surface", "x", "--authority", "http://127.0.0.1:\(freePort())", "--key-file", dir + "/k"],
                Self.fixture("codex-bash"),
                [:], "AUTHORITY_UNREACHABLE"
            ),
        ]
        try "k\n".write(toFile: dir + "/k", atomically: true, encoding: .utf8)
        chmod(dir + "/k", 0o600)
        for (what, args, input, env, fragment) in cases {
            let (rc, out, err) = try await Self.hook(args, input: input, env: env)
            #expect(rc == 2, "\(what): exit \(rc)")
            #expect(err.contains(fragment), "\(what): \(err)")
            #expect(out.contains("deny"), "\(what): \(out)")
        }
        // A bad signature: the real authority, the wrong key pinned.
        let a = try await LiveAuthority()
        _ = try await a.run("hk-sig", [], ["true"]).exitCode(within: 30)
        let other = try await LiveAuthority()
        let (rc, _, err) = try await Self.hook(
            [
                "claude-code", "--surface", "hk-sig", "--authority", a.url, "--key-file", a.dir + "/agent.key",
                "--public-key", other.dir + "/signing.pub",
            ], input: bash)
        #expect(rc == 2 && err.contains("BAD_SIGNATURE"), "\(err)")
        // The control: the right key allows.
        let (ok, _, okErr) = try await Self.hook(
            [
                "claude-code", "--surface", "hk-sig", "--authority", a.url, "--key-file", a.dir + "/agent.key",
                "--public-key", a.dir + "/signing.pub",
            ], input: bash)
        #expect(ok == 0, "\(okErr)")
    }

    /// A worker that runs `tether hook claude-code` on a payload every 50 ms, logging the exit code.
    static func hookLoop(_ log: String, payload: String, args: String) -> [String] {
        [
            "sh", "-c",
            "while :; do \(tetherBinary) hook claude-code \(args) < \(payload) >/dev/null 2>>\(log).err; echo $? >> \(log); sleep 0.2; done",
        ]
    }

    static func last(_ log: String) -> String {
        (try? String(contentsOfFile: log, encoding: .utf8))?.split(separator: "\n").last.map(String.init) ?? ""
    }

    @Test(
        "through the decision socket: allow, a revoke of the mapped surface denies within the freeze's bound, restore allows; only its own worker may ask"
    )
    func throughTheSocket() async throws {
        let a = try await LiveAuthority()
        let dir = workerDirectory("hook-e2e")
        let payload = dir + "/bash.json"
        FileManager.default.createFile(atPath: payload, contents: Self.fixture("claude-code-bash"))
        chmod(payload, 0o644)
        // The tools' surface exists before the worker asks about it (a first run registers it).
        #expect(await (try a.run("hk.tools", [], ["true"])).exitCode(within: 30) == 0)
        let log = dir + "/codes"
        FileManager.default.createFile(atPath: log, contents: nil)
        chmod(log, 0o666)
        FileManager.default.createFile(atPath: log + ".err", contents: nil)
        chmod(log + ".err", 0o666)
        let p = try a.run("hk", [], Self.hookLoop(log, payload: payload, args: "--map Bash=hk.tools"))
        #expect(
            await eventually(30) { Self.last(log) == "0" },
            "\(p.stderr)\n\((try? String(contentsOfFile: log + ".err", encoding: .utf8)) ?? "")")
        let t0 = Date()
        let (rc, _, _) = try a.op(["revoke", "hk.tools", "--reason", "INC-9"])
        #expect(rc == 0)
        #expect(await eventually(5) { Self.last(log) == "2" })
        let took = Date().timeIntervalSince(t0)
        #expect(took < 2, "the hook denied \(took) s after the revoke")
        let errs = (try? String(contentsOfFile: log + ".err", encoding: .utf8)) ?? ""
        #expect(errs.contains("Bash denied — hk.tools is DEVICE_REVOKED (by operator") && errs.contains("INC-9"), "\(errs)")
        try a.op(["restore", "hk.tools"])
        #expect(await eventually(5) { Self.last(log) == "0" })

        // Another worker's socket, and another worker's surface: refused.
        let socket = try #require(Self.socketPath(of: p.pid))
        let (rc2, _, err2) = try await Self.hook(["claude-code", "--socket", socket], input: Self.fixture("claude-code-bash"))
        #expect(rc2 == 2 && err2.contains("NOT_YOURS"), "the test process is not the worker: \(err2)")
        let answer = try await offPool { LocalDecision.ask(socket: socket, surface: "hk") }
        #expect(!answer.allowed && answer.code == "NOT_YOURS")

        // The supervisor killed: the hook denies (the socket is gone).
        p.signal(SIGKILL)
        _ = await p.exitCode(within: 20)
        let (rc3, _, err3) = try await Self.hook(["claude-code", "--socket", socket], input: Self.fixture("claude-code-bash"))
        #expect(rc3 == 2 && err3.contains("SOCKET_UNAVAILABLE"), "\(err3)")
    }

    @Test(
        "each agent's real payload through the socket, under tether supervise: allowed, then denied by a revoke of the mapped surface, then allowed"
    )
    func everyAgentUnderSupervise() async throws {
        let a = try await LiveAuthority()
        let dir = workerDirectory("hook-agents")
        var loop: [String] = []
        for (agent, name) in [("claude-code", "claude-code-mcp"), ("codex", "codex-bash"), ("gemini", "gemini-shell")] {
            FileManager.default.createFile(atPath: "\(dir)/\(name).json", contents: Self.fixture(name))
            chmod("\(dir)/\(name).json", 0o644)
            loop.append(
                "\(tetherBinary) hook \(agent) --map 'mcp__github__*=hs.mcp.github' --map 'Bash=hs.mcp.github' --map 'run_shell_command=hs.mcp.github' < \(dir)/\(name).json >/dev/null 2>&1; echo \(agent) $? >> \(dir)/codes"
            )
        }
        FileManager.default.createFile(atPath: dir + "/codes", contents: nil)
        chmod(dir + "/codes", 0o666)
        #expect(await (try a.run("hs.mcp.github", [], ["true"])).exitCode(within: 30) == 0)
        let script = "while :; do \(loop.joined(separator: "; ")); sleep 0.2; done"
        let config = temporaryDirectory("hook-sv") + "/s.toml"
        try """
        \(a.authorityTable)

        [[worker]]
        name = "hs"
        command = ["/bin/sh", "-c", "\(script.replacingOccurrences(of: "\"", with: "\\\""))"]
        """.write(toFile: config, atomically: true, encoding: .utf8)
        let p = try TetherProcess(["supervise", "--config", config])
        func latest() -> [String: String] {
            var r: [String: String] = [:]
            for l in ((try? String(contentsOfFile: dir + "/codes", encoding: .utf8)) ?? "").split(separator: "\n") {
                let f = l.split(separator: " ")
                if f.count == 2 { r[String(f[0])] = String(f[1]) }
            }
            return r
        }
        let all = ["claude-code", "codex", "gemini"]
        #expect(
            await eventually(30) {
                let r = latest()
                return all.allSatisfy { r[$0] == "0" }
            }, "\(latest()) \(p.stderr)")
        try a.op(["revoke", "hs.mcp.github"])
        #expect(
            await eventually(5) {
                let r = latest()
                return all.allSatisfy { r[$0] == "2" }
            }, "\(latest())")
        try a.op(["restore", "hs.mcp.github"])
        #expect(
            await eventually(5) {
                let r = latest()
                return all.allSatisfy { r[$0] == "0" }
            }, "\(latest())")
        p.signal(SIGTERM)
        _ = await p.exitCode(within: 20)
    }

    @Test(
        "under tether supervise, a worker flooding its decision socket (a thousand connections a second, silent ones held) does not keep another worker's socket from answering: one thread accepts for all, a connection from each ready socket a round"
    )
    func floodDoesNotStarveAnotherSocket() async throws {
        let a = try await LiveAuthority()
        let dir = workerDirectory("hook-flood")
        let out = dir + "/answers"
        FileManager.default.createFile(atPath: out, contents: nil)
        chmod(out, 0o666)
        for s in ["hf-flood", "hf-ask"] { _ = try await a.run(s, [], ["true"]).exitCode(within: 30) }
        // Two flooders: each connects 500 times a second and keeps its last 200 connections
        // open and silent (each holds a serving slot until its 5 s timeout; past 32 the socket
        // closes new ones at once). Not faster: the flood must not take the CPU the other
        // suites running meanwhile need.
        let flood =
            "import os,socket,time\nheld=[]\nwhile True:\n  c=socket.socket(socket.AF_UNIX)\n  c.connect(os.environ['TETHER_DECISION_SOCKET'])\n  held.append(c)\n  if len(held)>200: held.pop(0).close()\n  time.sleep(0.002)\n"
        // The other worker asks every 50 ms and writes how long each answer took.
        let ask =
            "import os,socket,time\nwhile True:\n  t=time.monotonic()\n  c=socket.socket(socket.AF_UNIX)\n  c.connect(os.environ['TETHER_DECISION_SOCKET'])\n  c.sendall(b'{}\\n')\n  ok=c.makefile().readline()\n  c.close()\n  open('\(out)','a').write('%s %.1f\\n' % ('allow' if '\"allowed\":true' in ok else 'other', (time.monotonic()-t)*1000))\n  time.sleep(0.05)\n"
        try flood.write(toFile: dir + "/flood.py", atomically: true, encoding: .utf8)
        try ask.write(toFile: dir + "/ask.py", atomically: true, encoding: .utf8)
        chmod(dir + "/flood.py", 0o644)
        chmod(dir + "/ask.py", 0o644)
        let config = temporaryDirectory("hook-flood-sv") + "/s.toml"
        try """
        \(a.authorityTable)

        [[worker]]
        name = "hf-flood"
        command = ["/bin/sh", "-c", "for i in 1 2; do python3 \(dir)/flood.py & done; wait"]

        [[worker]]
        name = "hf-ask"
        command = ["/bin/sh", "-c", "exec python3 \(dir)/ask.py"]
        """.write(toFile: config, atomically: true, encoding: .utf8)
        let p = try TetherProcess(["supervise", "--config", config])
        func answers() -> [(String, Double)] {
            ((try? String(contentsOfFile: out, encoding: .utf8)) ?? "").split(separator: "\n").compactMap { l in
                let f = l.split(separator: " ")
                return f.count == 2 ? (String(f[0]), Double(f[1]) ?? .infinity) : nil
            }
        }
        #expect(await eventually(30) { answers().count >= 5 }, "\(p.stderr.suffix(800))")
        // Then 3 s of asking under the flood.
        let from = answers().count
        try await Task.sleep(for: .seconds(3))
        let during = answers().dropFirst(from)
        #expect(during.count >= 10, "\(during.count) answers in 3 s under the flood")
        #expect(during.allSatisfy { $0.0 == "allow" }, "\(during)")
        // About a millisecond idle; a second is a margin for a loaded machine, far below what
        // an acceptor held by the flooder would take.
        #expect(during.allSatisfy { $0.1 < 1000 }, "answer times (ms): \(during.map(\.1))")
        p.signal(SIGTERM)
        _ = await p.exitCode(within: 30)
    }

    @Test("a worker asking its own socket about a surface not its own gets NOT_YOURS; about its own, the lease")
    func onlyOwnSurfaces() async throws {
        let a = try await LiveAuthority()
        let dir = workerDirectory("hook-own")
        let out = dir + "/answers"
        FileManager.default.createFile(atPath: out, contents: nil)
        chmod(out, 0o666)
        _ = try await a.run("ho-other", [], ["true"]).exitCode(within: 30)
        let ask = { (s: String) in
            "echo '{\"surface\": \"\(s)\"}' | python3 -c \"import os,socket,sys; c=socket.socket(socket.AF_UNIX); c.connect(os.environ['TETHER_DECISION_SOCKET']); c.sendall(sys.stdin.buffer.read()); print(c.makefile().readline().strip())\" >> \(out)"
        }
        let script = [ask("ho"), ask("ho-other"), ask("ho.sub.missing"), "sleep 30"].joined(separator: "; ")
        let p = try a.run("ho", [], ["/bin/sh", "-c", script])
        #expect(
            await eventually(20) { ((try? String(contentsOfFile: out, encoding: .utf8)) ?? "").split(separator: "\n").count >= 3 },
            "\(p.stderr)")
        let lines = ((try? String(contentsOfFile: out, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
        #expect(lines.count >= 3)
        if lines.count >= 3 {
            #expect(lines[0].contains("\"allowed\":true") && lines[0].contains("\"code\":\"ALLOW\""), "\(lines[0])")
            #expect(lines[1].contains("NOT_YOURS"), "\(lines[1])")
            #expect(lines[2].contains("DEVICE_NOT_FOUND"), "\(lines[2])")
        }
        p.signal(SIGTERM)
        _ = await p.exitCode(within: 20)
    }

    @Test("a worker asking 50,000 made-up sub-surfaces: the authority is asked within the socket's budget, the rest refused at once")
    func madeUpSubSurfaces() async throws {
        let a = try await LiveAuthority()
        let dir = workerDirectory("hook-budget")
        let out = dir + "/codes.json"
        let script = dir + "/flood.py"
        try #"""
        import collections, json, os, socket, sys, time
        c = socket.socket(socket.AF_UNIX); c.connect(os.environ["TETHER_DECISION_SOCKET"])
        f = c.makefile("rwb")
        codes = collections.Counter(); t0 = time.monotonic()
        for i in range(50000):
            f.write(json.dumps({"surface": "hb.made-up-%d" % i}).encode() + b"\n"); f.flush()
            codes[json.loads(f.readline())["code"]] += 1
        codes["seconds"] = round(time.monotonic() - t0, 1)
        open(sys.argv[1], "w").write(json.dumps(codes))
        """#.write(toFile: script, atomically: true, encoding: .utf8)
        chmod(script, 0o644)
        let p = try a.run("hb", [], ["/usr/bin/python3", "-B", script, out])
        #expect(await p.exitCode(within: 300) == 0, "\(p.stderr.suffix(1500))")
        let data = FileManager.default.contents(atPath: out) ?? Data()
        let codes = (try? JSONSerialization.jsonObject(with: data)) as? [String: Double] ?? [:]
        let asked = Int(codes["DEVICE_NOT_FOUND"] ?? 0), seconds = codes["seconds"] ?? 0
        // Each DEVICE_NOT_FOUND is one validate at the authority: at most the burst, the rate
        // over the run's length, and one for each question in flight, with a second of slack.
        let bound = 20 + Int(2 * (seconds + 1)) + 4
        #expect(asked <= bound, "\(asked) validates in \(seconds) s (bound \(bound)): \(codes)")
        #expect(asked >= 20, "the burst went through: \(codes)")
        #expect(Int(codes["RATE_LIMITED"] ?? 0) + Int(codes["BUSY"] ?? 0) + asked == 50000, "every answer a deny: \(codes)")
    }

    /// The decision socket of the `tether run` with this pid: the worker's environment says.
    static func socketPath(of supervisor: pid_t) -> String? {
        for p in ProcessTable.snapshot() where p.pid != supervisor {
            guard let env = FileManager.default.contents(atPath: "/proc/\(p.pid)/environ") else { continue }
            for entry in env.split(separator: 0) {
                let s = String(decoding: entry, as: UTF8.self)
                if s.hasPrefix("TETHER_DECISION_SOCKET="), isDescendant(p.pid, of: supervisor) { return String(s.dropFirst(23)) }
            }
        }
        return nil
    }

    static func isDescendant(_ pid: pid_t, of ancestor: pid_t) -> Bool {
        var p = pid
        for _ in 0..<32 {
            guard let info = ProcessTable.snapshot().first(where: { $0.pid == p }) else { return false }
            if info.ppid == ancestor { return true }
            p = info.ppid
        }
        return false
    }
}

/// A Unix listener that answers every connection with `reply` (nil: never answers).
final class UnixListener: @unchecked Sendable {
    let fd: Int32
    let path: String
    private var held: [Int32] = []
    private let lock = NSLock()
    private var stopped = false

    init(path: String, reply: String?) throws {
        self.path = path
        let s = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        fd = s
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in path.utf8.enumerated() { raw[i] = b }
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0, listen(s, 8) == 0 else { throw POSIXError(.EADDRINUSE) }
        Thread.detachNewThread { [self] in
            while true {
                let c = accept(s, nil, nil)
                if c < 0 { return }
                if let reply {
                    var buf = [UInt8](repeating: 0, count: 512)
                    _ = read(c, &buf, buf.count)  // the question first, as a real peer
                    _ = reply.withCString { write(c, $0, strlen($0)) }
                    close(c)
                } else {
                    lock.lock()
                    held.append(c)
                    lock.unlock()
                }
            }
        }
    }

    func stop() {
        shutdown(fd, Int32(SHUT_RDWR))
        close(fd)
        lock.lock()
        held.forEach { close($0) }
        lock.unlock()
        unlink(path)
    }
}
