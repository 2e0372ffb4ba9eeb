import Crypto
import Foundation
import TetherCore

/// The console's sign-in links and sessions, in the store: on a shared database a link made
/// through one replica signs in through any, and a session lives on every replica (behind a
/// load balancer, no stickiness needed). A restart signs nobody out.
///
/// Tokens carry 256 random bits and are kept only as their SHA-256: the database, a backup or
/// a log shows no usable token.
final class ConsoleSessions: Sendable {
    struct Session: Sendable {
        /// The cookie's value (returned once, when it is opened; empty afterwards).
        var token = ""
        /// Sent back with every change (`X-CSRF-Token`, or a form's `csrf` field).
        let csrf: String
        let keyName: String
    }

    enum LinkOutcome: Equatable { case valid(keyName: String), used, expired, unknown }
    enum SessionOutcome { case valid(Session), expired, none }

    let settings: ConsoleSettings
    let store: any AuthorityStore

    init(settings: ConsoleSettings, store: any AuthorityStore) {
        self.settings = settings
        self.store = store
    }

    static func token() -> String {
        var g = SystemRandomNumberGenerator()
        let bytes = (0..<32).map { _ in UInt8.random(in: .min ... .max, using: &g) }
        return Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    static func digest(_ token: String) -> String {
        SHA256.hash(data: Data(token.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    var now: Double { Date().timeIntervalSince1970 }

    /// A one-time sign-in link's token for `keyName` (an operator key), and when it ends.
    func makeLink(keyName: String) async throws -> (token: String, expires: Date) {
        try await prune()
        let t = Self.token(), at = now
        let ends = at + settings.linkLifetime.timeInterval
        try await store.addConsoleToken(
            ConsoleTokenRecord(digest: Self.digest(t), kind: .link, keyName: keyName, createdAt: at, lastSeen: at, expiresAt: ends))
        return (t, Date(timeIntervalSince1970: ends))
    }

    /// Uses a link: once, before it expires — marked used in one statement, so that two
    /// replicas given the same link at the same moment cannot both sign in. A used link is
    /// remembered until it would have expired, so that a second use is told so.
    func redeem(_ token: String) async throws -> LinkOutcome {
        let digest = Self.digest(token)
        guard let link = try await store.consoleToken(digest: digest), link.kind == .link else { return .unknown }
        if link.used { return .used }
        if now > link.expiresAt {
            try await store.deleteConsoleToken(digest: digest)
            return .expired
        }
        return try await store.useConsoleLink(digest: digest) ? .valid(keyName: link.keyName) : .used
    }

    func open(keyName: String, client: String) async throws -> Session {
        try await prune()
        let t = Self.token(), csrf = Self.token(), at = now
        try await store.addConsoleToken(
            ConsoleTokenRecord(
                digest: Self.digest(t), kind: .session, keyName: keyName, csrf: csrf, client: client,
                createdAt: at, lastSeen: at, expiresAt: at + settings.sessionLifetime.timeInterval))
        return Session(token: t, csrf: csrf, keyName: keyName)
    }

    /// The session of a cookie, touched; an ended one is deleted here.
    func session(_ token: String) async throws -> SessionOutcome {
        let digest = Self.digest(token)
        guard let s = try await store.consoleToken(digest: digest), s.kind == .session, let csrf = s.csrf else { return .none }
        let at = now
        guard ended(s, at: at) == false else {
            try await store.deleteConsoleToken(digest: digest)
            return .expired
        }
        try await store.touchConsoleSession(digest: digest, at: at)
        return .valid(Session(csrf: csrf, keyName: s.keyName))
    }

    /// Whether the session still stands, without counting as use (a live view's stream).
    func stands(_ token: String) async -> Bool {
        guard let s = try? await store.consoleToken(digest: Self.digest(token)), s.kind == .session else { return false }
        return !ended(s, at: now)
    }

    private func ended(_ s: ConsoleTokenRecord, at: Double) -> Bool {
        at - s.lastSeen > settings.idleTimeout.timeInterval || at > s.expiresAt
    }

    func close(_ token: String) async throws { try await store.deleteConsoleToken(digest: Self.digest(token)) }

    /// Ends every session of a key (it was revoked, or is no operator key any more).
    func closeAll(keyName: String) async throws { try await store.deleteConsoleSessions(keyName: keyName) }

    /// What has ended goes, whenever something new is made.
    private func prune() async throws {
        let at = now
        try await store.pruneConsoleTokens(before: at, idleBefore: at - settings.idleTimeout.timeInterval)
    }
}
