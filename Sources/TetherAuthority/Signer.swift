import Crypto
import Foundation
import TetherCore

/// The authority's Ed25519 key: every decision it gives is signed over `Decision.canonicalBytes`.
public struct DecisionSigner: Sendable {
    let key: Curve25519.Signing.PrivateKey

    public init(key: Curve25519.Signing.PrivateKey) { self.key = key }

    public init(rawBase64: String) throws {
        guard let data = Data(base64Encoded: rawBase64.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            throw StoreError("the signing key file is not base64")
        }
        key = try Curve25519.Signing.PrivateKey(rawRepresentation: data)
    }

    public static func generate() -> DecisionSigner { DecisionSigner(key: .init()) }

    /// Base64 of the 32-byte private key, for the 0600 key file.
    public var privateBase64: String { key.rawRepresentation.base64EncodedString() }
    /// Base64 of the 32-byte public key: what supervisors pin (`--public-key`).
    public var publicBase64: String { key.publicKey.rawRepresentation.base64EncodedString() }

    public func sign(_ d: Decision) -> Decision {
        var signed = d
        signed.signature = (try? key.signature(for: d.canonicalBytes))?.base64EncodedString()
        return signed
    }
}
