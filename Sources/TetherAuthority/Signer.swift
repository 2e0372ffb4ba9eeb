import Crypto
import Foundation
import Synchronization
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

    /// Base64 signature over arbitrary bytes (a key endorsement).
    public func signature(over bytes: Data) -> String {
        ((try? key.signature(for: bytes)) ?? Data()).base64EncodedString()
    }
}

/// The signing keys every replica shares (kept in the store): the one that signs, and the set
/// that is published — the next key before it signs, the retired one until its leases end.
public final class KeyRing: Sendable {
    public struct Published: Sendable, Equatable {
        public var id: String
        public var publicKey: String
        public var state: SigningKeyRecord.State
        public var endorsement: String?
        public var endorsedBy: String?
    }

    private struct State {
        var active: DecisionSigner
        var published: [Published]
    }

    private let state: Mutex<State>

    /// Refuses a key set with no active key, or a key whose id does not match its key.
    public init(_ records: [SigningKeyRecord]) throws {
        state = Mutex(try Self.load(records))
    }

    private static func load(_ records: [SigningKeyRecord]) throws -> State {
        var active: DecisionSigner?
        var published: [Published] = []
        for r in records {
            let signer = try DecisionSigner(rawBase64: r.privateKey)
            guard signer.keyId == r.id, signer.publicBase64 == r.publicKey else {
                throw StoreError("signing key \(r.id): its id or public key does not match its private key")
            }
            if r.state == .active {
                // Two active keys mid-rotation: the newer (later in the list) signs.
                active = signer
            }
            published.append(Published(id: r.id, publicKey: r.publicKey, state: r.state, endorsement: r.endorsement, endorsedBy: r.endorsedBy))
        }
        guard let active else { throw StoreError("the store holds no active signing key; run: tether authority init") }
        return State(active: active, published: published)
    }

    /// The key that signs now.
    public var signer: DecisionSigner { state.withLock { $0.active } }
    /// Every key supervisors should know, oldest first.
    public var published: [Published] { state.withLock { $0.published } }

    /// Takes a new key set; true when it changed what signs or what is published.
    @discardableResult
    public func reload(_ records: [SigningKeyRecord]) throws -> Bool {
        let new = try Self.load(records)
        return state.withLock { s in
            let changed = s.active.keyId != new.active.keyId || s.published != new.published
            s = new
            return changed
        }
    }

    /// The published set as a key set file (`KeySetText`): what supervisors pin.
    public var keySetText: String {
        published.map { "\($0.publicKey) \($0.id) \($0.state.rawValue)" }.joined(separator: "\n") + "\n"
    }
}

/// A rotation's proof: the previous key's signature over the next key's id and public key, so
/// a supervisor that trusts the previous key can learn the next one from the authority itself.
public enum KeyEndorsement {
    public static func bytes(id: String, publicKey: String) -> Data {
        Data("tether-signing-key-v1\nkeyId=\(id)\npublicKey=\(publicKey)".utf8)
    }
}
