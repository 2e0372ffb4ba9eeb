import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import NIOSSL
import Synchronization
import TetherCore
import TetherState

/// Where the authority is and which key to present.
public struct AuthorityEndpoint: Sendable, Equatable {
    public var url: String
    public var key: String
    /// Where the key was read from, when it was.
    public var keyFile: String?

    public init(url: String, key: String, keyFile: String? = nil) {
        self.url = url.hasSuffix("/") ? String(url.dropLast()) : url
        self.key = key
        self.keyFile = keyFile
    }

    /// Flags first, then `TETHER_AUTHORITY` / `TETHER_KEY_FILE`, then the local state
    /// directory (`authority.url` written by `serve`, and `<role>.key`), then
    /// `http://127.0.0.1:8470`.
    public static func resolve(
        url: String?, keyFile: String?, role: String = "operator", stateDirectory: String,
        environment env: [String: String] = Foundation.ProcessInfo.processInfo.environment
    ) throws -> AuthorityEndpoint {
        try resolveAll(urls: url.map { [$0] } ?? [], keyFile: keyFile, role: role, stateDirectory: stateDirectory, environment: env)[0]
    }

    /// The same for replicas: one endpoint per URL (`TETHER_AUTHORITY` may list several,
    /// comma-separated), each with the one key.
    public static func resolveAll(
        urls: [String], keyFile: String?, role: String = "operator", stateDirectory: String,
        environment env: [String: String] = Foundation.ProcessInfo.processInfo.environment
    ) throws -> [AuthorityEndpoint] {
        let fromEnv = env["TETHER_AUTHORITY"].map {
            $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        }
        let list = !urls.isEmpty ? urls : (fromEnv?.isEmpty == false ? fromEnv! : [])
        let one = try resolveOne(url: list.first, keyFile: keyFile, role: role, stateDirectory: stateDirectory, environment: env)
        return [one] + list.dropFirst().map { AuthorityEndpoint(url: $0, key: one.key, keyFile: one.keyFile) }
    }

    static func resolveOne(
        url: String?, keyFile: String?, role: String, stateDirectory: String, environment env: [String: String]
    ) throws -> AuthorityEndpoint {
        let dir = StateDirectory(path: stateDirectory)
        let fromDir = (try? String(contentsOfFile: dir.endpointFile, encoding: .utf8))?
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let u = url ?? env["TETHER_AUTHORITY"] ?? fromDir ?? "http://127.0.0.1:8470"
        let keyPath = keyFile ?? env["TETHER_KEY_FILE"] ?? dir.keyFile(role: role)
        let key: String
        do {
            key = try SecretFile.read(keyPath).trimmingCharacters(in: .whitespacesAndNewlines)
        } catch {
            throw ClientError.configuration(
                "cannot read the \(role) key: \(error); give --key-file or TETHER_KEY_FILE (tether authority init writes \(role).key)")
        }
        guard !key.isEmpty else {
            throw ClientError.configuration("the \(role) key file \(keyPath) is empty")
        }
        return AuthorityEndpoint(url: u, key: key, keyFile: keyPath)
    }
}

public enum ClientError: Error, Sendable, CustomStringConvertible {
    case configuration(String)
    /// No answer: refused, reset, timed out.
    case unreachable(String)
    /// An answer that is not what the API promises.
    case badResponse(String)
    /// The authority refused the request, with its JSON error.
    case refused(status: Int, code: String, message: String, requestID: String?)

    public var description: String {
        switch self {
        case .configuration(let m): return m
        case .unreachable(let m): return "authority unreachable: \(m)"
        case .badResponse(let m): return "bad answer from the authority: \(m)"
        case .refused(let s, let c, let m, let r): return "\(m) (HTTP \(s) \(c)\(r.map { ", request \($0)" } ?? ""))"
        }
    }
}

