import Foundation

/// `tether authority serve --config FILE`: the on-call console and the notifications. Read
/// strictly, like a supervisor's configuration: an unknown key or a bad value names
/// `file:line`, and the authority does not start on a file that did not load.
///
///     [console]
///     enabled = true
///     idle_timeout = "15m"
///     session_lifetime = "12h"
///     link_lifetime = "5m"
///     public_url = "https://tether.example.com"
///     secure_cookies = true           # behind a TLS-terminating proxy
///
///     [notify]
///     ack_timeout = "30s"
///
///     [[notify.webhook]]
///     name = "oncall"
///     url = "https://hooks.example.com/tether"
///     format = "json"                 # or "slack"
///     secret_file = "/etc/tether/webhook.secret"
///     events = ["revoke", "restore", "halt", "resume", "acks_missing"]
public struct ServeSettings: Sendable, Equatable {
    public var console = ConsoleSettings()
    public var notify = NotifySettings()

    public init() {}

    public static func load(path: String) throws(ConfigError) -> ServeSettings {
        try parse(try ConfigLoader.read(path), path: path)
    }

    /// `readSecret` reads a webhook's `secret_file` (a mode-0600 file, like keys).
    public static func parse(
        _ text: String, path: String,
        readSecret: (String) throws -> String = { try SecretFile.read($0) }
    ) throws(ConfigError) -> ServeSettings {
        let root = try ConfigLoader.document(text, path: path)
        var out = ServeSettings()
        var top = Fields(root, name: nil, file: path, topTables: "[console] and [notify]")
        if let t = try top.table("console") {
            var f = Fields(t, name: "console", file: path)
            out.console.enabled = try f.bool("enabled") ?? true
            func bounded(_ key: String, _ range: ClosedRange<Duration>) throws(ConfigError) -> Duration? {
                guard let d = try f.duration(key, atLeast: range.lowerBound) else { return nil }
                guard d <= range.upperBound else { throw f.error(key, "must be at most \(DurationText.format(range.upperBound))") }
                return d
            }
            if let d = try bounded("idle_timeout", .seconds(5)...(.seconds(24 * 3600))) { out.console.idleTimeout = d }
            if let d = try bounded("session_lifetime", .seconds(10)...(.seconds(7 * 24 * 3600))) { out.console.sessionLifetime = d }
            if let d = try bounded("link_lifetime", .seconds(5)...(.seconds(3600))) { out.console.linkLifetime = d }
            if let url = try f.string("public_url") {
                guard let u = URLComponents(string: url), let scheme = u.scheme?.lowercased(), ["http", "https"].contains(scheme),
                    let host = u.host, !host.isEmpty, u.user == nil, u.query == nil, u.fragment == nil, u.path.isEmpty || u.path == "/"
                else {
                    throw f.error(
                        "public_url",
                        "\"\(url.prefix(200))\" is not a base URL like https://tether.example.com (no path: the console lives at /console)")
                }
                out.console.publicURL = url.hasSuffix("/") ? String(url.dropLast()) : url
            }
            out.console.secureCookies = try f.bool("secure_cookies")
            if out.console.idleTimeout > out.console.sessionLifetime {
                throw f.error("idle_timeout", "is longer than session_lifetime (\(DurationText.format(out.console.sessionLifetime)))")
            }
            try f.finish()
        }
        if let t = try top.table("notify") {
            var f = Fields(t, name: "notify", file: path)
            if let d = try f.duration("ack_timeout", atLeast: .seconds(1)) {
                guard d <= .seconds(3600) else { throw f.error("ack_timeout", "must be at most 1h") }
                out.notify.ackTimeout = d
            }
            var names = Set<String>()
            for (i, w) in try f.tables("webhook").enumerated() {
                var h = Fields(w, name: "notify.webhook[\(i + 1)]", file: path)
                var hook = WebhookSettings(name: try h.token("name") ?? "webhook-\(i + 1)", url: "")
                guard names.insert(hook.name).inserted else { throw h.error("name", "\"\(hook.name)\" names two webhooks") }
                guard let url = try h.string("url") else {
                    throw ConfigError(file: path, line: w.line, message: "notify.webhook[\(i + 1)]: needs a url")
                }
                guard let u = URLComponents(string: url), let scheme = u.scheme?.lowercased(), ["http", "https"].contains(scheme),
                    let host = u.host, !host.isEmpty, u.user == nil, u.password == nil
                else {
                    throw h.error("url", "\"\(url.prefix(200))\" is not an http:// or https:// URL with a host (and no user:password@)")
                }
                hook.url = url
                if let format = try h.string("format") {
                    guard let fm = WebhookSettings.Format(rawValue: format) else {
                        throw h.error("format", "\"\(format)\" is not a format; use \"json\" or \"slack\"")
                    }
                    hook.format = fm
                }
                if let file = try h.string("secret_file") {
                    do { hook.secret = try readSecret(file).trimmingCharacters(in: .whitespacesAndNewlines) } catch {
                        throw h.error("secret_file", "\(error)")
                    }
                    guard (hook.secret?.utf8.count ?? 0) >= 16 else { throw h.error("secret_file", "the secret is shorter than 16 bytes") }
                }
                if hook.format == .json && hook.secret == nil {
                    throw ConfigError(
                        file: path, line: w.line,
                        message: "notify.webhook[\(i + 1)]: a json webhook needs secret_file (its payloads are signed: X-Tether-Signature)")
                }
                if let events = try h.stringArray("events") {
                    var set = Set<NotifyEvent>()
                    for e in events {
                        guard let ev = NotifyEvent(rawValue: e) else {
                            throw h.error(
                                "events",
                                "\"\(e)\" is not an event; the events are \(NotifyEvent.allCases.map(\.rawValue).joined(separator: ", "))")
                        }
                        set.insert(ev)
                    }
                    guard !set.isEmpty else { throw h.error("events", "an empty list; leave it out for every event") }
                    hook.events = set
                }
                if let d = try h.duration("timeout", atLeast: .milliseconds(100)) {
                    guard d <= .seconds(60) else { throw h.error("timeout", "must be at most 1m") }
                    hook.timeout = d
                }
                if let n = try h.integer("retries", in: 0...20) { hook.retries = n }
                try h.finish()
                out.notify.webhooks.append(hook)
            }
            try f.finish()
        }
        try top.finish()
        return out
    }
}

