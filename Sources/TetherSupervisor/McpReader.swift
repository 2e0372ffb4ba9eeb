/// Why a line could not be read: a JSON-RPC parse error (-32700) or, for a readable line whose
/// meaning is ambiguous, an invalid request (-32600).
struct McpReadError: Error, Sendable {
    let code: Int
    let message: String
    static func parse(_ m: String) -> McpReadError { McpReadError(code: -32700, message: "Parse error: " + m) }
}

/// Reads one line of JSON the way every JSON parser a server might use reads it — or not at
/// all. Foundation's JSONSerialization, Python's json and Node's JSON.parse disagree on what
/// RFC 8259 leaves open (a lone surrogate escape, a duplicate member name, nesting depth,
/// invalid UTF-8): a gateway that decides on its own reading and forwards the bytes must refuse
/// every line another reading could take differently, or a server could run a call the gateway
/// took for another (or could not read, and let through).
///
/// Strict (client lines): valid UTF-8 only, no lone or reversed surrogate escapes, no member
/// name twice in one object (anywhere in the line), nesting at most `maxDepth`. Tolerant
/// (server lines, which the gateway only needs ids and task ids from): lone surrogates and bad
/// UTF-8 read as U+FFFD, the last of duplicate members wins, nesting up to `tolerantDepth`.
struct McpReader {
    /// Nesting the gateway reads in a client's line: arrays and objects, the message itself
    /// counting as one. Foundation's own limit is 512; tool arguments rarely pass 10.
    static let maxDepth = 64
    static let tolerantDepth = 512

    private let bytes: [UInt8]
    private let strict: Bool
    private var pos = 0
    private var depth = 0
    /// Where each element of a top-level array starts and ends, so a batch can be forwarded in
    /// part, byte for byte.
    private(set) var elementRanges: [Range<Int>] = []

    init(_ bytes: [UInt8], strict: Bool) {
        self.bytes = bytes
        self.strict = strict
    }

    /// The value of the whole line, with `elementRanges` when it is an array.
    static func read(_ line: [UInt8], strict: Bool) throws(McpReadError) -> (McpJSON, [Range<Int>]) {
        var r = McpReader(line, strict: strict)
        r.space()
        let v = try r.value(top: true)
        r.space()
        guard r.pos == r.bytes.count else { throw .parse("text after the JSON value at byte \(r.pos)") }
        return (v, r.elementRanges)
    }

