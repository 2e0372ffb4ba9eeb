import ArgumentParser
import Foundation
import TetherState
import TetherClient
import TetherCore

/// Where the authority is and with which key: flags, then TETHER_AUTHORITY / TETHER_KEY_FILE,
/// then the local state directory.
struct AuthorityOptions: ParsableArguments {
    @Option(
        help:
            "Authority URL, or its replicas' comma-separated (default: $TETHER_AUTHORITY, the local authority's address, http://127.0.0.1:8470)."
    )
    var authority: String?
    @Option(help: "File holding the operator key (default: $TETHER_KEY_FILE, then operator.key in the state directory).")
    var keyFile: String?
    @Option(name: .customLong("dir"), help: "Local state directory to take defaults from.")
    var dir: String?
    @Flag(help: "Print the authority's JSON answer.") var json = false

    func client() throws -> AuthorityClient {
        do {
            let urls = authority.map { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } } ?? []
            return AuthorityClient(
                endpoints: try AuthorityEndpoint.resolveAll(
                    urls: urls, keyFile: keyFile, stateDirectory: dir ?? StateDirectory.defaultPath()))
        } catch {
            throw fail("\(error)", code: TetherExit.config)
        }
    }

    /// Runs a call and prints its answer — read as the wire's `T` — or with `--json`, the
    /// answer itself; maps failures to exit codes.
    func run<T: Decodable>(_ call: (AuthorityClient) async throws -> JSONAnswer, as: T.Type, human: (T) -> String) async throws {
        let c = try client()
        do {
            let answer = try await call(c)
            print(json ? OperatorOutput.json(answer) : human(try answer.decode(T.self)))
        } catch let e as ClientError {
            switch e {
            case .configuration: throw fail(e.description, code: TetherExit.config)
            case .unreachable:
                throw fail("\(e.description)\nIs the authority running? (tether authority serve)", code: TetherExit.unavailable)
            case .badResponse: throw fail(e.description, code: 76)
            case .refused(let status, _, _, _):
                throw fail(e.description, code: status == 401 || status == 403 ? TetherExit.denied : 1)
            }
        }
    }
}

func parseWait(_ s: String?) throws -> Duration? {
    guard let s else { return nil }
    guard let d = DurationText.parse(s) else { throw fail("--wait takes a duration like 5s", code: TetherExit.usage) }
    return d
}

struct RevokeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "revoke", abstract: "Revoke a surface: its workers are stopped now.",
        discussion: "With --wait, waits for every supervisor watching the surface to acknowledge, and names those that did not.")
    @Argument(help: "The surface.") var surface: String
    @Option(help: "Why (kept in the audit log; supervisors show it with the operator's name).") var reason: String?
    @Option(help: "Wait this long for the supervisors' acknowledgements (e.g. 5s).") var wait: String?
    @OptionGroup var options: AuthorityOptions

    func run() async throws {
        let w = try parseWait(wait)
        try await options.run(
            { try await $0.revoke(surface, reason: reason, wait: w) }, as: SurfaceChanged.self,
            human: { OperatorOutput.change($0, verb: "Revoked") })
    }
}

struct RestoreCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restore", abstract: "Restore (unrevoke) a surface: frozen workers resume.")
    @Argument(help: "The surface.") var surface: String
    @Option(help: "Why (kept in the audit log; supervisors show it with the operator's name).") var reason: String?
    @Option(help: "Wait this long for the supervisors' acknowledgements.") var wait: String?
    @OptionGroup var options: AuthorityOptions

    func run() async throws {
        let w = try parseWait(wait)
        try await options.run(
            { try await $0.restore(surface, reason: reason, wait: w) }, as: SurfaceChanged.self,
            human: { OperatorOutput.change($0, verb: "Restored") })
    }
}

struct HaltCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "halt", abstract: "Emergency stop: deny every surface of the org until `tether resume`.")
    @Option(help: "Why (required; kept in the audit log; supervisors show it with the operator's name).") var reason: String
    @Option(help: "Wait this long for the supervisors' acknowledgements.") var wait: String?
    @OptionGroup var options: AuthorityOptions

    func run() async throws {
        let w = try parseWait(wait)
        try await options.run({ try await $0.halt(reason: reason, wait: w) }, as: OrgChanged.self, human: OperatorOutput.halt)
    }
}

struct ResumeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "resume", abstract: "End an org halt.")
    @Option(help: "Why (kept in the audit log; supervisors show it with the operator's name).") var reason: String?
    @Option(help: "Wait this long for every supervisor's acknowledgement (e.g. 10s).") var wait: String?
    @OptionGroup var options: AuthorityOptions

    func run() async throws {
        let w = try parseWait(wait)
        try await options.run({ try await $0.resume(reason: reason, wait: w) }, as: OrgChanged.self, human: OperatorOutput.halt)
    }
}

struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status", abstract: "One surface's state, watchers and last report (or all surfaces).")
    @Argument(help: "The surface (all when omitted).") var surface: String?
    @OptionGroup var options: AuthorityOptions

    func run() async throws {
        try await options.run(
            { c in surface == nil ? try await c.listAll() : try await c.list(deviceId: surface) }, as: SurfaceList.self,
            human: surface == nil ? OperatorOutput.surfaces : OperatorOutput.status)
    }
}

struct InstancesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "instances", abstract: "Which key holds each supervisor instance; release one whose host has a new key.",
        discussion:
            "An instance belongs to the first key that watched or reported as it (or to a key scoped to it): only that key's reports count as its acknowledgements.",
        subcommands: [List.self, Release.self], defaultSubcommand: List.self)

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "list", abstract: "Every instance, its key, and whether it is connected.")
        @OptionGroup var options: AuthorityOptions
        func run() async throws {
            try await options.run({ try await $0.instances() }, as: InstanceList.self, human: OperatorOutput.instances)
        }
    }

    struct Release: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "release", abstract: "End an instance's claim: the next key to watch or report as it holds it.")
        @Argument(help: "The instance (its supervisor's --instance, or host:pid).") var instance: String
        @Option(help: "Why (kept in the audit log).") var reason: String?
        @OptionGroup var options: AuthorityOptions
        func run() async throws {
            try await options.run(
                { try await $0.releaseInstance(instance, reason: reason) }, as: InstanceReleased.self, human: OperatorOutput.released)
        }
    }
}

struct SurfacesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "surfaces", abstract: "List every surface.",
        discussion: "Read a page at a time (1000 surfaces), in name order; --after NAME starts after a name.")
    @Option(help: "Only the surfaces after this name, up to --limit.") var after: String?
    @Option(help: "At most this many surfaces (one page; 1 to 10000).") var limit: Int?
    @OptionGroup var options: AuthorityOptions

    func run() async throws {
        if after == nil && limit == nil {
            try await options.run({ try await $0.listAll() }, as: SurfaceList.self, human: OperatorOutput.surfaces)
        } else {
            try await options.run(
                { try await $0.list(after: after, limit: limit ?? 1000) }, as: SurfaceList.self, human: OperatorOutput.surfaces)
        }
    }
}

struct AuditCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "audit", abstract: "Who did what, when and why (newest first).")
    @Option(help: "How many entries (at most 10000).") var limit = 50
    @Option(help: "Only this surface.") var surface: String?
    @Option(help: "Only this key's changes (with those it made through the console).") var actor: String?
    @Option(help: "From this time on: RFC 3339 (2026-11-26T03:00:00Z) or a duration ago (1h, 30m).") var since: String?
    @Option(help: "Up to this time: RFC 3339 or a duration ago.") var until: String?
    @Option(help: "Only entries older than this id (the next page: the id the last page ends with).") var before: Int64?
    @OptionGroup var options: AuthorityOptions

    func run() async throws {
        let from = try Self.time(since, "--since"), to = try Self.time(until, "--until")
        try await options.run(
            { try await $0.audit(limit: limit, deviceId: surface, actor: actor, since: from, until: to, before: before) },
            as: AuditPage.self, human: OperatorOutput.audit)
    }

    /// An RFC 3339 time, or a duration before now, as the authority's timestamp form.
    static func time(_ text: String?, _ flag: String) throws -> String? {
        guard let text else { return nil }
        if let d = DurationText.parse(text) {
            return Timestamp.string(Date().addingTimeInterval(-d.timeInterval))
        }
        guard let date = Timestamp.parse(text) else {
            throw fail(
                "\(flag): \"\(text)\" is neither an RFC 3339 time (2026-11-26T03:00:00Z) nor a duration (1h)", code: TetherExit.usage)
        }
        return Timestamp.string(date)
    }
}

struct ConsoleCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "console", abstract: "Print a one-time sign-in link to the authority's web console.",
        discussion:
            "The link signs in once, as the operator key this command uses, within minutes (the authority's [console] link_lifetime). Open it in a browser that reaches the authority (any replica of the same database)."
    )
    @OptionGroup var options: AuthorityOptions

    func run() async throws {
        let c = try options.client()
        do {
            let link = try await c.consoleLink()
            if options.json {
                let data = try JSONSerialization.data(
                    withJSONObject: ["url": link.url, "expiresAt": link.expiresAt], options: [.sortedKeys, .withoutEscapingSlashes])
                print(String(decoding: data, as: UTF8.self))
            } else {
                print(link.url)
                FileHandle.standardError.write(
                    Data(
                        "One sign-in, until \(link.expiresAt). Anyone with the link signs in as your key: do not paste it where others read.\n"
                            .utf8))
            }
        } catch let e as ClientError {
            switch e {
            case .unreachable:
                throw fail("\(e.description)\nIs the authority running? (tether authority serve)", code: TetherExit.unavailable)
            case .refused(let status, _, _, _): throw fail(e.description, code: status == 401 || status == 403 ? TetherExit.denied : 1)
            default: throw fail(e.description, code: TetherExit.config)
            }
        }
    }
}
