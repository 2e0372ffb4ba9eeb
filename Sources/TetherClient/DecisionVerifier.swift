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
