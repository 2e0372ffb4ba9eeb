import Foundation
import TetherCore

/// A request body refused: what is wrong, for a 400.
struct BodyError: Error, Sendable {
    let message: String
    init(_ message: String) { self.message = message }
}

/// A request body: a JSON object holding only the fields the type names, each of the right
/// type, then checked by `validate()`. An empty body reads as `{}`.
protocol RequestBody: Decodable, Sendable {
    associatedtype CodingKeys: CodingKey & CaseIterable
    /// Range and shape checks past the JSON types (names, lengths, states).
    mutating func validate() throws
    /// The body read without Foundation's decoder when it has the plain shape the type's
    /// clients send (a flat object of plain ASCII strings); nil for anything else, which the
    /// full decoder then reads — and so refuses with the same message. What it returns must be
    /// what the full decoder would (the request fuzz target checks it on every input).
    static func fastDecode(_ bytes: Data) -> Self?
}

extension RequestBody {
    mutating func validate() throws {}
    static func fastDecode(_ bytes: Data) -> Self? { nil }

    static var fieldNames: [String] { CodingKeys.allCases.map(\.stringValue).sorted() }
}

/// Decodes request bodies and encodes answers (Foundation only: the fuzz target builds it).
enum JSONBody {
    /// Decodes `data` as `T`: unknown fields refused by name (a typo must not silently drop a
    /// field), every type error named by its path (`"pids[3]" must be a number`).
    static func decode<T: RequestBody>(_ type: T.Type, from data: Data) throws -> T {
        if var body = T.fastDecode(data) {
            try body.validate()
            return body
        }
        do {
            var body = try JSONDecoder().decode(Strict<T>.self, from: data).body
            try body.validate()
            return body
        } catch let e as DecodingError {
            throw BodyError(message(e))
        }
    }

    /// What a client reads when its body has the wrong shape.
    static func message(_ error: DecodingError) -> String {
        func path(_ p: [any CodingKey]) -> String {
            var s = ""
            for k in p {
                if let i = k.intValue { s += "[\(i)]" } else { s += (s.isEmpty ? "" : ".") + k.stringValue }
            }
            return s
        }
        switch error {
        case .typeMismatch(_, let c) where c.codingPath.isEmpty:
            return "the body must be a JSON object"
        case .typeMismatch(let type, let c):
            return "\"\(path(c.codingPath))\" must be \(describe(type))"
        case .valueNotFound(let type, let c):
            return "\"\(path(c.codingPath))\" must be \(describe(type)), not null"
        case .keyNotFound(let key, let c):
            return "\"\(path(c.codingPath + [key]))\" is required"
        case .dataCorrupted(let c) where c.codingPath.isEmpty:
            return "the body is not valid JSON"
        case .dataCorrupted(let c):
            return "\"\(path(c.codingPath))\" is not valid: \(c.debugDescription.prefix(80))"
        @unknown default:
            return "the body does not match the request's schema"
        }
    }

    /// The JSON type a field's Swift type wants (the request bodies hold strings, numbers and
    /// arrays of numbers; the decoder names an array as `Array<Any>`).
    static func describe(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: return "a string"
        case is Double.Type: return "a number"
        case is [Any].Type: return "an array"
        default: return "of another type"
        }
    }

    /// `T`, read in one pass once its keys are checked against the fields it names.
    struct Strict<T: RequestBody>: Decodable {
        struct AnyKey: CodingKey {
            var stringValue: String
            var intValue: Int? { nil }
            init(stringValue: String) { self.stringValue = stringValue }
            init?(intValue: Int) { nil }
        }
        let body: T
        init(from decoder: any Decoder) throws {
            let known = T.fieldNames
            if let unknown = try decoder.container(keyedBy: AnyKey.self).allKeys.first(where: { !known.contains($0.stringValue) }) {
                throw BodyError("unknown field \"\(unknown.stringValue.prefix(64))\"; expected \(known.joined(separator: ", "))")
            }
            body = try T(from: decoder)
        }
    }

    static let encoder: JSONEncoder = {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return e
    }()

    static func data(_ value: some Encodable) -> Data {
        // Every answer type encodes plain strings, numbers and arrays: it cannot fail.
        (try? encoder.encode(value)) ?? Data(#"{"status":"error","code":"INTERNAL","error":"unencodable answer"}"#.utf8)
    }
}

/// A flat JSON object whose values are all plain strings — printable ASCII, no escapes — read
/// in one pass over the bytes: the shape of a validate body, read on the authority's hottest
/// path at a fraction of JSONDecoder's cost. nil for anything else (another value type, an
/// escape, a byte outside printable ASCII, a duplicate or unknown key, trailing bytes): the
/// full decoder reads those, and gives them its own answer.
enum FlatStrings {
    static func parse(_ bytes: Data, keys allowed: Set<String>) -> [String: String]? {
        bytes.withUnsafeBytes { raw -> [String: String]? in
            let b = raw.bindMemory(to: UInt8.self)
            var i = 0
            let n = b.count
            func skipSpace() { while i < n, b[i] == 0x20 || b[i] == 0x0A || b[i] == 0x0D || b[i] == 0x09 { i += 1 } }
            func string() -> String? {
                guard i < n, b[i] == 0x22 else { return nil }
                i += 1
                let start = i
                while i < n, b[i] != 0x22 {
                    guard b[i] >= 0x20, b[i] < 0x7F, b[i] != 0x5C else { return nil }
                    i += 1
                }
                guard i < n else { return nil }
                let s = String(decoding: UnsafeBufferPointer(rebasing: b[start..<i]), as: UTF8.self)
                i += 1
                return s
            }
            var out: [String: String] = [:]
            skipSpace()
            guard i < n, b[i] == 0x7B else { return nil }
            i += 1
            skipSpace()
            if i < n, b[i] == 0x7D {
                i += 1
            } else {
                while true {
                    skipSpace()
                    guard let key = string(), allowed.contains(key), out[key] == nil else { return nil }
                    skipSpace()
                    guard i < n, b[i] == 0x3A else { return nil }
                    i += 1
                    skipSpace()
                    guard let value = string() else { return nil }
                    out[key] = value
                    skipSpace()
                    guard i < n else { return nil }
                    if b[i] == 0x2C {
                        i += 1
                        continue
                    }
                    guard b[i] == 0x7D else { return nil }
                    i += 1
                    break
                }
            }
            skipSpace()
            return i == n ? out : nil
        }
    }
}