/// A JSON object answered by the authority.
public struct JSONAnswer: @unchecked Sendable {
    // @unchecked: a parsed JSONSerialization tree, never mutated after parsing.
    public let status: Int
    public internal(set) var object: [String: Any]
    public let headers: [(String, String)]
    /// Which of the client's replicas answered.
    public var replica: Int = 0
    /// The answer's bytes, for `decode`.
    public var data = Data()

    /// The answer as one of the wire's types (`TetherCore/Wire`).
    public func decode<T: Decodable>(_ type: T.Type) throws(ClientError) -> T {
        do {
            return try JSONDecoder().decode(type, from: data)
        } catch {
            throw ClientError.badResponse("the authority's answer is not a \(type) this version reads: \(error)")
        }
    }

    public subscript(key: String) -> Any? { object[key] }
    public func header(_ name: String) -> String? { headers.first { $0.0.lowercased() == name.lowercased() }?.1 }
}

/// The authority's HTTP API, as a supervisor or an operator calls it.
public struct AuthorityClient: Sendable {
    /// The authority's replicas, in order of preference (one, for a single authority).
    public let endpoints: [AuthorityEndpoint]
    public var timeout: Duration = .seconds(10)
    let http: HTTPClient
    /// Which replica every copy of this client asks first: shared, so that the reporter, the
    /// start gate and the watcher move on together when one fails.
    let preferred: Preference

    final class Preference: Sendable {
        let index = Atomic<Int>(0)
    }

    public init(endpoint: AuthorityEndpoint, http: HTTPClient = AuthorityClient.defaultHTTPClient) {
        self.init(endpoints: [endpoint], http: http)
    }

    public init(endpoints: [AuthorityEndpoint], http: HTTPClient = AuthorityClient.defaultHTTPClient) {
        precondition(!endpoints.isEmpty, "an authority client needs an endpoint")
        self.endpoints = endpoints
        self.http = http
        preferred = Preference()
    }

    /// The replica asked first now.
    public var preferredIndex: Int { preferred.index.load(ordering: .relaxed) % endpoints.count }
    public var endpoint: AuthorityEndpoint { endpoints[preferredIndex] }

    /// Moves on from replica `failed` to the next (once, however many callers saw it fail).
    /// True when it moved.
    @discardableResult
    public func failOver(from failed: Int) -> Bool {
        guard endpoints.count > 1 else { return false }
        return preferred.index.compareExchange(expected: failed, desired: (failed + 1) % endpoints.count, ordering: .relaxed).exchanged
    }

