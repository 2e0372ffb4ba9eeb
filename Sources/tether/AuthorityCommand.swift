import ArgumentParser
import Foundation
import TetherAuthority
import TetherCore
import TetherState
import TetherSystem

struct StateDirOption: ParsableArguments {
    @Option(
        name: .customLong("dir"),
        help: "The authority's state directory (default: $STATE_DIRECTORY, /var/lib/tether for root, else ~/.local/state/tether).")
    var dir: String?

    var directory: StateDirectory { StateDirectory(path: dir ?? StateDirectory.defaultPath()) }
}

/// Where a shared database is: never only on the command line, where `ps` shows it.
struct DatabaseOption: ParsableArguments {
    @Option(
        help:
            "PostgreSQL URL (postgresql://USER@HOST:PORT/DB?sslmode=verify-full) of a database the replicas share. A password here shows in ps: prefer --database-file or TETHER_DATABASE_URL."
    )
    var database: String?
    @Option(help: "A file (mode 0600) holding the PostgreSQL URL.")
    var databaseFile: String?
    @Flag(
        help:
            "Allow a database off this host without verified TLS (sslmode other than verify-full): anyone on the path could read the signing keys. Logged at every start."
    )
    var insecureDatabaseTls = false

    /// The URL from the flag, the file or `TETHER_DATABASE_URL`; nil for the state directory's SQLite.
    func resolve() throws -> DatabaseURL? {
        var text: String?
        if let database {
            text = database
            if database.contains("@"), (try? DatabaseURL(database))?.password != nil {
                FileHandle.standardError.write(
                    Data(
                        "warning: the database password on the command line shows in ps; use --database-file or TETHER_DATABASE_URL\n".utf8)
                )
            }
        } else if let f = databaseFile {
            do { text = try SecretFile.read(f) } catch { throw fail("--database-file: \(error)", code: TetherExit.config) }
        } else if let e = ProcessInfo.processInfo.environment["TETHER_DATABASE_URL"], !e.isEmpty {
            text = e
        }
        guard let text else { return nil }
        let insecure =
            insecureDatabaseTls
            || ["1", "true", "yes"].contains(ProcessInfo.processInfo.environment["TETHER_INSECURE_DATABASE_TLS"]?.lowercased() ?? "")
        let url: DatabaseURL
        do { url = try DatabaseURL(text, allowUnverifiedTLS: insecure) } catch {
            throw fail("the database URL: \(error)", code: TetherExit.usage)
        }
        if url.unverifiedOffHost {
            FileHandle.standardError.write(
                Data(
                    "warning: the database \(url) is off this host and its TLS is not verified (--insecure-database-tls): anyone on the path could read the signing keys or answer for it\n"
                        .utf8))
        }
        return url
    }

    /// The store named: the shared database, or the state directory's.
    func store(_ dir: StateDirectory) async throws -> any AuthorityStore {
        if let url = try resolve() {
            do { return try await PostgresStore.open(url, logger: makeLogger("tether")) } catch {
                throw fail("\(error)", code: TetherExit.unavailable)
            }
        }
        guard dir.isInitialized else {
            throw fail("\(dir.path) is not initialised; run: tether authority init --dir \(dir.path)", code: TetherExit.config)
        }
        let store = try SQLiteStore(path: dir.database)
        try await dir.importLegacySigningKey(into: store)
        return store
    }
}

