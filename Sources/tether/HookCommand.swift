import ArgumentParser
import Foundation
import TetherState
import TetherClient
import TetherCore

/// `tether hook AGENT`: a coding agent's pre-tool hook that fails closed.
struct HookCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hook",
        abstract: "Answer a coding agent's pre-tool hook: deny the tool call unless its surface is allowed now.",
        discussion: """
            AGENT is claude-code, codex or gemini. Reads the hook's JSON on stdin; allows with exit 0 and {}; denies with \
            exit 2, the reason on stderr (who revoked what, when, why) and the agent's deny object on stdout. Asks the \
            worker's decision socket ($TETHER_DECISION_SOCKET, from the supervisor's live lease) when there is one, else \
            the authority with the agent key. Anything that goes wrong — no socket, no authority, a timeout, a bad \
            signature, input it cannot read — is a deny.
            """)
    @Argument(help: "claude-code, codex or gemini.") var agent: String
    @Option(help: "The surface tool calls are held to (default: the worker's own, through its decision socket; $TETHER_SURFACE).")
    var surface: String?
    @Option(
        name: .customLong("map"),
        help: "TOOL=SURFACE: hold a tool (a glob: mcp__github__*) to a surface of its own (repeatable; first match wins).") var maps:
        [String] = []
    @Option(help: "The decision socket (default: $TETHER_DECISION_SOCKET).") var socket: String?
    @Option(help: "Without a socket: the authority URL (default: $TETHER_AUTHORITY, the local authority).") var authority: String?
    @Option(help: "Without a socket: the agent key file (default: $TETHER_KEY_FILE, then agent.key in the state directory).") var keyFile:
        String?
    @Option(help: "Without a socket: the authority's public key (base64 or a file); answers must be signed by it.") var publicKey: String?
    @Option(name: .customLong("dir"), help: "Local state directory to take defaults from.") var dir: String?

    func run() async throws {
        let code = await execute()
        if code != 0 { throw ExitCode(code) }
    }

    /// `tether hook ARGS…` from the entry point: every way it can end is an answer the agent
    /// reads as a deny unless the surface was allowed. The argument parser's own endings — a usage
    /// error (exit 64), `--help` (exit 0) — would let the tool call run, so they deny too (exit 2),
    /// with the parser's message as the reason.
    static func main(_ args: [String]) async -> Int32 {
        if let options = fastParse(args) { return await options.execute() }
        let command: HookCommand
        do {
            command = try parse(args)
        } catch {
            let agent = args.lazy.compactMap { AgentHook.Agent(rawValue: $0) }.first ?? .claudeCode
            let text = fullMessage(for: error).trimmingCharacters(in: .whitespacesAndNewlines)
            let why = text.isEmpty ? "\(error)" : text
            let out = AgentHook.output(
                allowed: false,
                reason: "tether hook: \(why)\n— denied: the hook's own arguments did not parse, so no surface was asked (fail closed)",
                agent: agent)
            FileHandle.standardOutput.write(Data(out.stdout.utf8))
            if !out.stderr.isEmpty { FileHandle.standardError.write(Data(out.stderr.utf8)) }
            return out.exitCode == 0 ? 2 : out.exitCode
        }
        return await command.execute()
    }

    /// The options as plain `--name value` pairs and one agent; nil for anything else (--help,
    /// `--name=value`, an unknown option), which the argument parser then handles and explains.
    static func fastParse(_ args: [String]) -> HookCommand? {
        // Every property set: an option wrapper that was never parsed must not be read unset.
        var h = HookCommand()
        h.maps = []
        h.surface = nil
        h.socket = nil
        h.authority = nil
        h.keyFile = nil
        h.publicKey = nil
        h.dir = nil
        var agent: String?
        var i = 0
        while i < args.count {
            let a = args[i]
            if !a.hasPrefix("-") {
                guard agent == nil else { return nil }
                agent = a
                i += 1
                continue
            }
            guard i + 1 < args.count else { return nil }
            let v = args[i + 1]
            switch a {
            case "--surface": h.surface = v
            case "--map": h.maps.append(v)
            case "--socket": h.socket = v
            case "--authority": h.authority = v
            case "--key-file": h.keyFile = v
            case "--public-key": h.publicKey = v
            case "--dir": h.dir = v
            default: return nil
            }
            i += 2
        }
        guard let agent else { return nil }
        h.agent = agent
        return h
    }

    /// The hook's work: returns the exit code (0 allow, 2 deny), having printed the answer.
    func execute() async -> Int32 {
        do {
            try await decide()
            return 0
        } catch let e as ExitCode {
            return e.rawValue
        } catch {
            emit(
                AgentHook.output(
                    allowed: false, reason: "tether hook: \(error) — denied (fail closed)",
                    agent: AgentHook.Agent(rawValue: agent) ?? .claudeCode))
            return 2
        }
    }

    func decide() async throws {
        // A hook killed by a signal lets the call run: a closed pipe must be an error, not death.
        signal(SIGPIPE, SIG_IGN)
        // Usage errors deny too: a hook that exits 64 lets the call run.
        guard let kind = AgentHook.Agent(rawValue: agent) else {
            throw deny(.claudeCode, "tether hook: \"\(agent)\" is not an agent; expected claude-code, codex or gemini")
        }
        var rules: [AgentHook.Mapping] = []
        for m in maps {
            switch AgentHook.Mapping.parse(m) {
            case .success(let r): rules.append(r)
            case .failure(let e): throw deny(kind, "tether hook: --map \(e.description)")
            }
        }
        let input = FileHandle.standardInput.readDataToEndOfFile()
        let call: AgentHook.Call
        switch AgentHook.parse(input, agent: kind) {
        case .success(let c): call = c
        case .failure(let e): throw deny(kind, "tether hook: \(e.description) — denied (fail closed)")
        }
        let env = ProcessInfo.processInfo.environment
        let target = AgentHook.surface(for: call.tool, in: rules) ?? surface ?? env["TETHER_SURFACE"]
        let answer: LocalDecision.Answer
        if let path = socket ?? env[LocalDecision.environmentVariable], !path.isEmpty {
            answer = LocalDecision.ask(socket: path, surface: target)
        } else if let target {
            answer = await askAuthority(target)
        } else {
            throw deny(
                kind,
                "tether hook: no decision socket ($TETHER_DECISION_SOCKET) and no surface to ask the authority about (--surface) — denied (fail closed)"
            )
        }
        let shown = answer.surface ?? target ?? "this worker's surface"
        let out = AgentHook.output(
            allowed: answer.allowed, reason: AgentHook.reason(tool: call.tool, surface: shown, answer: answer), agent: kind)
        emit(out)
        if out.exitCode != 0 { throw ExitCode(out.exitCode) }
    }

    func askAuthority(_ target: String) async -> LocalDecision.Answer {
        do {
            let endpoint = try AuthorityEndpoint.resolve(
                url: authority, keyFile: keyFile, role: "agent", stateDirectory: dir ?? StateDirectory.defaultPath())
            var verifier: DecisionVerifier?
            if let pk = publicKey {
                let text = FileManager.default.fileExists(atPath: pk) ? try String(contentsOfFile: pk, encoding: .utf8) : pk
                verifier = try DecisionVerifier(publicKeyBase64: text)
            }
            var client = AuthorityClient(endpoint: endpoint)
            client.timeout = .seconds(3)
            switch await DecisionCheck.check(target, client: client, verifier: verifier) {
            case .allowed(let d):
                return LocalDecision.Answer(
                    allowed: true, code: d.code.rawValue, surface: target, changedBy: nil, changedAt: nil, reason: nil, error: nil)
            case .denied(let d, let code, let detail):
                return LocalDecision.Answer(
                    allowed: false, code: code.rawValue, surface: target, changedBy: d?.changedBy, changedAt: d?.changedAt,
                    reason: d?.changeReason, error: code == .deviceRevoked || code == .orgHalted ? nil : detail)
            case .unreachable(let m):
                return .failure(DecisionCode.authorityUnreachable.rawValue, m)
            }
        } catch {
            return .failure("CONFIG", "\(error)")
        }
    }

    func deny(_ agent: AgentHook.Agent, _ reason: String) -> ExitCode {
        let out = AgentHook.output(allowed: false, reason: reason, agent: agent)
        emit(out)
        return ExitCode(out.exitCode)
    }

    func emit(_ out: AgentHook.Output) {
        FileHandle.standardOutput.write(Data(out.stdout.utf8))
        if !out.stderr.isEmpty { FileHandle.standardError.write(Data(out.stderr.utf8)) }
    }
}
