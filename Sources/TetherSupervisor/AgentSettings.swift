import Foundation
import Glibc
import Logging
import TetherCore
import TetherSystem

/// `--agent`: the agent's pinned settings for one worker (`PinnedSettings`), staged in a
/// directory of the supervisor's that the spawn layers over the worker's /etc, and the checks
/// that decide whether the worker may start with them.
public enum AgentSettings {
    public struct Refusal: Error, CustomStringConvertible, Sendable {
        public var description: String
    }

    /// The oldest version of each agent known to honour its pinned settings (tested, and
    /// documented in docs/agents.md); nil: no version is accepted without
    /// `--accept-unpinned-hooks` (Gemini CLI, which lets a second process name its own system
    /// settings).
    public static func minimumVersion(_ agent: CodingAgent) -> [Int]? {
        switch agent {
        case .claudeCode: return [2, 1, 295]
        case .codex: return [0, 147, 0]
        case .gemini: return nil
        }
    }

    /// `--agent` for one launch, as `tether run` and `tether supervise` start a worker: the
    /// agent checked (`check`), its settings staged beside the worker's decision socket and
    /// layered over its /etc.
    public static func apply(
        _ pin: AgentPin, to launch: inout Spawner.Launch, surface: String, decisions: DecisionSocket,
        spawner: Spawner, logger: Logger
    ) async throws(Refusal) {
        if let refusal = await check(pin, name: launch.name, spec: launch.spec, filter: launch.filter, spawner: spawner, logger: logger) {
            throw refusal
        }
        do {
            launch.etcLayer = try stage(pin, surface: surface, socket: decisions.path, directory: decisions.pinnedEtc)
        } catch {
            throw Refusal(description: "the agent's pinned settings: \(error)")
        }
        launch.etcLayerOptional = pin.acceptUnpinned
        // The pinned directory replaces the host's whole: what else the host keeps there is
        // not seen by the worker (its main settings file was merged above). Said, not silent.
        if let layer = launch.etcLayer {
            let fm = FileManager.default
            for dir in (try? fm.contentsOfDirectory(atPath: layer)) ?? [] {
                let ours = Set((try? fm.contentsOfDirectory(atPath: layer + "/" + dir)) ?? [])
                let hidden = ((try? fm.contentsOfDirectory(atPath: "/etc/" + dir)) ?? []).filter { !ours.contains($0) }.sorted()
                if !hidden.isEmpty {
                    logger.warning(
                        "the host's files in /etc/\(dir) are not seen by the worker: the pinned directory replaces it",
                        metadata: [
                            "hidden": "\(hidden.prefix(10).joined(separator: ","))", "agent": "\(pin.agent.rawValue)",
                        ])
                }
            }
        }
    }

    /// Writes the pinned files for `pin` into `directory` (made 0755, files 0644, owned by the
    /// supervisor: root for a root supervisor) and returns it.
    public static func stage(
        _ pin: AgentPin, surface: String, socket: String, directory: String,
        executable: String = selfExecutable()
    ) throws -> String {
        let hook = PinnedSettings.hookCommand(executable: executable, agent: pin.agent, socket: socket, surface: surface, rules: pin.rules)
        let files = try PinnedSettings.files(agent: pin.agent, hook: hook) { path in
            try? String(contentsOfFile: "/etc/" + path, encoding: .utf8)
        }
        let fm = FileManager.default
        try? fm.removeItem(atPath: directory)
        for f in files {
            let target = directory + "/" + f.path
            let parent = (target as NSString).deletingLastPathComponent
            try fm.createDirectory(atPath: parent, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
            guard fm.createFile(atPath: target, contents: Data(f.contents.utf8), attributes: [.posixPermissions: 0o644]) else {
                throw Refusal(description: "cannot write \(target)")
            }
        }
        // Every directory of the layer readable by the worker's uid whatever the umask.
        var dir = directory
        chmod(dir, 0o755)
        for f in files {
            dir = directory
            for part in f.path.split(separator: "/").dropLast() {
                dir += "/\(part)"
                chmod(dir, 0o755)
            }
        }
        return directory
    }

    /// This binary's path: what the pinned hook runs (the worker sees the same path).
    public static func selfExecutable() -> String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? "/usr/bin/tether"
    }