struct AuthorityCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "authority",
        abstract: "Run Tether's own execution authority (MachineID-compatible API).",
        subcommands: [Init.self, Serve.self, PublicKey.self, SigningKeys.self]
    )

    struct Init: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "init",
            abstract: "Create the state directory: database, signing key, a first operator key and agent key.")
        @OptionGroup var state: StateDirOption
        @OptionGroup var db: DatabaseOption
        @Flag(help: "Do nothing (exit 0) if the directory (or the database) is already initialised: for ExecStartPre=.") var ifNeeded =
            false

        func run() async throws {
            let dir = state.directory
            var shared: PostgresStore?
            if let url = try db.resolve() {
                do { shared = try await PostgresStore.open(url, logger: makeLogger("tether")) } catch {
                    throw fail("\(error)", code: TetherExit.unavailable)
                }
            }
            if ifNeeded {
                if let shared, !(try await shared.signingKeys().isEmpty) {
                    print("the database is already initialised")
                    return
                }
                if shared == nil && dir.isInitialized {
                    print("\(dir.path) is already initialised")
                    return
                }
            }
            do {
                let created = try await dir.initialize(actor: localActor(), store: shared)
                print(
                    """
                    Initialised \(dir.path)

                      operator key: \(created.operatorKey)
                      agent key:    \(created.agentKey)
                      public key:   \(created.publicKey)

                    The keys are shown once; they are also in \(dir.operatorKey) and \(dir.agentKey) (mode 0600).
                    Give supervisors the agent key, and the public key to pin (--public-key).
                    Next: tether authority serve \(shared == nil ? "--dir \(dir.path)" : "--database-file FILE (each replica)")
                    """)
            } catch {
                throw fail("\(error)", code: TetherExit.config)
            }
        }
    }

    struct Serve: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "serve",
            abstract: "Serve the authority API until SIGTERM or SIGINT.")
        @OptionGroup var state: StateDirOption
        @OptionGroup var db: DatabaseOption
        @Option(help: "HOST:PORT to listen on.") var listen = "127.0.0.1:8470"
        @Option(help: "Lease length of every decision (e.g. 15s).") var lease = "15s"
        @Option(help: "PEM certificate chain for TLS.") var tlsCert: String?
        @Option(help: "PEM private key for TLS.") var tlsKey: String?
        @Flag(help: "Allow a non-loopback address without TLS.") var insecureListen = false
        @Option(help: "Open watch streams in all (1–1000000).") var maxStreams = 50_000
        @Option(help: "Open watch streams per key (1–1000000).") var maxStreamsPerKey = 1_000
        @Option(help: "Close a connection idle this long (1s to 1h); a watch stream is never idle.") var idleTimeout = "30s"
        @Option(help: "Open connections at once (default: the open-file limit less 256).") var maxConnections: Int?
        @Option(help: "Keep audit entries this long (1h to 87600h, e.g. 8760h).") var auditRetention = "8760h"
        @Option(help: "Keep reports this long (1h to 87600h; and the last 200 per surface).") var reportRetention = "720h"
        @Option(
            help:
                "Replicas on a shared database: not ready (503 on /healthz, validate and watch) after this long without a good read of it (1s to 1m)."
        ) var maxLag = "5s"
        @Option(
            help: "A shutdown (SIGTERM) ends every stream at once, then exits 69 if the rest is not done this long after (1s to 10m)."
        ) var shutdownTimeout = "20s"
        @Option(name: .customLong("config"), help: "A TOML file with [console] and [notify] settings (docs/console.md).") var configFile:
            String?

        func run() async throws {
            var options = ListenOptions()
            var config = AuthorityConfiguration()
            do {
                try options.set(listen: listen)
                options.tlsCertificate = tlsCert
                options.tlsKey = tlsKey
                options.insecureListen = insecureListen
                guard let l = DurationText.parse(lease), l >= .seconds(1) else {
                    throw StoreError("--lease takes a duration of at least 1s, e.g. 15s; got \"\(lease)\"")
                }
                config.leaseLength = l
                for (name, v) in [("--max-streams", maxStreams), ("--max-streams-per-key", maxStreamsPerKey)]
                where !(1...1_000_000).contains(v) {
                    throw StoreError("\(name) takes a number from 1 to 1000000; got \(v)")
                }
                for (name, text) in [("--audit-retention", auditRetention), ("--report-retention", reportRetention)] {
                    guard let d = DurationText.parse(text), d >= .seconds(3600), d <= .seconds(87_600 * 3600) else {
                        throw StoreError("\(name) takes a duration from 1h to 87600h (ten years), e.g. 720h; got \"\(text)\"")
                    }
                    if name == "--audit-retention" { config.auditRetention = d } else { config.reportRetention = d }
                }
                guard let lag = DurationText.parse(maxLag), lag >= .seconds(1), lag <= .seconds(60) else {
                    throw StoreError("--max-lag takes a duration from 1s to 1m, e.g. 5s; got \"\(maxLag)\"")
                }
                config.maxLag = lag
                config.syncInterval = min(.seconds(1), lag / 3)
                guard let stop = DurationText.parse(shutdownTimeout), stop >= .seconds(1), stop <= .seconds(600) else {
                    throw StoreError("--shutdown-timeout takes a duration from 1s to 10m, e.g. 20s; got \"\(shutdownTimeout)\"")
                }
                config.shutdownTimeout = stop
                config.maxStreams = maxStreams
                config.maxStreamsPerKey = maxStreamsPerKey
                guard let idle = DurationText.parse(idleTimeout), idle >= .seconds(1), idle <= .seconds(3600) else {
                    throw StoreError("--idle-timeout takes a duration from 1s to 1h, e.g. 30s; got \"\(idleTimeout)\"")
                }
                options.limits.idleTimeout = idle
                if let maxConnections {
                    guard (16...1_000_000).contains(maxConnections) else {
                        throw StoreError("--max-connections takes a number from 16 to 1000000; got \(maxConnections)")
                    }
                    options.limits.maxConnections = maxConnections
                }
                try options.check()
            } catch {
                throw fail("\(error)", code: TetherExit.usage)
            }
            if let configFile {
                do { config.settings = try ServeSettings.load(path: configFile) } catch { throw fail("\(error)", code: TetherExit.config) }
            }
            let database = try db.resolve()
            let logger = makeLogger("tether-authority")
            // One descriptor per watch stream: 10,000 supervisors need more than 1,024.
            let files = raiseOpenFileLimit()
            options.openFiles = files
            if files < 16384 { logger.notice("open-file limit \(files): at most about that many watch streams (raise LimitNOFILE=)") }
            do {
                try await AuthorityServer.serve(
                    directory: state.directory, database: database, listen: options, configuration: config, logger: logger,
                    notifications: SystemdNotifier.notifications)
            } catch let e as StoreError {
                throw fail(e.description, code: TetherExit.config)
            } catch {
                throw fail("the authority stopped: \(error)", code: TetherExit.unavailable)
            }
        }
    }

    struct SigningKeys: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "keys", abstract: "The authority's signing keys: list them, rotate to a new one.",
            subcommands: [Rotate.self, List.self])

        struct List: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                commandName: "list", abstract: "List the signing keys: which signs, which is next, which are retired.")
            @OptionGroup var state: StateDirOption
            @OptionGroup var db: DatabaseOption

            func run() async throws {
                let store = try await db.store(state.directory)
                let ring: KeyRing
                do { ring = try KeyRing(try await store.signingKeys()) } catch { throw fail("\(error)", code: TetherExit.config) }
                for k in ring.published {
                    var line = "\(k.id)\t\(k.state.rawValue)"
                    if k.state == .next, let at = k.activatesAt { line += "\tsigns from \(at)" }
                    if k.state == .retired, let at = k.retireAfter { line += "\tforgotten at \(at)" }
                    if let by = k.endorsedBy { line += "\tendorsed by \(by)" }
                    print(line)
                }
            }
        }

        struct Rotate: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                commandName: "rotate",
                abstract:
                    "Start a rotation: a new key, endorsed by the current one, published now and signing after --publish-for; the current key is forgotten --retire-after that.",
                discussion: """
                    Every replica reads the keys from the database and changes over by the clock: nothing to restart. \
                    Supervisors learn the new key from the authority (GET /api/v1/signing-keys) by its endorsement, \
                    or from a key set file you distribute (tether authority public-key) during --publish-for. \
                    --retire-after must be longer than the authority's lease, so that every lease the old key signed ends first.
                    """)
            @OptionGroup var state: StateDirOption
            @OptionGroup var db: DatabaseOption
            @Option(help: "How long the new key is published before it signs (10s to 30d).") var publishFor = "1m"
            @Option(help: "How long after the new key starts signing the old one stays published (longer than the lease; 1s to 30d).")
            var retireAfter = "1m"

            func run() async throws {
                let range = Duration.seconds(1)...Duration.seconds(30 * 86400)
                guard let publish = DurationText.parse(publishFor), publish >= .seconds(10), range.contains(publish) else {
                    throw fail(
                        "--publish-for takes a duration from 10s to 30d (720h), e.g. 1m; got \"\(publishFor)\"", code: TetherExit.usage)
                }
                guard let retire = DurationText.parse(retireAfter), range.contains(retire) else {
                    throw fail(
                        "--retire-after takes a duration from 1s to 30d (720h), e.g. 1m; got \"\(retireAfter)\"", code: TetherExit.usage)
                }
                let store = try await db.store(state.directory)
                let now = Date()
                do {
                    let records = try KeyRing.rotation(
                        of: try await store.signingKeys(), publishFor: publish, retireAfter: retire, now: now)
                    let change = Change(
                        actor: localActor(), reason: "signing key rotation", requestID: UUID().uuidString, at: Timestamp.string(now))
                    for r in records { try await store.putSigningKey(r, change: change) }
                    let next = records[0]
                    print(
                        """
                        next signing key \(next.id), endorsed by \(next.endorsedBy ?? "-")
                          published now; signs from \(next.activatedAt ?? "?"); \(next.endorsedBy ?? "the old key") forgotten at \(records.dropFirst().first?.retireAfter ?? "?")
                          public key: \(next.publicKey)
                        Supervisors that fetch keys learn it by itself; for those that pin a file only, distribute
                        the output of `tether authority public-key` before \(next.activatedAt ?? "it signs").
                        """)
                } catch {
                    throw fail("\(error)", code: TetherExit.config)
                }
            }
        }
    }

    struct PublicKey: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "public-key",
            abstract: "Print the published signing keys, one per line: the key set supervisors pin (--public-key FILE).")
        @OptionGroup var state: StateDirOption
        @OptionGroup var db: DatabaseOption

        func run() async throws {
            let store = try await db.store(state.directory)
            do {
                print(try KeyRing(try await store.signingKeys()).keySetText, terminator: "")
            } catch {
                throw fail("cannot read the signing keys: \(error)", code: TetherExit.config)
            }
        }
    }
}