    /// One client for the process. Fails fast: a refused connection is an answer (the
    /// authority is down), not something to retry until the deadline; the caller decides
    /// (the supervisor fails closed, the operator is told). Many streams per host allowed.
    public static let defaultHTTPClient: HTTPClient = {
        var config = HTTPClient.Configuration()
        config.connectionPool.retryConnectionEstablishment = false
        config.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = 1024
        config.timeout = .init(connect: .seconds(3))
        // An authority that offers less than TLS 1.2 is not talked to.
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.minimumTLSVersion = .tlsv12
        config.tlsConfiguration = tls
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: config)
    }()

    // MARK: - operator

    public func revoke(_ deviceId: String, reason: String?, wait: Duration?) async throws -> JSONAnswer {
        try await post("/api/v1/devices/revoke" + waitQuery(wait), SurfaceChangeBody(surface: deviceId, reason: reason), extra: wait)
    }

    public func restore(_ deviceId: String, reason: String?, wait: Duration?) async throws -> JSONAnswer {
        try await post("/api/v1/devices/unrevoke" + waitQuery(wait), SurfaceChangeBody(surface: deviceId, reason: reason), extra: wait)
    }

    public func remove(_ deviceId: String, reason: String?) async throws -> JSONAnswer {
        try await post("/api/v1/devices/remove", SurfaceChangeBody(surface: deviceId, reason: reason))
    }

    public func halt(reason: String, wait: Duration?) async throws -> JSONAnswer {
        try await post("/api/v1/org/halt" + waitQuery(wait), OrgChangeBody(reason: reason), extra: wait)
    }

    public func resume(reason: String?, wait: Duration? = nil) async throws -> JSONAnswer {
        try await post("/api/v1/org/resume" + waitQuery(wait), OrgChangeBody(reason: reason), extra: wait)
    }

    /// One surface, or one page of them (`after`: the `next` of the page before).
    public func list(deviceId: String? = nil, after: String? = nil, limit: Int? = nil) async throws -> JSONAnswer {
        var query: [String] = []
        if let deviceId { query.append("deviceId=\(Self.q(deviceId))") }
        if let after { query.append("after=\(Self.q(after))") }
        if let limit { query.append("limit=\(limit)") }
        return try await get("/api/v1/devices/list" + (query.isEmpty ? "" : "?" + query.joined(separator: "&")))
    }

    /// Every surface, page after page, as one list (its `next` nil).
    public func listAll(pageSize: Int = 1000) async throws -> JSONAnswer {
        var first = try await list(limit: pageSize)
        var all = try first.decode(SurfaceList.self)
        var next = all.next
        while let after = next {
            let page = try await list(after: after, limit: pageSize).decode(SurfaceList.self)
            all.devices += page.devices
            (all.org, all.total, next) = (page.org, page.total, page.next)
        }
        guard all.next != nil else { return first }  // one page: the authority's own answer
        all.next = nil
        all.count = all.devices.count
        first.data = try JSONEncoder().encode(all)
        first.object = (try JSONSerialization.jsonObject(with: first.data) as? [String: Any]) ?? [:]
        return first
    }

    public func audit(
        limit: Int, deviceId: String?, actor: String? = nil, since: String? = nil, until: String? = nil, before: Int64? = nil
    ) async throws -> JSONAnswer {
        try await get(
            "/api/v1/audit?limit=\(limit)" + (deviceId.map { "&deviceId=\(Self.q($0))" } ?? "")
                + (actor.map { "&actor=\(Self.q($0))" } ?? "")
                + (since.map { "&since=\($0)" } ?? "") + (until.map { "&until=\($0)" } ?? "") + (before.map { "&before=\($0)" } ?? ""))
    }

    /// A query parameter's value, escaped.
    static func q(_ s: String) -> String {
        s.addingPercentEncoding(withAllowedCharacters: .urlQueryAllowed.subtracting(CharacterSet(charactersIn: "&+=?"))) ?? s
    }

    public func usage() async throws -> JSONAnswer { try await get("/api/v1/usage") }

    /// Which key holds each instance.
    public func instances() async throws -> JSONAnswer { try await get("/api/v1/instances") }

    /// Ends an instance's claim, so that a new key may take it (a rebuilt host).
    public func releaseInstance(_ instance: String, reason: String?) async throws -> JSONAnswer {
        try await post("/api/v1/instances/release", InstanceReleaseBody(instance: instance, reason: reason))
    }

    /// A one-time console sign-in link, and its end.
    public func consoleLink() async throws -> (url: String, expiresAt: String) {
        let answer = try await post("/api/v1/console/link", [:])
        let a = try answer.decode(ConsoleLink.self)
        guard a.path.hasPrefix("/console/") else {
            throw ClientError.badResponse("the console link is not a path of the console: \(a.path.prefix(80))")
        }
        let (path, expires) = (a.path, a.expiresAt)
        // The authority's public address where it has one; else the one asked.
        if let url = a.url, url.hasSuffix(path) { return (url, expires) }
        let base = endpoints[answer.replica].url
        return ((base.hasSuffix("/") ? String(base.dropLast()) : base) + path, expires)
    }

    // MARK: - agent

    public func register(_ deviceId: String) async throws -> JSONAnswer {
        try await post("/api/v1/devices/register", RegisterBody(surface: deviceId))
    }

    public func validate(_ deviceId: String, nonce: String?) async throws -> JSONAnswer {
        try await post("/api/v1/devices/validate", ValidateBody(surface: deviceId, nonce: nonce))
    }

    public func report(_ body: ReportBody) async throws -> JSONAnswer {
        try await post("/api/v1/devices/report", body)
    }

    // MARK: - transport

    func waitQuery(_ wait: Duration?) -> String {
        wait.map { "?wait=\(DurationText.format($0))" } ?? ""
    }

    public func get(_ path: String) async throws -> JSONAnswer {
        try await send(method: .GET, path: path, body: nil, extra: nil)
    }

    /// POSTs one of the wire's types.
    public func post(_ path: String, _ body: some Encodable, extra: Duration? = nil) async throws -> JSONAnswer {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return try await send(method: .POST, path: path, body: try encoder.encode(body), extra: extra)
    }

    public func post(_ path: String, _ body: [String: Any?], extra: Duration? = nil) async throws -> JSONAnswer {
        let clean = body.compactMapValues { $0 }
        let data = try JSONSerialization.data(withJSONObject: clean)
        return try await send(method: .POST, path: path, body: data, extra: extra)
    }

    /// Asks the preferred replica, then each other one while the answer is no answer
    /// (unreachable, 5xx — a replica not ready says 503): the first real answer counts.
    func send(method: HTTPMethod, path: String, body: Data?, extra: Duration?) async throws -> JSONAnswer {
        var lastError: any Error = ClientError.unreachable("no authority")
        for _ in 0..<endpoints.count {
            let index = preferredIndex
            do {
                return try await send(to: index, method: method, path: path, body: body, extra: extra)
            } catch let e as ClientError {
                switch e {
                case .unreachable, .refused(500..., _, _, _):
                    lastError = e
                    failOver(from: index)
                default:
                    throw e
                }
            }
        }
        throw lastError
    }

    func send(to index: Int, method: HTTPMethod, path: String, body: Data?, extra: Duration?) async throws -> JSONAnswer {
        let endpoint = endpoints[index]
        var req = HTTPClientRequest(url: endpoint.url + path)
        req.method = method
        req.headers.add(name: "x-org-key", value: endpoint.key)
        req.headers.add(name: "user-agent", value: "tether")
        if let body {
            req.headers.add(name: "content-type", value: "application/json")
            req.body = .bytes(ByteBuffer(bytes: body))
        }
        let limit = timeout + (extra ?? .zero)
        let response: HTTPClientResponse
        let bytes: ByteBuffer
        do {
            response = try await http.execute(
                req, timeout: .nanoseconds(Int64(limit.components.seconds) * 1_000_000_000 + limit.components.attoseconds / 1_000_000_000))
            bytes = try await response.body.collect(upTo: 16 * 1024 * 1024)
        } catch {
            throw ClientError.unreachable("\(endpoint.url): \(error)")
        }
        guard let obj = try? JSONSerialization.jsonObject(with: Data(bytes.readableBytesView)) as? [String: Any] else {
            throw ClientError.badResponse("HTTP \(response.status.code) from \(endpoint.url)\(path) is not a JSON object")
        }
        let answer = JSONAnswer(
            status: Int(response.status.code), object: obj, headers: response.headers.map { ($0.name, $0.value) }, replica: index,
            data: Data(bytes.readableBytesView))
        guard (200..<300).contains(answer.status) else {
            // The authority's refusal (`ErrorBody`); a proxy's may be any JSON.
            let e = try? answer.decode(ErrorBody.self)
            throw ClientError.refused(
                status: answer.status, code: e?.code ?? obj["code"] as? String ?? "HTTP_\(answer.status)",
                message: e?.error ?? obj["error"] as? String ?? "refused", requestID: e?.requestID ?? obj["request_id"] as? String)
        }
        return answer
    }
}
