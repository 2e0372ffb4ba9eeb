import Foundation

/// A TOML document read with the line of every value, so a configuration error can name
/// `file:line`. TOML 1.0 but for dates and times, which no Tether setting takes (they are
/// refused with their line, never misread).
public struct TOMLValue: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        case string(String)
        case integer(Int64)
        case float(Double)
        case bool(Bool)
        case array([TOMLValue])
        case table(TOMLTable)
    }

    public var kind: Kind
    public var line: Int

    public var typeName: String {
        switch kind {
        case .string: return "a string"
        case .integer: return "an integer"
        case .float: return "a float"
        case .bool: return "a boolean"
        case .array: return "an array"
        case .table: return "a table"
        }
    }
}

public struct TOMLTable: Sendable, Equatable {
    /// Keys in the order they were written.
    public private(set) var keys: [String] = []
    public private(set) var values: [String: TOMLValue] = [:]
    public var line: Int
    /// Defined by a `[header]` or by dotted keys / inline: TOML forbids defining it twice.
    var explicitlyDefined = false
    var inline = false

    public init(line: Int) { self.line = line }

    public subscript(key: String) -> TOMLValue? { values[key] }

    mutating func set(_ key: String, _ value: TOMLValue) {
        if values[key] == nil { keys.append(key) }
        values[key] = value
    }
}

public struct TOMLError: Error, Sendable, Equatable, CustomStringConvertible {
    public var line: Int
    public var message: String
    public var description: String { "line \(line): \(message)" }
}

public enum TOML {
    public static func parse(_ text: String) throws(TOMLError) -> TOMLTable {
        var p = TOMLParser(Array(text.unicodeScalars))
        return try p.document()
    }
}

struct TOMLParser {
    let s: [Unicode.Scalar]
    var i = 0
    var line = 1
    var root = TOMLTable(line: 1)
    /// The path of the table that `key = value` lines go into now.
    var current: [PathStep] = []

    enum PathStep: Equatable { case key(String), lastElement(String) }

    init(_ s: [Unicode.Scalar]) { self.s = s }

    func fail(_ message: String, line: Int? = nil) -> TOMLError { TOMLError(line: line ?? self.line, message: message) }

    var atEnd: Bool { i >= s.count }
    var peek: Unicode.Scalar? { i < s.count ? s[i] : nil }
    func peek(_ offset: Int) -> Unicode.Scalar? { i + offset < s.count ? s[i + offset] : nil }

    mutating func advance() {
        if s[i] == "\n" { line += 1 }
        i += 1
    }

    mutating func skipSpaces() {
        while let c = peek, c == " " || c == "\t" { advance() }
    }

    /// Spaces, then a comment, then the end of the line (or of the file).
    mutating func endOfLine() throws(TOMLError) {
        skipSpaces()
        if peek == "#" { skipComment() }
        if peek == "\r" && peek(1) == "\n" { advance() }
        guard atEnd || peek == "\n" else { throw fail("unexpected \"\(peek!)\" after a value; one key = value per line") }
        if !atEnd { advance() }
    }

    mutating func skipComment() {
        while let c = peek, c != "\n" { advance() }
    }

    /// Blank lines, comments and newlines inside arrays.
    mutating func skipWhitespaceAndComments() {
        while let c = peek {
            if c == " " || c == "\t" || c == "\n" || c == "\r" { advance() } else if c == "#" { skipComment() } else { break }
        }
    }

    mutating func document() throws(TOMLError) -> TOMLTable {
        while true {
            skipWhitespaceAndComments()
            guard let c = peek else { break }
            if c == "[" {
                try header()
            } else {
                let keyLine = line
                let key = try dottedKey()
                skipSpaces()
                guard peek == "=" else { throw fail("expected \"=\" after the key \(key.joined(separator: "."))") }
                advance()
                skipSpaces()
                let v = try value()
                try assign(path: current, key: key, value: v, line: keyLine)
                try endOfLine()
            }
        }
        return root
    }

    // MARK: keys and tables

    mutating func dottedKey() throws(TOMLError) -> [String] {
        var parts: [String] = []
        while true {
            skipSpaces()
            parts.append(try simpleKey())
            skipSpaces()
            if peek == "." { advance() } else { break }
        }
        return parts
    }

    mutating func simpleKey() throws(TOMLError) -> String {
        if peek == "\"" { return try basicString() }
        if peek == "'" { return try literalString() }
        var k = ""
        while let c = peek, ("a"..."z").contains(c) || ("A"..."Z").contains(c) || ("0"..."9").contains(c) || c == "_" || c == "-" {
            k.unicodeScalars.append(c)
            advance()
        }
        guard !k.isEmpty else { throw fail(peek.map { "expected a key, found \"\($0)\"" } ?? "expected a key") }
        return k
    }

