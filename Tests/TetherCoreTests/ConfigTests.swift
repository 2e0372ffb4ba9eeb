import Testing
@testable import TetherCore

@Suite("TOML and the configuration file")
struct ConfigTests {
    @Test("a full supervisor file loads, with every setting")
    func fullFile() throws {
        let text = """
            # comment
            [authority]
            url = "https://authority.internal:8470"
            key_file = "/etc/tether/agent.key"
            public_key = '/etc/tether/authority.pub'
            fail_closed_after = "20s"
            poll_interval = "500ms"
            watch = false
            instance = "host-a"

            [supervisor]
            metrics = "127.0.0.1:9471"
            shutdown_timeout = "45s"

            [[worker]]
            name = "agent-01"
            command = [
              "python3",   # the interpreter
              "agent.py",
            ]
            user = "agent"
            env = { MODEL = "small", RETRIES = 3 }
            limits = { nofile = "1024", nproc = "64:128" }
            on_revoke = "term"
            grace = "5s"
            restart = "on-failure"
            restart_delay = "2s"

            [[worker]]
            name = "agent-02"
            surface = "agents.shared"
            command = ["/usr/bin/agent", "--flag=\\"quoted\\""]
            kill_after = "10m"
            """
        let c = try ConfigLoader.parse(text, path: "s.toml")
        #expect(c.authority.urls == ["https://authority.internal:8470"])
        #expect(c.authority.publicKey == "/etc/tether/authority.pub")
        #expect(c.authority.failClosedAfter == .seconds(20))
        #expect(c.authority.pollInterval == .milliseconds(500))
        #expect(c.authority.watch == false)
        #expect(c.supervisor.metrics == "127.0.0.1:9471")
        #expect(c.supervisor.shutdownTimeout == .seconds(45))
        #expect(c.workers.count == 2)
        let w = c.workers[0]
        #expect(w.surface == "agent-01")
        #expect(w.spec.command == ["python3", "agent.py"])
        #expect(w.spec.environment == ["MODEL": "small", "RETRIES": "3"])
        #expect(w.spec.limits.contains(ResourceLimit(.nproc, soft: 64, hard: 128)))
        #expect(w.stop == StopPolicy(onRevoke: .term, killAfter: nil, grace: .seconds(5)))
        #expect(w.restart.mode == .onFailure && w.restart.delay == .seconds(2))
        #expect(w.line == 15)
        #expect(c.workers[1].surface == "agents.shared")
        #expect(c.workers[1].spec.command[1] == "--flag=\"quoted\"")
        #expect(c.workers[1].stop.killAfter == .seconds(600))
    }

