import Foundation
import HTTPTypes
import Hummingbird
import TetherCore

/// The authority's HTTP API (MachineID-compatible; docs/api.md, docs/openapi.yaml).
///
///     GET  /healthz, /api/v1/public-key, /api/v1/signing-keys   no key
///     /api/v1/devices/{register,validate,watch,report}  any key, within an agent key's scope
///     /api/v1/devices/{list,revoke,unrevoke,remove}, /api/v1/org/{halt,resume}, /api/v1/{audit,usage}
///                                                    operator keys only
///     /api/v1/console/link                            operator keys: a one-time console sign-in link
///     /console/…                                      the on-call console (its own sign-in: docs/console.md)
public func buildRouter(
    authority: Authority, bodyTimeout: Duration = ConnectionLimits().bodyTimeout, tls: Bool = false
) -> Router<AuthorityContext> {
    let router = Router(context: AuthorityContext.self)
    let methods = RouteMethods()
    router.add(middleware: JSONErrorMiddleware(methods: methods))
    // Ready: in step with the database (a replica that is not answers 503, so that a load
    // balancer drains it).
    router.get("/healthz") { _, ctx in
        try authority.requireReady()
        return JSONBody.response(OKAnswer(requestID: ctx.requestID))
    }
    router.get("/api/v1/signing-keys") { _, ctx in
        JSONBody.response(
            SigningKeysAnswer(
                origin: authority.origin, keys: authority.keyRing.published.map(SigningKeysAnswer.Key.init), requestID: ctx.requestID))
    }
    router.get("/api/v1/public-key") { _, ctx in
        JSONBody.response(
            PublicKeyAnswer(
                publicKey: authority.signer.publicBase64, keyId: authority.signer.keyId, origin: authority.origin, requestID: ctx.requestID)
        )
    }

    let api = router.group("api/v1")
        .add(middleware: RefusalAuditMiddleware<AuthorityContext>(authority: authority))
        .add(middleware: KeyMiddleware<AuthorityContext>(authority: authority))
    let bodies = BodyReader(maxSize: authority.configuration.maxBodySize, timeout: bodyTimeout)
    AgentRoutes(authority: authority, bodies: bodies).add(to: api.group())
    OperatorRoutes(authority: authority, bodies: bodies).add(to: api.group().add(middleware: OperatorOnlyMiddleware<AuthorityContext>()))
    if authority.configuration.settings.console.enabled {
        ConsoleRoutes(authority: authority, bodies: bodies, secure: authority.configuration.settings.console.secureCookies ?? tls).add(
            to: router)
    }
    methods.set(router.routes.map { (path: "\($0.path)", method: $0.method.rawValue) })
    return router
}

func change(_ key: KeyRecord, _ reason: String?, _ ctx: AuthorityContext) -> Change {
    Change(actor: key.name, reason: reason, requestID: ctx.requestID, at: Timestamp.string(Date()))
}