    mutating func header() throws(TOMLError) {
        let headerLine = line
        advance()
        let isArray = peek == "["
        if isArray { advance() }
        let key = try dottedKey()
        guard peek == "]" else { throw fail("expected \"]\" to close the table header") }
        advance()
        if isArray {
            guard peek == "]" else { throw fail("expected \"]]\" to close the array-of-tables header") }
            advance()
        }
        try endOfLine()
        var path: [PathStep] = key.dropLast().map { .key($0) }
        let last = key.last!
        if isArray {
            try modify(path) { (t: inout TOMLTable) throws(TOMLError) in
                var elements: [TOMLValue] = []
                if let existing = t[last] {
                    guard case .array(let a) = existing.kind,
                        a.allSatisfy({ if case .table(let x) = $0.kind { return !x.inline } else { return false } })
                    else {
                        throw TOMLError(
                            line: headerLine,
                            message:
                                "\(key.joined(separator: ".")) is already defined (line \(existing.line)) as something other than an array of tables"
                        )
                    }
                    elements = a
                }
                var fresh = TOMLTable(line: headerLine)
                fresh.explicitlyDefined = true
                elements.append(TOMLValue(kind: .table(fresh), line: headerLine))
                t.set(last, TOMLValue(kind: .array(elements), line: headerLine))
            }
            path.append(.lastElement(last))
        } else {
            try modify(path) { (t: inout TOMLTable) throws(TOMLError) in
                if let existing = t[last] {
                    guard case .table(var x) = existing.kind, !x.inline else {
                        throw TOMLError(
                            line: headerLine, message: "\(key.joined(separator: ".")) is already defined (line \(existing.line))")
                    }
                    guard !x.explicitlyDefined else {
                        throw TOMLError(
                            line: headerLine, message: "table [\(key.joined(separator: "."))] is defined twice (first on line \(x.line))")
                    }
                    x.explicitlyDefined = true
                    t.set(last, TOMLValue(kind: .table(x), line: existing.line))
                } else {
                    var fresh = TOMLTable(line: headerLine)
                    fresh.explicitlyDefined = true
                    t.set(last, TOMLValue(kind: .table(fresh), line: headerLine))
                }
            }
            path.append(.key(last))
        }
        current = path
    }

    /// Runs `body` on the table at `path`, creating intermediate tables as TOML says.
    mutating func modify(_ path: [PathStep], _ body: (inout TOMLTable) throws(TOMLError) -> Void) throws(TOMLError) {
        let l = line
        try Self.modify(&root, path[...], line: l, body)
    }

    static func modify(
        _ t: inout TOMLTable, _ path: ArraySlice<PathStep>, line: Int, _ body: (inout TOMLTable) throws(TOMLError) -> Void
    ) throws(TOMLError) {
        guard let step = path.first else { return try body(&t) }
        switch step {
        case .key(let k):
            var sub: TOMLTable
            if let existing = t[k] {
                switch existing.kind {
                case .table(let x) where !x.inline: sub = x
                case .array(var a) where !a.isEmpty:
                    // [a.b] after [[a]]: into the last element.
                    guard case .table(var x) = a[a.count - 1].kind, !x.inline else { fallthrough }
                    try modify(&x, path.dropFirst(), line: line, body)
                    a[a.count - 1].kind = .table(x)
                    t.set(k, TOMLValue(kind: .array(a), line: existing.line))
                    return
                default:
                    throw TOMLError(
                        line: line, message: "\(k) is already defined (line \(existing.line)) as \(existing.typeName), not a table")
                }
            } else {
                sub = TOMLTable(line: line)
            }
            try modify(&sub, path.dropFirst(), line: line, body)
            t.set(k, TOMLValue(kind: .table(sub), line: t[k]?.line ?? line))
        case .lastElement(let k):
            guard let existing = t[k], case .array(var a) = existing.kind, case .table(var x) = a[a.count - 1].kind else {
                throw TOMLError(line: line, message: "internal: \(k) is not an array of tables")
            }
            try modify(&x, path.dropFirst(), line: line, body)
            a[a.count - 1].kind = .table(x)
            t.set(k, TOMLValue(kind: .array(a), line: existing.line))
        }
    }

    mutating func assign(path: [PathStep], key: [String], value: TOMLValue, line: Int) throws(TOMLError) {
        let full = path + key.dropLast().map { PathStep.key($0) }
        let last = key.last!
        try modify(full) { (t: inout TOMLTable) throws(TOMLError) in
            if let existing = t[last] {
                throw TOMLError(line: line, message: "\(key.joined(separator: ".")) is defined twice (first on line \(existing.line))")
            }
            t.set(last, value)
        }
    }

