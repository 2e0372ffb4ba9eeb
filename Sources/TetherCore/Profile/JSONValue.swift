import Foundation

/// A parsed JSON document, kept as values so that a validator can walk it and name the exact
/// path of anything wrong (`$.syscalls[3].args[0].op`), which Codable's errors do not do well.
public enum JSONValue: Sendable, Equatable {
    case null
    case bool(Bool)
    case number(Double, exact: UInt64?, negative: Bool)
    case string(String)
    case array([JSONValue])
    case object([(String, JSONValue)])

    public static func == (lhs: JSONValue, rhs: JSONValue) -> Bool {
        switch (lhs, rhs) {
        case (.null, .null): return true
        case let (.bool(a), .bool(b)): return a == b
        case let (.number(a, ea, na), .number(b, eb, nb)): return a == b && ea == eb && na == nb
        case let (.string(a), .string(b)): return a == b
        case let (.array(a), .array(b)): return a == b
        case let (.object(a), .object(b)):
            return a.count == b.count && zip(a, b).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        default: return false
        }
    }

    /// What a person calls this kind of value in an error message.
    public var kindName: String {
        switch self {
        case .null: return "null"
        case .bool: return "a boolean"
        case .number: return "a number"
        case .string: return "a string"
        case .array: return "an array"
        case .object: return "an object"
        }
    }
}

extension JSONValue: Decodable {
    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() {
            self = .null
        } else if let b = try? c.decode(Bool.self) {
            self = .bool(b)
        } else if let u = try? c.decode(UInt64.self) {
            self = .number(Double(u), exact: u, negative: false)
        } else if let i = try? c.decode(Int64.self) {
            self = .number(Double(i), exact: nil, negative: true)
        } else if let d = try? c.decode(Double.self) {
            self = .number(d, exact: nil, negative: d < 0)
        } else if let s = try? c.decode(String.self) {
            self = .string(s)
        } else if let a = try? c.decode([JSONValue].self) {
            self = .array(a)
        } else {
            let keyed = try decoder.container(keyedBy: AnyKey.self)
            // Keep the document's key order where the decoder gives it; sort for stable errors.
            let keys = keyed.allKeys.sorted { $0.stringValue < $1.stringValue }
            self = .object(try keys.map { ($0.stringValue, try keyed.decode(JSONValue.self, forKey: $0)) })
        }
    }

    private struct AnyKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    /// Parses `data`, turning Foundation's syntax error into one line that keeps its position.
    public static func parse(_ data: Data) throws(ProfileError) -> JSONValue {
        do {
            return try JSONDecoder().decode(JSONValue.self, from: data)
        } catch let DecodingError.dataCorrupted(context) {
            let detail = (context.underlyingError as NSError?)?.userInfo[NSDebugDescriptionErrorKey] as? String
            throw ProfileError(path: "$", message: "not valid JSON: \(detail ?? context.debugDescription)")
        } catch {
            throw ProfileError(path: "$", message: "not valid JSON: \(error)")
        }
    }
}
