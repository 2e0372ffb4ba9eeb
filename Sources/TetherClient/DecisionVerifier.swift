import Crypto
import Foundation
import TetherCore

/// Checks the authority's Ed25519 signature on a decision, against a pinned public key.
public struct DecisionVerifier: Sendable {
    let key: Curve25519.Signing.PublicKey

    /// `publicKey`: base64 of the 32-byte key (`tether authority public-key`).
    public init(publicKeyBase64: String) throws {
        guard let data = Data(base64Encoded: publicKeyBase64.trimmingCharacters(in: .whitespacesAndNewlines)),
              let key = try? Curve25519.Signing.PublicKey(rawRepresentation: data)
        else { throw ClientError.configuration("the public key is not a base64 Ed25519 key (32 bytes)") }
        self.key = key
    }

    /// True only for a present, well-formed signature over the decision's canonical bytes, of
    /// a decision no field of which could split a canonical line.
    public func verify(_ d: Decision) -> Bool {
        guard d.isCanonical, let s = d.signature, let sig = Data(base64Encoded: s) else { return false }
        return key.isValidSignature(sig, for: d.canonicalBytes)
    }
}

extension Decision {
    /// Reads a decision from an authority's JSON answer or watch event; nil for anything that
    /// is not one (a missing field, a wrong type, an unknown code).
    public init?(json o: [String: Any]) {
        guard let deviceId = o["deviceId"] as? String, let allowed = o["allowed"] as? Bool,
              let codeText = o["code"] as? String, let code = DecisionCode(rawValue: codeText),
              let rid = o["request_id"] as? String
        else { return nil }
        self.init(deviceId: deviceId, allowed: allowed, code: code, requestID: rid,
                  issuedAt: o["issuedAt"] as? String ?? "", expiresAt: o["expiresAt"] as? String ?? "",
                  nonce: o["nonce"] as? String, seq: (o["seq"] as? NSNumber)?.uint64Value,
                  changedBy: o["changedBy"] as? String, changedAt: o["changedAt"] as? String,
                  changeReason: o["changeReason"] as? String,
                  signature: o["signature"] as? String)
    }
}