    // MARK: values

    mutating func value() throws(TOMLError) -> TOMLValue {
        let l = line
        guard let c = peek else { throw fail("expected a value") }
        switch c {
        case "\"":
            if peek(1) == "\"" && peek(2) == "\"" { return TOMLValue(kind: .string(try multilineBasic()), line: l) }
            return TOMLValue(kind: .string(try basicString()), line: l)
        case "'":
            if peek(1) == "'" && peek(2) == "'" { return TOMLValue(kind: .string(try multilineLiteral()), line: l) }
            return TOMLValue(kind: .string(try literalString()), line: l)
        case "[": return try array()
        case "{": return try inlineTable()
        case "t", "f":
            if match("true") { return TOMLValue(kind: .bool(true), line: l) }
            if match("false") { return TOMLValue(kind: .bool(false), line: l) }
            throw fail("expected a value; strings need quotes")
        default:
            return try number()
        }
    }

    mutating func match(_ word: String) -> Bool {
        let w = Array(word.unicodeScalars)
        guard i + w.count <= s.count, Array(s[i..<(i + w.count)]) == w else { return false }
        if let next = peek(w.count), next.properties.isAlphabetic || ("0"..."9").contains(next) || next == "_" { return false }
        for _ in w { advance() }
        return true
    }

    mutating func number() throws(TOMLError) -> TOMLValue {
        let l = line
        var text = ""
        while let c = peek, !(c == " " || c == "\t" || c == "\n" || c == "\r" || c == "," || c == "]" || c == "}" || c == "#") {
            text.unicodeScalars.append(c)
            advance()
        }
        guard !text.isEmpty else { throw fail(peek.map { "expected a value, found \"\($0)\"" } ?? "expected a value") }
        if text.count >= 8, text.contains("-") || text.contains(":"), text.first?.isNumber == true, !text.contains("e"),
            text.filter({ $0 == "-" }).count >= 2 || text.contains(":")
        {
            throw TOMLError(
                line: l, message: "dates and times are not used in Tether's configuration; durations are strings such as \"15s\"")
        }
        if ["inf", "+inf", "-inf"].contains(text) { return TOMLValue(kind: .float(text.hasPrefix("-") ? -.infinity : .infinity), line: l) }
        if ["nan", "+nan", "-nan"].contains(text) { return TOMLValue(kind: .float(.nan), line: l) }
        guard !text.hasPrefix("_"), !text.hasSuffix("_"), !text.contains("__") else {
            throw TOMLError(line: l, message: "invalid number \(text)")
        }
        let clean = text.replacingOccurrences(of: "_", with: "")
        for (prefix, radix) in [("0x", 16), ("0o", 8), ("0b", 2)] where clean.hasPrefix(prefix) {
            guard let v = Int64(clean.dropFirst(2), radix: radix) else { throw TOMLError(line: l, message: "invalid number \(text)") }
            return TOMLValue(kind: .integer(v), line: l)
        }
        let digits = clean.hasPrefix("+") || clean.hasPrefix("-") ? String(clean.dropFirst()) : clean
        if digits != clean && ["0x", "0o", "0b"].contains(where: digits.hasPrefix) {
            throw TOMLError(line: l, message: "invalid number \(text): hex, octal and binary numbers take no sign")
        }
        if digits.count > 1 && digits.hasPrefix("0") && !digits.hasPrefix("0.") && !digits.hasPrefix("0e") && !digits.hasPrefix("0E") {
            throw TOMLError(line: l, message: "invalid number \(text): leading zeros are not allowed")
        }
        if let v = Int64(clean) { return TOMLValue(kind: .integer(v), line: l) }
        if clean.contains(where: { $0 == "." || $0 == "e" || $0 == "E" }), !clean.hasSuffix("."), !clean.contains(".e"),
            let v = Double(clean)
        {
            return TOMLValue(kind: .float(v), line: l)
        }
        throw TOMLError(line: l, message: "expected a value, found \(text) (strings need quotes)")
    }

    mutating func array() throws(TOMLError) -> TOMLValue {
        let l = line
        advance()
        var items: [TOMLValue] = []
        while true {
            skipWhitespaceAndComments()
            guard let c = peek else { throw TOMLError(line: l, message: "the array opened here is never closed") }
            if c == "]" {
                advance()
                break
            }
            items.append(try value())
            skipWhitespaceAndComments()
            if peek == "," {
                advance()
                continue
            }
            guard !atEnd else { throw TOMLError(line: l, message: "the array opened here is never closed") }
            guard peek == "]" else { throw fail("expected \",\" or \"]\" in the array opened on line \(l)") }
        }
        return TOMLValue(kind: .array(items), line: l)
    }

