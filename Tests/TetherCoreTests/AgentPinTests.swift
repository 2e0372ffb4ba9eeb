import Foundation
import Testing
@testable import TetherCore

/// `tether run --agent` as values: the hook command the agent runs, the managed settings it is
/// pinned in (Claude Code, Codex, Gemini CLI), `--map` rules, and the agent fields of the
/// configuration file and the command line. (The real agents under the pin: EnforcementTests.)
@Suite("Agent pins: the hook command, the pinned settings, --map, agent = …")
struct AgentPinSettingsTests {
    /// The words `/bin/sh` makes of `command` (`printf '%s\0' COMMAND`): what the agent's shell runs.
    static func shellWords(_ command: String) throws -> [String] {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", "printf '%s\\0' " + command]
        p.environment = ["PATH": "/usr/bin:/bin", "HOME": "/nonexistent"]
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        #expect(p.terminationStatus == 0)
        var words = String(decoding: data, as: UTF8.self).split(separator: "\0", omittingEmptySubsequences: false).map(String.init)
        if words.last == "" { words.removeLast() }
        return words
    }

    static func object(_ text: String) throws -> [String: Any] {
        let o = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]
        return try #require(o, "not a JSON object: \(text)")
    }

    static let rules = [
        ToolRule(pattern: "Bash", surface: "agent-01.exec"), ToolRule(pattern: "mcp__github__*", surface: "agent-01.mcp.github"),
    ]

    // MARK: - The hook command

    @Test("the hook command: plain words as they are, the rest single-quoted (exact text)")
    func hookCommandText() {
        let plain = PinnedSettings.hookCommand(
            executable: "/usr/bin/tether", agent: .claudeCode, socket: "/run/tether/w1/decide.sock",
            surface: "agent-01", rules: [])
        #expect(plain == "/usr/bin/tether hook claude-code --socket /run/tether/w1/decide.sock --surface agent-01")
        let odd = PinnedSettings.hookCommand(
            executable: "/opt/my tools/it's/tether", agent: .codex, socket: "/run/t/s.sock",
            surface: "agent-01", rules: Self.rules)
        #expect(
            odd
                == "'/opt/my tools/it'\\''s/tether' hook codex --socket /run/t/s.sock --surface agent-01 --map Bash=agent-01.exec --map 'mcp__github__*=agent-01.mcp.github'"
        )
        #expect(PinnedSettings.shellQuoted("") == "''")
        #expect(PinnedSettings.shellQuoted("a$b") == "'a$b'")
        #expect(PinnedSettings.shellQuoted("x=y:z,w@v+1") == "x=y:z,w@v+1")
    }

    @Test("the hook command round-trips through /bin/sh: spaces, quotes, $, backquotes, a newline stay one word each, nothing expands")
    func hookCommandThroughShell() throws {
        let executable = "/opt/my tools/it's \"quoted\"/tether"
        let socket = "/tmp/a b/$HOME `id` $(id) \\ *\n;|&/decide.sock"
        let command = PinnedSettings.hookCommand(
            executable: executable, agent: .gemini, socket: socket, surface: "agent-01", rules: Self.rules)
        let words = try Self.shellWords(command)
        #expect(
            words == [
                executable, "hook", "gemini", "--socket", socket, "--surface", "agent-01",
                "--map", "Bash=agent-01.exec", "--map", "mcp__github__*=agent-01.mcp.github",
            ])
    }

    // MARK: - Claude Code

    @Test("Claude Code: managed-settings.json with our PreToolUse hook first, 60 s, onFailure block, managed hooks only")
    func claudeAlone() throws {
        let hook = PinnedSettings.hookCommand(executable: "/usr/bin/tether", agent: .claudeCode, socket: "/s", surface: "w", rules: [])
        var asked: [String] = []
        let files = try PinnedSettings.files(agent: .claudeCode, hook: hook) { path in
            asked.append(path)
            return nil
        }
        #expect(asked == ["claude-code/managed-settings.json"])
        #expect(files.map(\.path) == ["claude-code/managed-settings.json"])
        let o = try Self.object(files[0].contents)
        #expect(o["allowManagedHooksOnly"] as? Bool == true)
        #expect(o["disableAllHooks"] as? Bool == false)
        let pre = try #require((o["hooks"] as? [String: Any])?["PreToolUse"] as? [[String: Any]])
        #expect(pre.count == 1)
        #expect(pre[0]["matcher"] as? String == "*")
        let handlers = try #require(pre[0]["hooks"] as? [[String: Any]])
        #expect(handlers.count == 1)
        #expect(handlers[0]["type"] as? String == "command")
        #expect(handlers[0]["command"] as? String == hook)
        #expect(handlers[0]["timeout"] as? Int == 60)
        #expect(handlers[0]["onFailure"] as? String == "block")
        // onFailure sits on the handler, not the matcher entry.
        #expect(pre[0]["onFailure"] == nil)
    }

    @Test(
        "Claude Code: the host's managed settings are merged — its keys and its own PreToolUse hooks stay, after ours; its disableAllHooks is overridden"
    )
    func claudeMergesHost() throws {
        let host = """
            {
              "permissions": {"deny": ["Bash(rm:*)"]},
              "env": {"CORP_PROXY": "http://proxy:3128"},
              "disableAllHooks": true,
              "allowManagedHooksOnly": false,
              "hooks": {
                "PreToolUse": [{"matcher": "Bash", "hooks": [{"type": "command", "command": "/usr/local/bin/audit"}]}],
                "PostToolUse": [{"matcher": "*", "hooks": [{"type": "command", "command": "/usr/local/bin/log"}]}]
              }
            }
            """
        let hook = "/usr/bin/tether hook claude-code --socket /s --surface w"
        let files = try PinnedSettings.files(agent: .claudeCode, hook: hook) { $0 == "claude-code/managed-settings.json" ? host : nil }
        let o = try Self.object(try #require(files.first).contents)
        #expect((o["permissions"] as? [String: Any])?["deny"] as? [String] == ["Bash(rm:*)"])
        #expect((o["env"] as? [String: Any])?["CORP_PROXY"] as? String == "http://proxy:3128")
        #expect(o["disableAllHooks"] as? Bool == false)
        #expect(o["allowManagedHooksOnly"] as? Bool == true)
        let hooks = try #require(o["hooks"] as? [String: Any])
        let pre = try #require(hooks["PreToolUse"] as? [[String: Any]])
        #expect(pre.count == 2)
        #expect(((pre.first?["hooks"] as? [[String: Any]])?.first?["command"] as? String) == hook)
        #expect(pre.last?["matcher"] as? String == "Bash")
        #expect(((pre.last?["hooks"] as? [[String: Any]])?.first?["command"] as? String) == "/usr/local/bin/audit")
        let post = try #require(hooks["PostToolUse"] as? [[String: Any]])
        #expect(((post.first?["hooks"] as? [[String: Any]])?.first?["command"] as? String) == "/usr/local/bin/log")
    }

    @Test("a host managed-settings file that is not a JSON object is refused, naming it (never replaced)")
    func hostNotJSON() {
        for text in ["not json {", "[1, 2]", "\"a string\"", ""] {
            for (agent, path) in [(CodingAgent.claudeCode, "claude-code/managed-settings.json"), (.gemini, "gemini-cli/settings.json")] {
                do {
                    let files = try PinnedSettings.files(agent: agent, hook: "h") { $0 == path ? text : nil }
                    Issue.record("\(agent) with host \(path) = \(text.debugDescription) was accepted: \(files)")
                } catch {
                    #expect(error.description.contains("/etc/" + path), "\(error)")
                }
            }
        }
    }

    // MARK: - Codex

    @Test(
        "Codex: requirements.toml — managed hooks only, [features] hooks = true, our PreToolUse hook; it parses back, the command exactly")
    func codex() throws {
        let socket = "/tmp/q\"uo\\te d/it's\ttab/decide.sock"
        let hook = PinnedSettings.hookCommand(
            executable: "/usr/bin/tether", agent: .codex, socket: socket, surface: "agent-01", rules: Self.rules)
        #expect(hook.contains("\"") && hook.contains("\\"))
        // A host requirements.toml is not read (not JSON: Codex's file is replaced, not merged).
        let files = try PinnedSettings.files(agent: .codex, hook: hook) { _ in "# not toml we merge" }
        #expect(files.map(\.path) == ["codex/requirements.toml"])
        let text = files[0].contents
        #expect(text.contains("\nallow_managed_hooks_only = true\n"))
        #expect(text.contains("[features]\nhooks = true\n"))

        let root = try TOML.parse(text)
        #expect(root["allow_managed_hooks_only"]?.kind == .bool(true))
        guard case .table(let features)? = root["features"]?.kind else {
            Issue.record("no [features]: \(text)")
            return
        }
        #expect(features["hooks"]?.kind == .bool(true))
        guard case .table(let hooks)? = root["hooks"]?.kind,
            case .array(let pre)? = hooks["PreToolUse"]?.kind, pre.count == 1,
            case .table(let entry) = pre[0].kind
        else {
            Issue.record("no [[hooks.PreToolUse]]: \(text)")
            return
        }
        #expect(entry["matcher"]?.kind == .string("*"))
        guard case .array(let handlers)? = entry["hooks"]?.kind, handlers.count == 1,
            case .table(let handler) = handlers[0].kind
        else {
            Issue.record("no [[hooks.PreToolUse.hooks]]: \(text)")
            return
        }
        #expect(handler["type"]?.kind == .string("command"))
        #expect(handler["command"]?.kind == .string(hook))
        #expect(handler["timeout"]?.kind == .integer(60))
        // And what Codex's shell makes of it: the socket path, whole.
        guard case .string(let parsed)? = handler["command"]?.kind else { return }
        let words = try Self.shellWords(parsed)
        #expect(words.count == 11 && words[4] == socket, "\(words)")
    }

    @Test("Codex: a TOML basic string escapes \" and \\ and control characters")
    func tomlString() {
        #expect(PinnedSettings.tomlString("a\"b\\c") == "\"a\\\"b\\\\c\"")
        #expect(PinnedSettings.tomlString("t\tn\n") == "\"t\\u0009n\\u000A\"")
        #expect(PinnedSettings.tomlString("é") == "\"é\"")
    }

    // MARK: - Gemini CLI

    @Test("Gemini CLI: system settings with hooks on, folder trust off, no sandbox, our BeforeTool hook first; the host's kept")
    func gemini() throws {
        let host = """
            {"security": {"auth": {"selectedType": "vertex-ai"}, "folderTrust": {"enabled": true}},
             "hooksConfig": {"enabled": false, "disabled": ["other"]},
             "hooks": {"BeforeTool": [{"matcher": "run_shell_command", "hooks": [{"type": "command", "command": "/usr/local/bin/audit"}]}]},
             "ui": {"theme": "dark"}}
            """
        let hook = "/usr/bin/tether hook gemini --socket /s --surface w"
        let files = try PinnedSettings.files(agent: .gemini, hook: hook) { $0 == "gemini-cli/settings.json" ? host : nil }
        #expect(files.map(\.path) == ["gemini-cli/settings.json"])
        let o = try Self.object(files[0].contents)
        let hooksConfig = try #require(o["hooksConfig"] as? [String: Any])
        #expect(hooksConfig["enabled"] as? Bool == true)
        #expect(hooksConfig["disabled"] as? [String] == ["other"])
        let security = try #require(o["security"] as? [String: Any])
        #expect((security["folderTrust"] as? [String: Any])?["enabled"] as? Bool == false)
        #expect((security["auth"] as? [String: Any])?["selectedType"] as? String == "vertex-ai")
        #expect((o["tools"] as? [String: Any])?["sandbox"] as? Bool == false)
        #expect((o["ui"] as? [String: Any])?["theme"] as? String == "dark")
        let before = try #require((o["hooks"] as? [String: Any])?["BeforeTool"] as? [[String: Any]])
        #expect(before.count == 2)
        #expect(before[0]["matcher"] as? String == ".*")
        let ours = try #require((before[0]["hooks"] as? [[String: Any]])?.first)
        #expect(ours["command"] as? String == hook)
        #expect(ours["timeout"] as? Int == 60_000)
        #expect(before[1]["matcher"] as? String == "run_shell_command")
        #expect(CodingAgent.gemini.event == "BeforeTool" && CodingAgent.codex.event == "PreToolUse")
    }

    // MARK: - --map rules

    @Test("ToolRule.parse: TOOL=SURFACE split at the last =; a missing tool or a bad surface refused")
    func toolRuleParse() throws {
        #expect(try ToolRule.parse("Bash=agent-01.exec").get() == ToolRule(pattern: "Bash", surface: "agent-01.exec"))
        #expect(
            try ToolRule.parse("mcp__github__*=agent-01.mcp.github").get()
                == ToolRule(pattern: "mcp__github__*", surface: "agent-01.mcp.github"))
        #expect(try ToolRule.parse("a=b=c").get() == ToolRule(pattern: "a=b", surface: "c"))
        #expect(ToolRule(pattern: "Bash", surface: "x").text == "Bash=x")
        for bad in ["Bash", "=agent-01.exec", "Bash=", "Bash=bad surface", "Bash=a/b", ""] {
            switch ToolRule.parse(bad) {
            case .success(let r): Issue.record("\(bad.debugDescription) parsed as \(r)")
            case .failure(let e): #expect(!e.description.isEmpty)
            }
        }
        if case .failure(let e) = ToolRule.parse("Bash") { #expect(e.description.contains("TOOL=SURFACE")) }
    }

    @Test("ToolRule.matches: whole names, * any run of characters")
    func toolRuleMatches() {
        func rule(_ p: String) -> ToolRule { ToolRule(pattern: p, surface: "s") }
        #expect(rule("Bash").matches("Bash"))
        #expect(!rule("Bash").matches("BashX"))
        #expect(!rule("Bash").matches("bash"))
        #expect(!rule("Bash").matches("XBash"))
        #expect(rule("mcp__github__*").matches("mcp__github__create_issue"))
        #expect(rule("mcp__github__*").matches("mcp__github__"))
        #expect(!rule("mcp__github__*").matches("mcp__gitlab__create_issue"))
        #expect(rule("*").matches(""))
        #expect(rule("*").matches("anything at all"))
        #expect(rule("a*b*c").matches("abc"))
        #expect(rule("a*b*c").matches("aXXbYYc"))
        #expect(!rule("a*b*c").matches("acb"))
        #expect(rule("*Edit").matches("MultiEdit"))
        #expect(!rule("*Edit").matches("Editor"))
        #expect(!rule("").matches("x"))
    }

    // MARK: - The configuration file and the command line

    @Test("[[worker]] agent, agent_map and accept_unpinned_hooks load into the worker's spec")
    func configAgent() throws {
        let c = try ConfigLoader.parse(
            """
            [[worker]]
            name = "w"
            command = ["codex", "exec"]
            agent = "codex"
            agent_map = ["Bash=x.exec", "mcp__*=x.mcp"]
            accept_unpinned_hooks = true

            [[worker]]
            name = "v"
            command = ["claude"]
            agent = "claude-code"
            """, path: "a.toml")
        #expect(
            c.workers[0].spec.agent
                == AgentPin(
                    agent: .codex, rules: [ToolRule(pattern: "Bash", surface: "x.exec"), ToolRule(pattern: "mcp__*", surface: "x.mcp")],
                    acceptUnpinned: true))
        #expect(c.workers[1].spec.agent == AgentPin(agent: .claudeCode))
        let none = try ConfigLoader.parse("[[worker]]\nname = \"w\"\ncommand = [\"true\"]\n", path: "n.toml")
        #expect(none.workers[0].spec.agent == nil)
    }

    @Test(
        "[[worker]] agent fields refused with file:line and the field's name: an unknown agent, agent_map or accept_unpinned_hooks without agent, a bad rule, a wrong type"
    )
    func configAgentRefused() {
        let cases: [(String, [String])] = [
            ("agent = \"cursor\"", ["a.toml:4:", "worker.agent", "cursor", "claude-code"]),
            ("agent_map = [\"Bash=x.exec\"]", ["a.toml:4:", "worker.agent_map", "agent = "]),
            ("accept_unpinned_hooks = true", ["a.toml:4:", "worker.accept_unpinned_hooks"]),
            ("agent = \"codex\"\nagent_map = [\"Bash\"]", ["a.toml:5:", "worker.agent_map", "TOOL=SURFACE"]),
            ("agent = \"codex\"\nagent_map = [\"Bash=not a surface\"]", ["a.toml:5:", "worker.agent_map", "not a valid surface"]),
            ("agent = \"codex\"\naccept_unpinned_hooks = \"yes\"", ["a.toml:5:", "worker.accept_unpinned_hooks"]),
            ("agent = 3", ["a.toml:4:", "worker.agent"]),
        ]
        for (lines, fragments) in cases {
            let text = "[[worker]]\nname = \"w\"\ncommand = [\"x\"]\n" + lines + "\n"
            do {
                let c = try ConfigLoader.parse(text, path: "a.toml")
                Issue.record("accepted: \(lines) → \(String(describing: c.workers.first?.spec.agent))")
            } catch {
                for f in fragments { #expect(error.description.contains(f), "\(lines): \(error)") }
            }
        }
    }

    @Test("--agent, --map, --accept-unpinned-hooks: set the pin; refused without --agent or with an unknown agent, naming the flag")
    func overrides() throws {
        var a = AuthoritySettings()
        var w = WorkerConfig(name: "w", spec: WorkerSpec(command: ["codex"]))
        var flags = Overrides(source: "the command line")
        flags.agent = "codex"
        flags.agentMaps = ["Bash=w.exec"]
        flags.acceptUnpinnedHooks = true
        try flags.apply(to: &a, worker: &w)
        #expect(w.spec.agent == AgentPin(agent: .codex, rules: [ToolRule(pattern: "Bash", surface: "w.exec")], acceptUnpinned: true))

        // --agent over a file's agent keeps the file's rules and acceptance.
        var switched = Overrides(source: "the command line")
        switched.agent = "claude-code"
        try switched.apply(to: &a, worker: &w)
        #expect(w.spec.agent == AgentPin(agent: .claudeCode, rules: [ToolRule(pattern: "Bash", surface: "w.exec")], acceptUnpinned: true))

        func refused(_ o: Overrides, _ fragments: [String]) {
            var a = AuthoritySettings()
            var w = WorkerConfig(name: "w", spec: WorkerSpec(command: ["x"]))
            do {
                try o.apply(to: &a, worker: &w)
                Issue.record("accepted: \(o) → \(String(describing: w.spec.agent))")
            } catch {
                for f in fragments { #expect(error.description.contains(f), "\(error)") }
            }
        }
        var mapOnly = Overrides(source: "the command line")
        mapOnly.agentMaps = ["Bash=w.exec"]
        refused(mapOnly, ["--map", "--agent"])
        var acceptOnly = Overrides(source: "the command line")
        acceptOnly.acceptUnpinnedHooks = true
        refused(acceptOnly, ["--accept-unpinned-hooks", "--agent"])
        var bogus = Overrides(source: "the command line")
        bogus.agent = "bogus"
        refused(bogus, ["--agent", "\"bogus\"", "claude-code, codex, gemini"])
        var badMap = Overrides(source: "the command line")
        badMap.agent = "gemini"
        badMap.agentMaps = ["run_shell_command"]
        refused(badMap, ["--map", "TOOL=SURFACE"])
        refused(Overrides.environment(["TETHER_AGENT": "bogus"]), ["TETHER_AGENT", "bogus"])
        var fromEnv = WorkerConfig(name: "w", spec: WorkerSpec(command: ["gemini"]))
        try Overrides.environment(["TETHER_AGENT": "gemini"]).apply(to: &a, worker: &fromEnv)
        #expect(fromEnv.spec.agent == AgentPin(agent: .gemini))
    }
}
