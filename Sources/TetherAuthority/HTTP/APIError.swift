import Foundation
import Synchronization
import HTTPTypes
import Hummingbird
import TetherCore

/// An API failure, answered as `{"status": "error", "code": …, "error": …, "request_id": …}`.
public struct APIError: Error, Sendable {
    public var status: HTTPResponse.Status
    public var code: String
    public var message: String
    /// The key a 403 refused (for the audit log of refusals).
    public var keyName: String?
    /// Seconds for a `Retry-After` header (429).
    public var retryAfter: Int?
    /// The methods for an `Allow` header (405).
    public var allow: [String]?
    /// The surfaces a watch was refused for (`refused` in the answer): a supervisor drops them
    /// from its stream and keeps watching the rest.
    public var refused: [String]?

    public init(_ status: HTTPResponse.Status, _ code: String, _ message: String) {
        self.status = status
        self.code = code
        self.message = message
    }

    static func badRequest(_ m: String) -> APIError { APIError(.badRequest, "BAD_REQUEST", m) }
    static let unauthorized = APIError(.unauthorized, "UNAUTHORIZED", "missing or unknown key: send it in the x-org-key header")
    static func forbidden(_ m: String, key: String? = nil) -> APIError {
        var e = APIError(.forbidden, "FORBIDDEN", m)
        e.keyName = key
        return e
    }
    static func notFound(_ deviceId: String) -> APIError { APIError(.notFound, "DEVICE_NOT_FOUND", "no surface named \(deviceId)") }
}

/// Answers every failure as JSON with the request id: our own errors, Hummingbird's (unknown
/// route, body too large), and anything unexpected (500, logged).
struct JSONErrorMiddleware<Context: AuthorityContextProtocol>: RouterMiddleware {
    /// The methods each path is served for, filled once the routes are added: a known path
    /// asked with another method is a 405 with `Allow`, not a 404.
    let methods: RouteMethods

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let e as APIError {
            return Self.response(e, context: context)
        } catch let e as HTTPResponseError {
            if e.status == .notFound, let allow = methods.allowed(request.uri.path) {
                var error = APIError(
                    .methodNotAllowed, "METHOD_NOT_ALLOWED",
                    "\(request.uri.path) takes \(allow.joined(separator: ", ")), not \(request.method)")
                error.allow = allow
                return Self.response(error, context: context)
            }
            let code: String
            switch e.status {
            case .notFound: code = "NOT_FOUND"
            case .methodNotAllowed: code = "METHOD_NOT_ALLOWED"
            case .contentTooLarge: code = "PAYLOAD_TOO_LARGE"
            case .badRequest: code = "BAD_REQUEST"
            default: code = "HTTP_\(e.status.code)"
            }
            let message = (e as? HTTPError)?.body ?? e.status.reasonPhrase
            return Self.response(APIError(e.status, code, message), context: context)
        } catch {
            context.logger.error("internal error", metadata: ["error": "\(error)"])
            return Self.response(APIError(.internalServerError, "INTERNAL", "internal error; see the authority's log"), context: context)
        }
    }

    static func response(_ e: APIError, context: Context) -> Response {
        var headers = HTTPFields()
        if let r = e.retryAfter { headers[.retryAfter] = "\(r)" }
        if let allow = e.allow { headers[.allow] = allow.joined(separator: ", ") }
        return JSONBody.response(
            ErrorAnswer(code: e.code, error: e.message, requestID: context.requestID, refused: e.refused), status: e.status,
            headers: headers)
    }
}

/// Path → the methods it is served for (the router's own list, read once it is built).
final class RouteMethods: Sendable {
    private let table = Mutex<[String: [String]]>([:])

    func set(_ routes: [(path: String, method: String)]) {
        table.withLock { t in
            for r in routes { t[r.path, default: []].append(r.method) }
            for k in t.keys { t[k]?.sort() }
        }
    }

    func allowed(_ path: String) -> [String]? { table.withLock { $0[path] } }
}