    /// Whether the agent the worker runs honours the pin: its version, asked of the program
    /// itself (`PROGRAM --version`, run as the worker would be: same user and profile, no
    /// network, within 20 s). Refused — unless `--accept-unpinned-hooks` — when the command is
    /// not the agent's own program (its version cannot be told), the agent answers no version,
    /// or one older than `minimumVersion`.
    public static func check(
        _ pin: AgentPin, name: String, spec: WorkerSpec, filter: CompiledFilter?, spawner: Spawner, logger: Logger
    ) async -> Refusal? {
        let verdict = await versionVerdict(pin, name: name, spec: spec, filter: filter, spawner: spawner)
        guard let problem = verdict.problem else {
            logger.notice("agent hook pinned", metadata: ["agent": "\(pin.agent.rawValue)", "version": "\(verdict.version ?? "?")"])
            return nil
        }
        if pin.acceptUnpinned {
            logger.critical(
                "UNPINNED HOOKS: \(problem); starting anyway (--accept-unpinned-hooks): the agent may remove or skip its hook",
                metadata: ["agent": "\(pin.agent.rawValue)"])
            return nil
        }
        return Refusal(
            description: "\(problem). The worker is not started: its agent could unhook itself. --accept-unpinned-hooks starts it anyway")
    }

    static func versionVerdict(
        _ pin: AgentPin, name: String, spec: WorkerSpec, filter: CompiledFilter?, spawner: Spawner
    ) async -> (version: String?, problem: String?) {
        guard let minimum = minimumVersion(pin.agent) else {
            return (
                nil,
                "Gemini CLI reads its system settings from $GEMINI_CLI_SYSTEM_SETTINGS_PATH when that is set, and lets user settings disable a system hook by name (hooksConfig.disabled): a second gemini process can run without the pinned hook"
            )
        }
        let program = spec.command.first ?? ""
        let base = (program as NSString).lastPathComponent
        let expected = pin.agent == .claudeCode ? "claude" : pin.agent.rawValue
        guard base == expected else {
            return (
                nil,
                "the command (\(program)) is not \(expected), so which version of \(pin.agent.rawValue) it runs — and whether that version honours the pinned settings — cannot be told"
            )
        }
        guard let text = await askVersion(name: name, spec: spec, filter: filter, spawner: spawner) else {
            return (nil, "\(program) --version gave no answer")
        }
        guard let version = firstVersion(in: text) else {
            return (nil, "\(program) --version answered no version (\"\(PrintableText.escape(text, limit: 80))\")")
        }
        let shown = version.map(String.init).joined(separator: ".")
        guard version.lexicographicallyPrecedes(minimum) == false else {
            return (
                shown,
                "\(pin.agent.rawValue) \(shown) is older than \(minimum.map(String.init).joined(separator: ".")), the oldest version known to honour its pinned settings"
            )
        }
        return (shown, nil)
    }

    /// The first `N.N.N` in `text`.
    static func firstVersion(in text: String) -> [Int]? {
        for word in text.split(whereSeparator: { !($0.isNumber || $0 == ".") }) {
            let parts = word.split(separator: ".", omittingEmptySubsequences: false)
            guard parts.count >= 3, let numbers = Optional(parts.prefix(3).compactMap { Int($0) }), numbers.count == 3 else { continue }
            return numbers
        }
        return nil
    }

    /// `PROGRAM --version` as a worker: its standard output, or nil.
    static func askVersion(name: String, spec: WorkerSpec, filter: CompiledFilter?, spawner: Spawner) async -> String? {
        var s = spec
        s.command = [spec.command[0], "--version"]
        s.agent = nil
        s.network = .none
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { return nil }
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        let devnull = open("/dev/null", O_RDWR | O_CLOEXEC)
        defer { close(devnull) }
        let worker: Worker
        do {
            worker = try await spawner.spawn(
                Spawner.Launch(name: name + ".version", spec: s, filter: filter, stdin: devnull, stdout: fds[1], stderr: devnull))
        } catch {
            close(fds[0])
            close(fds[1])
            return nil
        }
        close(fds[1])
        let reader = fds[0]
        let out = await Task.detached { () -> [UInt8] in
            defer { close(reader) }
            var bytes: [UInt8] = []
            let deadline = ContinuousClock.now + .seconds(20)
            while bytes.count < 4096 {
                let left = deadline - .now
                guard left > .zero else { break }
                var p = pollfd(fd: reader, events: Int16(POLLIN), revents: 0)
                let ms = Int32(min(left.components.seconds * 1000 + 1, 20_000))
                let r = poll(&p, 1, ms)
                if r < 0 && errno == EINTR { continue }
                guard r > 0 else { break }
                var chunk = [UInt8](repeating: 0, count: 4096)
                let n = read(reader, &chunk, chunk.count)
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { break }
                bytes += chunk[0..<n]
            }
            return bytes
        }.value
        worker.kill()
        _ = await worker.wait()
        return out.isEmpty ? nil : String(decoding: out, as: UTF8.self)
    }
}