    @Test(
        "errors name the line",
        arguments: [
            ("[[worker]]\nname = \"w\"\ncommand = [\"x\"]\non_revoke = \"explode\"\n", 4, "on_revoke"),
            ("[[worker]]\nname = \"w\"\ncommand = [\"x\"]\ncolour = \"red\"\n", 4, "unknown setting worker.colour"),
            ("[authority]\nurl = 5\n", 2, "expected a string or an array of strings"),
            ("[authority]\nurl = []\n", 2, "an empty list"),
            ("[authority]\nurl = [\"https://a\", 5]\n", 2, "an element is"),
            ("[authority]\npoll_interval = \"soon\"\n", 2, "not a duration"),
            ("[authority]\n[authority]\n", 2, "defined twice"),
            ("a = 1\na = 2\n", 2, "defined twice"),
            ("[[worker]]\nname = \"w\"\n", 1, "command"),
            ("[[worker]]\nname = \"bad name\"\ncommand = [\"x\"]\n", 2, "not a valid name"),
            ("[[worker]]\nname = \"w\"\ncommand = [\"x\"]\n[[worker]]\nname = \"w\"\ncommand = [\"y\"]\n", 4, "used twice"),
            ("x = \"unterminated\n", 1, "unterminated string"),
            ("x = [1, 2\n", 1, "never closed"),
            ("when = 1979-05-27\n", 1, "dates"),
            ("[supervisor]\nmetrics = \"nowhere\"\n", 2, "HOST:PORT"),
            ("[[worker]]\nname = \"w\"\ncommand = [\"x\"]\nlimits = { files = \"3\" }\n", 4, "limits"),
            ("x = {a = 1\n", 1, "inline table"),
            ("[[worker]]\nname = \"w\"\ncommand = [\"x\"]\ngates = { shell = \"w.shell\" }\n", 4, "not a gate"),
            ("[[worker]]\nname = \"w\"\ncommand = [\"x\"]\ngates = { net = \"bad name\" }\n", 4, "not a valid surface name"),
            ("[[worker]]\nname = \"w\"\ncommand = [\"x\"]\ngates = { net = \"w\" }\n", 4, "the worker's own surface"),
            (
                "[[worker]]\nname = \"w\"\ncommand = [\"x\"]\ngates = { net = { surface = \"w.net\", mode = \"audit\" } }\n", 4,
                "enforce or record"
            ),
            ("[[worker]]\nname = \"w\"\ncommand = [\"x\"]\ngates = { net = { mode = \"record\" } }\n", 4, "needs a surface"),
            ("[[worker]]\nname = \"w\"\ncommand = [\"x\"]\ngates = { net = 3 }\n", 4, "expected a surface name"),
            ("[[worker]]\nname = \"w\"\ncommand = [\"x\"]\ngates = \"net\"\n", 4, "gates"),
            ("x = -0x10\n", 1, "hex"),
        ])
    func errors(_ text: String, _ line: Int, _ fragment: String) {
        #expect(throws: ConfigError.self) { try ConfigLoader.parse(text, path: "f.toml") }
        do {
            _ = try ConfigLoader.parse(text, path: "f.toml")
        } catch {
            #expect(error.line == line, "\(error)")
            #expect(error.description.hasPrefix("f.toml:\(line): "), "\(error)")
            #expect(error.message.contains(fragment), "\(error)")
        }
    }

