import Foundation
import NIOSSL
import PostgresNIO

/// A PostgreSQL connection URL, as libpq reads one:
/// `postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?sslmode=disable|prefer|require|verify-full][&host=/run/postgresql]`.
/// A `host` parameter that is a directory means the server's Unix socket in it.
///
/// The database holds the signing keys and every decision: off this host, a connection that is
/// not verified TLS lets anyone on the path read the keys or answer for the server. So off
/// loopback `sslmode` defaults to `verify-full`, and a weaker one is refused unless the caller
/// names the risk (`allowUnverifiedTLS`, `--insecure-database-tls`). On loopback or a Unix
/// socket the default stays libpq's `prefer`.
public struct DatabaseURL: Sendable, CustomStringConvertible {
    public var user: String
    public var password: String?
    public var host: String
    public var port: Int
    public var database: String
    public var socketDirectory: String?
    public enum SSLMode: String, Sendable { case disable, prefer, require, verifyFull = "verify-full" }
    public var sslMode: SSLMode
    /// Off loopback without verified TLS: allowed only because the caller named the risk.
    public private(set) var unverifiedOffHost = false
    /// The URL as given, password included: for handing on (never for logs).
    public let text: String

    public struct Invalid: Error, CustomStringConvertible {
        public var description: String
    }

    public init(_ text: String, allowUnverifiedTLS: Bool = false) throws(Invalid) {
        let t = text.trimmingCharacters(in: .whitespacesAndNewlines)
        self.text = t
        guard t.hasPrefix("postgresql://") || t.hasPrefix("postgres://") else {
            throw Invalid(
                description:
                    "a database URL starts with postgresql:// (e.g. postgresql://tether@db.example:5432/tether); got \"\(Self.redact(t).prefix(60))\""
            )
        }
        guard let c = URLComponents(string: t) else { throw Invalid(description: "not a URL: \(Self.redact(t).prefix(80))") }
        guard let user = c.user, !user.isEmpty else {
            throw Invalid(description: "the database URL names no user (postgresql://USER@HOST/DB)")
        }
        self.user = user.removingPercentEncoding ?? user
        password = c.password.map { $0.removingPercentEncoding ?? $0 }
        host = c.host ?? ""
        port = c.port ?? 5432
        let db = String(c.path.drop { $0 == "/" })
        guard !db.isEmpty else { throw Invalid(description: "the database URL names no database (postgresql://USER@HOST/DB)") }
        database = db
        var mode: SSLMode?
        for item in c.queryItems ?? [] {
            switch item.name {
            case "sslmode":
                guard let v = item.value, let m = SSLMode(rawValue: v) else {
                    throw Invalid(description: "sslmode must be disable, prefer, require or verify-full; got \"\(item.value ?? "")\"")
                }
                mode = m
            case "host":
                guard let v = item.value, v.hasPrefix("/") else {
                    throw Invalid(description: "host= takes the directory of the server's Unix socket")
                }
                socketDirectory = v
            default:
                throw Invalid(description: "unknown database URL parameter \"\(item.name)\" (known: sslmode, host)")
            }
        }
        guard !host.isEmpty || socketDirectory != nil else { throw Invalid(description: "the database URL names no host") }
        let local = socketDirectory != nil || Self.isLoopback(host)
        sslMode = mode ?? (local ? .prefer : .verifyFull)
        if !local && sslMode != .verifyFull {
            guard allowUnverifiedTLS else {
                throw Invalid(
                    description:
                        "\(host) is off this host, and sslmode=\(sslMode.rawValue) does not verify the server: anyone on the path could read the signing keys in this database or answer for it. Use sslmode=verify-full (the default off loopback, with the server's CA in the system's trust store), or name the risk with --insecure-database-tls (TETHER_INSECURE_DATABASE_TLS=1)"
                )
            }
            unverifiedOffHost = true
        }
    }

    /// 127.0.0.0/8, ::1, localhost: this host.
    static func isLoopback(_ host: String) -> Bool {
        let h = host.trimmingCharacters(in: CharacterSet(charactersIn: "[]")).lowercased()
        if h == "localhost" || h == "::1" || h == "0:0:0:0:0:0:0:1" { return true }
        let parts = h.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts[0] == "127" && parts.allSatisfy { UInt8($0) != nil }
    }

    /// The URL without its password: what logs and errors show.
    public var description: String {
        "postgresql://\(user)@\(socketDirectory.map { "[\($0)]" } ?? "\(host):\(port)")/\(database)?sslmode=\(sslMode.rawValue)"
    }

    static func redact(_ s: String) -> String {
        guard let at = s.firstIndex(of: "@"), let scheme = s.range(of: "://") else { return s }
        let userinfo = s[scheme.upperBound..<at]
        guard let colon = userinfo.firstIndex(of: ":") else { return s }
        return String(s[..<colon]) + ":***" + String(s[at...])
    }

    func clientConfiguration() -> PostgresClient.Configuration {
        if let dir = socketDirectory {
            return PostgresClient.Configuration(
                unixSocketPath: "\(dir)/.s.PGSQL.\(port)", username: user, password: password, database: database)
        }
        let tls: PostgresClient.Configuration.TLS
        switch sslMode {
        case .disable: tls = .disable
        case .prefer:
            var c = TLSConfiguration.makeClientConfiguration()
            c.certificateVerification = .none  // libpq's prefer: encrypt when offered, verify nothing
            tls = .prefer(c)
        case .require:
            var c = TLSConfiguration.makeClientConfiguration()
            c.certificateVerification = .none  // libpq's require: encrypted, not verified
            tls = .require(c)
        case .verifyFull:
            tls = .require(.makeClientConfiguration())
        }
        return PostgresClient.Configuration(host: host, port: port, username: user, password: password, database: database, tls: tls)
    }
}
