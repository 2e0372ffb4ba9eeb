import ArgumentParser
import Foundation
import Glibc
import Logging
import TetherState
import TetherClient
import TetherCore
import TetherSupervisor
import TetherSystem

/// `tether run [options] -- CMD ARGS…`: the main job.
struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run one worker on a tether: started only when its surface is allowed, stopped the moment it is not.",
        discussion: """
            Settings come from --config (or $TETHER_CONFIG), then the TETHER_* environment, then flags; flags win. \
            With no authority configured anywhere, the local authority in the state directory is used, and started \
            in the background (and initialised) when none answers.
            Exit codes: the worker's own, 128+N if it died of signal N; 77 the surface is denied (at start, or a deny \
            killed the worker); 69 the authority cannot be reached at start; 78 a configuration error.
            """)

    @OptionGroup var options: RunOptions

    func run() async throws {
        // The command is captured as given, so --help before `--` arrives here.
        if ["--help", "-h", "help"].contains(options.command.first) { throw CleanExit.helpRequest(Self.self) }
        keepMemoryFromSameUser()
        SupervisorPriority.choose()
        ResidentPages.choose()
        let (worker, resolved, logger, weak) = try await options.resolve()
        let outcome = await RunSession.run(
            worker: worker, authority: resolved, logger: logger, acceptWeakContainment: weak,
            notifications: SystemdNotifier.notifications)
        throw ending(outcome)
    }
}

/// The options of `tether run`, shared with `tether mcp`.
struct RunOptions: ParsableArguments {
    @Option(help: "A TOML file with [authority] and one [[worker]] (default: $TETHER_CONFIG).") var config: String?
    @Option(help: "The execution surface (default: the command's base name).") var surface: String?
    @Option(help: "Authority URL, or the URLs of its replicas comma-separated, tried in order (default: the local authority).")
    var authority: String?
    @Option(help: "File holding an agent key (default: agent.key in the state directory).") var keyFile: String?
    @Option(help: "The authority's public key (base64, or a file holding it): decisions must be signed by it.") var publicKey: String?
    @Option(help: "Seccomp profile: default, strict, none, or a Docker/OCI JSON file.") var profile: String?
    @Option(help: "On revoke: stop (freeze; thaw on restore), kill, or term (SIGTERM, grace, kill).") var onRevoke: String?
    @Option(help: "Under stop: kill a worker frozen this long (e.g. 10m).") var killAfter: String?
    @Option(help: "Under term: time between SIGTERM and SIGKILL (default 10s).") var grace: String?
    @Option(help: "How long an allow is good from an authority that sends no lease (default 15s).") var failClosedAfter: String?
    @Option(help: "How often to validate while the watch stream is down (default 1s).") var pollInterval: String?
    @Flag(help: "Poll only; hold no watch stream.") var noWatch = false
    @Flag(
        help:
            "Accept an authority off this host over plain http or without --public-key (anyone on the network path could let the worker run)."
    ) var insecureUnpinnedAuthority = false
    @Option(help: "Run the worker as this user (name or uid).") var user: String?
    @Option(help: "Set a variable for the worker (repeatable).") var env: [String] = []
    @Option(
        help:
            "Pass this variable of the supervisor's to the worker (repeatable). The user's session — DBUS_SESSION_BUS_ADDRESS, SSH_AUTH_SOCK, XDG_RUNTIME_DIR, DISPLAY — is passed only when named here."
    ) var passEnv: [String] = []
    @Option(
        help:
            "The worker's network: private (default: a namespace of its own, egress through slirp4netns, the host's loopback unreachable), none (its own loopback only), host-loopback (private, plus the host's 127.0.0.1 at 10.0.2.2), host (the host's network namespace)."
    ) var net: String?
    @Option(
        help:
            "A coding agent whose pre-tool hook Tether pins, read-only, in the worker's own /etc: claude-code (2.1.295+: /etc/claude-code/managed-settings.json, managed hooks only, onFailure block), codex (0.147.0+: /etc/codex/requirements.toml, managed hooks only, hooks feature pinned on), gemini (cannot be pinned: refused without --accept-unpinned-hooks). The command must be the agent's program; its --version is checked. docs/agents.md"
    ) var agent: String?
    @Option(
        name: .customLong("map"),
        help:
            "With --agent: TOOL=SURFACE holds a tool (a glob: mcp__github__*) to a surface of its own (repeatable; first match wins; other tools: the worker's surface)."
    ) var maps: [String] = []
    @Flag(
        help:
            "With --agent: start even where the hook cannot be pinned (no mount namespace of the worker's own, an agent version that does not honour it). The agent could then unhook itself."
    ) var acceptUnpinnedHooks = false
    @Option(help: "A resource limit for the worker, e.g. nproc=64 or nofile=1024:4096 (repeatable).") var limit: [String] = []
    @Option(
        help:
            "A gate held to a surface of its own: exec=SURFACE, net=SURFACE or write=SURFACE (repeatable). Revoking it makes those calls fail with EPERM while the worker runs on."
    ) var gate: [String] = []
    @Option(help: "A gate's mode: KIND=enforce (default) or KIND=record (log and report what would be denied, deny nothing).") var gateMode:
        [String] = []
    @Option(name: .customLong("dir"), help: "Local state directory (the embedded authority's).") var dir: String?
    @Flag(
        help:
            "If the worker's own namespaces cannot be made, run it in the supervisor's (it could then signal the supervisor and read what its uid may). Every log line says so."
    ) var acceptWeakContainment = false
    @Argument(parsing: .captureForPassthrough, help: "The command, after --.") var command: [String] = []

