import Foundation
import Glibc
import Hummingbird
import HummingbirdCore
import NIOSSL
import HummingbirdTLS
import Logging
import ServiceLifecycle
import TetherCore
import TetherState

/// How `tether authority serve` listens.
public struct ListenOptions: Sendable {
    public var host: String = "127.0.0.1"
    public var port: Int = 8470
    public var tlsCertificate: String?
    public var tlsKey: String?
    /// Allow a non-loopback address without TLS: keys would cross the network in clear text.
    public var insecureListen = false
    /// Timeouts and the connection cap.
    public var limits = ConnectionLimits()
    /// The process's open-file limit, for the default connection cap.
    public var openFiles: UInt64 = 1024

    public init() {}

    /// Parses `HOST:PORT`, `[V6]:PORT` or `:PORT`.
    public mutating func set(listen: String) throws {
        let s = listen.trimmingCharacters(in: .whitespaces)
        guard let colon = s.lastIndex(of: ":"), let port = Int(s[s.index(after: colon)...]), (0...65535).contains(port) else {
            throw StoreError("--listen takes HOST:PORT, e.g. 127.0.0.1:8470; got \"\(listen)\"")
        }
        var host = String(s[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        self.host = host.isEmpty ? "127.0.0.1" : host
        self.port = port
    }

    public var isLoopback: Bool {
        host == "localhost" || host == "::1" || host.hasPrefix("127.")
    }

    public var usesTLS: Bool { tlsCertificate != nil }

    public var scheme: String { usesTLS ? "https" : "http" }

    /// Refuses what would be unsafe or cannot work, with what to do instead.
    public func check() throws {
        if (tlsCertificate == nil) != (tlsKey == nil) {
            throw StoreError("TLS needs both --tls-cert and --tls-key")
        }
        if !isLoopback && !usesTLS && !insecureListen {
            throw StoreError(
                "refusing to listen on \(host) without TLS: keys and decisions would cross the network in clear text. Give --tls-cert and --tls-key, or --insecure-listen if something else encrypts the traffic"
            )
        }
    }
}

/// The authority as a Hummingbird application: the router of `buildRouter`, plain HTTP/1.1 or
/// TLS, and a graceful shutdown that ends every watch stream with `event: shutdown`.
public func buildApplication(
    authority: Authority, listen: ListenOptions, logger: Logger,
    onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }
) throws -> some ApplicationProtocol {
    try listen.check()
    let server: HTTPServerBuilder
    if let cert = listen.tlsCertificate, let key = listen.tlsKey {
        let chain = try NIOSSLCertificate.fromPEMFile(cert).map { NIOSSLCertificateSource.certificate($0) }
        var tls = TLSConfiguration.makeServerConfiguration(
            certificateChain: chain, privateKey: .privateKey(try NIOSSLPrivateKey(file: key, format: .pem)))
        // TLS 1.0 and 1.1 are refused at the handshake.
        tls.minimumTLSVersion = .tlsv12
        server = try .tls(limits: listen.limits, tlsConfiguration: tls)
    } else {
        server = .http1(limits: listen.limits)
    }
    let bodyTimeout = listen.limits.bodyTimeout
    return Application(
        router: buildRouter(authority: authority, bodyTimeout: bodyTimeout, tls: listen.usesTLS),
        server: server,
        configuration: .init(
            address: .hostname(listen.host, port: listen.port), serverName: "tether-authority",
            availableConnectionsDelegate: MaximumAvailableConnections(
                listen.limits.connectionCap(openFiles: listen.openFiles), logger: logger)),
        services: [
            HubShutdown(authority: authority), RefusalFlusher(authority: authority, window: authority.configuration.refusalWindow),
            ReplicaSync(authority: authority), authority.notifier,
        ],
        onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? listen.port) },
        logger: logger
    )
}

/// Ends every watch stream when the service group shuts down.
struct HubShutdown: Service {
    let authority: Authority
    func run() async throws {
        try? await gracefulShutdown()
        await authority.shutdown()
    }
}

/// `tether authority serve`: open the state directory and serve until SIGTERM/SIGINT.
public enum AuthorityServer {
    /// The authority on the state directory's SQLite database, or on a shared PostgreSQL one.
    public static func open(
        directory: StateDirectory, database: DatabaseURL? = nil, configuration: AuthorityConfiguration, logger: Logger
    ) async throws -> Authority {
        let store: any AuthorityStore
        if let database {
            store = try await PostgresStore.open(database, logger: logger)
        } else {
            guard directory.isInitialized else {
                throw StoreError(
                    "\(directory.path) is not an authority state directory; run: tether authority init --dir \(directory.path)")
            }
            try directory.checkOwnership(forWriting: true)
            store = try SQLiteStore(path: directory.database)
            try await directory.importLegacySigningKey(into: store)
        }
        return try await Authority(store: store, configuration: configuration, logger: logger)
    }

    public static func serve(
        directory: StateDirectory, database: DatabaseURL? = nil, listen: ListenOptions, configuration: AuthorityConfiguration,
        logger: Logger,
        notifications: ServiceNotifications = .none
    ) async throws {
        umask(0o077)  // the WAL and shared-memory files SQLite creates, authority.url
        var withKeySet = configuration
        if database == nil || FileManager.default.fileExists(atPath: directory.path) { withKeySet.keySetFile = directory.publicKey }
        let authority = try await open(directory: directory, database: database, configuration: withKeySet, logger: logger)
        authority.publishKeySet()
        let app = try buildApplication(authority: authority, listen: listen, logger: logger) { port in
            let host = listen.host.contains(":") ? "[\(listen.host)]" : listen.host
            let url = "\(listen.scheme)://\(host):\(port)"
            // For the local CLI: the state directory's authority (a replica of a shared database
            // writes it only where a directory was given).
            if database == nil || FileManager.default.fileExists(atPath: directory.path) {
                try? (url + "\n").write(toFile: directory.endpointFile, atomically: true, encoding: .utf8)
            }
            logger.notice(
                "authority serving",
                metadata: ["url": "\(url)", "lease": "\(DurationText.format(configuration.leaseLength))", "dir": "\(directory.path)"])
            notifications.ready(
                "serving \(url): \(await authority.state.count) surfaces, \(await authority.state.revokedCount) revoked\(await authority.state.org.halted ? ", ORG HALTED" : "")"
            )
        }
        // Watchdog pings from the authority's state actor: if it stops answering, so do they.
        let pinger = notifications.watchdogInterval.map { interval in
            Task {
                while !Task.isCancelled {
                    _ = await authority.state.org
                    notifications.watchdog()
                    try? await Task.sleep(for: interval)
                }
            }
        }
        defer { pinger?.cancel() }
        // Graceful first (the streams end, the server drains, the services finish), then
        // cancellation at three quarters of the bound, then the bound itself (`ShutdownSignals`).
        var group = ServiceGroupConfiguration(
            services: [
                .init(service: app),
                .init(
                    service: ShutdownFirst {
                        notifications.stopping("stopping")
                        await authority.shutdown()
                    }),
            ], logger: logger)
        group.maximumGracefulShutdownDuration = configuration.shutdownTimeout * 3 / 4
        let services = ServiceGroup(configuration: group)
        ShutdownSignals.take(limit: configuration.shutdownTimeout, logger: logger) {
            Task { await services.triggerGracefulShutdown() }
        }
        try await services.run()
        (authority.store as? PostgresStore)?.close()
        logger.notice("authority stopped")
        notifications.stopping("stopped")
    }
}
