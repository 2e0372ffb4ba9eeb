import TetherCore

/// A JSON value as the MCP gateway reads it. Numbers keep the text they were written with
/// (the gateway compares ids and copies numbers, it never computes with them); an object keeps
/// its members in order.
indirect enum McpJSON: Sendable {
    case null
    case bool(Bool)
    case number(String)
    case string(String)
    case array([McpJSON])
    case object([(String, McpJSON)])

    /// A member of an object (the first of that name: a strictly read one has no other).
    subscript(_ key: String) -> McpJSON? {
        guard case .object(let members) = self else { return nil }
        return members.first { $0.0 == key }?.1
    }

    var string: String? { if case .string(let s) = self { s } else { nil } }
    var isObject: Bool { if case .object = self { true } else { false } }

    /// The value as JSON text (no spaces; strings escaped the way JSONWriter does).
    var bytes: [UInt8] {
        var out: [UInt8] = []
        write(into: &out)
        return out
    }

    func write(into out: inout [UInt8]) {
        switch self {
        case .null: out += Array("null".utf8)
        case .bool(let b): out += Array((b ? "true" : "false").utf8)
        case .number(let n): out += Array(n.utf8)
        case .string(let s): JSONWriter.string(s, into: &out)
        case .array(let a):
            out.append(UInt8(ascii: "["))
            for (i, e) in a.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                e.write(into: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let members):
            out.append(UInt8(ascii: "{"))
            for (i, (k, v)) in members.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                JSONWriter.string(k, into: &out)
                out.append(UInt8(ascii: ":"))
                v.write(into: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }
}
