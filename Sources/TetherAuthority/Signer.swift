import Crypto
import Foundation
import TetherCore

/// An Ed25519 signing key of the authority: every decision it gives is signed over
/// `Decision.canonicalBytes`, naming this key's id.
public struct DecisionSigner: Sendable {
    let key: Curve25519.Signing.PrivateKey
    /// `KeyID.of(publicKey:)`: what each signature names.
    public let keyId: String

    public init(key: Curve25519.Signing.PrivateKey) {
        self.key = key
        keyId = KeyID.of(publicKey: key.publicKey.rawRepresentation)
    }

    public init(rawBase64: String) throws {
        guard let data = Data(base64Encoded: rawBase64.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            throw StoreError("the signing key is not base64")
        }
        self.init(key: try Curve25519.Signing.PrivateKey(rawRepresentation: data))
    }

    public static func generate() -> DecisionSigner { DecisionSigner(key: .init()) }

    /// Base64 of the 32-byte private key, for the 0600 key file.
    public var privateBase64: String { key.rawRepresentation.base64EncodedString() }
    /// Base64 of the 32-byte public key: what supervisors pin (`--public-key`).
    public var publicBase64: String { key.publicKey.rawRepresentation.base64EncodedString() }

    /// `d` with this key's id and its signature.
    public func sign(_ d: Decision) -> Decision {
        var signed = d
        signed.keyId = keyId
        signed.signature = (try? key.signature(for: signed.canonicalBytes))?.base64EncodedString()
        return signed
    }
}
