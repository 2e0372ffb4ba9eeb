import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import Synchronization
import TetherAuthority
import TetherCore

/// An authority whose answers a test scripts: a real HTTP server on loopback that signs like
/// Tether's own, then misbehaves on demand. It offers no watch stream (404), so supervisors
/// poll it.
final class ScriptedAuthority: Sendable {
    enum Mode: String, Sendable {
        case allow, revoked, garbage, serverError, badSignature, unsigned, staleLease, hang
    }

    let signer = DecisionSigner.generate()
    let lease: Duration
    private let state = Mutex<(mode: Mode, queue: [Mode], validations: Int, reports: [String], fixedIssuedAt: Date)>(
        (.allow, [], 0, [], Date()))

    init(lease: Duration = .seconds(1)) { self.lease = lease }

    var publicKey: String { signer.publicBase64 }
    var validations: Int { state.withLock { $0.validations } }
    var reports: [String] { state.withLock { $0.reports } }

    func set(_ mode: Mode) {
        state.withLock {
            $0.mode = mode
            $0.fixedIssuedAt = Date()
        }
    }
    /// Answers for the next validations, in order, before the mode applies again.
    func queue(_ modes: [Mode]) { state.withLock { $0.queue = modes } }

    func next() -> (Mode, Date) {
        state.withLock {
            $0.validations += 1
            if !$0.queue.isEmpty { return ($0.queue.removeFirst(), $0.fixedIssuedAt) }
            return ($0.mode, $0.fixedIssuedAt)
        }
    }

    func router() -> Router<BasicRequestContext> {
        let router = Router()
        router.get("/healthz") { _, _ in Self.json(["status": "ok"]) }
        router.post("/api/v1/devices/register") { _, _ in Self.json(["status": "ok"]) }
        router.get("/api/v1/devices/watch") { _, _ in Response(status: .notFound) }
        router.post("/api/v1/devices/report") { req, _ in
            let body = try await req.body.collect(upTo: 1 << 20)
            let o = (try? JSONSerialization.jsonObject(with: Data(body.readableBytesView))) as? [String: Any] ?? [:]
            self.state.withLock { $0.reports.append(o["state"] as? String ?? "?") }
            return Self.json(["status": "ok"])
        }
        router.post("/api/v1/devices/validate") { req, _ in
            let body = try await req.body.collect(upTo: 1 << 20)
            let o = (try? JSONSerialization.jsonObject(with: Data(body.readableBytesView))) as? [String: Any] ?? [:]
            let surface = o["deviceId"] as? String ?? "?"
            let nonce = o["nonce"] as? String
            let (mode, fixed) = self.next()
            let now = Date()
            func decision(allowed: Bool, code: DecisionCode, issued: Date) -> Decision {
                Decision(
                    deviceId: surface, allowed: allowed, code: code, requestID: UUID().uuidString,
                    issuedAt: Timestamp.string(issued),
                    expiresAt: Timestamp.string(
                        issued.addingTimeInterval(Double(self.lease.components.seconds) + Double(self.lease.components.attoseconds) / 1e18)),
                    nonce: nonce, kind: .answer, signature: nil)
            }
            switch mode {
            case .allow: return Self.json(Self.object(self.signer.sign(decision(allowed: true, code: .allow, issued: now))))
            case .revoked: return Self.json(Self.object(self.signer.sign(decision(allowed: false, code: .deviceRevoked, issued: now))))
            case .garbage:
                return Response(
                    status: .ok, headers: [.contentType: "application/json"],
                    body: .init(byteBuffer: ByteBuffer(string: "{\"allowed\": tru")))
            case .serverError:
                return Response(
                    status: .internalServerError, headers: [.contentType: "application/json"],
                    body: .init(byteBuffer: ByteBuffer(string: "{\"error\":\"boom\"}")))
            case .badSignature:
                let other = DecisionSigner.generate()
                return Self.json(Self.object(other.sign(decision(allowed: true, code: .allow, issued: now))))
            case .unsigned: return Self.json(Self.object(decision(allowed: true, code: .allow, issued: now)))
            case .staleLease:
                // The same signed allow, issued once, repeated: a lease that never renews.
                return Self.json(Self.object(self.signer.sign(decision(allowed: true, code: .allow, issued: fixed))))
            case .hang:
                try? await Task.sleep(for: .seconds(30))
                return Self.json(["status": "late"])
            }
        }
        return router
    }

    static func object(_ d: Decision) -> [String: Any] {
        var o: [String: Any] = [
            "allowed": d.allowed, "code": d.code.rawValue, "request_id": d.requestID, "deviceId": d.deviceId,
            "issuedAt": d.issuedAt, "expiresAt": d.expiresAt,
        ]
        if let n = d.nonce { o["nonce"] = n }
        if let k = d.kind { o["kind"] = k.rawValue }
        if let k = d.keyId { o["keyId"] = k }
        if let s = d.signature { o["signature"] = s }
        return o
    }

    static func json(_ o: [String: Any]) -> Response {
        let data = (try? JSONSerialization.data(withJSONObject: o)) ?? Data()
        return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    /// Serves on a loopback port for the duration of `body`.
    func serve(_ body: @escaping @Sendable (Int) async throws -> Void) async throws {
        var logger = Logger(label: "scripted-authority")
        logger.logLevel = .critical
        let app = Application(router: router(), configuration: .init(address: .hostname("127.0.0.1", port: 0)), logger: logger)
        try await app.test(.live) { client in
            try await body(client.port!)
        }
    }
}