public struct ConsoleSettings: Sendable, Equatable {
    public var enabled = true
    /// A session unused this long is over.
    public var idleTimeout: Duration = .seconds(15 * 60)
    /// A session is over this long after sign-in, used or not.
    public var sessionLifetime: Duration = .seconds(12 * 3600)
    /// How long a `tether console` sign-in link may be used (once).
    public var linkLifetime: Duration = .seconds(5 * 60)
    /// The address on-call opens (behind a proxy, or a name other than the one the CLI uses):
    /// sign-in links are made with it.
    public var publicURL: String?
    /// `Secure` cookies: nil follows the authority's own TLS; true behind a TLS-terminating proxy.
    public var secureCookies: Bool?

    public init() {}
}

public enum NotifyEvent: String, Sendable, CaseIterable, Codable {
    case revoke, restore, halt, resume
    /// Acknowledgements still missing `ack_timeout` after a change.
    case acksMissing = "acks_missing"
}

public struct NotifySettings: Sendable, Equatable {
    /// After a change, how long to wait for its acknowledgements before `acks_missing`.
    public var ackTimeout: Duration = .seconds(30)
    public var webhooks: [WebhookSettings] = []

    public init() {}
}

public struct WebhookSettings: Sendable, Equatable {
    public enum Format: String, Sendable { case json, slack }
    public var name: String
    public var url: String
    public var format = Format.json
    /// HMAC-SHA256 key of `X-Tether-Signature` (json).
    public var secret: String?
    public var events = Set(NotifyEvent.allCases)
    /// One attempt's limit.
    public var timeout: Duration = .seconds(5)
    /// Attempts after the first, backing off 1 s, 2 s, 4 s … (at most 60 s apart).
    public var retries = 5

    public init(name: String, url: String) {
        self.name = name
        self.url = url
    }
}
