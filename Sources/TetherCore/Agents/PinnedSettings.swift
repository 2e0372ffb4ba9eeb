import Foundation

/// What `--agent` writes into the worker's /etc (layered read-only over the host's, inside the
/// worker's mount namespace only): each agent's managed, system-level settings with Tether's
/// pre-tool hook in them, in the place and with the keys that agent reads before — and lets
/// win over — anything its user can write. docs/agents.md says what each agent version honours.
public enum PinnedSettings {
    /// A file below /etc (`path` is relative to it).
    public struct File: Sendable, Equatable {
        public var path: String
        public var contents: String
    }

    public struct PinError: Error, CustomStringConvertible, Sendable {
        public var description: String
    }

    /// The hook as the agent runs it (through a shell): the installed binary by absolute path
    /// (an agent whose PATH has no `tether` would otherwise run the tool), this worker's
    /// decision socket and surface named outright (not taken from the environment, which the
    /// agent controls), the `--map` rules.
    public static func hookCommand(executable: String, agent: CodingAgent, socket: String, surface: String, rules: [ToolRule]) -> String {
        var words = [executable, "hook", agent.rawValue, "--socket", socket, "--surface", surface]
        for r in rules { words += ["--map", r.text] }
        return words.map(shellQuoted).joined(separator: " ")
    }

    /// How long an agent waits for the hook before giving up — and running the tool, in every
    /// one of them. Well above the hook's own bound (it answers a deny within ~2 s of a silent
    /// socket), so the agent's timeout never decides.
    public static let hookTimeoutSeconds = 60

    /// The files for `agent`, merged with the host's own managed settings of that agent where
    /// they are JSON (`host` reads a file below /etc, nil when there is none): the host's keys
    /// stay, Tether's hook comes first and hooks are limited to managed ones.
    public static func files(agent: CodingAgent, hook: String, host: (String) -> String?) throws(PinError) -> [File] {
        switch agent {
        case .claudeCode:
            let path = "claude-code/managed-settings.json"
            var o = try hostObject(path, host)
            // onFailure "block" (on the handler, not the matcher): a hook that exits 1, times
            // out, cannot be found or is killed denies, where Claude Code would run the tool.
            let entry: [String: Any] = [
                "matcher": "*", "hooks": [["type": "command", "command": hook, "timeout": hookTimeoutSeconds, "onFailure": "block"]],
            ]
            var hooks = o["hooks"] as? [String: Any] ?? [:]
            hooks["PreToolUse"] = [entry] + (hooks["PreToolUse"] as? [Any] ?? [])
            o["hooks"] = hooks
            // Only managed hooks run: a --settings file, a project's or the user's settings
            // can add none, and their disableAllHooks turns none of these off.
            o["allowManagedHooksOnly"] = true
            o["disableAllHooks"] = false
            return [File(path: path, contents: json(o))]
        case .codex:
            return codexFiles(hook: hook)
        case .gemini:
            let path = "gemini-cli/settings.json"
            var o = try hostObject(path, host)
            let entry: [String: Any] = [
                "matcher": ".*", "hooks": [["type": "command", "command": hook, "timeout": hookTimeoutSeconds * 1000]],
            ]
            var hooks = o["hooks"] as? [String: Any] ?? [:]
            hooks["BeforeTool"] = [entry] + (hooks["BeforeTool"] as? [Any] ?? [])
            o["hooks"] = hooks
            // The system scope is merged last: these win over the user's and the workspace's.
            // Hooks on; folder trust off (in an untrusted folder Gemini CLI drops every
            // settings hook, system ones included); no container relaunch without this file.
            var hooksConfig = o["hooksConfig"] as? [String: Any] ?? [:]
            hooksConfig["enabled"] = true
            o["hooksConfig"] = hooksConfig
            var security = o["security"] as? [String: Any] ?? [:]
            var trust = security["folderTrust"] as? [String: Any] ?? [:]
            trust["enabled"] = false
            security["folderTrust"] = trust
            o["security"] = security
            var tools = o["tools"] as? [String: Any] ?? [:]
            tools["sandbox"] = false
            tools["enableHooks"] = true
            o["tools"] = tools
            return [File(path: path, contents: json(o))]
        }
    }

    /// Codex reads /etc/codex/requirements.toml as its managed layer: hooks there run without a
    /// trust review, `allow_managed_hooks_only` drops every hook of the user's and the project's
    /// layers, and `[features] hooks = true` there keeps `--disable hooks`, `-c
    /// features.hooks=false` and a user's config from turning hooks off. Codex has no
    /// fail-closed setting: `tether hook` itself never exits any way but 0 (allow) or 2 with a
    /// reason on stderr (Codex runs the tool on exit 2 with an empty stderr).
    static func codexFiles(hook: String) -> [File] {
        let text = """
            # Written by Tether for this worker only (tether run --agent codex): read-only, inside the
            # worker's mount namespace. docs/agents.md
            allow_managed_hooks_only = true

            [features]
            hooks = true

            [[hooks.PreToolUse]]
            matcher = "*"

            [[hooks.PreToolUse.hooks]]
            type = "command"
            command = \(tomlString(hook))
            timeout = \(hookTimeoutSeconds)

            """
        return [File(path: "codex/requirements.toml", contents: text)]
    }

    /// A TOML basic string.
    static func tomlString(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case _ where u.value < 0x20 || u.value == 0x7F: out += String(format: "\\u%04X", u.value)
            default: out.unicodeScalars.append(u)
            }
        }
        return out + "\""
    }

    static func hostObject(_ path: String, _ host: (String) -> String?) throws(PinError) -> [String: Any] {
        guard let text = host(path) else { return [:] }
        guard let o = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any] else {
            throw PinError(
                description:
                    "/etc/\(path) on this host is not a JSON object: Tether merges its hook into it and will not replace an administrator's settings it cannot read"
            )
        }
        return o
    }

    static func json(_ o: [String: Any]) -> String {
        String(decoding: JSONWriter.data(o), as: UTF8.self) + "\n"
    }

    /// One shell word: single-quoted unless it is plainly safe.
    public static func shellQuoted(_ s: String) -> String {
        let safe =
            !s.isEmpty
            && s.utf8.allSatisfy { c in
                (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || "/._-=+:,@".utf8.contains(c)
            }
        return safe ? s : "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }
}