    @Test("TOML values: strings, escapes, numbers, nested and dotted tables, arrays of tables")
    func tomlValues() throws {
        let t = try TOML.parse(
            #"""
            a = "tab\there \u00e9"
            b = 'C:\raw'
            c = """
            two \
              lines"""
            d = 1_000
            e = 0x1F
            f = 6.5e-1
            g.h = true
            [x.y]
            z = [[1, 2], ["s"]]
            [[arr]]
            n = 1
            [arr.sub]
            q = 2
            [[arr]]
            n = 2
            """#)
        #expect(t["a"]?.kind == .string("tab\there é"))
        #expect(t["b"]?.kind == .string(#"C:\raw"#))
        #expect(t["c"]?.kind == .string("two lines"))
        #expect(t["d"]?.kind == .integer(1000))
        #expect(t["e"]?.kind == .integer(31))
        #expect(t["f"]?.kind == .float(0.65))
        guard case .table(let g)? = t["g"]?.kind else {
            Issue.record("g")
            return
        }
        #expect(g["h"]?.kind == .bool(true))
        guard case .array(let arr)? = t["arr"]?.kind, arr.count == 2, case .table(let first) = arr[0].kind else {
            Issue.record("arr")
            return
        }
        guard case .table(let sub)? = first["sub"]?.kind else {
            Issue.record("sub")
            return
        }
        #expect(sub["q"]?.kind == .integer(2))
        #expect(arr[1].line == 16)
    }

    @Test("the environment and flags override the file; bad values are refused with their name")
    func overrides() throws {
        var a = AuthoritySettings()
        var w = WorkerConfig(name: "w", spec: WorkerSpec(command: ["x"]))
        try Overrides.environment(["TETHER_ON_REVOKE": "kill", "TETHER_POLL_INTERVAL": "250ms", "TETHER_WATCH": "0"]).apply(
            to: &a, worker: &w)
        #expect(w.stop.onRevoke == .kill && a.pollInterval == .milliseconds(250) && !a.watch)
        var flags = Overrides(source: "the command line")
        flags.onRevoke = "stop"
        flags.env = ["A=1", "B=x=y"]
        try flags.apply(to: &a, worker: &w)
        #expect(w.stop.onRevoke == .stop)
        #expect(w.spec.environment == ["A": "1", "B": "x=y"])
        #expect(throws: ConfigError.self) { try Overrides.environment(["TETHER_GRACE": "later"]).apply(to: &a, worker: &w) }
        do { try Overrides.environment(["TETHER_GRACE": "later"]).apply(to: &a, worker: &w) } catch {
            #expect(error.description.contains("TETHER_GRACE"))
        }
        var bad = Overrides(source: "the command line")
        bad.env = ["=x"]
        #expect(throws: ConfigError.self) { try bad.apply(to: &a, worker: &w) }
    }

    @Test("gates: a surface per kind in the file, as a name or { surface, mode }; --gate and --gate-mode over it")
    func gates() throws {
        let c = try ConfigLoader.parse(
            """
            [[worker]]
            name = "agent-01"
            command = ["python3", "agent.py"]
            gates = { exec = "agent-01.exec", net = { surface = "agent-01.net", mode = "record" }, write = "agent-01.tools" }
            """, path: "f.toml")
        #expect(
            c.workers[0].gates == [
                GateConfig(kind: .exec, surface: "agent-01.exec"), GateConfig(kind: .net, surface: "agent-01.net", mode: .record),
                GateConfig(kind: .write, surface: "agent-01.tools"),
            ])
        var a = AuthoritySettings()
        var w = c.workers[0]
        var flags = Overrides(source: "the command line")
        flags.gates = ["net=agent-01.net2"]
        flags.gateModes = ["exec=record"]
        try flags.apply(to: &a, worker: &w)
        #expect(w.gates.map(\.surface) == ["agent-01.exec", "agent-01.net2", "agent-01.tools"])
        #expect(w.gates[0].mode == .record && w.gates[1].mode == .enforce)
        for (gate, mode, fragment) in [
            ("net", nil, "KIND=SURFACE"), ("disk=x", nil, "not a gate"), ("net=agent-01", nil, "own surface"),
            (nil, "net", "KIND=MODE"), (nil, "net=loud", "not a mode"),
        ] as [(String?, String?, String)] {
            var bad = Overrides(source: "the command line")
            bad.gates = gate.map { [$0] } ?? []
            bad.gateModes = mode.map { [$0] } ?? []
            var copy = w
            do {
                try bad.apply(to: &a, worker: &copy)
                Issue.record("\(gate ?? "") \(mode ?? "") was accepted")
            } catch {
                #expect(error.description.contains(fragment), "\(error)")
            }
        }
        var none = WorkerConfig(name: "w", spec: WorkerSpec(command: ["x"]))
        var onlyMode = Overrides(source: "the command line")
        onlyMode.gateModes = ["net=record"]
        #expect(throws: ConfigError.self) { try onlyMode.apply(to: &a, worker: &none) }
    }

    @Test("replicas: the authority's URLs as a list in the file, comma-separated in a flag or the environment, in order")
    func replicaURLs() throws {
        let c = try ConfigLoader.parse(
            "[authority]\nurl = [\"https://a:8470\", \"https://b:8470\"]\n[[worker]]\nname = \"w\"\ncommand = [\"true\"]\n", path: "r.toml")
        #expect(c.authority.urls == ["https://a:8470", "https://b:8470"])
        var settings = AuthoritySettings()
        var worker = c.workers[0]
        try Overrides.environment(["TETHER_AUTHORITY": "https://c:8470, https://d:8470"]).apply(to: &settings, worker: &worker)
        #expect(settings.urls == ["https://c:8470", "https://d:8470"])
    }
}
