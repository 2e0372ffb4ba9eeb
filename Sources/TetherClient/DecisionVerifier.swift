import Crypto
import Foundation
import TetherCore

/// Checks the authority's Ed25519 signatures against a pinned key set: every key an authority
/// may sign with (during a rotation, the current one and the next). A decision names the key
/// that signed it; a key outside the set signs nothing.
public struct DecisionVerifier: Sendable {
    let keys: [String: Curve25519.Signing.PublicKey]

    /// `publicKey`: one base64 key (`tether authority public-key`), or a key set — several, one
    /// per line (`KeySetText`).
    public init(publicKeyBase64 text: String) throws {
        let entries: [KeySetText.Entry]
        do { entries = try KeySetText.parse(text) } catch {
            throw ClientError.configuration("the public key set: \(error)")
        }
        guard !entries.isEmpty else { throw ClientError.configuration("the public key set holds no key") }
        var keys: [String: Curve25519.Signing.PublicKey] = [:]
        for e in entries {
            guard let k = try? Curve25519.Signing.PublicKey(rawRepresentation: e.publicKey) else {
                throw ClientError.configuration("the public key set: line \(e.line): not an Ed25519 public key")
            }
            keys[e.id] = k
        }
        self.keys = keys
    }

    /// The ids of the pinned keys.
    public var keyIds: [String] { keys.keys.sorted() }

    /// True only for a present, well-formed signature, by a pinned key named in the decision,
    /// over the decision's canonical bytes, of a decision no field of which could split a
    /// canonical line.
    public func verify(_ d: Decision) -> Bool {
        guard d.isCanonical, let s = d.signature, let sig = Data(base64Encoded: s),
              let id = d.keyId, let key = keys[id] else { return false }
        return key.isValidSignature(sig, for: d.canonicalBytes)
    }
}
