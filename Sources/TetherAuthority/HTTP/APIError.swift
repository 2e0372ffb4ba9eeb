import Foundation
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
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let e as APIError {
            return Self.response(e, context: context)
        } catch let e as HTTPResponseError {
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
        return JSONBody.response(ErrorAnswer(code: e.code, error: e.message, requestID: context.requestID), status: e.status, headers: headers)
    }
}
