import Foundation
import Glibc
import Testing
import TetherCore
import TetherTestKit

/// `tether run --agent` deciding whether a worker may start with its hook pinned, against a real
/// authority, with stand-in agents (a shell script named `claude`; the real agents:
/// AgentPinTests): refused — exit 78, nothing started — when the command is not the agent's
/// own program, when it is older than the oldest version that honours the pin, or (Gemini CLI)
/// always, unless --accept-unpinned-hooks; started with the managed settings pinned read-only
/// in the worker's /etc only.
@Suite("tether run --agent: refusals and the pinned file", .serialized, .timeLimit(.minutes(5)))
struct AgentRefusalTests {
    /// A stand-in `claude`: `--version` prints `version`; anything else runs `body`. Readable and
    /// runnable by any uid (the worker's is a dynamic one), in a directory of its own.
    static func fakeClaude(version: String, body: String) throws -> String {
        let dir = temporaryDirectory("tether-fake-claude")
        chmod(dir, 0o755)
        let path = dir + "/claude"
        try """
        #!/bin/sh
        if [ "$1" = "--version" ]; then echo '\(version)'; exit 0; fi
        \(body)
        exit 0

        """.write(toFile: path, atomically: true, encoding: .utf8)
        chmod(path, 0o755)
        return path
    }

    static func exists(_ path: String) -> Bool { FileManager.default.fileExists(atPath: path) }

    static func read(_ path: String) -> String { (try? String(contentsOfFile: path, encoding: .utf8)) ?? "" }

    /// The mount that holds `path` in a mountinfo text (the deepest mount point above it, the
    /// last mounted there): its mount point and options.
    static func mount(holding path: String, in mountinfo: String) -> (point: String, options: [String])? {
        var best: (point: String, options: [String])?
        for line in mountinfo.split(separator: "\n") {
            let f = line.split(separator: " ")
            guard f.count > 5 else { continue }
            let point = String(f[4])
            guard point == "/" || path == point || path.hasPrefix(point + "/") else { continue }
            if best == nil || point.count >= best!.point.count {
                best = (point, f[5].split(separator: ",").map(String.init))
            }
        }
        return best
    }

    @Test("--agent claude-code with a command that is not claude: refused (78), naming --accept-unpinned-hooks; nothing runs")
    func notClaude() async throws {
        let a = try await LiveAuthority()
        let marker = workerDirectory("agent-refusal") + "/ran"
        let p = try a.run("agent-a", ["--net", "none", "--agent", "claude-code"], ["/bin/sh", "-c", "touch '\(marker)'"])
        #expect(await p.exitCode(within: 60) == 78, "\(p.stderr)")
        #expect(p.stderr.contains("(/bin/sh) is not claude"), "\(p.stderr)")
        #expect(p.stderr.contains("--accept-unpinned-hooks"), "\(p.stderr)")
        #expect(p.stderr.contains("Nothing was started"), "\(p.stderr)")
        try await Task.sleep(for: .milliseconds(300))
        #expect(!Self.exists(marker))
    }

    @Test("a claude older than 2.1.295 (its --version asked as a worker): refused (78); nothing of the agent runs")
    func tooOld() async throws {
        let a = try await LiveAuthority()
        let marker = workerDirectory("agent-refusal") + "/ran"
        let claude = try Self.fakeClaude(version: "1.0.0 (Claude Code)", body: "touch '\(marker)'")
        let p = try a.run("agent-b", ["--net", "none", "--agent", "claude-code"], [claude])
        #expect(await p.exitCode(within: 60) == 78, "\(p.stderr)")
        #expect(p.stderr.contains("claude-code 1.0.0 is older than 2.1.295"), "\(p.stderr)")
        #expect(p.stderr.contains("--accept-unpinned-hooks"), "\(p.stderr)")
        #expect(p.stderr.contains("Nothing was started"), "\(p.stderr)")
        try await Task.sleep(for: .milliseconds(300))
        #expect(!Self.exists(marker))
    }

    @Test(
        "claude 2.1.400 starts: in the worker /etc/claude-code/managed-settings.json holds the pinned hook, read-only; the host's /etc untouched"
    )
    func pinnedFile() async throws {
        let hostHadIt = Self.exists("/etc/claude-code")
        let a = try await LiveAuthority()
        let out = workerDirectory("agent-pinned")
        let claude = try Self.fakeClaude(
            version: "2.1.400 (Claude Code)",
            body: """
                touch '\(out)/ran'
                cp /etc/claude-code/managed-settings.json '\(out)/settings.json'
                cat /proc/self/mountinfo > '\(out)/mountinfo'
                printf '%s' "$TETHER_DECISION_SOCKET" > '\(out)/socket'
                if (echo '{}' > /etc/claude-code/managed-settings.json) 2>'\(out)/write.err'; then touch '\(out)/wrote'; fi
                if (echo '{}' > /etc/claude-code/managed-settings.local.json) 2>'\(out)/create.err'; then touch '\(out)/created'; fi
                cp /etc/claude-code/managed-settings.json '\(out)/after.json'
                """)
        let p = try a.run("agent-c", ["--net", "none", "--agent", "claude-code"], [claude])
        #expect(await p.exitCode(within: 60) == 0, "\(p.stderr)")
        #expect(Self.exists(out + "/ran"), "\(p.stderr)")

        let text = Self.read(out + "/settings.json")
        #expect(text.contains("hook claude-code --socket"), "\(text)")
        #expect(text.contains("--surface agent-c"), "\(text)")
        let o = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]
        #expect(o?["allowManagedHooksOnly"] as? Bool == true)
        let pre = (o?["hooks"] as? [String: Any])?["PreToolUse"] as? [[String: Any]]
        let command = (pre?.first?["hooks"] as? [[String: Any]])?.first?["command"] as? String ?? ""
        // The installed binary by absolute path, this worker's own socket.
        let binary = URL(fileURLWithPath: tetherBinary).resolvingSymlinksInPath().path
        #expect(command.hasPrefix(binary + " hook claude-code --socket "), "\(command)")
        let socket = Self.read(out + "/socket")
        #expect(!socket.isEmpty && command.contains("--socket \(socket) --surface agent-c"), "\(command) / \(socket)")

