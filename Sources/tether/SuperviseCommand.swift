import ArgumentParser
import Foundation
import Glibc
import TetherCore
import TetherSupervisor
import TetherSystem

/// `tether supervise --config FILE`: the daemon.
struct SuperviseCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "supervise",
        abstract: "Supervise the workers of a TOML configuration, each held to its surface.",
        discussion: """
            SIGHUP reloads the configuration (workers whose settings did not change are not touched; a file that \
            does not load is refused and the running configuration stays). SIGTERM or SIGINT stops the workers in \
            order, each with its grace, within [supervisor] shutdown_timeout; what is left is killed.
            Exit codes: 0 after a shutdown; 78 a configuration error (nothing started); 69 the local authority \
            could not be started.
            """)

    @Option(help: "The configuration file.") var config: String
    @Option(name: .customLong("dir"), help: "Local state directory (the embedded authority's).") var dir: String?

    func run() async throws {
        keepMemoryFromSameUser()
        SupervisorPriority.choose()
        ResidentPages.choose()
        let file: ConfigFile
        let filters: [String: CompiledFilter]
        do {
            file = try ConfigLoader.load(path: config)
            guard !file.workers.isEmpty else {
                throw ConfigError(file: config, line: nil, message: "no [[worker]] tables: nothing to supervise")
            }
            filters = try Supervisor.prepare(file)
        } catch {
            throw fail("\(error)\nNothing was started.", code: TetherExit.config)
        }
        let logger = makeLogger()
        let authority: ResolvedAuthority
        do {
            authority = try await AuthorityResolution.resolve(file.authority, stateDirectory: dir, instanceWithPID: false, logger: logger)
        } catch let e as ExitCode {
            throw e
        } catch {
            throw fail("\(error)\nNothing was started.", code: TetherExit.config)
        }
        let supervisor = Supervisor(configPath: config, authority: authority, logger: logger, notifications: SystemdNotifier.notifications)
        let signals = SignalForwarder(handler: { sig in
            switch sig {
            case SIGHUP: supervisor.reload()
            case SIGWINCH: break
            default: supervisor.shutdown()
            }
        })
        defer { signals.stop() }
        throw ExitCode(await supervisor.run(config: file, filters: filters))
    }
}
