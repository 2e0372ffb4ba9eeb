import Foundation
import TetherCore

/// One question to the authority — may this surface run now? — answered fail-closed: anything
/// but a well-formed, allowed, unexpired decision (signed, when a key is pinned) is a deny.
public enum DecisionCheck {
    public enum Outcome: Sendable {
        case allowed(Decision)
        /// The decision as received (or as reconstructed), with the client's verdict code.
        case denied(Decision?, code: DecisionCode, detail: String)
        case unreachable(String)
    }

    public static func check(
        _ surface: String, client: AuthorityClient, verifier: DecisionVerifier?, now: @Sendable () -> Date = { Date() }
    ) async -> Outcome {
        let nonce = UUID().uuidString
        let answer: JSONAnswer
        do {
            answer = try await client.validate(surface, nonce: nonce)
        } catch let e as ClientError {
            switch e {
            case .unreachable(let m): return .unreachable(m)
            case .refused(_, let code, let message, _): return .denied(nil, code: .badResponse, detail: "\(code): \(message)")
            default: return .denied(nil, code: .badResponse, detail: e.description)
            }
        } catch {
            return .unreachable("\(error)")
        }
        guard var d = Decision(jsonData: answer.data) else {
            return .denied(nil, code: .badResponse, detail: "the answer is not a decision")
        }
        if d.signature == nil, let header = answer.header("x-tether-signature") { d.signature = header }
        guard d.deviceId == surface else {
            return .denied(d, code: .badResponse, detail: "the answer is for \(d.deviceId), not \(surface)")
        }
        if let verifier {
            guard await verifier.verify(d, learningFrom: client) else {
                return .denied(d, code: .badSignature, detail: "missing or bad signature")
            }
            guard d.nonce == nonce else {
                return .denied(d, code: .badSignature, detail: "the signed nonce is not ours: a replayed answer")
            }
        }
        if !d.expiresAt.isEmpty && Timestamp.parse(d.expiresAt) == nil {
            return .denied(d, code: .badResponse, detail: "expiresAt is not a time: \(d.expiresAt)")
        }
        // The same lease rules as the supervisor: a lease of no length is no allow.
        var lease = Lease(surface: surface, failClosedAfter: 1)
        lease.apply(d, at: now())
        let v = lease.verdict(at: now())
        guard v.allowed else {
            return .denied(d, code: v.code, detail: v.code == .leaseExpired ? "the lease has no length left" : "request \(d.requestID)")
        }
        return .allowed(d)
    }
}