        // Read-only: the write fails, the file is as pinned, and the mount that holds it is ro.
        #expect(!Self.exists(out + "/wrote"), "\(Self.read(out + "/write.err"))")
        #expect(!Self.exists(out + "/created"), "\(Self.read(out + "/create.err"))")
        // EROFS, not EACCES: the mount is read-only, whatever the worker's uid may write.
        #expect(Self.read(out + "/write.err").contains("Read-only file system"), "\(Self.read(out + "/write.err"))")
        #expect(Self.read(out + "/create.err").contains("Read-only file system"), "\(Self.read(out + "/create.err"))")
        #expect(Self.read(out + "/after.json") == text)
        let holder = Self.mount(holding: "/etc/claude-code/managed-settings.json", in: Self.read(out + "/mountinfo"))
        #expect(holder != nil && holder!.point.hasPrefix("/etc"), "\(String(describing: holder))")
        #expect(holder?.options.contains("ro") == true, "\(String(describing: holder))")

        // Only in the worker's mount namespace: the host's /etc is as it was; the staged copy is gone.
        #expect(Self.exists("/etc/claude-code") == hostHadIt)
        if !hostHadIt { #expect(!Self.exists("/etc/claude-code/managed-settings.json")) }
        if !socket.isEmpty {
            #expect(await eventually(5) { !Self.exists((socket as NSString).deletingLastPathComponent + "/etc") })
        }
    }

    @Test(
        "--agent gemini: refused without --accept-unpinned-hooks (GEMINI_CLI_SYSTEM_SETTINGS_PATH); with it, started under UNPINNED HOOKS")
    func gemini() async throws {
        let a = try await LiveAuthority()
        let out = workerDirectory("agent-gemini")
        let refused = try a.run("agent-d", ["--net", "none", "--agent", "gemini"], ["/bin/sh", "-c", "touch '\(out)/ran'"])
        #expect(await refused.exitCode(within: 60) == 78, "\(refused.stderr)")
        #expect(refused.stderr.contains("GEMINI_CLI_SYSTEM_SETTINGS_PATH"), "\(refused.stderr)")
        #expect(refused.stderr.contains("--accept-unpinned-hooks"), "\(refused.stderr)")
        #expect(refused.stderr.contains("Nothing was started"), "\(refused.stderr)")
        try await Task.sleep(for: .milliseconds(300))
        #expect(!Self.exists(out + "/ran"))
        #expect(!refused.stderr.contains("UNPINNED HOOKS"))

        let started = try a.run(
            "agent-d", ["--net", "none", "--agent", "gemini", "--accept-unpinned-hooks"],
            ["/bin/sh", "-c", "touch '\(out)/ran'; cp /etc/gemini-cli/settings.json '\(out)/settings.json'"])
        #expect(await started.exitCode(within: 60) == 0, "\(started.stderr)")
        #expect(started.stderr.contains("UNPINNED HOOKS"), "\(started.stderr)")
        #expect(Self.exists(out + "/ran"), "\(started.stderr)")
        // Still pinned where it can be: the system settings carry the hook in this worker.
        let settings = Self.read(out + "/settings.json")
        #expect(settings.contains("BeforeTool") && settings.contains("hook gemini --socket"), "\(settings)")
        #expect(!Self.exists("/etc/gemini-cli/settings.json") || settings != Self.read("/etc/gemini-cli/settings.json"))
    }

    @Test("--map without --agent: a usage error (64); nothing runs")
    func mapWithoutAgent() async throws {
        let a = try await LiveAuthority()
        let marker = workerDirectory("agent-refusal") + "/ran"
        let p = try a.run("agent-e", ["--net", "none", "--map", "Bash=agent-e.exec"], ["/bin/sh", "-c", "touch '\(marker)'"])
        #expect(await p.exitCode(within: 60) == 64, "\(p.stderr)")
        #expect(p.stderr.contains("--map") && p.stderr.contains("--agent"), "\(p.stderr)")
        try await Task.sleep(for: .milliseconds(300))
        #expect(!Self.exists(marker))
    }
}
