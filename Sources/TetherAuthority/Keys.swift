import Crypto
import Foundation

/// API keys: 256 random bits, shown once, stored as SHA-256, compared in constant time.
public enum APIKeys {
    /// A new key: `tk_` and 43 base64url characters.
    public static func generate() -> String {
        var rng = SystemRandomNumberGenerator()
        let bytes = (0..<32).map { _ in UInt8.random(in: 0...255, using: &rng) }
        return "tk_" + Data(bytes).base64URLEncoded()
    }

    public static func hash(_ key: String) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(64)
        for b in SHA256.hash(data: Data(key.utf8)) {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 15)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The key whose hash matches, compared over every key in constant time per key, so the
    /// answer's timing says nothing about how much of a guess was right.
    public static func match(_ presented: String, in keys: [KeyRecord]) -> KeyRecord? {
        let h = Array(hash(presented).utf8)
        var found: KeyRecord?
        for k in keys {
            let stored = Array(k.hash.utf8)
            guard stored.count == h.count else { continue }
            var diff: UInt8 = 0
            for i in 0..<h.count { diff |= stored[i] ^ h[i] }
            if diff == 0 && k.revokedAt == nil { found = k }
        }
        return found
    }

    /// Key names: the same alphabet as surface names.
    public static func isValidName(_ s: String) -> Bool {
        !s.isEmpty && s.count <= 64 && s.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "._:-@".contains($0)) }
    }
}

extension Data {
    func base64URLEncoded() -> String {
        base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }
}