    private mutating func space() {
        while pos < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[pos]) { pos += 1 }
    }

    private func peek() -> UInt8? { pos < bytes.count ? bytes[pos] : nil }

    private mutating func expect(_ word: String) throws(McpReadError) {
        let w = Array(word.utf8)
        guard pos + w.count <= bytes.count, Array(bytes[pos..<pos + w.count]) == w else { throw .parse("unexpected text at byte \(pos)") }
        pos += w.count
    }

    private mutating func value(top: Bool = false) throws(McpReadError) -> McpJSON {
        guard let c = peek() else { throw .parse("the line ends inside a value") }
        switch c {
        case UInt8(ascii: "{"): return try object()
        case UInt8(ascii: "["): return try array(top: top)
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "t"):
            try expect("true")
            return .bool(true)
        case UInt8(ascii: "f"):
            try expect("false")
            return .bool(false)
        case UInt8(ascii: "n"):
            try expect("null")
            return .null
        default: return .number(try number())
        }
    }

    private mutating func enter() throws(McpReadError) {
        depth += 1
        let limit = strict ? Self.maxDepth : Self.tolerantDepth
        guard depth <= limit else { throw .parse("nested deeper than \(limit) levels (the gateway's bound)") }
    }

    private mutating func object() throws(McpReadError) -> McpJSON {
        try enter()
        pos += 1
        var members: [(String, McpJSON)] = []
        var names = Set<String>()
        space()
        if peek() == UInt8(ascii: "}") {
            pos += 1
            depth -= 1
            return .object([])
        }
        while true {
            space()
            guard peek() == UInt8(ascii: "\"") else { throw .parse("expected a member name at byte \(pos)") }
            let name = try string()
            space()
            guard peek() == UInt8(ascii: ":") else { throw .parse("expected ':' at byte \(pos)") }
            pos += 1
            space()
            let v = try value()
            if names.insert(name).inserted {
                members.append((name, v))
            } else if strict {
                throw McpReadError(
                    code: -32600, message: "Invalid Request: the member \"\(name)\" appears twice in one object; a server might read either"
                )
            } else if let i = members.firstIndex(where: { $0.0 == name }) {
                members[i].1 = v
            }
            space()
            guard let c = peek() else { throw .parse("the line ends inside an object") }
            pos += 1
            if c == UInt8(ascii: "}") { break }
            guard c == UInt8(ascii: ",") else { throw .parse("expected ',' or '}' at byte \(pos - 1)") }
        }
        depth -= 1
        return .object(members)
    }

    private mutating func array(top: Bool) throws(McpReadError) -> McpJSON {
        try enter()
        pos += 1
        var elements: [McpJSON] = []
        space()
        if peek() == UInt8(ascii: "]") {
            pos += 1
            depth -= 1
            return .array([])
        }
        while true {
            space()
            let start = pos
            elements.append(try value())
            if top { elementRanges.append(start..<pos) }
            space()
            guard let c = peek() else { throw .parse("the line ends inside an array") }
            pos += 1
            if c == UInt8(ascii: "]") { break }
            guard c == UInt8(ascii: ",") else { throw .parse("expected ',' or ']' at byte \(pos - 1)") }
        }
        depth -= 1
        return .array(elements)
    }

    private mutating func number() throws(McpReadError) -> String {
        let start = pos
        func digits() -> Int {
            let s = pos
            while pos < bytes.count, (0x30...0x39).contains(bytes[pos]) { pos += 1 }
            return pos - s
        }
        if peek() == UInt8(ascii: "-") { pos += 1 }
        let intStart = pos
        let n = digits()
        guard n > 0 else { throw .parse("unexpected text at byte \(start)") }
        guard n == 1 || bytes[intStart] != 0x30 else { throw .parse("a number with a leading zero at byte \(start)") }
        if peek() == UInt8(ascii: ".") {
            pos += 1
            guard digits() > 0 else { throw .parse("a number without digits after '.' at byte \(start)") }
        }
        if peek() == UInt8(ascii: "e") || peek() == UInt8(ascii: "E") {
            pos += 1
            if peek() == UInt8(ascii: "+") || peek() == UInt8(ascii: "-") { pos += 1 }
            guard digits() > 0 else { throw .parse("a number without an exponent at byte \(start)") }
        }
        return String(decoding: bytes[start..<pos], as: UTF8.self)
    }

    private mutating func hex4() throws(McpReadError) -> UInt32 {
        guard pos + 4 <= bytes.count else { throw .parse("a short \\u escape at byte \(pos)") }
        var v: UInt32 = 0
        for b in bytes[pos..<pos + 4] {
            let d: UInt8
            switch b {
            case 0x30...0x39: d = b - 0x30
            case 0x41...0x46: d = b - 0x37
            case 0x61...0x66: d = b - 0x57
            default: throw .parse("a bad \\u escape at byte \(pos)")
            }
            v = v << 4 | UInt32(d)
        }
        pos += 4
        return v
    }

    private mutating func string() throws(McpReadError) -> String {
        pos += 1
        var scalars = String.UnicodeScalarView()
        while true {
            guard pos < bytes.count else { throw .parse("the line ends inside a string") }
            let b = bytes[pos]
            switch b {
            case UInt8(ascii: "\""):
                pos += 1
                return String(scalars)
            case UInt8(ascii: "\\"):
                pos += 1
                guard let e = peek() else { throw .parse("the line ends inside an escape") }
                pos += 1
                switch e {
                case UInt8(ascii: "\""): scalars.append("\"")
                case UInt8(ascii: "\\"): scalars.append("\\")
                case UInt8(ascii: "/"): scalars.append("/")
                case UInt8(ascii: "b"): scalars.append("\u{08}")
                case UInt8(ascii: "f"): scalars.append("\u{0C}")
                case UInt8(ascii: "n"): scalars.append("\n")
                case UInt8(ascii: "r"): scalars.append("\r")
                case UInt8(ascii: "t"): scalars.append("\t")
                case UInt8(ascii: "u"):
                    let at = pos - 2
                    let u = try hex4()
                    if (0xD800...0xDBFF).contains(u), pos + 6 <= bytes.count, bytes[pos] == 0x5C, bytes[pos + 1] == UInt8(ascii: "u") {
                        let save = pos
                        pos += 2
                        let low = try hex4()
                        if (0xDC00...0xDFFF).contains(low) {
                            scalars.append(Unicode.Scalar(0x10000 + ((u - 0xD800) << 10) + (low - 0xDC00))!)
                            continue
                        }
                        pos = save
                    }
                    if let s = Unicode.Scalar(u) {
                        scalars.append(s)
                    } else if strict {
                        throw .parse("a lone surrogate escape at byte \(at): Foundation refuses it, other parsers take it")
                    } else {
                        scalars.append("\u{FFFD}")
                    }
                default: throw .parse("a bad escape at byte \(pos - 2)")
                }
            case 0..<0x20:
                throw .parse("a control character in a string at byte \(pos)")
            case 0..<0x80:
                scalars.append(Unicode.Scalar(b))
                pos += 1
            default:
                if let (s, n) = utf8Scalar(at: pos) {
                    scalars.append(s)
                    pos += n
                } else if strict {
                    throw .parse("invalid UTF-8 at byte \(pos)")
                } else {
                    scalars.append("\u{FFFD}")
                    pos += 1
                }
            }
        }
    }

    /// One well-formed UTF-8 sequence at `i` (no overlong forms, no surrogates, at most
    /// U+10FFFF) and its length.
    private func utf8Scalar(at i: Int) -> (Unicode.Scalar, Int)? {
        let b0 = bytes[i]
        let (n, min, initial): (Int, UInt32, UInt32)
        switch b0 {
        case 0xC2...0xDF: (n, min, initial) = (2, 0x80, UInt32(b0 & 0x1F))
        case 0xE0...0xEF: (n, min, initial) = (3, 0x800, UInt32(b0 & 0x0F))
        case 0xF0...0xF4: (n, min, initial) = (4, 0x10000, UInt32(b0 & 0x07))
        default: return nil
        }
        guard i + n <= bytes.count else { return nil }
        var v = initial
        for k in 1..<n {
            let b = bytes[i + k]
            guard b & 0xC0 == 0x80 else { return nil }
            v = v << 6 | UInt32(b & 0x3F)
        }
        guard v >= min, let s = Unicode.Scalar(v) else { return nil }
        return (s, n)
    }
}
