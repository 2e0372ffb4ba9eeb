import Crypto
import Foundation
import Hummingbird
import HummingbirdTesting
import Testing
@testable import TetherAuthority
import TetherClient
import TetherCore

@Suite("Signing key rotation", .timeLimit(.minutes(2)))
struct RotationTests {
    @Test("a rotation is data: the next key is published first, signs from its time, and the old one is forgotten after its leases")
    func rotationByTheClock() throws {
        let t0 = Date(timeIntervalSince1970: 1_800_000_000)
        let first = DecisionSigner.generate()
        var records = [
            SigningKeyRecord(
                id: first.keyId, privateKey: first.privateBase64, publicKey: first.publicBase64,
                state: .active, createdAt: Timestamp.string(t0), activatedAt: Timestamp.string(t0))
        ]
        let rotated = try KeyRing.rotation(of: records, publishFor: .seconds(60), retireAfter: .seconds(30), now: t0)
        let next = rotated[0]
        records = [rotated[1], next]
        #expect(next.state == .next && next.endorsedBy == first.keyId)
        #expect(throws: StoreError.self, "one rotation at a time") {
            try KeyRing.rotation(of: records, publishFor: .seconds(60), retireAfter: .seconds(30), now: t0.addingTimeInterval(1))
        }
        let ring = try KeyRing(records, now: t0.addingTimeInterval(59))
        #expect(ring.signer.keyId == first.keyId, "not before its time")
        #expect(ring.published.map(\.state) == [.active, .next], "but published")
        try ring.reload(records, now: t0.addingTimeInterval(60))
        #expect(ring.signer.keyId == next.id, "signs from its time")
        #expect(ring.published.map(\.state) == [.retired, .active], "the old one still published")
        try ring.reload(records, now: t0.addingTimeInterval(91))
        #expect(ring.published.map(\.id) == [next.id], "forgotten once its last lease has ended")
        // The endorsement is the old key's signature over the new key.
        let old = try Curve25519.Signing.PublicKey(rawRepresentation: Data(base64Encoded: first.publicBase64)!)
        #expect(
            old.isValidSignature(Data(base64Encoded: next.endorsement!)!, for: KeyEndorsement.bytes(id: next.id, publicKey: next.publicKey))
        )
    }

    @Test(
        "a supervisor pinned to the old key learns the new one from the authority by its endorsement; a key no trusted key endorsed is not learnt"
    )
    func supervisorsLearnEndorsedKeys() async throws {
        let t = try await TestAuthority.make()
        let pinned = try DecisionVerifier(publicKeyBase64: t.publicKey)
        let records = try KeyRing.rotation(
            of: try await t.authority.store.signingKeys(), publishFor: .milliseconds(200), retireAfter: .seconds(30))
        let change = Change(actor: "test", reason: nil, requestID: "r", at: Timestamp.string(Date()))
        for r in records { try await t.authority.store.putSigningKey(r, change: change) }
        try await Task.sleep(for: .milliseconds(250))
        await t.authority.reloadSigningKeys()
        #expect(t.authority.signer.keyId == records[0].id)

        try await t.application().test(.live) { c in
            let port = try #require(c.port)
            let agent = AuthorityClient(endpoint: AuthorityEndpoint(url: "http://127.0.0.1:\(port)", key: t.agentKey))
            _ = try await agent.register("a1")
            let answer = try await agent.validate("a1", nonce: "n1")
            var d = try #require(Decision(json: answer.object))
            d.signature = d.signature ?? answer.header("x-tether-signature")
            #expect(d.keyId == records[0].id)
            #expect(!pinned.verify(d), "the new key is not pinned")
            #expect(await pinned.verify(d, learningFrom: agent), "learnt through the old key's endorsement")
            #expect(pinned.keyIds.contains(records[0].id))
        }

        // A key set whose new key is endorsed by a key nobody pinned: not learnt.
        let stranger = DecisionSigner.generate(), rogue = DecisionSigner.generate()
        let fake = ScriptedKeys(keys: [
            [
                "keyId": rogue.keyId, "publicKey": rogue.publicBase64, "endorsedBy": stranger.keyId,
                "endorsement": stranger.signature(over: KeyEndorsement.bytes(id: rogue.keyId, publicKey: rogue.publicBase64)),
            ],
            [
                // Endorsed by the pinned key, but its id is not its key's: not learnt either.
                "keyId": "ed25519:AAAAAAAAAAAA", "publicKey": rogue.publicBase64,
                "endorsedBy": try await t.authority.store.signingKeys()[0].id,
                "endorsement": "AAAA",
            ],
        ])
        try await fake.serve { port in
            let fresh = try DecisionVerifier(publicKeyBase64: t.publicKey)
            let learnt = await fresh.learn(from: AuthorityClient(endpoint: AuthorityEndpoint(url: "http://127.0.0.1:\(port)", key: "k")))
            #expect(learnt.isEmpty)
            let forged = rogue.sign(
                Decision(deviceId: "a1", allowed: true, code: .allow, requestID: "r", issuedAt: "t", expiresAt: "u", kind: .lease))
            #expect(!fresh.verify(forged))
        }
    }
}

/// An authority that publishes a given key list and nothing else.
struct ScriptedKeys {
    let keys: [[String: String]]

    func serve(_ body: @escaping @Sendable (Int) async throws -> Void) async throws {
        let router = Router()
        let list = keys
        router.get("/api/v1/signing-keys") { _, _ in
            let data = try JSONSerialization.data(withJSONObject: ["status": "ok", "keys": list])
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
        }
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        try await app.test(.live) { c in try await body(try #require(c.port)) }
    }
}