    mutating func inlineTable() throws(TOMLError) -> TOMLValue {
        let l = line
        advance()
        var t = TOMLTable(line: l)
        skipSpaces()
        if peek == "}" {
            advance()
        } else {
            while true {
                skipSpaces()
                let key = try dottedKey()
                skipSpaces()
                guard peek == "=" else { throw fail("expected \"=\" after \(key.joined(separator: ".")) in the inline table") }
                advance()
                skipSpaces()
                let v = try value()
                try Self.modify(&t, key.dropLast().map { PathStep.key($0) }[...], line: l) { (x: inout TOMLTable) throws(TOMLError) in
                    if x[key.last!] != nil {
                        throw TOMLError(line: l, message: "\(key.joined(separator: ".")) is defined twice in the inline table")
                    }
                    x.set(key.last!, v)
                }
                skipSpaces()
                if peek == "," {
                    advance()
                    continue
                }
                guard peek == "}" else { throw fail("expected \",\" or \"}\" in the inline table (inline tables are on one line)") }
                advance()
                break
            }
        }
        t.inline = true
        t.explicitlyDefined = true
        return TOMLValue(kind: .table(t), line: l)
    }

    // MARK: strings

    /// `"basic"` (escapes) or `'literal'` (none), on one line.
    mutating func basicString() throws(TOMLError) -> String { try string(quote: "\"", escapes: true) }
    mutating func literalString() throws(TOMLError) -> String { try string(quote: "'", escapes: false) }

    mutating func string(quote: Unicode.Scalar, escapes: Bool) throws(TOMLError) -> String {
        let l = line
        advance()
        var out = ""
        while true {
            guard let c = peek, c != "\n" else { throw TOMLError(line: l, message: "unterminated string") }
            advance()
            if c == quote { return out }
            if escapes && c == "\\" { out.unicodeScalars.append(try escape()) } else { out.unicodeScalars.append(c) }
        }
    }

    mutating func escape() throws(TOMLError) -> Unicode.Scalar {
        guard let e = peek else { throw fail("unterminated escape") }
        advance()
        switch e {
        case "b": return "\u{08}"
        case "t": return "\t"
        case "n": return "\n"
        case "f": return "\u{0C}"
        case "r": return "\r"
        case "\"": return "\""
        case "\\": return "\\"
        case "u", "U":
            let n = e == "u" ? 4 : 8
            var hex = ""
            for _ in 0..<n {
                guard let h = peek, h.properties.isASCIIHexDigit else { throw fail("\\\(e) takes \(n) hex digits") }
                hex.unicodeScalars.append(h)
                advance()
            }
            guard let v = UInt32(hex, radix: 16), let scalar = Unicode.Scalar(v) else { throw fail("\\\(e)\(hex) is not a Unicode scalar") }
            return scalar
        default:
            throw fail("unknown escape \\\(e)")
        }
    }

    /// `"""basic"""` or `'''literal'''` over several lines: a newline right after the opening
    /// delimiter is dropped; up to two quotes may sit just before the closing three.
    mutating func multilineBasic() throws(TOMLError) -> String { try multiline(quote: "\"", escapes: true) }
    mutating func multilineLiteral() throws(TOMLError) -> String { try multiline(quote: "'", escapes: false) }

    mutating func multiline(quote: Unicode.Scalar, escapes: Bool) throws(TOMLError) -> String {
        let l = line
        advance()
        advance()
        advance()
        if peek == "\n" {
            advance()
        } else if peek == "\r" && peek(1) == "\n" {
            advance()
            advance()
        }
        var out = ""
        while true {
            guard let c = peek else { throw TOMLError(line: l, message: "unterminated multi-line string") }
            if c == quote && peek(1) == quote && peek(2) == quote {
                advance()
                advance()
                advance()
                for _ in 0..<2 where peek == quote {
                    out.unicodeScalars.append(quote)
                    advance()
                }
                return out
            }
            advance()
            guard escapes && c == "\\" else {
                out.unicodeScalars.append(c)
                continue
            }
            // A line-ending backslash trims the newline and the whitespace after it.
            var j = i
            while j < s.count, s[j] == " " || s[j] == "\t" { j += 1 }
            if j < s.count, s[j] == "\n" || s[j] == "\r" {
                while let w = peek, w == " " || w == "\t" || w == "\n" || w == "\r" { advance() }
            } else {
                out.unicodeScalars.append(try escape())
            }
        }
    }
}
