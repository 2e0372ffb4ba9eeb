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
///
/// A rotation is data, not a procedure each replica runs: `next` carries the instant it starts
/// signing (`activatedAt`), the key before it the instant it is forgotten (`retireAfter`). Every
/// replica reads the same records and the same clock rules, so they change keys together
/// (within their clocks' skew and one key refresh), and no replica needs to be told.
public final class KeyRing: Sendable {
    public struct Published: Sendable, Equatable {
        public var id: String
        public var publicKey: String
        /// `next` (publishing; not signing yet), `active`, or `retired` (signs nothing more;
        /// published until the leases it signed have ended).
        public var state: SigningKeyRecord.State
        public var activatesAt: String?
        public var retireAfter: String?
        public var endorsement: String?
        public var endorsedBy: String?
    }

    private struct State {
        var active: DecisionSigner
        var published: [Published]
    }

    private let state: Mutex<State>

    /// Refuses a key set with no key that may sign, or a key whose id does not match its key.
    public init(_ records: [SigningKeyRecord], now: Date = Date()) throws {
        state = Mutex(try Self.load(records, now: now))
    }

    private static func load(_ records: [SigningKeyRecord], now: Date) throws -> State {
        // The signing key: the newest whose activation has come.
        var active: (signer: DecisionSigner, at: Date)?
        var entries: [(SigningKeyRecord, DecisionSigner)] = []
        for r in records {
            let signer = try DecisionSigner(rawBase64: r.privateKey)
            guard signer.keyId == r.id, signer.publicBase64 == r.publicKey else {
                throw StoreError("signing key \(r.id): its id or public key does not match its private key")
            }
            entries.append((r, signer))
            guard r.state != .retired, let at = r.activatedAt.flatMap(Timestamp.parse), at <= now else { continue }
            if active == nil || at >= active!.at { active = (signer, at) }
        }
        guard let active else {
            throw StoreError("the store holds no signing key that may sign now; run: tether authority init (or keys rotate)")
        }
        var published: [Published] = []
        for (r, signer) in entries {
            let state: SigningKeyRecord.State
            if signer.keyId == active.signer.keyId {
                state = .active
            } else if let at = r.activatedAt.flatMap(Timestamp.parse), at > now, r.state != .retired {
                state = .next
            } else {
                state = .retired
                // Forgotten once the last lease it signed has ended.
                if let gone = r.retireAfter.flatMap(Timestamp.parse), gone <= now { continue }
            }
            published.append(
                Published(
                    id: r.id, publicKey: r.publicKey, state: state, activatesAt: r.activatedAt,
                    retireAfter: r.retireAfter, endorsement: r.endorsement, endorsedBy: r.endorsedBy))
        }
        return State(active: active.signer, published: published)
    }

    /// The key that signs now.
    public var signer: DecisionSigner { state.withLock { $0.active } }
    /// Every key supervisors should know, oldest first.
    public var published: [Published] { state.withLock { $0.published } }

    /// Takes the key set as it stands now; true when it changed what signs or what is published.
    @discardableResult
    public func reload(_ records: [SigningKeyRecord], now: Date = Date()) throws -> Bool {
        let new = try Self.load(records, now: now)
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

    /// Starts a rotation: a new key, endorsed by the one signing now, that signs from
    /// `now + publishFor`; the key it replaces is forgotten `retireAfter` later. Returns the
    /// records to store (the new key, and the current one with its retirement).
    public static func rotation(
        of records: [SigningKeyRecord], publishFor: Duration, retireAfter: Duration, now: Date = Date()
    ) throws -> [SigningKeyRecord] {
        let ring = try KeyRing(records, now: now)
        if let pending = ring.published.first(where: { $0.state == .next }) {
            throw StoreError("a rotation is under way: \(pending.id) signs from \(pending.activatesAt ?? "?"); wait for it")
        }
        let current = ring.signer
        let next = DecisionSigner.generate()
        let activates = now.addingTimeInterval(publishFor.timeInterval)
        let nowText = Timestamp.string(now)
        var out = [
            SigningKeyRecord(
                id: next.keyId, privateKey: next.privateBase64, publicKey: next.publicBase64, state: .next, createdAt: nowText,
                activatedAt: Timestamp.string(activates),
                endorsement: current.signature(over: KeyEndorsement.bytes(id: next.keyId, publicKey: next.publicBase64)),
                endorsedBy: current.keyId)
        ]
        if var old = records.first(where: { $0.id == current.keyId }) {
            old.retireAfter = Timestamp.string(activates.addingTimeInterval(retireAfter.timeInterval))
            out.append(old)
        }
        return out
    }
}
