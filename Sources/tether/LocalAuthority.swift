import AsyncHTTPClient
import Foundation
import Glibc
import Logging
import TetherAuthority
import TetherCore
import TetherState
import TetherRuntime

/// Why the local authority could not be started.
public struct LocalAuthorityError: Error, Sendable, CustomStringConvertible {
    public var description: String
    init(_ d: String) { description = d }
}

/// The embedded default: the authority in the user's state directory, initialised and started
/// as its own background process when none answers. Process work on the supervisor's side: the
/// authority module only serves and stores. It outlives the `tether run` that started
/// it (revocations must not depend on the supervisor they stop), in a session of its own so a
/// Ctrl-C at the terminal does not reach it; its log is `authority.log` in the directory.
public enum LocalAuthority {
    public struct Started: Sendable {
        public var url: String
        /// Whether this call initialised the directory (new keys) or started the server.
        public var initialised: Bool
        public var launched: Bool
    }

    public static func ensure(
        directory: StateDirectory, executable: String, http: HTTPClient, logger: Logger,
        startTimeout: Duration = .seconds(20)
    ) async throws -> Started {
        var initialised = false
        try directory.checkOwnership()
        if !directory.isInitialized {
            _ = try await directory.initialize(actor: "local:tether-run")
            initialised = true
            logger.notice(
                "initialised the local authority",
                metadata: [
                    "dir": "\(directory.path)", "operator_key": "\(directory.operatorKey)", "agent_key": "\(directory.agentKey)",
                ])
        }
        if let url = currentURL(directory), await answers(url, http: http) {
            return Started(url: url, initialised: initialised, launched: false)
        }
        try? FileManager.default.removeItem(atPath: directory.endpointFile)
        let pid = try launch(executable: executable, directory: directory)
        logger.notice(
            "started the local authority in the background",
            metadata: [
                "pid": "\(pid)", "dir": "\(directory.path)", "log": "\(directory.path)/authority.log",
            ])
        let clock = ContinuousClock()
        let deadline = clock.now + startTimeout
        while clock.now < deadline {
            if let url = currentURL(directory), await answers(url, http: http) {
                return Started(url: url, initialised: initialised, launched: true)
            }
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid {
                throw LocalAuthorityError("the local authority exited at start; see \(directory.path)/authority.log")
            }
            try await Sleep.for(.milliseconds(50))
        }
        throw LocalAuthorityError(
            "the local authority did not answer within \(DurationText.format(startTimeout)); see \(directory.path)/authority.log")
    }

    static func currentURL(_ directory: StateDirectory) -> String? {
        (try? String(contentsOfFile: directory.endpointFile, encoding: .utf8))?
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }

    static func answers(_ url: String, http: HTTPClient) async -> Bool {
        do {
            let resp = try await http.execute(HTTPClientRequest(url: url + "/healthz"), timeout: .seconds(2))
            _ = try await resp.body.collect(upTo: 4096)
            return resp.status == .ok
        } catch {
            return false
        }
    }

    /// posix_spawn, so no Swift runs in the child: a new session, stdin from /dev/null,
    /// output appended to the log, every signal at its default.
    static func launch(executable: String, directory: StateDirectory) throws -> pid_t {
        let args = [executable, "authority", "serve", "--dir", directory.path, "--listen", "127.0.0.1:0"]
        var actions = posix_spawn_file_actions_t()
        var attr = posix_spawnattr_t()
        posix_spawn_file_actions_init(&actions)
        posix_spawnattr_init(&attr)
        defer {
            posix_spawn_file_actions_destroy(&actions)
            posix_spawnattr_destroy(&attr)
        }
        let log = directory.path + "/authority.log"
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, log, O_WRONLY | O_CREAT | O_APPEND, 0o600)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        var defaults = sigset_t()
        sigfillset(&defaults)
        posix_spawnattr_setsigdefault(&attr, &defaults)
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attr, &empty)
        // An ordinary task, whatever the supervisor runs as (SupervisorPriority): the authority
        // is a server, not the stop path.
        var ordinary = sched_param(sched_priority: 0)
        posix_spawnattr_setschedpolicy(&attr, SCHED_OTHER)
        posix_spawnattr_setschedparam(&attr, &ordinary)
        // POSIX_SPAWN_SETSID is 0x80 in glibc; the Swift importer does not see the macro.
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSCHEDULER | 0x80))
        let cargs = args.map { strdup($0) } + [nil]
        defer { cargs.forEach { free($0) } }
        var env = Foundation.ProcessInfo.processInfo.environment
        env["TETHER_LOG_LEVEL"] = env["TETHER_LOG_LEVEL"] ?? "info"
        let cenv = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { cenv.forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, executable, &actions, &attr, cargs, cenv)
        guard rc == 0 else { throw LocalAuthorityError("cannot start \(executable) authority serve: \(String(cString: strerror(rc)))") }
        return pid
    }
}
