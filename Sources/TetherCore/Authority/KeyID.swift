import Foundation

/// The id of an authority's signing key, as every signature names it: `ed25519:` and the first
/// 12 characters of the public key in base64url. Derived from the key itself, so a key needs
/// no registry to have an id, and a key set file is just its public keys.
public enum KeyID {
    public static func of(publicKey raw: Data) -> String {
        let b64 = raw.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
        return "ed25519:" + b64.prefix(12)
    }
}

/// A set of public signing keys as supervisors pin it: one base64 Ed25519 public key per
/// line, each optionally followed by text (its id, a note); blank lines and `#` comments
/// skipped. `tether authority public-key` prints the published set in this form.
public enum KeySetText {
    public struct Entry: Sendable, Equatable {
        public var line: Int
        public var publicKey: Data
        public var id: String
    }

    public struct BadLine: Error, CustomStringConvertible {
        public var line: Int
        public var message: String
        public var description: String { "line \(line): \(message)" }
    }

    public static func parse(_ text: String) throws(BadLine) -> [Entry] {
        var out: [Entry] = []
        for (i, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            guard !line.isEmpty, !line.hasPrefix("#") else { continue }
            let word = String(line.split(whereSeparator: { $0 == " " || $0 == "\t" })[0])
            guard let data = Data(base64Encoded: word), data.count == 32 else {
                throw BadLine(line: i + 1, message: "not a base64 Ed25519 public key (32 bytes): \"\(word.prefix(60))\"")
            }
            out.append(Entry(line: i + 1, publicKey: data, id: KeyID.of(publicKey: data)))
        }
        return out
    }
}

/// A rotation's proof: the previous key's signature over the next key's id and public key, so
/// a supervisor that trusts the previous key can trust the next one, learnt from the authority.
public enum KeyEndorsement {
    public static func bytes(id: String, publicKey: String) -> Data {
        Data("tether-signing-key-v1\nkeyId=\(id)\npublicKey=\(publicKey)".utf8)
    }
}
