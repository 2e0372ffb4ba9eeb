import Crypto
import Foundation
import Synchronization
import TetherCore

/// Checks the authority's Ed25519 signatures against a pinned key set: every key an authority
/// may sign with (during a rotation, the current one and the next). A decision names the key
/// that signed it; a key outside the set signs nothing.
public struct DecisionVerifier: Sendable {
    /// The pinned keys: the roots of trust.
    let keys: [String: Curve25519.Signing.PublicKey]
    /// Keys learnt from the authority since, each endorsed by one already trusted (a rotation),
    /// shared by every copy of this verifier. Kept in memory only: a restart trusts the pinned
    /// set again, and learns what it needs again.
    let learnt: Learnt

    final class Learnt: Sendable {
        let keys = Mutex<[String: Curve25519.Signing.PublicKey]>([:])
        /// When the key set was last fetched: an unknown key id (which a hostile network can
        /// send at will) makes at most one fetch per `fetchEvery`.
        let lastFetch = Mutex<ContinuousClock.Instant?>(nil)
    }

    static let fetchEvery: Duration = .seconds(5)

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
        learnt = Learnt()
    }

    func key(_ id: String) -> Curve25519.Signing.PublicKey? {
        keys[id] ?? learnt.keys.withLock { $0[id] }
    }

    /// Whether a decision names a key this verifier does not know (yet).
    public func isUnknownKey(_ d: Decision) -> Bool {
        d.keyId.map { key($0) == nil } ?? false
    }

    /// Fetches the authority's published keys and trusts each one endorsed — directly or
    /// through a chain of rotations — by a key already trusted. Returns the ids learnt. The
    /// authority is not trusted for this: an endorsement is a signature by a trusted key.
    @discardableResult
    public func learn(from client: AuthorityClient) async -> [String] {
        let now = ContinuousClock.now
        let due = learnt.lastFetch.withLock { last -> Bool in
            if let last, now - last < Self.fetchEvery { return false }
            return true
        }
        // Only a fetch that answered counts against the rate: one that failed (a replica
        // killed a moment ago) must not leave every decision of the new key unverifiable for
        // the next 5 s.
        guard due, let answer = try? await client.get("/api/v1/signing-keys"),
            let list = answer["keys"] as? [[String: Any]]
        else { return [] }
        learnt.lastFetch.withLock { $0 = now }
        var learntIds: [String] = []
        var progress = true
        while progress {
            progress = false
            for k in list {
                guard let id = k["keyId"] as? String, key(id) == nil,
                    let pub = k["publicKey"] as? String, let raw = Data(base64Encoded: pub), raw.count == 32,
                    KeyID.of(publicKey: raw) == id,
                    let by = k["endorsedBy"] as? String, let endorser = key(by),
                    let sig = (k["endorsement"] as? String).flatMap({ Data(base64Encoded: $0) }),
                    endorser.isValidSignature(sig, for: KeyEndorsement.bytes(id: id, publicKey: pub)),
                    let newKey = try? Curve25519.Signing.PublicKey(rawRepresentation: raw)
                else { continue }
                learnt.keys.withLock { $0[id] = newKey }
                learntIds.append(id)
                progress = true
            }
        }
        return learntIds
    }

    /// `verify`, and when the decision names a key not known yet, one try at learning it from
    /// `client` (a rotation) before the answer.
    public func verify(_ d: Decision, learningFrom client: AuthorityClient) async -> Bool {
        if verify(d) { return true }
        guard isUnknownKey(d), !(await learn(from: client)).isEmpty else { return false }
        return verify(d)
    }

    /// The ids of the pinned keys.
    public var keyIds: [String] { (Array(keys.keys) + learnt.keys.withLock { Array($0.keys) }).sorted() }

    /// True only for a present, well-formed signature, by a pinned key named in the decision,
    /// over the decision's canonical bytes, of a decision no field of which could split a
    /// canonical line.
    public func verify(_ d: Decision) -> Bool {
        guard d.isCanonical, let s = d.signature, let sig = Data(base64Encoded: s),
            let id = d.keyId, let key = key(id)
        else { return false }
        return key.isValidSignature(sig, for: d.canonicalBytes)
    }
}
