import Testing
import TetherCore

/// An authority off this host must be https and pinned; the loopback is this host.
@Suite("trust: who may answer for the authority")
struct TrustPolicyTests {
    @Test("loopback over plain http, pinned or not, is this host: trusted")
    func loopback() {
        for url in ["http://127.0.0.1:8470", "http://localhost:8470/", "http://[::1]:8470", "http://127.1.2.3", "https://127.0.0.1"] {
            #expect(TrustPolicy.refusal(url: url, publicKey: nil) == nil, "\(url)")
        }
    }

    @Test("off this host: https and a pinned key, or refused — and the refusal says how to pin")
    func remote() throws {
        #expect(TrustPolicy.refusal(url: "https://authority.internal:8470", publicKey: "K") == nil)
        let unpinned = try #require(TrustPolicy.refusal(url: "https://authority.internal:8470", publicKey: nil))
        #expect(unpinned.contains("tether authority public-key") && unpinned.contains("--insecure-unpinned-authority"))
        let plain = try #require(TrustPolicy.refusal(url: "http://authority.internal:8470", publicKey: "K"))
        #expect(plain.contains("plain http"))
        // Lookalikes of the loopback are not the loopback.
        for url in [
            "http://127.0.0.1.attacker.example", "http://localhost.attacker.example", "http://user@127.0.0.1@evil.example",
            "http://1270.0.0.1", "http://[::2]:8470", "ftp://127.0.0.1",
        ] {
            #expect(TrustPolicy.refusal(url: url, publicKey: nil) != nil, "\(url)")
        }
    }
}
