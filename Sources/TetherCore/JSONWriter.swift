import Foundation

/// A small JSON writer for answers built from dictionaries: sorted keys, no escaped slashes.
/// JSONSerialization does the same at ~130 µs for a decision; this takes a few, and a
/// validate answer is on the authority's hottest path.
public enum JSONWriter {
    /// Writes `String`, `Bool`, integers, `Double`, `NSNull`, `NSNumber`, arrays and
    /// `[String: Any]` (nil values of `[String: Any?]` are left out by the caller).
    public static func data(_ object: [String: Any]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(512)
        write(object, into: &out)
        return out
    }

    static func write(_ v: Any, into out: inout [UInt8]) {
        switch v {
        case let s as String:
            string(s, into: &out)
        case let b as Bool where type(of: v) == Bool.self:
            out.append(contentsOf: b ? Array("true".utf8) : Array("false".utf8))
        case let i as Int:
            out.append(contentsOf: String(i).utf8)
        case let i as Int32:
            out.append(contentsOf: String(i).utf8)
        case let i as Int64:
            out.append(contentsOf: String(i).utf8)
        case let i as UInt64:
            out.append(contentsOf: String(i).utf8)
        case let d as Double:
            out.append(contentsOf: (d.isFinite ? (d == d.rounded() && abs(d) < 1e15 ? String(Int64(d)) : String(d)) : "null").utf8)
        case is NSNull:
            out.append(contentsOf: "null".utf8)
        case let n as NSNumber:
            let t = String(cString: n.objCType)
            if t == "c" || t == "B" {
                out.append(contentsOf: (n.boolValue ? "true" : "false").utf8)
            } else if t == "d" || t == "f" {
                write(n.doubleValue, into: &out)
            } else {
                out.append(contentsOf: n.stringValue.utf8)
            }
        case let a as [Any]:
            out.append(UInt8(ascii: "["))
            for (i, e) in a.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                write(e, into: &out)
            }
            out.append(UInt8(ascii: "]"))
        case let o as [String: Any]:
            out.append(UInt8(ascii: "{"))
            for (i, k) in o.keys.sorted().enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                string(k, into: &out)
                out.append(UInt8(ascii: ":"))
                write(o[k]!, into: &out)
            }
            out.append(UInt8(ascii: "}"))
        default:
            string(String(describing: v), into: &out)
        }
    }

    static let hex: [UInt8] = Array("0123456789abcdef".utf8)

    /// A JSON string as Foundation's encoder writes it: `"` `\` and control characters escaped
    /// (`\b \f \n \r \t`, others `\u00xx`), everything else (`/`, DEL, non-ASCII) as is.
    public static func string(_ s: String, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for b in s.utf8 {
            switch b {
            case UInt8(ascii: "\""): out.append(contentsOf: [0x5C, 0x22])
            case UInt8(ascii: "\\"): out.append(contentsOf: [0x5C, 0x5C])
            case 0x08: out.append(contentsOf: [0x5C, UInt8(ascii: "b")])
            case 0x0C: out.append(contentsOf: [0x5C, UInt8(ascii: "f")])
            case 0x0A: out.append(contentsOf: [0x5C, UInt8(ascii: "n")])
            case 0x0D: out.append(contentsOf: [0x5C, UInt8(ascii: "r")])
            case 0x09: out.append(contentsOf: [0x5C, UInt8(ascii: "t")])
            case 0..<0x20: out.append(contentsOf: [0x5C, UInt8(ascii: "u"), 0x30, 0x30, hex[Int(b >> 4)], hex[Int(b & 15)]])
            default: out.append(b)
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}
