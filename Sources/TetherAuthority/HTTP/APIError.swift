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
        return JSONOut.response(["status": "error", "code": e.code, "error": e.message, "request_id": context.requestID], status: e.status, headers: headers)
    }
}

/// JSON bodies, written with sorted keys so answers are stable.
enum JSONOut {
    static func response(_ object: [String: Any?], status: HTTPResponse.Status = .ok, headers: HTTPFields = [:]) -> Response {
        var h = headers
        h[.contentType] = "application/json"
        return Response(status: status, headers: h, body: .init(byteBuffer: ByteBuffer(bytes: data(object))))
    }

    static func data(_ object: [String: Any?]) -> [UInt8] {
        JSONWriter.data(object.compactMapValues { $0 })
    }
}

/// A request's JSON body: an object, only known fields, each of the right type.
struct JSONIn {
    let fields: [String: Any]

    static func parse(_ request: Request, context: some RequestContext, maxSize: Int, allowed: Set<String>) async throws -> JSONIn {
        var req = request
        let buffer: ByteBuffer
        do {
            buffer = try await req.collectBody(upTo: maxSize)
        } catch {
            throw APIError(.contentTooLarge, "PAYLOAD_TOO_LARGE", "the body is larger than \(maxSize) bytes")
        }
        if buffer.readableBytes == 0 { return JSONIn(fields: [:]) }
        let object: Any
        do {
            object = try JSONSerialization.jsonObject(with: Data(buffer.readableBytesView))
        } catch {
            throw APIError.badRequest("the body is not valid JSON")
        }
        guard let dict = object as? [String: Any] else { throw APIError.badRequest("the body must be a JSON object") }
        for k in dict.keys where !allowed.contains(k) {
            throw APIError.badRequest("unknown field \"\(k)\"; expected \(allowed.sorted().joined(separator: ", "))")
        }
        return JSONIn(fields: dict)
    }

    func string(_ key: String, required: Bool = false, max: Int = 1024) throws -> String? {
        guard let v = fields[key], !(v is NSNull) else {
            if required { throw APIError.badRequest("\"\(key)\" is required") }
            return nil
        }
        guard let s = v as? String else { throw APIError.badRequest("\"\(key)\" must be a string") }
        guard s.utf8.count <= max else { throw APIError.badRequest("\"\(key)\" is longer than \(max) bytes") }
        return s
    }

    func deviceId() throws -> String {
        let s = try string("deviceId", required: true)!.trimmingCharacters(in: .whitespaces)
        guard SurfaceName.isValid(s) else { throw APIError.badRequest("invalid deviceId \"\(s.prefix(140))\": \(SurfaceName.rule)") }
        return s
    }

    /// JSON integers arrive as NSNumber of type "q" (or "Q"/"i"/"l"), booleans as "c", others as "d".
    static func isInteger(_ n: NSNumber) -> Bool {
        let t = String(cString: n.objCType)
        return ["q", "Q", "i", "I", "l", "L", "s", "S"].contains(t)
    }

    func pids(_ key: String) throws -> [Int32] {
        guard let v = fields[key], !(v is NSNull) else { return [] }
        guard let a = v as? [Any], a.count <= 100_000 else { throw APIError.badRequest("\"\(key)\" must be an array of process ids") }
        return try a.map {
            guard let n = $0 as? NSNumber, JSONIn.isInteger(n), n.int64Value > 0, n.int64Value <= Int64(Int32.max) else {
                throw APIError.badRequest("\"\(key)\" must be an array of positive integers")
            }
            return n.int32Value
        }
    }
}