struct KeysCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keys",
        abstract: "Create, list and revoke API keys (works on the local state directory).",
        subcommands: [Create.self, List.self, Revoke.self]
    )

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "create", abstract: "Create a key; it is printed once.")
        @OptionGroup var state: StateDirOption
        @OptionGroup var db: DatabaseOption
        @Option(help: "agent (register, validate, watch, report) or operator (everything).") var role: String
        @Option(help: "A name for the audit log (letters, digits, . _ : - @).") var name: String
        @Option(help: "Agent keys: the surfaces it may act for, names or patterns with * (repeatable, or comma-separated), e.g. 'agent-*'.")
        var surfaces: [String] = []
        @Option(help: "Agent keys: the one instance it may watch and report as (its supervisor's).") var instance: String?

        func run() async throws {
            guard let r = Role(rawValue: role) else { throw fail("--role is agent or operator", code: TetherExit.usage) }
            guard APIKeys.isValidName(name) else { throw fail("--name: 1 to 64 of letters, digits, . _ : - @", code: TetherExit.usage) }
            let patterns = surfaces.flatMap { $0.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) } }
            if r == .operator && (!patterns.isEmpty || instance != nil) {
                throw fail("--surfaces and --instance scope agent keys; an operator key can do everything", code: TetherExit.usage)
            }
            for p in patterns where !SurfacePattern.isValid(p) {
                throw fail("--surfaces: \"\(p)\" is not a surface name or pattern (\(SurfaceName.rule), and *)", code: TetherExit.usage)
            }
            if let i = instance, !SurfaceName.isValid(i) { throw fail("--instance: \(SurfaceName.rule)", code: TetherExit.usage) }
            let store = try await db.store(state.directory)
            // One live key per instance: two would take the instance from each other.
            if let i = instance, let other = try await store.keys().first(where: { $0.instance == i && $0.revokedAt == nil }) {
                throw fail(
                    "the key \"\(other.name)\" is already bound to instance \(i); revoke it first (tether keys revoke \(other.name))",
                    code: TetherExit.config)
            }
            let key = APIKeys.generate()
            let now = Timestamp.string(Date())
            do {
                try await store.addKey(
                    KeyRecord(
                        name: name, role: r, hash: APIKeys.hash(key), createdAt: now,
                        surfaces: patterns.isEmpty ? nil : patterns, instance: instance),
                    change: Change(actor: localActor(), reason: nil, requestID: UUID().uuidString, at: now))
            } catch {
                throw fail("\(error)", code: TetherExit.config)
            }
            print(key)
            FileHandle.standardError.write(Data("created \(r.rawValue) key \"\(name)\"; it is shown once: store it now\n".utf8))
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "list", abstract: "List keys (names and roles; never the keys).")
        @OptionGroup var state: StateDirOption
        @OptionGroup var db: DatabaseOption

        func run() async throws {
            for k in try await db.store(state.directory).keys() {
                print(
                    "\(k.name)\t\(k.role.rawValue)\t\(k.scopeDescription)\tcreated \(k.createdAt)\(k.revokedAt.map { "\tREVOKED \($0)" } ?? "")"
                )
            }
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "revoke", abstract: "Revoke a key; a running authority stops accepting it within a second.")
        @OptionGroup var state: StateDirOption
        @OptionGroup var db: DatabaseOption
        @Argument var name: String

        func run() async throws {
            let now = Timestamp.string(Date())
            let ok = try await db.store(state.directory).revokeKey(
                named: name, change: Change(actor: localActor(), reason: nil, requestID: UUID().uuidString, at: now))
            guard ok else { throw fail("no active key named \(name)", code: TetherExit.config) }
            print("revoked key \(name)")
        }
    }
}
