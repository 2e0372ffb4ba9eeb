import Foundation
import HTTPTypes
import Hummingbird

public protocol AuthorityContextProtocol: RequestContext {
    /// The key that authenticated the request (set by `KeyMiddleware`).
    var key: KeyRecord? { get set }
    /// Correlates the request in answers, logs and the audit log.
    var requestID: String { get }
    /// The peer's address, for the audit of console changes.
    var client: String { get }
}

public struct AuthorityContext: AuthorityContextProtocol {
    public var coreContext: CoreRequestContextStorage
    public var key: KeyRecord?
    public let requestID: String
    public let client: String

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        key = nil
        requestID = RequestIDs.next()
        client = source.channel.remoteAddress?.ipAddress ?? "unknown"
    }
}

/// Counts refused requests (401, 403) for the audit log: see `RefusalLog`.
struct RefusalAuditMiddleware<Context: AuthorityContextProtocol>: RouterMiddleware {
    let authority: Authority

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let e as APIError where e.status == .unauthorized || e.status == .forbidden {
            await authority.refusals.record(status: Int(e.status.code), who: e.keyName ?? "unknown key", path: request.uri.path)
            throw e
        }
    }
}

/// Authenticates `x-org-key`. Keys are never read from the URL.
struct KeyMiddleware<Context: AuthorityContextProtocol>: RouterMiddleware {
    let authority: Authority

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let presented = request.headers[.orgKey], !presented.isEmpty, presented.utf8.count <= 256,
            let key = try await authority.authenticate(presented)
        else { throw APIError.unauthorized }
        var ctx = context
        ctx.key = key
        ctx.logger[metadataKey: "key"] = "\(key.name)"
        return try await next(request, ctx)
    }
}

/// The operator routes' group: an agent key is refused (403) before the route reads anything.
struct OperatorOnlyMiddleware<Context: AuthorityContextProtocol>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let key = context.key, key.role == .operator else {
            throw APIError.forbidden(
                "\(request.method) \(request.uri.path) needs an operator key; the key \"\(context.key?.name ?? "?")\" is an agent key",
                key: context.key?.name)
        }
        return try await next(request, context)
    }
}

extension AuthorityContextProtocol {

    func requireKey() throws -> KeyRecord {
        guard let key else { throw APIError.unauthorized }
        return key
    }

    /// A key acting for `surfaces` (and as `instance`): an agent key scoped to other surfaces,
    /// or bound to another instance, is refused (403).
    func requireScope(_ surfaces: [String], instance: String? = nil) throws -> KeyRecord {
        let key = try requireKey()
        let outside = surfaces.filter { !key.mayActFor($0) }
        if let s = outside.first {
            var e = APIError.forbidden(
                "the key \"\(key.name)\" may not act for \"\(s.prefix(128))\"\(outside.count > 1 ? " and \(outside.count - 1) more" : "") (its scope: \(key.scopeDescription))",
                key: key.name)
            e.refused = Array(outside.prefix(1000))
            throw e
        }
        if let instance, !key.mayUse(instance: instance) {
            throw APIError.forbidden(
                "the key \"\(key.name)\" is bound to instance \"\(key.instance ?? "")\", not \"\(instance.prefix(128))\"", key: key.name)
        }
        return key
    }
}

extension HTTPField.Name {
    static let orgKey = HTTPField.Name("x-org-key")!
    static let tetherSignature = HTTPField.Name("x-tether-signature")!
    static let requestID = HTTPField.Name("x-request-id")!
    static let lastEventID = HTTPField.Name("last-event-id")!
}