    /// The worker and its authority, from the file, the environment and the flags.
    func resolve() async throws -> (WorkerConfig, ResolvedAuthority, Logger, acceptWeak: Bool) {
        let environment = Foundation.ProcessInfo.processInfo.environment
        var cmd = command
        if cmd.first == "--" { cmd.removeFirst() }

        // The file, then the environment, then flags.
        var authoritySettings = AuthoritySettings()
        var supervisorSettings = SupervisorSettings()
        var worker = WorkerConfig(name: "worker", spec: WorkerSpec(command: cmd))
        var surfaceGiven = false
        if let path = config ?? environment["TETHER_CONFIG"] {
            do {
                let file = try ConfigLoader.load(path: path)
                guard file.workers.count <= 1 else {
                    throw ConfigError(
                        file: path, line: file.workers[1].line,
                        message:
                            "tether run takes one [[worker]]; this file has \(file.workers.count) (run them with tether supervise --config)"
                    )
                }
                authoritySettings = file.authority
                supervisorSettings = file.supervisor
                if let w = file.workers.first {
                    worker = w
                    surfaceGiven = true
                    if !cmd.isEmpty { worker.spec.command = cmd }
                }
            } catch {
                throw fail("\(error)\nNothing was started.", code: TetherExit.config)
            }
        }
        do {
            let envOverrides = Overrides.environment(environment)
            try envOverrides.apply(to: &authoritySettings, worker: &worker)
            surfaceGiven = surfaceGiven || envOverrides.surface != nil
        } catch {
            throw fail("\(error)\nNothing was started.", code: TetherExit.config)
        }
        do {
            var flags = Overrides(source: "the command line")
            flags.authority = authority
            flags.keyFile = keyFile
            flags.publicKey = publicKey
            flags.surface = surface
            flags.profile = profile
            flags.onRevoke = onRevoke
            flags.killAfter = killAfter
            flags.grace = grace
            flags.failClosedAfter = failClosedAfter
            flags.pollInterval = pollInterval
            flags.watch = noWatch ? false : nil
            flags.insecureUnpinned = insecureUnpinnedAuthority ? true : nil
            flags.user = user
            flags.env = env
            flags.passEnv = passEnv
            flags.net = net
            flags.agent = agent
            flags.agentMaps = maps
            flags.acceptUnpinnedHooks = acceptUnpinnedHooks ? true : nil
            flags.limits = limit
            flags.gates = gate
            flags.gateModes = gateMode
            try flags.apply(to: &authoritySettings, worker: &worker)
            surfaceGiven = surfaceGiven || surface != nil
        } catch {
            throw fail("\(error)", code: TetherExit.usage)
        }
        guard let program = worker.spec.command.first, !program.isEmpty else {
            throw fail("no command: tether run [options] -- COMMAND [ARGS...]", code: TetherExit.usage)
        }
        if !surfaceGiven {
            let base = (program as NSString).lastPathComponent
            guard SurfaceName.isValid(base) else {
                throw fail("\"\(base)\" cannot be a surface name (\(SurfaceName.rule)); give --surface", code: TetherExit.usage)
            }
            worker.surface = base
        }
        if worker.name == "worker" { worker.name = worker.surface }

        let logger = makeLogger()
        let resolved: ResolvedAuthority
        do {
            resolved = try await AuthorityResolution.resolve(authoritySettings, stateDirectory: dir, logger: logger)
        } catch let e as ExitCode {
            throw e
        } catch {
            throw fail("\(error)\nNothing was started.", code: TetherExit.config)
        }
        return (worker, resolved, logger, acceptWeakContainment || supervisorSettings.acceptWeakContainment)
    }
}
