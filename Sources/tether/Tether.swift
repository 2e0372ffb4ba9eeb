import ArgumentParser
import Foundation
import Logging
import TetherBuildInfo
import TetherCore
import TetherRuntime
import TetherSystem

/// The entry point: `tether hook`, which an agent runs before every tool call, skips the
/// argument parser's start-up (its reflection over every command's options is a good part of
/// the process's milliseconds) when its arguments are plain; everything else goes through it.
@main
enum Main {
    static func main() async {
        let args = Array(CommandLine.arguments.dropFirst())
        // Before any task runs: the first that reaches libdispatch's pool starts its
        // once-a-second monitor for the life of the process (AsyncRuntime.useEventLoops).
        if supervises(args), ProcessInfo.processInfo.environment["TETHER_ASYNC_RUNTIME"] != "dispatch" {
            AsyncRuntime.useEventLoops()
        }
        if args.first == "hook" {
            exit(await HookCommand.main(Array(args.dropFirst())))
        }
        await Tether.main()
    }

    /// The commands that supervise workers for as long as they run: `run`, `supervise`,
    /// `mcp`, `profile try`.
    static func supervises(_ args: [String]) -> Bool {
        let words = args.filter { !$0.hasPrefix("-") }
        switch words.first {
        case "run", "supervise", "mcp": return true
        case "profile": return words.dropFirst().first == "try"
        default: return false
        }
    }
}

struct Tether: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tether",
        abstract: "Run workers on a tether held by an execution authority.",
        version: TetherVersion.number + (TetherBuildInfo.commit.map { " (\($0))" } ?? ""),
        subcommands: [
            RunCommand.self, SuperviseCommand.self, ProfileCommand.self, AuthorityCommand.self, KeysCommand.self,
            RevokeCommand.self, RestoreCommand.self, HaltCommand.self, ResumeCommand.self,
            StatusCommand.self, SurfacesCommand.self, InstancesCommand.self, AuditCommand.self, ConsoleCommand.self, CheckCommand.self,
            HookCommand.self, McpCommand.self,
        ]
    )
}

/// The one logger of the process: stderr, level from TETHER_LOG_LEVEL (default info).
func makeLogger(_ label: String = "tether") -> Logger {
    // Under systemd with stderr on the journal: priority prefixes, no timestamps.
    if JournalLogHandler.stderrIsJournal {
        LoggingSystem.bootstrap { JournalLogHandler(label: $0) }
    } else {
        LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
    }
    var logger = Logger(label: label)
    let env = ProcessInfo.processInfo.environment["TETHER_LOG_LEVEL"]
    logger.logLevel = env.flatMap(Logger.Level.init(rawValue:)) ?? .info
    return logger
}

/// The exit of a worker's run: its own code (128+N on signal N), or the failure said on
/// stderr with its code.
func ending(_ outcome: RunOutcome) -> ExitCode {
    if case .failed(let f) = outcome { return fail(f.message, code: outcome.exitCode) }
    return ExitCode(outcome.exitCode)
}

extension RunOutcome {
    var exitCode: Int32 {
        switch self {
        case .exited(let s): s.shellCode
        case .failed(let f):
            switch f.kind {
            case .config: TetherExit.config
            case .unavailable: TetherExit.unavailable
            case .denied: TetherExit.denied
            case .notExecutable(let e): e == ENOENT ? 127 : 126
            }
        }
    }
}

func fail(_ message: String, code: Int32) -> ExitCode {
    FileHandle.standardError.write(Data("tether: \(message)\n".utf8))
    return ExitCode(code)
}
