import Crypto
import Foundation
import TetherCore

/// The console's sign-in links and sessions, in this replica's memory: a link works, and a
/// session lives, on the replica that made it (behind a load balancer: sticky sessions, or
/// on-call opens one replica's address). A restart signs everyone out.
///
/// Tokens carry 256 random bits and are kept only as their SHA-256: a memory dump or a log
/// shows no usable token.
actor ConsoleSessions {
    struct Session: Sendable {
        /// The cookie's value (returned once, when it is opened; empty afterwards).
        var token = ""
        /// Sent back with every change (`X-CSRF-Token`, or a form's `csrf` field).
        let csrf: String
        let keyName: String
        let client: String
        let opened: ContinuousClock.Instant
        var lastSeen: ContinuousClock.Instant
    }

    private struct Link {
        let keyName: String
        let expires: ContinuousClock.Instant
        var used = false
    }

    enum LinkOutcome: Equatable { case valid(keyName: String), used, expired, unknown }
    enum SessionOutcome { case valid(Session), expired, none }

    let settings: ConsoleSettings
    private var sessions: [String: Session] = [:]
    private var links: [String: Link] = [:]
    static let maxSessions = 10_000
    static let maxLinks = 10_000

    init(settings: ConsoleSettings) { self.settings = settings }

    static func token() -> String {
        var g = SystemRandomNumberGenerator()
        let bytes = (0..<32).map { _ in UInt8.random(in: .min ... .max, using: &g) }
        return Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    static func digest(_ token: String) -> String {
        SHA256.hash(data: Data(token.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    /// A one-time sign-in link's token for `keyName` (an operator key), and when it ends.
    func makeLink(keyName: String) throws -> (token: String, expires: Date) {
        prune()
        guard links.count < Self.maxLinks else { throw APIError(.tooManyRequests, "TOO_MANY_LINKS", "\(Self.maxLinks) sign-in links are open; wait for some to expire") }
        let t = Self.token()
        links[Self.digest(t)] = Link(keyName: keyName, expires: .now + settings.linkLifetime)
        return (t, Date().addingTimeInterval(settings.linkLifetime.timeInterval))
    }

    /// Uses a link: valid once, before it expires. A used link is remembered until it would
    /// have expired, so that a second use is told so.
    func redeem(_ token: String) -> LinkOutcome {
        let key = Self.digest(token)
        guard let link = links[key] else { return .unknown }
        if link.used { return .used }
        if ContinuousClock.now > link.expires {
            links[key] = nil
            return .expired
        }
        links[key]?.used = true
        return .valid(keyName: link.keyName)
    }

    func open(keyName: String, client: String) throws -> Session {
        prune()
        guard sessions.count < Self.maxSessions else { throw APIError(.tooManyRequests, "TOO_MANY_SESSIONS", "\(Self.maxSessions) console sessions are open") }
        let t = Self.token()
        let now = ContinuousClock.now
        var s = Session(csrf: Self.token(), keyName: keyName, client: client, opened: now, lastSeen: now)
        sessions[Self.digest(t)] = s
        s.token = t
        return s
    }

    /// The session of a cookie, touched; expired ones are ended here.
    func session(_ token: String) -> SessionOutcome {
        let key = Self.digest(token)
        guard let s = sessions[key] else { return .none }
        let now = ContinuousClock.now
        if now - s.lastSeen > settings.idleTimeout || now - s.opened > settings.sessionLifetime {
            sessions[key] = nil
            return .expired
        }
        sessions[key]?.lastSeen = now
        return .valid(s)
    }

    /// Whether the session still stands, without counting as use (a live view's stream).
    func stands(_ token: String) -> Bool {
        guard let s = sessions[Self.digest(token)] else { return false }
        let now = ContinuousClock.now
        return now - s.lastSeen <= settings.idleTimeout && now - s.opened <= settings.sessionLifetime
    }

    func close(_ token: String) { sessions[Self.digest(token)] = nil }

    /// Ends every session of a key (it was revoked, or is no operator key any more).
    func closeAll(keyName: String) { sessions = sessions.filter { $0.value.keyName != keyName } }

    var count: Int { sessions.count }

    private func prune() {
        let now = ContinuousClock.now
        links = links.filter { now <= $0.value.expires }
        sessions = sessions.filter { now - $0.value.lastSeen <= settings.idleTimeout && now - $0.value.opened <= settings.sessionLifetime }
    }
}
